"""Start the dashboard with `streamlit run` on a free loopback port and open it in headless Chromium
(Debian's, through Playwright: no browser download). Shared by the e2e test and the first-paint bench."""

from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from harness.serve.base import free_port, launch

REPO = Path(__file__).resolve().parent.parent.parent
# flags this machine's closed network needs (no background networking, no sandbox as root)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def dashboard(db: Path, log: Path):
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO / "dashboard.py"),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    h = launch("streamlit", cmd, {"DQBENCH_DB": str(db)}, port, "dashboard", log, "/_stcore/health", 120)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        h.stop(grace=5)


@contextmanager
def browser_page(width: int = 1500, height: int = 1000):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b.new_page(viewport={"width": width, "height": height})
        finally:
            b.close()
