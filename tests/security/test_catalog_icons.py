"""Issue 10, medium: an app icon is an SVG, and an SVG opened as a page runs its
scripts. An icon carrying ``<script>`` and an ``onload`` attribute, from the
settings and from an admin's API call, must run nothing: not on the catalog
page (Chromium), and not when the icon's URL is opened by itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import VIEWPORT, sign_in

from .conftest import EVIL, EVIL_ICON, PASSWORD
from .test_catalog_support import site_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ICON = EVIL_ICON  # an SVG whose script and onload would set window.pwned
SITE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def world(security_world_factory):
    return security_world_factory(catalog_apps=[EVIL])  # evil-settings


def test_icons_with_script_run_nothing(world, chromium):
    r = world.catalog("admin", "POST", "apps", json=site_app("evil-api", SITE, icon=ICON))
    assert r.status_code == 201, r.text
    r = world.catalog("alice", "GET", "apps")
    icons = {a["id"]: a["icon"] for a in r.json()["apps"]}
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(world.url + "hub/login")
    sign_in(page, "alice", PASSWORD)
    page.wait_for_url(re.compile(r"/hub/"))
    page.goto(world.url + "services/catalog/")
    for app_id in ("evil-settings", "evil-api"):
        page.locator(f"[data-app='{app_id}'] img").wait_for()
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.pwned") is None
    # each icon opened by itself, as "open image in new tab" does
    for app_id in ("evil-settings", "evil-api"):
        page.goto(icons[app_id])
        assert page.evaluate("document.documentElement.tagName") == "svg"
        assert page.evaluate("window.pwned") is None, app_id
    context.close()
