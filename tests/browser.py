"""A real browser for the tests: Debian's Chromium driven by Playwright (sync API).

``available()`` says whether it can run; ``launch(playwright)`` starts a headless
Chromium with the flags that keep it quiet and offline; ``shoot(page, name)``
saves a full-page screenshot under ``tests/artifacts/``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}


def available() -> tuple[bool, str]:
    """Whether a browser can run here, and if not, why."""
    if importlib.util.find_spec("playwright") is None:
        return False, "the playwright package is missing (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return False, f"{CHROMIUM} is missing (apt install chromium)"
    return True, ""


def launch(playwright):
    """A headless Chromium from the system, never a downloaded one."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)


def shoot(page, name: str) -> Path:
    """Save a full-page screenshot of ``page`` as ``tests/artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page, username: str, password: str) -> None:
    """Fill in and send the hub's login form on ``page``."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
