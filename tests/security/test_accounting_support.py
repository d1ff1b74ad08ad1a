"""Helpers for the accounting attacks (no tests here): the security world's hub
(the accounting service on, a ``lab-a`` project with alice in it, an ``admin``
user, users who sign in with a password), and a browser-like client that went
through the service's OAuth dance (it holds the ``service-accounting`` cookie)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from harness import login

from .conftest import PASSWORD

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from test_accounting_e2e_support import Accounting, accounting_settings  # noqa: E402, F401

PREFIX = "services/accounting/"


@pytest.fixture
def acct_hub(security_world):
    """The security world's hub (see conftest.py); yields ``(hub, api, acct)``,
    ``acct.api`` calling as the hub's test service, an accounting admin."""
    acct = Accounting(security_world.hub, security_world.service_token)
    acct.wait_up()
    yield security_world.hub, security_world.api, acct
    acct.close()


def signed_in(hub, user: str, password: str = PASSWORD) -> httpx.Client:
    """``user`` signed in to the hub and, through OAuth, to the accounting service."""
    browser = login(hub.url, user, password)
    page = browser.get(PREFIX)
    assert page.status_code == 200, page.text[-500:]
    names = {cookie.name for cookie in browser.cookies.jar}
    assert "service-accounting" in names, names
    return browser
