"""The catalog page in a real browser (Debian's Chromium through Playwright) on a
real hub with the local backend: a user opens the catalog, sees the cards with
icons, filters them, clicks Launch on the Data Explorer, watches it start, opens
it and sees a plot of a CSV in their home; a failing catalog app shows what
failed and its last log lines. Screenshots: tests/artifacts/catalog-*.png."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from browser import VIEWPORT, shoot, sign_in
from harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CSV = "day,temperature,rain\n" + "".join(
    f"{d},{10 + (d * 7) % 13 * 0.8:.1f},{(d * 5) % 9 * 1.5:.1f}\n" for d in range(1, 31)
)
BROKEN = {
    "id": "broken",
    "title": "Broken app",
    "description": "Exits at once, saying why",
    "category": "Testing",
    "kind": "proxied",
    "launch": {
        "command": [
            sys.executable,
            "-c",
            "import sys; print('broken app: missing config file settings.toml', "
            "file=sys.stderr); sys.exit(3)",
            "{unix_socket}",
        ],
        "unix_socket": True,
        "timeout": 10,
    },
}


@pytest.fixture
def hub(hub_factory, hub_settings):
    hub_settings["catalog"] = {"enabled": True, "port": free_port(), "apps": [BROKEN]}
    home = Path(hub_settings["data_dir"]) / "users" / "admin"
    home.mkdir(parents=True, exist_ok=True)
    (home / "weather.csv").write_text(CSV)
    return hub_factory(hub_settings).start()


def test_launch_data_explorer_from_the_catalog_page(hub, chromium, api):
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(hub.url + "hub/login")
    sign_in(page, "admin", hub.admin_password)
    page.wait_for_url(re.compile(r"/hub/"))
    api.started.add("admin")

    page.goto(hub.url + "services/catalog/")
    explorer = page.locator('.app-card[data-app="data-explorer"]')
    expect(explorer).to_be_visible()
    expect(explorer.get_by_text("Data Explorer")).to_be_visible()
    expect(explorer.locator("img.app-icon")).to_be_visible()
    expect(page.locator('.app-card[data-app="dashboards"]')).to_be_visible()
    shoot(page, "catalog-page")

    # the session cookie alone, without the page's XSRF token, cannot launch
    r = page.request.post(hub.url + "services/catalog/api/apps/broken/launch", data="{}")
    assert r.status == 403, r.text()
    assert "_xsrf" in r.json()["message"] or "XSRF" in r.json()["message"]

    # category filter and search
    page.locator("#category").select_option("Testing")
    expect(page.locator(".app-card")).to_have_count(1)
    page.locator("#category").select_option("")
    page.locator("#search").fill("voil")
    expect(page.locator(".app-card")).to_have_count(1)
    expect(page.locator('.app-card[data-app="dashboards"]')).to_be_visible()
    page.locator("#search").fill("")

    # Launch: progress while the workspace starts, then Open
    explorer.get_by_role("button", name="Launch").click()
    expect(explorer).to_have_attribute("data-state", "starting")
    shoot(page, "catalog-launching")
    expect(explorer).to_have_attribute("data-state", "running", timeout=120_000)
    expect(explorer.get_by_text("Running")).to_be_visible()
    shoot(page, "catalog-running")
    explorer.get_by_role("link", name="Open").click()
    page.wait_for_url(re.compile(r"/user/admin/data-explorer/"))
    page.get_by_label("File").select_option(label="~/weather.csv")
    page.locator("canvas").first.wait_for(state="visible", timeout=60_000)
    expect(page.get_by_text("30 rows × 3 columns")).to_be_visible()
    page.wait_for_timeout(1500)  # let Bokeh finish drawing
    shoot(page, "catalog-data-explorer")

    # a catalog app that fails shows the failure and its log, never a bare 404
    page.goto(hub.url + "services/catalog/")
    broken = page.locator('.app-card[data-app="broken"]')
    broken.get_by_role("button", name="Launch").click()
    expect(broken).to_have_attribute("data-state", "failed", timeout=60_000)
    expect(broken.locator(".app-failure")).to_contain_text("did not start")
    expect(broken.locator(".app-log")).to_contain_text("missing config file settings.toml")
    shoot(page, "catalog-failure")

    # Stop the Data Explorer from its card
    explorer = page.locator('.app-card[data-app="data-explorer"]')
    expect(explorer).to_have_attribute("data-state", "running", timeout=60_000)
    explorer.get_by_role("button", name="Stop").click()
    expect(explorer).to_have_attribute("data-state", "stopped")

    # an admin edits an app on the admin page: a new version, the old one listed
    page.goto(hub.url + "services/catalog/admin")
    row = page.locator('tr[data-app="broken"]')
    row.get_by_role("button", name="Edit").click()
    expect(page.locator("#versions li")).to_have_count(1)
    text = page.locator("#definition")
    text.fill(text.input_value().replace("Exits at once, saying why", "Fails on purpose"))
    page.get_by_role("button", name="Save new version").click()
    expect(page.locator("#alert")).to_contain_text("broken saved as version 1+r2")
    expect(page.locator("#versions li")).to_have_count(2)
    shoot(page, "catalog-admin")
    page.get_by_role("button", name="New app").click()
    text.fill(
        '{"id": "shell", "title": "Shell", "kind": "proxied", '
        '"launch": {"command": "bash -c serve {port}"}}'
    )
    page.get_by_role("button", name="Add app").click()
    expect(page.locator("#alert")).to_contain_text("app.launch.command")
    context.close()
