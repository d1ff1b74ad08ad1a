"""The operations page in a real browser (Debian's Chromium through Playwright)
on ONE real hub with the local backend, accounting and the catalog on: an admin
sees a running workspace with its cost and stops it from the page; a refused
start (over budget, a bad profile) appears with its reason, escaped; the
services' health shows, and a service that does not answer shows down; a
non-admin gets a 403 page and no link; a POST without the XSRF token is
refused. Screenshots: /tmp/labspace-findings/ops-*.png (OPS_SHOTS)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser import VIEWPORT, sign_in
from harness import free_port, login, paused, service_pid, wait_for
from test_accounting_e2e_support import Accounting, accounting_settings, post_start

pytestmark = [pytest.mark.e2e]
PASSWORD = "user-pw-for-tests"  # noqa: S105 (a test hub's shared user password)
SHOTS = Path(os.environ.get("OPS_SHOTS", "/tmp/labspace-findings"))  # noqa: S108
EVIL = "<img src=x onerror=alert(1)>"


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"ops-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def world(module_hub_factory):
    def edit(settings):
        accounting_settings(settings)
        settings["catalog"] = {"enabled": True, "port": free_port()}
        settings["auth"] = {"user_password": PASSWORD}
        settings["hub"]["culling"] = {"enabled": True}  # an hour: nothing is idle here

    hub, api = module_hub_factory(edit)
    token = api.client.headers["Authorization"].split()[1]
    acct = Accounting(hub, token)
    acct.wait_up()
    yield hub, api, acct
    acct.close()


@pytest.fixture(scope="module")
def admin(world, chromium):
    """The admin's signed-in browser page (one context for the module)."""
    hub, _, _ = world
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(hub.url + "hub/login")
    sign_in(page, "admin", hub.admin_password)
    page.wait_for_url(re.compile(r"/hub/"))
    page.dialogs = dialogs
    yield page
    context.close()


def ops(page, hub):
    page.goto(hub.url + "hub/ops")
    return page


def test_admin_sees_a_running_workspace_with_its_cost_and_stops_it(world, admin):
    from playwright.sync_api import expect

    hub, api, acct = world
    api.create_user("ann")
    api.add_to_group("lab-a", "ann")
    acct.topup("lab-a", "1000")
    api.start_server("ann", body={"profile": "small", "project": "lab-a"})
    wait_for(
        lambda: [s for s in acct.sessions(user="ann") if float(s["cost"]) > 0],
        30,
        0.5,
        what="ann's session charged",
    )
    page = ops(admin, hub)
    expect(page.get_by_role("link", name="Operations")).to_be_visible()
    row = page.locator('tr.ls-workspace[data-user="ann"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("Small")
    expect(row).to_contain_text("lab-a")
    expect(row.locator(".ls-cost")).to_contain_text(re.compile(r"\d+\.\d\d credits"))
    expect(row.locator("time")).to_have_count(2)  # started, last activity
    shoot(page, "page")

    # one pass of the culler now (jupyterhub-idle-culler's own): ann is not idle
    page.get_by_role("button", name="Cull idle now").click()
    page.wait_for_url(re.compile(r"/hub/ops$"))
    expect(page.locator("#ls-actions")).to_contain_text("admin culled nothing (none was idle)")
    expect(row).to_be_visible()

    row.get_by_role("button", name="Stop").click()
    page.wait_for_url(re.compile(r"/hub/ops$"))
    expect(page.locator("#ls-actions li").first).to_contain_text("admin stopped ann")
    wait_for(lambda: not api.user("ann").json()["servers"], 30, what="ann's server stopped")
    api.started.discard("ann")
    page.reload()
    expect(page.locator('tr.ls-workspace[data-user="ann"]')).to_have_count(0)
    shoot(page, "stopped")


def test_refused_starts_show_with_their_reasons_escaped(world, admin):
    from playwright.sync_api import expect

    hub, api, _ = world
    api.create_user("bob")
    api.add_to_group("lab-b", "bob")  # a project with no budget
    r = post_start(api, "bob", {"profile": "small", "project": "lab-b"})
    assert r.status_code == 402, r.text
    budget = r.json()["message"]
    r = post_start(api, "bob", {"profile": EVIL})
    assert 400 <= r.status_code < 500, r.text
    bad_profile = r.json()["message"]

    page = ops(admin, hub)
    rows = page.locator("tr.ls-start")
    expect(rows).to_have_count(2)
    newest, older = rows.nth(0), rows.nth(1)
    expect(older.locator(".ls-reason")).to_have_text(budget)
    expect(older).to_contain_text("refused (402)")
    expect(newest.locator(".ls-reason")).to_have_text(bad_profile)
    assert EVIL in newest.inner_text()  # shown as text ...
    assert page.locator("#ls-starts img").count() == 0  # ... never as markup
    assert admin.dialogs == []
    shoot(page, "refused")


def test_service_health_and_a_service_that_does_not_answer_shows_down(world, admin):
    from playwright.sync_api import expect

    hub, _, _ = world
    page = ops(admin, hub)
    for name in ("accounting", "catalog", "accounting-deliverer", "idle-culler"):
        expect(page.locator(f'tr.ls-service[data-service="{name}"]')).to_have_attribute(
            "data-state", "up"
        )
    accounting = page.locator('tr.ls-service[data-service="accounting"]')
    expect(accounting.locator("td").nth(2)).to_have_text(re.compile(r"\d+\.\d+"))  # version
    expect(accounting.locator("td").nth(3)).to_have_text(re.compile(r"^\d+$"))  # outbox
    expect(accounting.locator("td").nth(4).locator("time")).to_have_count(1)  # reconciled

    with paused(service_pid(hub, "catalog")):
        page.reload()
        catalog = page.locator('tr.ls-service[data-service="catalog"]')
        expect(catalog).to_have_attribute("data-state", "down")
        expect(catalog).to_contain_text("No answer")
        expect(page.locator("#ls-count-down")).to_have_text("1 of 4 services not up")
        shoot(page, "catalog-down")
    page.reload()
    expect(page.locator('tr.ls-service[data-service="catalog"]')).to_have_attribute(
        "data-state", "up"
    )


def test_a_non_admin_gets_403_and_no_link(world, chromium):
    from playwright.sync_api import expect

    hub, api, _ = world
    api.create_user("cy")
    context = chromium.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(hub.url + "hub/login")
        sign_in(page, "cy", PASSWORD)
        page.wait_for_url(re.compile(r"/hub/"))
        expect(page.get_by_role("link", name="Operations")).to_have_count(0)
        response = page.goto(hub.url + "hub/ops")
        assert response.status == 403
        expect(page.locator("h1")).to_have_text(re.compile(r"403 : For Labspace administrators"))
        expect(page.locator("body")).to_contain_text("custom:labspace-ops:admin")
        shoot(page, "403")
    finally:
        context.close()
    # nor may cy act, with a valid XSRF token of their own
    cy = login(hub.url, "cy", PASSWORD)
    xsrf = cy.cookies.get("_xsrf", path="/hub/")
    r = cy.post("hub/ops/stop", data={"user": "cy", "server": "", "_xsrf": xsrf})
    assert r.status_code == 403, r.text
    cy.close()


def test_a_post_without_xsrf_is_refused(world, admin):
    hub, api, _ = world
    api.create_user("dee")
    api.add_to_group("lab-a", "dee")  # lab-a has a budget (the first test)
    api.start_server("dee", body={"profile": "small", "project": "lab-a"})
    r = admin.request.post(hub.url + "hub/ops/stop", form={"user": "dee", "server": ""})
    assert r.status == 403, r.text()
    assert "xsrf" in r.text().lower()
    assert api.user("dee").json()["servers"][""]["ready"]  # still running
    api.stop_server("dee")
