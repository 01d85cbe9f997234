"""End to end in a real browser: `agent-forge dashboard` on loopback, opened in headless Chromium.

The dashboard runs as the CLI starts it, against a workspace filled through the storage APIs, while this
test holds one session's lock and writes to the registry (as a running pipeline would). Checked: the
session table, the eight-phase timeline chart, the live refresh picking up the write, a metric chart on the
Metrics page, and that the static report draws its charts offline. Screenshots are kept as artifacts
(``$AGENT_FORGE_ARTIFACTS`` or ``test-artifacts/``; the paths are printed).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent_forge.config.schema import PHASE_NAMES
from agent_forge.pipeline.orchestrator import session_lock
from agent_forge.storage.registry import ModelRegistry
from agent_forge.ui.report import write_report
from support.ui_workspace import DONE, LIVE, fill_workspace

pytestmark = pytest.mark.browser
_playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
expect, sync_playwright = _playwright.expect, _playwright.sync_playwright
ROOT = Path(__file__).resolve().parents[2]
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")


def _chromium(playwright) -> str | None:
    """Playwright's own Chromium if installed, else a system one (Debian's `chromium` package)."""
    bundled = Path(playwright.chromium.executable_path)
    if bundled.is_file():
        return str(bundled)
    for candidate in (os.environ.get("AGENT_FORGE_CHROMIUM"), *CHROMIUM_CANDIDATES):
        found = candidate and (candidate if Path(candidate).is_file() else shutil.which(candidate))
        if found:
            return str(found)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _dashboard(workspace: Path, port: int, log: Path):
    """`agent-forge dashboard` in its own process group, stopped (group and all) afterwards."""
    code = "import sys; from agent_forge.cli import ui_cmds, main; main(sys.argv[1:])"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, "--workspace", str(workspace), "dashboard",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=ROOT)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"dashboard did not come up: {log.read_text()}")


def _count(page, selector: str, minimum: int, timeout_ms: int = 60_000) -> int:
    page.wait_for_function(f"document.querySelectorAll({selector!r}).length >= {minimum}", timeout=timeout_ms)
    return page.locator(selector).count()


def _artifacts() -> Path:
    """``$AGENT_FORGE_ARTIFACTS`` or the repository's git-ignored ``test-artifacts/`` (kept after the run)."""
    folder = Path(os.environ.get("AGENT_FORGE_ARTIFACTS") or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_dashboard_in_headless_chromium(tmp_path: Path) -> None:
    clock = _Clock()
    port, log, shots, root = _free_port(), tmp_path / "dashboard.log", _artifacts(), tmp_path / "ws"
    with sync_playwright() as pw:
        executable = _chromium(pw)
        if executable is None:
            pytest.skip("no Chromium: `python -m playwright install chromium` or `apt-get install chromium`")
        with _dashboard(root, port, log) as proc:  # starts while the workspace is filled
            filled = fill_workspace(root)
            clock.lap("workspace filled")
            browser = pw.chromium.launch(executable_path=executable, headless=True, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _wait_healthy(port, proc, log)
            clock.lap("dashboard up")
            with session_lock(filled.workspace.session_dir(LIVE)):
                _overview(page, port, filled, shots)
            clock.lap("overview checked")
            _metrics(page, shots)
            clock.lap("metrics checked")
            _report_offline(browser, filled, tmp_path, shots)
            clock.lap("report checked")
            browser.close()


class _Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def lap(self, name: str) -> None:
        print(f"{name}: {time.perf_counter() - self.start:.1f} s")


def _overview(page, port: int, filled, shots: Path) -> None:
    page.goto(f"http://127.0.0.1:{port}/")
    page.get_by_text(f"Session {LIVE}").wait_for(timeout=90_000)
    table = page.locator("[data-testid=stDataFrame]").first
    table.locator("td").filter(has_text=DONE).wait_for(state="attached", timeout=60_000)
    cells = table.locator("td").all_text_contents()
    assert LIVE in cells and DONE in cells and "running" in cells and "completed" in cells
    page.get_by_text("live: refreshing every 5 s").wait_for()
    # the timeline: one bar per started phase (cognate, evomerge, quietstar), every phase on the axis
    title = page.locator(".gtitle").filter(has_text="phase timeline")
    timeline = page.locator(".js-plotly-plot").filter(has=title).last  # a live refresh may redraw it
    expect(timeline.locator(".barlayer .point")).to_have_count(3, timeout=60_000)
    expect(timeline.locator(".ytick text")).to_have_text(list(reversed(PHASE_NAMES)))
    page.screenshot(path=str(shots / "dashboard_overview.png"))
    print(f"screenshot: {shots / 'dashboard_overview.png'}")
    # a write while the page is open shows up without a reload (WAL reader + auto-refresh)
    ModelRegistry(filled.workspace.registry_path).update_session(LIVE, progress_percent=40.0)
    page.locator("[data-testid=stMetricValue]").filter(has_text="40%").wait_for(timeout=30_000)


def _metrics(page, shots: Path) -> None:
    page.locator("[data-testid=stSidebar]").get_by_text("Metrics", exact=True).click()
    title = page.locator(".gtitle").filter(has_text="cognate: train/loss")
    title.wait_for(timeout=60_000)
    chart = page.locator(".js-plotly-plot").filter(has=title)
    expect(chart.locator(".scatterlayer .trace")).to_have_count(4)  # trunk and three specialists
    expect(chart.locator(".legendtext")).to_have_text(["adaptive", "memory", "reasoning", "trunk"])
    chart.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "dashboard_metrics.png"))
    print(f"screenshot: {shots / 'dashboard_metrics.png'}")


def _report_offline(browser, filled, tmp_path: Path, shots: Path) -> None:
    """The static report draws every chart from file:// with every network request refused."""
    registry = ModelRegistry(filled.workspace.registry_path, readonly=True)
    html_path, _ = write_report(filled.workspace, registry, LIVE, tmp_path / "report")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    fetched: list[str] = []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
               else (fetched.append(route.request.url), route.abort()))
    page.goto(html_path.as_uri(), wait_until="domcontentloaded", timeout=90_000)
    expected = html_path.read_text(encoding="utf-8").count("Plotly.newPlot(")
    assert _count(page, ".js-plotly-plot .main-svg", expected) >= expected
    assert fetched == []
    page.screenshot(path=str(shots / "report.png"))
    print(f"screenshot: {shots / 'report.png'}")
