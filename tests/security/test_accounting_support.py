"""Helpers for the accounting attacks (no tests here): a real hub with the
accounting service, users who sign in with a password, and a browser-like
client that went through the service's OAuth dance (it holds the
``service-accounting`` cookie)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from harness import HubAPI, login

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from test_accounting_e2e_support import Accounting, accounting_settings  # noqa: E402

PASSWORD = "user-pw-for-tests"  # noqa: S105 (a test hub's shared user password)
PREFIX = "services/accounting/"


@pytest.fixture
def acct_hub(hub_factory, hub_settings, service_token):
    """A hub with accounting, a ``lab-a`` project with alice in it, and an
    ``admin`` user; yields ``(hub, api, acct)``."""
    accounting_settings(hub_settings, no_project="personal", personal_allowance=5)
    hub_settings["auth"] = {"user_password": PASSWORD}
    hub_settings["hub"]["admin_users"] = ["admin"]
    hub = hub_factory(hub_settings).start()
    api = HubAPI(hub.url, service_token)
    acct = Accounting(hub, service_token)
    acct.wait_up()
    for name in ("alice", "admin"):
        if api.user(name).status_code == 404:
            api.create_user(name)
    r = api.request("POST", "groups/lab-a", json={"users": ["alice"]})
    assert r.status_code == 201, r.text
    yield hub, api, acct
    api.close()
    acct.close()


def signed_in(hub, user: str, password: str = PASSWORD) -> httpx.Client:
    """``user`` signed in to the hub and, through OAuth, to the accounting service."""
    browser = login(hub.url, user, password)
    page = browser.get(PREFIX)
    assert page.status_code == 200, page.text[-500:]
    names = {cookie.name for cookie in browser.cookies.jar}
    assert "service-accounting" in names, names
    return browser
