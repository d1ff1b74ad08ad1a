"""Labspace in a real browser (Debian's Chromium through Playwright), against a real
hub: what a person sees and does, from the login page to JupyterLab and back.

Screenshots land in ``tests/artifacts/``: login, login-failed, home, jupyterlab,
admin, login-sso, login-refused and jupyterlab-sso.
"""

from __future__ import annotations

import re

import pytest
from browser import VIEWPORT, shoot, sign_in
from harness import HubAPI, wait_for

pytestmark = [pytest.mark.e2e]

LAB_TIMEOUT = 120_000  # ms: spawn plus JupyterLab's first load


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_person_signs_in_and_opens_jupyterlab(hub, api, page):
    from playwright.sync_api import expect

    # the hub's address shows the Labspace login page
    page.goto(hub.url)
    expect(page).to_have_title("Labspace")
    expect(page.get_by_role("img", name="Labspace", exact=True)).to_be_visible()
    expect(page.get_by_text("Research workspaces")).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shoot(page, "login")

    # a wrong password is refused on the login page, with the reason
    sign_in(page, "admin", "not-the-password")
    expect(page.locator(".login_error")).to_have_text("Invalid username or password")
    expect(page.get_by_label("Username")).to_have_value("admin")
    shoot(page, "login-failed")

    # the printed password signs in, and home offers the server
    sign_in(page, "admin", hub.admin_password)
    expect(page).to_have_url(re.compile(r"/hub/home$"))
    expect(page.get_by_role("heading", name="Labspace", exact=True)).to_be_visible()
    expect(page.locator("#start")).to_have_text(re.compile(r"Start\s+My Server"))
    shoot(page, "home")

    # "Start My Server" opens JupyterLab
    page.locator("#start").click()
    api.started.add("admin")  # teardown stops it if the test fails half-way
    page.wait_for_url(re.compile(r"/user/admin/lab"), timeout=LAB_TIMEOUT)
    page.locator(".jp-Launcher").wait_for(timeout=LAB_TIMEOUT)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible()
    # no prompt to fetch news from the internet (Labspace's workspace default)
    page.wait_for_timeout(1000)
    expect(page.get_by_text("notified about official Jupyter news")).to_have_count(0)
    shoot(page, "jupyterlab")

    # the admin panel lists the users, with admin's server running
    page.goto(f"{hub.url}hub/admin")
    expect(page.locator("[data-testid=user-row-name]").first).to_contain_text("admin")
    expect(page.get_by_role("button", name="Stop Server")).to_be_visible()
    expect(page.get_by_role("img", name="Labspace home")).to_be_visible()
    shoot(page, "admin")

    # "Stop My Server" on home stops it
    page.goto(f"{hub.url}hub/home")
    page.locator("#stop").click()
    expect(page.locator("#start")).to_have_text(re.compile(r"Start\s+My Server"), timeout=60_000)
    wait_for(lambda: not api.user("admin").json()["servers"], 60, what="admin's server stopped")
    api.started.discard("admin")


@pytest.fixture
def sso_hub(sso_factory):
    """A hub signing in through the test OpenID Connect provider; only ``staff``
    may use it, so ``bob`` (``students``) is refused."""
    hub, _ = sso_factory()
    return hub


def test_sso_sign_in_refused_or_to_jupyterlab(sso_hub, page, service_token):
    from playwright.sync_api import expect

    page.goto(sso_hub.url)
    button = page.get_by_role("button", name="Sign in with Example University")
    expect(button).to_be_visible()
    expect(page.get_by_role("img", name="Labspace", exact=True)).to_be_visible()
    shoot(page, "login-sso")

    # bob signs in at the provider, but his groups do not let him into Labspace
    button.click()
    page.locator("input[name=login]").fill("bob")
    page.locator("input[name=password]").fill("bob-pw")
    page.locator("button[type=submit]").click()
    expect(page.get_by_role("heading", name="You can't sign in yet")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text(
        "Your account (bob) is not in a group that may use this Labspace"
    )
    shoot(page, "login-refused")
    page.get_by_role("link", name="Back to sign in").click()
    expect(page.get_by_role("button", name="Sign in with Example University")).to_be_visible()

    # alice (staff) signs in the same way (on a browser without bob's provider
    # session), starts her server and reaches JupyterLab
    page.context.clear_cookies()
    page.get_by_role("button", name="Sign in with Example University").click()
    page.locator("input[name=login]").fill("alice")
    page.locator("input[name=password]").fill("alice-pw")
    page.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/hub/home$"))
    api = HubAPI(sso_hub.url, service_token)
    api.started.add("alice")
    try:
        assert sorted(api.user("alice").json()["groups"]) == ["gpu", "staff"]
        page.locator("#start").click()
        page.wait_for_url(re.compile(r"/user/alice/lab"), timeout=LAB_TIMEOUT)
        page.locator(".jp-Launcher").wait_for(timeout=LAB_TIMEOUT)
        shoot(page, "jupyterlab-sso")
    finally:
        api.stop_all()
        api.close()
