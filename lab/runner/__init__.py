"""The scenario runner and checklist grader (``lab run``, ``lab grade``).

The modules, from the rules to the wire: ``checklist`` (the rubric as data), ``scenario``
(the workload schema and its validation), ``diagnosis`` (the first cause of a failure, pure),
``grading`` (pure judges), ``stability`` (``--repeat``: FLAKY items, pure), ``report``
(scorecard, results.json, JUnit, the atomic results folder); ``program`` (what is graded and how it is
started), ``clients`` (the epoll clients), ``evidence`` (/proc readings), ``execute`` (one
scenario against a fresh instance), ``run`` (whole grades), ``submission``, ``preflight``,
``progress``, ``benchmark`` and ``cli``.

Public API::

    from lab.runner.program import Program
    from lab.runner.run import grade_program

    report = grade_program(Program.builtin("edge"), only=("edge",), results_dir=tmp_path)
    report.results["edge.drains"].passed, report.failed_ids(), report.score, report.run_dir
"""
