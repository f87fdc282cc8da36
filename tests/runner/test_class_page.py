"""class.html in a real browser: headless Chromium renders the matrix, runs the sort script,
and paints the outcomes in their colours.

Needs Debian's ``chromium`` (``apt-get install chromium``): skipped without it, failed instead
when LAB_REQUIRE_CHROMIUM=1 (CI, which installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.runner.class_report import FAIL, NOT_EXERCISED, PASS, REMARK, STYLE, SubmissionRecord
from lab.runner.classroom import write_class_report

pytestmark = pytest.mark.slow
BROWSER_TIMEOUT = 120.0
ITEMS = ("level.accepts", "edge.drains", "bonus.oneshot")


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "headless Chromium is not installed (apt-get install chromium)"
        if os.environ.get("LAB_REQUIRE_CHROMIUM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=BROWSER_TIMEOUT, stdin=subprocess.DEVNULL)


def record(name: str, outcomes: tuple[str, ...]) -> SubmissionRecord:
    items = [{"id": item_id, "section": item_id.partition(".")[0], "points": 5, "title": item_id,
              "passed": outcome in (PASS, REMARK), "outcome": outcome,
              "awarded": 5 if outcome in (PASS, REMARK) else 0, "evidence": f"measured {outcome}", "hint": ""}
             for item_id, outcome in zip(ITEMS, outcomes)]
    results = {"name": name, "score": sum(i["awarded"] for i in items), "max_score": 15, "items": items}
    return SubmissionRecord(name, results, f"submissions/{name}/run")


@pytest.fixture
def page(tmp_path) -> Path:
    records = [
        record("amy", (FAIL, FAIL, NOT_EXERCISED)),  # 0
        record("ben", (PASS, PASS, PASS)),  # 15
        record("cat", (PASS, REMARK, FAIL)),  # 10
    ]
    write_class_report(records, tmp_path, title="browser", sandbox=None)
    return tmp_path / "class.html"


def test_chromium_renders_the_matrix_and_sorts_it_by_score(chromium, page, tmp_path):
    done = browse(chromium, tmp_path / "profile", "--dump-dom", page.as_uri() + "#sort=score-desc")
    assert done.returncode == 0, done.stderr[-3000:]
    dom = done.stdout
    # The script ran: the rows are in score order, highest first.
    assert 'data-sorted="score-desc"' in dom
    assert re.findall(r'<tr class="student" data-name="(\w+)"', dom) == ["ben", "cat", "amy"]
    ben_row = re.search(r'<tr class="student" data-name="ben".*?</tr>', dom, re.S).group(0)
    assert re.findall(r'<td class="cell (\w+)"', ben_row) == ["pass", "pass", "pass"]
    assert re.findall(r'data-item="[\w.]+"[^>]*>([^<]*)<', dom) == ["67 %", "67 %", "33 %"]


def test_chromium_paints_each_outcome_in_its_colour(chromium, page, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    shot = tmp_path / "class.png"
    done = browse(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1000,700",
                  "--hide-scrollbars", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-3000:]
    pixels = image.imread(str(shot))[:, :, :3]
    assert pixels.shape[:2] == (700, 1000)
    colours = {(round(r * 255), round(g * 255), round(b * 255)) for row in pixels[::2, ::2] for r, g, b in row}

    def painted(fill: str) -> bool:
        want = tuple(int(fill[at:at + 2], 16) for at in (1, 3, 5))
        return any(all(abs(c - w) <= 3 for c, w in zip(colour, want)) for colour in colours)

    for outcome in (PASS, REMARK, FAIL, NOT_EXERCISED):
        assert painted(STYLE[outcome][2]), f"no {outcome} cell ({STYLE[outcome][2]}) in the screenshot"
    assert not painted("#123456")  # negative control: a colour the page does not use
