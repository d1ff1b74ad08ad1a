"""Single sign-on against a real OpenID Connect provider (``oidc-provider``),
driven as a browser would with an HTTP session that follows redirects and
submits the provider's login form. The hub is a real ``labspace up``."""

from __future__ import annotations

import time

import httpx
import pytest
from harness import HubAPI, free_port

pytestmark = [pytest.mark.e2e]

ACCOUNTS = [
    {
        "sub": "u-alice",
        "username": "alice",
        "password": "alice-pw",
        "email": "alice@example.org",
        "name": "Alice",
        "groups": ["staff", "gpu"],
    },
    {
        "sub": "u-carol",
        "username": "carol",
        "password": "carol-pw",
        "email": "carol@example.org",
        "name": "Carol",
        "groups": ["platform-admins"],
    },
    {
        "sub": "u-dave",
        "username": "dave",
        "password": "dave-pw",
        "email": "dave@example.org",
        "name": "Dave",
        "groups": ["visitors"],
    },
]


@pytest.fixture
def sso(sso_factory, service_token):
    """An OIDC provider and a hub signing in through it; returns (hub, provider, api)."""
    hub, provider = sso_factory(ACCOUNTS, admin_groups=["platform-admins"], refresh_interval=1)
    api = HubAPI(hub.url, service_token)
    yield hub, provider, api
    api.stop_all()
    api.close()


def sign_in(hub_url: str, username: str, password: str) -> tuple[httpx.Client, httpx.Response]:
    """Press the login button, fill in the provider's form, follow it home."""
    browser = httpx.Client(base_url=hub_url, follow_redirects=True, timeout=30)
    form = browser.get("hub/oauth_login", params={"next": "/hub/home"})
    assert form.status_code == 200 and 'name="password"' in form.text, form.text[:500]
    done = browser.post(form.url, data={"login": username, "password": password})
    return browser, done


def test_allowed_group_signs_in_with_groups(sso):
    hub, provider, api = sso
    assert "sign in with Example University" in hub.log()
    browser, page = sign_in(hub.url, "alice", "alice-pw")
    assert page.status_code == 200
    assert page.url.path == "/hub/home"
    user = api.user("alice").json()
    assert sorted(user["groups"]) == ["gpu", "staff"]
    assert user["admin"] is False
    # the client secret never reaches the log
    assert provider.client_secret not in hub.log()


def test_admin_group_is_admin_of_labspace_too(sso_factory, hub_settings, service_token):
    """Carol is an admin through auth.admin_groups only: she is a hub admin and
    holds the same labspace-admin role as hub.admin_users (the services' admin
    scopes), through her group."""
    hub_settings["accounting"] = {"enabled": True, "port": free_port()}
    hub_settings["catalog"] = {"enabled": True, "port": free_port()}
    hub, _ = sso_factory(ACCOUNTS, admin_groups=["platform-admins"])
    browser, page = sign_in(hub.url, "carol", "carol-pw")
    assert page.status_code == 200
    me = browser.get("hub/api/user").json()
    assert me["admin"] is True
    assert me["groups"] == ["platform-admins"]
    assert {"custom:labspace-accounting:admin", "custom:labspace-catalog:admin"} <= set(
        me["scopes"]
    )
    # and the accounting service lets her in as its admin
    assert browser.get("services/accounting/admin").status_code == 200
    # alice, in an allowed group but not an admin one, holds neither
    alice, _ = sign_in(hub.url, "alice", "alice-pw")
    assert not {s for s in alice.get("hub/api/user").json()["scopes"] if s.endswith(":admin")}


def test_refused_user_sees_why(sso):
    hub, _, api = sso
    _, page = sign_in(hub.url, "dave", "dave-pw")
    assert page.status_code == 403
    assert "is not in a group that may use this Labspace" in page.text
    assert api.user("dave").status_code == 404


def test_user_added_in_admin_panel_still_needs_an_allow_rule(sso):
    """docs/how-to/sso.md: the identity provider and the settings decide who
    signs in; a user an admin adds in the admin panel (the hub API) is not let
    in by being in the hub's database."""
    hub, _, api = sso
    api.create_user("dave")
    _, page = sign_in(hub.url, "dave", "dave-pw")
    assert page.status_code == 403
    assert "is not in a group that may use this Labspace" in page.text


def test_wrong_password_never_reaches_the_hub(sso):
    hub, provider, api = sso
    _, page = sign_in(hub.url, "alice", "not-alices-password")
    assert page.url.host == "127.0.0.1" and page.url.port == provider.port
    assert "Invalid username or password" in page.text
    assert api.user("alice").status_code == 404
    assert "GET /hub/oauth_callback" not in hub.log()


def test_group_change_at_provider_reaches_hub(sso):
    hub, provider, api = sso
    browser, _ = sign_in(hub.url, "alice", "alice-pw")
    assert "gpu" in api.user("alice").json()["groups"]

    provider.set_groups("alice", ["staff"])
    time.sleep(1.5)  # past auth.refresh_interval
    assert browser.get("hub/api/user").status_code == 200  # this request refreshes
    assert api.user("alice").json()["groups"] == ["staff"]

    # losing the last allowed group ends the session at the next refresh
    provider.set_groups("alice", ["visitors"])
    time.sleep(1.5)
    assert browser.get("hub/api/user").status_code == 403
    _, page = sign_in(hub.url, "alice", "alice-pw")
    assert page.status_code == 403
    assert "is not in a group that may use this Labspace" in page.text


def test_no_allow_rule_warns_at_start_and_admits_only_admins(sso_factory):
    hub, _ = sso_factory(ACCOUNTS, allowed_groups=[])
    assert (
        "Labspace warning: auth: no allow rule is set, so only hub.admin_users (admin) "
        "can sign in" in hub.log()
    )
    _, page = sign_in(hub.url, "alice", "alice-pw")
    assert page.status_code == 403
    assert "is not in a group that may use this Labspace" in page.text
