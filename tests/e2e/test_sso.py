"""Single sign-on against a real OpenID Connect provider (``oidc-provider``),
driven as a browser would with an HTTP session that follows redirects and
submits the provider's login form. The hub is a real ``labspace up``.

One provider and one hub serve the module (with the accounting and catalog
services, so admins' Labspace scopes are real): only ``staff`` may sign in,
``platform-admins`` are admins, and a refresh is due after one second. Each test
signs in with accounts of its own, so the tests do not depend on their order.
One more hub, without an allow rule, shows the start-up warning."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest
from harness import HubAPI, HubProcess, free_port, hub_settings_for
from oidc_provider import OIDCProvider
from oidc_provider import available as oidc_available

pytestmark = [pytest.mark.e2e]


def account(name: str, *groups: str) -> dict:
    return {
        "sub": f"u-{name}",
        "username": name,
        "password": f"{name}-pw",
        "email": f"{name}@example.org",
        "name": name.title(),
        "groups": list(groups),
    }


ACCOUNTS = [
    account("alice", "staff", "gpu"),  # an ordinary allowed user
    account("carol", "platform-admins"),  # admin through auth.admin_groups only
    account("dave", "visitors"),  # in no allowed group
    account("erin", "staff", "gpu"),  # loses her groups at the provider
    account("frank", "visitors"),  # added by an admin in the admin panel
    account("gail", "staff"),  # types a wrong password
]


class SSO:
    """A provider and a hub signing in through it, stopped by PID at the end."""

    def __init__(self, tmp, proxy_command: list[str], accounts: list[dict], **auth):
        self.token = secrets.token_hex(16)
        settings = hub_settings_for(tmp / "data", proxy_command, self.token)
        callback = f"http://127.0.0.1:{settings['hub']['port']}/hub/oauth_callback"
        self.provider = OIDCProvider([callback], accounts=accounts, workdir=tmp)
        settings["auth"] = {
            "type": "oidc",
            "display_name": "Example University",
            "client_id": self.provider.client_id,
            "scopes": ["openid", "profile", "email", "groups"],
            "groups_claim": "groups",
            "allowed_groups": ["staff"],
            **auth,
        }
        self.settings = settings
        self.hub = HubProcess(tmp, settings, {"LABSPACE_AUTH_CLIENT_SECRET": ""})
        self.api: HubAPI | None = None

    def start(self) -> SSO:
        self.provider.start()
        self.settings["auth"]["issuer"] = self.provider.issuer
        self.hub.env["LABSPACE_AUTH_CLIENT_SECRET"] = self.provider.client_secret
        self.hub.start(timeout=180)
        self.api = HubAPI(self.hub.url, self.token)
        return self

    def stop(self) -> None:
        if self.api:
            self.api.stop_all()
            self.api.close()
        self.hub.stop()
        self.provider.stop()


@pytest.fixture(scope="module")
def sso_world(need, tmp_path_factory, proxy_command):
    ok, why = oidc_available()
    need("oidc-provider", ok, why)
    world = SSO(
        tmp_path_factory.mktemp("sso"),
        proxy_command,
        ACCOUNTS,
        admin_groups=["platform-admins"],
        refresh_interval=1,
    )
    world.settings["accounting"] = {"enabled": True, "port": free_port()}
    world.settings["catalog"] = {"enabled": True, "port": free_port()}
    try:
        yield world.start()
    finally:
        world.stop()


@pytest.fixture
def sso(sso_world):
    """(hub, provider, api) of the module's hub."""
    return sso_world.hub, sso_world.provider, sso_world.api


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
    # an ordinary user holds none of the services' admin scopes
    scopes = browser.get("hub/api/user").json()["scopes"]
    assert [s for s in scopes if s.startswith("custom:") and s.endswith(":admin")] == []
    # the client secret never reaches the log
    assert provider.client_secret not in hub.log()


def test_admin_group_is_admin_of_labspace_too(sso):
    """Carol is an admin through auth.admin_groups only: she is a hub admin and
    holds the same labspace-admin role as hub.admin_users (the services' admin
    scopes), through her group."""
    hub, _, api = sso
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
    api.create_user("frank")
    _, page = sign_in(hub.url, "frank", "frank-pw")
    assert page.status_code == 403
    assert "is not in a group that may use this Labspace" in page.text


def test_wrong_password_never_reaches_the_hub(sso):
    hub, provider, api = sso
    callbacks = hub.log().count("GET /hub/oauth_callback")
    _, page = sign_in(hub.url, "gail", "not-gails-password")
    assert page.url.host == "127.0.0.1" and page.url.port == provider.port
    assert "Invalid username or password" in page.text
    assert api.user("gail").status_code == 404
    assert hub.log().count("GET /hub/oauth_callback") == callbacks


def test_group_change_at_provider_reaches_hub(sso):
    hub, provider, api = sso
    browser, _ = sign_in(hub.url, "erin", "erin-pw")
    assert "gpu" in api.user("erin").json()["groups"]

    provider.set_groups("erin", ["staff"])
    time.sleep(1.5)  # past auth.refresh_interval
    assert browser.get("hub/api/user").status_code == 200  # this request refreshes
    assert api.user("erin").json()["groups"] == ["staff"]

    # losing the last allowed group ends the session at the next refresh
    provider.set_groups("erin", ["visitors"])
    time.sleep(1.5)
    assert browser.get("hub/api/user").status_code == 403
    _, page = sign_in(hub.url, "erin", "erin-pw")
    assert page.status_code == 403
    assert "is not in a group that may use this Labspace" in page.text


def test_no_allow_rule_warns_at_start_and_admits_only_admins(need, tmp_path, proxy_command):
    ok, why = oidc_available()
    need("oidc-provider", ok, why)
    world = SSO(tmp_path, proxy_command, ACCOUNTS, allowed_groups=[])
    try:
        hub = world.start().hub
        assert (
            "Labspace warning: auth: no allow rule is set, so only hub.admin_users (admin) "
            "can sign in" in hub.log()
        )
        _, page = sign_in(hub.url, "alice", "alice-pw")
        assert page.status_code == 403
        assert "is not in a group that may use this Labspace" in page.text
    finally:
        world.stop()
