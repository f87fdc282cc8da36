"""The scenario runner and checklist grader.

Public API (stable; see also ``lab run`` and ``lab grade``)::

    from lab.runner import Target, grade_target

    report = grade_target(Target.builtin("edge"), only=("edge",), results_dir=tmp_path)
    report.results["edge.drains"].passed, report.failed_ids(), report.score, report.run_dir

The names are imported on first use: ``lab serve`` imports this package (for ``lab.runner.cli``)
every time a server starts, and should not pay for the runner's modules.
"""

import importlib

_EXPORTS = {
    "CHECKLIST": "lab.runner.checklist",
    "Item": "lab.runner.checklist",
    "ItemResult": "lab.runner.grading",
    "RunReport": "lab.runner.report",
    "grade_submission": "lab.runner.run",
    "grade_target": "lab.runner.run",
    "load_scenarios": "lab.runner.run",
    "Submission": "lab.runner.submission",
    "load_submission": "lab.runner.submission",
    "reference": "lab.runner.submission",
    "Target": "lab.runner.targets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lab.runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
