"""The report rendered by a real browser (headless Chromium): the summary is in the rendered DOM,
the page logs no console error, a screenshot of the first screen (1280 x 900) is kept as an
artefact (the test prints where; also copied to $TELCOSIM_ARTIFACTS when set), and at a 1400 px
window nothing is wider than the window (no horizontal scroll; the details tables included). The
report is the small run's, against the shared data when present, else against another seed's
CDRs. Skipped when no Chromium is installed (e.g. ``apt-get install chromium``)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from telcosim.evaluation.report import write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def _chromium(browser: str, tmp_path: Path, *args: str, size: str = "1280,900") -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={size}",
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


# Measures the laid-out page (a test copy only: the report itself holds no script) and writes the
# widths into the DOM that --dump-dom prints: the page's scroll width and client width, and every
# table whose right edge lies beyond the window.
MEASURE = """<script>
const de = document.documentElement, wide = [];
document.querySelectorAll('table').forEach((t, i) => {
  if (t.getBoundingClientRect().right > de.clientWidth + 1) wide.push((t.id || t.className || 'table') + '#' + i);
});
document.body.setAttribute('data-measured', de.scrollWidth + 'x' + de.clientWidth + ' wide=' + wide.join(','));
</script>"""


def test_report_fits_a_1400_px_window(report_doc, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    _, page = write_report(report_doc, tmp_path / "report")
    text = page.read_text(encoding="utf-8")
    assert "details-table" in text  # the details tables are among those measured
    probe = tmp_path / "measure.html"
    probe.write_text(text.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = _chromium(browser, tmp_path, "--dump-dom", probe.resolve().as_uri(), size="1400,900")
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'data-measured="(\d+)x(\d+) wide=([^"]*)"', dom.stdout)
    assert m, dom.stdout[:2000]
    scroll, client, wide = int(m.group(1)), int(m.group(2)), m.group(3)
    assert client == 1400
    assert scroll <= client and not wide, f"page {scroll} px wide in a {client} px window; too wide: {wide}"
