"""The report rendered by a real browser (headless Chromium): the summary is in the rendered DOM,
the page logs no console error, and a screenshot of the first screen (1280 x 900) is kept as an
artefact (the test prints where; also copied to $TELCOSIM_ARTIFACTS when set). The report is the
small run's, against the shared data when present, else against another seed's CDRs. Skipped when no
Chromium is installed (e.g. ``apt-get install chromium``)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from telcosim.evaluation.report import write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def _chromium(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900",
           "--hide-scrollbars", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp_path)})


@pytest.fixture(scope="module")
def report_doc(request, small_run, small_run_b):
    """The small run's report: against the shared real sets when present, else against the CDRs of
    the same scenario with another seed (``--real cdr=``), so that CI renders a report either way."""
    from tests.evaluation.conftest import HAVE_DATA

    if HAVE_DATA:
        return request.getfixturevalue("honest_doc")
    from telcosim.evaluation.fidelity import evaluate
    from telcosim.realdata import readers as R

    return evaluate(small_run[1], [R.read_cdr(small_run_b)])


def test_report_renders_in_headless_chromium(report_doc, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    honest_doc = report_doc
    _, page = write_report(honest_doc, tmp_path / "report")
    url = page.resolve().as_uri()

    dom = _chromium(browser, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    s = honest_doc["summary"]
    assert "telcosim fidelity report" in dom.stdout
    assert f"<b>{s['passed']} / {s['evaluated']}</b>" in dom.stdout and f"gate: {s['gate']}" in dom.stdout
    assert 'id="summary-table"' in dom.stdout and dom.stdout.count("<svg") >= 4
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "error" in line.lower() or "uncaught" in line.lower()], console

    shot = tmp_path / "report_first_screen.png"
    res = _chromium(browser, tmp_path, f"--screenshot={shot}", url)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert (width, height) == (1280, 900)
    kept = [shot]
    if os.environ.get("TELCOSIM_ARTIFACTS"):
        dest = Path(os.environ["TELCOSIM_ARTIFACTS"])
        dest.mkdir(parents=True, exist_ok=True)
        kept.append(Path(shutil.copy2(shot, dest / shot.name)))
        shutil.copy2(page, dest / "report.html")
    print(f"report screenshot (first screen): {', '.join(map(str, kept))}")
