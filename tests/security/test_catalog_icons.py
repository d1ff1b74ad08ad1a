"""Issue 10, medium: an app icon is an SVG, and an SVG opened as a page runs its
scripts. An icon carrying ``<script>`` and an ``onload`` attribute, from the
settings and from an admin's API call, must run nothing: not on the catalog
page (Chromium), and not when the icon's URL is opened by itself.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from browser import VIEWPORT, sign_in

from .test_catalog_support import PASSWORD, catalog_world, close_world, site_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EVIL = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" '
    'onload="window.pwned = (window.pwned || 0) + 1">'
    "<script>window.pwned = (window.pwned || 0) + 1</script>"
    '<rect width="64" height="64" fill="#c00"/></svg>'
)
ICON = "data:image/svg+xml;base64," + base64.b64encode(EVIL.encode()).decode()
SITE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def world(tmp_path_factory, proxy_command):
    app = site_app("evil-settings", SITE, icon=ICON)
    world = catalog_world(tmp_path_factory.mktemp("catalog-icons"), proxy_command, [app])
    yield world
    close_world(world)


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
