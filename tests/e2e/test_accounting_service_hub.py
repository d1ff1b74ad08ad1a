"""The accounting service behind a real hub: custom scopes carried by real hub
tokens and OAuth cookies, the pages through the OAuth dance, the admin forms
with the hub's XSRF protection, the hub's navigation links."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from browser import VIEWPORT, sign_in
from harness import HubAPI, login
from playwright.sync_api import expect
from test_accounting_e2e_support import Accounting, accounting_settings

pytestmark = [pytest.mark.e2e]
PASSWORD = "user-pw-for-tests"  # noqa: S105 (a test hub's shared user password)


@pytest.fixture
def hub_with_accounting(hub_factory, hub_settings, service_token):
    accounting_settings(hub_settings, no_project="personal", personal_allowance=5)
    hub_settings["auth"] = {"user_password": PASSWORD}
    hub_settings["hub"]["admin_users"] = ["admin"]
    hub = hub_factory(hub_settings).start()
    api = HubAPI(hub.url, service_token)
    acct = Accounting(hub, service_token)
    acct.wait_up()
    yield hub, api
    api.close()
    acct.close()


def token_of(hub, user: str, password: str) -> str:
    """A token the user makes for themselves (signed in, as on the hub's token page)."""
    browser = login(hub.url, user, password)
    r = browser.post(
        f"hub/api/users/{user}/tokens",
        json={"note": "accounting e2e"},
        headers={"X-XSRFToken": browser.cookies.get("_xsrf", path="/hub/")},
    )
    assert r.status_code == 201, r.text
    browser.close()
    return r.json()["token"]


def test_real_tokens_carry_the_scopes(hub_with_accounting):
    hub, api = hub_with_accounting
    for name in ("alice", "bob", "admin"):
        if api.user(name).status_code == 404:
            api.create_user(name)
    for group, user in (("lab-a", "alice"), ("lab-b", "bob")):
        r = api.request("POST", f"groups/{group}", json={"users": [user]})
        assert r.status_code == 201, r.text
    import httpx

    def client(user):
        password = hub.admin_password if user == "admin" else PASSWORD
        return httpx.Client(
            base_url=hub.url + "services/accounting/",
            headers={"Authorization": f"token {token_of(hub, user, password)}"},
            timeout=30,
        )

    alice, admin = client("alice"), client("admin")
    me = alice.get("api/me")
    assert me.status_code == 200, me.text
    assert me.json()["user"] == "alice" and [p["name"] for p in me.json()["projects"]] == ["lab-a"]
    for path in (
        "api/sessions?user=bob",
        "api/ledger",
        "api/projects/lab-b",
        "api/health",
        "metrics",
    ):
        r = alice.get(path)
        assert r.status_code == 403, (path, r.text)
    r = alice.post("api/ledger/topup", json={"project": "lab-a", "amount": "5", "reason": "me"})
    assert r.status_code == 403
    r = admin.post("api/ledger/topup", json={"project": "lab-a", "amount": "5", "reason": "grant"})
    assert r.status_code == 201, r.text
    assert admin.get("api/ledger").json()["transactions"][0]["actor"] == "admin"
    assert alice.get("api/me").json()["projects"][0]["balance"] == "5.00"
    # members come from the hub's group, with or without usage
    members = admin.get("api/projects/lab-a").json()["members"]
    assert [m["user"] for m in members] == ["alice"]


def test_pages_through_oauth_and_admin_form_with_xsrf(hub_with_accounting):
    hub, api = hub_with_accounting
    for name in ("alice", "admin"):
        if api.user(name).status_code == 404:
            api.create_user(name)
    browser = login(hub.url, "alice", PASSWORD)
    page = browser.get("services/accounting/")
    assert page.status_code == 200, page.text[-500:]
    assert "My usage" in page.text and "Personal allowance" in page.text
    assert 'href="/services/accounting/projects">Project<' in page.text  # the hub's nav links
    assert browser.get("services/accounting/admin").status_code == 403
    home = browser.get("hub/home")
    assert "/services/accounting/" in home.text  # the navigation link

    admin = login(hub.url, "admin", hub.admin_password)
    page = admin.get("services/accounting/admin")
    assert page.status_code == 200 and "Top up" in page.text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    form = {"project": "lab-x", "amount": "7", "reason": "form grant"}
    r = admin.post("services/accounting/admin/topup", data=form, follow_redirects=False)
    assert r.status_code == 403  # no XSRF token
    r = admin.post(
        "services/accounting/admin/topup", data={**form, "_xsrf": xsrf}, follow_redirects=False
    )
    # the outcome travels in the service's signed cookie, not in the URL
    assert r.status_code == 302 and r.headers["location"] == "/services/accounting/admin"
    page = admin.get(r.headers["location"])
    assert "form grant" in page.text and "Recorded transaction" in page.text
    assert "Recorded transaction" not in admin.get("services/accounting/admin").text  # once


def test_admin_page_shows_no_text_from_the_url(hub_with_accounting, chromium):
    """Issue 10: a link with ?message= used to put any words on the admin page.
    In Chromium: the link shows nothing of its own; a form's outcome shows once."""
    hub, api = hub_with_accounting
    if api.user("admin").status_code == 404:
        api.create_user("admin")
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        page.goto(hub.url + "hub/login")
        sign_in(page, "admin", hub.admin_password)
        page.wait_for_url("**/hub/**")
        fake = "Your budget was revoked: call 555-0100"
        page.goto(
            hub.url + "services/accounting/admin?" + urlencode({"message": fake, "failed": "1"})
        )
        expect(page.get_by_role("heading", name="Top up")).to_be_visible()
        assert "555-0100" not in page.locator("body").inner_text()
        assert page.locator(".ls-alert.danger").count() == 0

        form = page.locator("form[action$='admin/topup']")
        form.locator("input[name=project]").fill("lab-x")
        form.locator("input[name=amount]").fill("7")
        form.locator("input[name=reason]").fill("browser grant")
        form.get_by_role("button", name="Top up").click()
        page.wait_for_url("**/services/accounting/admin")
        expect(page.locator(".ls-alert.ok")).to_contain_text("Recorded transaction")
        page.reload()
        assert page.locator(".ls-alert").count() == 0  # shown once
    finally:
        context.close()
