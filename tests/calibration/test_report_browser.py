"""The report rendered by a real browser (headless Chromium): the summary is in the rendered DOM,
the page logs no console error, and a screenshot of the first screen (1280 x 900) is kept as an
artefact (the test prints where; also copied to $TELCOSIM_ARTIFACTS when set). Skipped when no
Chromium is installed (e.g. ``apt-get install chromium``)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from calibration.report import write_report

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


def test_report_renders_in_headless_chromium(honest_doc, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
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
