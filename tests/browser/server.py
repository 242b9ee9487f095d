"""Start the app in-process on a free port, and the headless Chromium that drives it."""
from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # git-ignored, kept for CI


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def uploads_under(folder: Path) -> Iterator[None]:
    """Gradio keeps uploads under ``folder`` (``GRADIO_TEMP_DIR``) inside the block; restored after."""
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


@contextmanager
def running_app(app: Any, max_upload_mb: float = 50.0) -> Iterator[str]:
    """Serve ``app`` (a ``gr.Blocks``) on 127.0.0.1 in this process; yields its URL."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from graft_vqa.interfaces.app import launch

    port = free_port()
    launch(app, host="127.0.0.1", port=port, max_upload_mb=max_upload_mb, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium through Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium chromium-driver"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def save_artifact(path: Path) -> Path:
    """Copy a test output (a screenshot) into ``test-artifacts/`` at the repo root."""
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / path.name
    shutil.copyfile(path, target)
    return target
