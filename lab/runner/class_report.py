"""The class report: every submission's results.json in, one matrix of students x items out.

Pure: ``class_data`` turns per-submission records (what each grade wrote, plus what the sandbox
saw) into the dict that is ``class.json``; ``class_csv``, ``class_markdown`` and ``class_html``
render that dict. ``lab grade`` of a folder writes all four beside the submissions' own results
folders, and ``lab grade --merge`` rebuilds them from results folders graded anywhere.

An item's outcome is the grader's ``outcome`` when results.json has one ("PASS", "PASS with
remark", "FAIL", "NOT EXERCISED"), else PASS or FAIL from ``passed``. An item a submission was
not graded on (another ``--only``) is absent from its row, not failed.

Discussion: the page must open from a file, offline, years later, so it carries its style and
its one script inline and loads nothing. Sorting is the script's only job; the matrix, the
colours and the evidence are plain HTML, readable with scripts off.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from lab.runner.checklist import CHECKLIST
from lab.runner.grading import Outcome

# The outcomes as results.json spells them.
PASS, REMARK, FAIL, NOT_EXERCISED = (Outcome.PASS.value, Outcome.REMARK.value, Outcome.FAIL.value,
                                     Outcome.NOT_EXERCISED.value)
OUTCOMES = (PASS, REMARK, FAIL, NOT_EXERCISED)
PASSING = tuple(outcome.value for outcome in Outcome if outcome.scores)
# outcome -> (CSS class, short mark for the matrix, fill colour, text colour)
STYLE = {
    PASS: ("pass", "PASS", "#1e8e3e", "#fff"),
    REMARK: ("remark", "PASS*", "#a8d5a2", "#0b3d12"),
    FAIL: ("fail", "FAIL", "#c5221f", "#fff"),
    NOT_EXERCISED: ("unexercised", "n/e", "#9aa0a6", "#111"),
}
CHECKLIST_ORDER = {item.id: position for position, item in enumerate(CHECKLIST)}


@dataclass(slots=True)
class SubmissionRecord:
    """One graded submission as the class report sees it.

    ``results``: its results.json; ``link``: its results folder, relative to the class report;
    ``sandbox``: its sandbox.json (how the grade ended: ``reason`` when it was not graded,
    ``notes`` on what the limits did, the ``limits``), empty when there is none."""

    name: str
    results: dict
    link: str
    sandbox: dict = field(default_factory=dict)


def outcome_of(item: dict) -> str:
    """The item's outcome: results.json's ``outcome`` when present, else PASS/FAIL."""
    outcome = item.get("outcome")
    if outcome in OUTCOMES:
        return outcome
    return PASS if item.get("passed") else FAIL


def class_data(records: Sequence[SubmissionRecord], *, title: str, generated: str,
               sandbox: dict | None) -> dict:
    """The content of class.json: the class's items with their pass rates, then every
    submission (sorted by name) with its score, every item's outcome and its results link."""
    records = sorted(records, key=lambda record: record.name)
    submissions = [_submission(record) for record in records]
    items = _columns(records)
    for column in items:
        outcomes = [s["items"][column["id"]]["outcome"] for s in submissions if column["id"] in s["items"]]
        column["graded"] = len(outcomes)
        column["passed"] = sum(outcome in PASSING for outcome in outcomes)
        column["pass_rate"] = round(column["passed"] / len(outcomes), 4) if outcomes else None
    return {"title": title, "generated": generated, "sandbox": sandbox, "items": items,
            "submissions": submissions}


def _columns(records: Sequence[SubmissionRecord]) -> list[dict]:
    """Every item graded for anyone, in checklist order (unknown ids last, by name)."""
    columns: dict[str, dict] = {}
    for record in records:
        for item in record.results.get("items", []):
            columns.setdefault(item["id"], {"id": item["id"], "section": item.get("section", ""),
                                            "points": item.get("points", 0), "title": item.get("title", "")})
    return sorted(columns.values(), key=lambda c: (CHECKLIST_ORDER.get(c["id"], len(CHECKLIST)), c["id"]))


def _submission(record: SubmissionRecord) -> dict:
    results = record.results
    items = {
        item["id"]: {
            "outcome": outcome_of(item),
            "awarded": item.get("awarded", 0),
            "points": item.get("points", 0),
            "evidence": item.get("evidence", ""),
            "hint": item.get("hint", ""),
        }
        for item in results.get("items", [])
    }
    notes = [*record.sandbox.get("notes", []), *results.get("warnings", [])]
    return {
        "name": record.name,
        "score": results.get("score", 0),
        "max_score": results.get("max_score", 0),
        "status": "not graded" if record.sandbox.get("reason") else "graded",
        "reason": record.sandbox.get("reason"),
        "results": record.link,
        "started": results.get("started", ""),
        "seconds": results.get("seconds"),
        "items": items,
        "notes": list(dict.fromkeys(notes)),
    }


# -- renderings (pure) -----------------------------------------------------------------------


def class_json(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"


def _spreadsheet_text(text: str) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ would be run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def class_csv(data: dict) -> str:
    """One row per student, one column per item (the points awarded; empty when not graded),
    for a school's gradebook. Comma-separated, CRLF line ends, as RFC 4180 and spreadsheets
    expect; write it as utf-8-sig so Excel reads accented names right."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    ids = [column["id"] for column in data["items"]]
    writer.writerow(["student", "score", "max_score", *ids, "status", "reason"])
    for submission in data["submissions"]:
        cells = [submission["items"][i]["awarded"] if i in submission["items"] else "" for i in ids]
        writer.writerow([_spreadsheet_text(submission["name"]), submission["score"], submission["max_score"],
                         *cells, submission["status"], _spreadsheet_text(submission["reason"] or "")])
    return out.getvalue()


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f} %"


def _limits_words(sandbox: dict | None) -> str:
    if not sandbox:
        return "no sandbox: the submissions ran natively, as the user who graded them"
    limits = ", ".join(f"{name} {value}" for name, value in sandbox.get("limits", {}).items())
    return f"{sandbox.get('kind', 'sandbox')} ({sandbox.get('image', '?')}), limits: {limits}"


def class_markdown(data: dict) -> str:
    ids = [column["id"] for column in data["items"]]
    mark = {outcome: STYLE[outcome][1] for outcome in OUTCOMES}
    lines = [
        f"# Class report: {data['title']}",
        "",
        f"{len(data['submissions'])} submissions, generated {data['generated']}.",
        f"Sandbox: {_limits_words(data['sandbox'])}.",
        "",
        "Marks: PASS, PASS* (pass with a remark), FAIL, n/e (not exercised), blank (not graded).",
        "",
        "| student | score | " + " | ".join(f"`{i}`" for i in ids) + " |",
        "|---|---|" + "---|" * len(ids),
    ]
    for s in data["submissions"]:
        cells = [mark[s["items"][i]["outcome"]] if i in s["items"] else "" for i in ids]
        name = f"[{_md(s['name'])}]({s['results']}/scorecard.md)" if s["results"] else _md(s["name"])
        lines.append(f"| {name} | {s['score']}/{s['max_score']} | " + " | ".join(cells) + " |")
    lines += ["", "## Pass rate by item", "", "| item | points | passed | pass rate |", "|---|---|---|---|"]
    for column in sorted(data["items"], key=lambda c: (c["pass_rate"] is None, c["pass_rate"] or 0)):
        lines.append(f"| `{column['id']}` | {column['points']} | {column['passed']}/{column['graded']} "
                     f"| {_percent(column['pass_rate'])} |")
    noted = [s for s in data["submissions"] if s["reason"] or s["notes"]]
    if noted:
        lines += ["", "## Notes", ""]
        for s in noted:
            for note in ([s["reason"]] if s["reason"] else []) + s["notes"]:
                lines.append(f"- {_md(s['name'])}: {_md(note)}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #202124; }
table { border-collapse: collapse; }
th, td { border: 1px solid #dadce0; padding: 2px 6px; text-align: center; }
th.item { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; white-space: nowrap; }
td.name, th.name { text-align: left; }
td.cell a { display: block; text-decoration: none; color: inherit; font-size: 11px; }
tr.rate td { font-weight: bold; background: #f1f3f4; }
button.sort { font: inherit; cursor: pointer; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; }
dl.evidence dt { font-family: monospace; margin-top: 4px; }
""" + "".join(
    f"td.{css}, span.{css}, dt.{css} {{ background: {fill}; color: {text}; }}\n"
    for css, _, fill, text in STYLE.values()
)

_SCRIPT = """
function sortBy(key, descending) {
  const body = document.querySelector('#matrix tbody');
  const rows = Array.from(body.querySelectorAll('tr.student'));
  rows.sort((a, b) => {
    const x = a.dataset[key], y = b.dataset[key];
    const order = key === 'score' ? Number(x) - Number(y) : x.localeCompare(y);
    return (descending ? -order : order) || a.dataset.name.localeCompare(b.dataset.name);
  });
  rows.forEach(row => body.appendChild(row));
  document.querySelector('#matrix').dataset.sorted = key + (descending ? '-desc' : '');
}
document.querySelectorAll('button.sort').forEach(button => button.addEventListener('click', () => {
  const key = button.dataset.key, table = document.querySelector('#matrix');
  sortBy(key, table.dataset.sorted === key);
}));
const wanted = /^#sort=(name|score)(-desc)?$/.exec(location.hash);
if (wanted) sortBy(wanted[1], Boolean(wanted[2]));
"""


def class_html(data: dict) -> str:
    """One self-contained page: the matrix (rows sortable by score or name, each cell linking
    to its evidence below), each item's pass rate, the sandbox's limits and the notes."""
    e = html.escape
    columns = data["items"]
    head = "".join(f'<th class="item" title="{e(c["title"])}">{e(c["id"])}</th>' for c in columns)
    rows = []
    for index, s in enumerate(data["submissions"]):
        cells = []
        for column in columns:
            item = s["items"].get(column["id"])
            if item is None:
                cells.append('<td class="cell absent" title="not graded"></td>')
                continue
            css, mark, _, _ = STYLE[item["outcome"]]
            tip = f"{column['id']}: {item['outcome']}, {item['awarded']}/{item['points']}: {item['evidence']}"
            cells.append(f'<td class="cell {css}" data-outcome="{e(item["outcome"])}">'
                         f'<a href="#s{index}-{e(column["id"])}" title="{e(tip)}">{mark}</a></td>')
        reason = f'<br><small>{e(s["reason"])}</small>' if s["reason"] else ""
        rows.append(
            f'<tr class="student" data-name="{e(s["name"])}" data-score="{s["score"]}">'
            f'<td class="name"><a href="#s{index}">{e(s["name"])}</a>{reason}</td>'
            f'<td class="score">{s["score"]}/{s["max_score"]}</td>{"".join(cells)}</tr>'
        )
    rates = "".join(f'<td class="rate" data-item="{e(c["id"])}" title="{c["passed"]}/{c["graded"]} passed">'
                    f'{_percent(c["pass_rate"])}</td>' for c in columns)
    legend = "".join(f'<span class="{css}">{mark} = {e(outcome)}</span>'
                     for outcome, (css, mark, _, _) in STYLE.items())
    evidence = "\n".join(_evidence_html(index, s, columns) for index, s in enumerate(data["submissions"]))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Class report: {e(data['title'])}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Class report: {e(data['title'])}</h1>
<p>{len(data['submissions'])} submissions, generated {e(data['generated'])}.
Sandbox: {e(_limits_words(data['sandbox']))}.</p>
<p class="legend">{legend}<span>blank = not graded</span></p>
<table id="matrix" data-sorted="name">
<thead><tr><th class="name">student <button class="sort" data-key="name">sort</button></th>
<th>score <button class="sort" data-key="score">sort</button></th>{head}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
<tfoot><tr class="rate"><td class="name">pass rate</td><td></td>{rates}</tr></tfoot>
</table>
<h2>Evidence</h2>
{evidence}
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _evidence_html(index: int, s: dict, columns: list[dict]) -> str:
    e = html.escape
    folder = e(s["results"])
    link = f' <a href="{folder}/scorecard.md">scorecard</a> · <a href="{folder}/">results folder</a>' if folder else ""
    notes = "".join(f"<li>{e(note)}</li>" for note in ([s["reason"]] if s["reason"] else []) + s["notes"])
    entries = []
    for column in columns:
        item = s["items"].get(column["id"])
        if item is None:
            continue
        css = STYLE[item["outcome"]][0]
        hint = f"<br>hint: {e(item['hint'])}" if item["hint"] and item["outcome"] not in PASSING else ""
        entries.append(f'<dt id="s{index}-{e(column["id"])}" class="{css}">{e(column["id"])}: '
                       f'{e(item["outcome"])} {item["awarded"]}/{item["points"]}</dt>'
                       f'<dd>{e(item["evidence"])}{hint}</dd>')
    return (f'<section id="s{index}"><h3>{e(s["name"])}: {s["score"]}/{s["max_score"]}{link}</h3>'
            + (f"<ul>{notes}</ul>" if notes else "")
            + f'<dl class="evidence">{"".join(entries)}</dl></section>')
