"""The test OpenID Connect provider (``tests/oidc/provider.mjs``) on its own, driven
with plain httpx as a relying party would: discovery, the authorization-code flow
through its login form, tokens, userinfo, refresh and the groups admin hook."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import jwt
import pytest
from harness import free_port
from oidc_provider import SCOPES, OIDCProvider, available

pytestmark = [pytest.mark.e2e]

# nothing listens here: the flow ends when the provider redirects to it
REDIRECT_URI = f"http://127.0.0.1:{free_port()}/cb"


@pytest.fixture
def op(need, tmp_path):
    ok, why = available()
    need("OIDC provider", ok, why)
    with OIDCProvider([REDIRECT_URI], workdir=tmp_path) as provider:
        yield provider


def follow(client: httpx.Client, r: httpx.Response) -> httpx.Response:
    """Follow redirects until a page, or the redirect to REDIRECT_URI."""
    for _ in range(10):
        location = r.headers.get("location")
        if not r.is_redirect or location.startswith(REDIRECT_URI):
            return r
        r = client.get(urljoin(str(r.url), location))
    raise AssertionError("too many redirects")


def start_login(client: httpx.Client, op: OIDCProvider, state: str, **extra) -> httpx.Response:
    """GET /auth and follow it to the login form."""
    params = {
        "client_id": op.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": " ".join(SCOPES),
        "state": state,
        **extra,
    }
    form = follow(client, client.get(op.url("auth"), params=params))
    assert form.status_code == 200, form.text
    assert 'name="login"' in form.text and 'name="password"' in form.text
    return form


def submit(client: httpx.Client, form: httpx.Response, login: str, password: str):
    return client.post(form.url, data={"login": login, "password": password})


def code_from(r: httpx.Response, state: str) -> str:
    """The code from the redirect to REDIRECT_URI, after checking its state."""
    assert r.is_redirect and r.headers["location"].startswith(REDIRECT_URI), r.text
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["state"] == [state]
    return query["code"][0]


def login(op: OIDCProvider, username: str, password: str, pkce: bool = False) -> dict:
    """The whole code flow for one user; returns the token response."""
    state = secrets.token_urlsafe(8)
    verifier = secrets.token_urlsafe(32)
    extra = {}
    if pkce:  # what OAuthenticator 17 sends by default (enable_pkce=True)
        digest = hashlib.sha256(verifier.encode()).digest()
        extra = {
            "code_challenge": base64.urlsafe_b64encode(digest).decode().rstrip("="),
            "code_challenge_method": "S256",
        }
    with httpx.Client(timeout=10) as browser:
        form = start_login(browser, op, state, **extra)
        code = code_from(follow(browser, submit(browser, form, username, password)), state)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if pkce:  # OAuthenticator also sends its unused `data` argument, as "None"
        data.update(code_verifier=verifier, data=None)
    return token(op, data)


def token(op: OIDCProvider, data: dict) -> dict:
    """A token request as OAuthenticator makes it with basic_auth=True."""
    r = httpx.post(
        op.url("token"),
        content=urlencode(data),
        headers={
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        },
        auth=(op.client_id, op.client_secret),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()


def id_claims(op: OIDCProvider, id_token: str) -> dict:
    jwks = httpx.get(op.discovery()["jwks_uri"], timeout=10).json()
    key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    return jwt.decode(
        id_token, key.key, algorithms=["RS256"], audience=op.client_id, issuer=op.issuer
    )


def userinfo(op: OIDCProvider, access_token: str) -> dict:
    r = httpx.get(op.url("me"), headers={"Authorization": f"Bearer {access_token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_discovery_lists_groups(op):
    doc = op.discovery()
    assert doc["issuer"] == op.issuer
    assert {"openid", "profile", "email", "groups"} <= set(doc["scopes_supported"])
    assert {"preferred_username", "email", "name", "groups"} <= set(doc["claims_supported"])
    assert doc["authorization_endpoint"] == op.url("auth")
    assert doc["token_endpoint"] == op.url("token")
    assert doc["userinfo_endpoint"] == op.url("me")
    assert "client_secret_basic" in doc["token_endpoint_auth_methods_supported"]


@pytest.mark.parametrize("pkce", [False, True], ids=["plain", "pkce"])
def test_code_flow_returns_user_and_groups(op, pkce):
    tokens = login(op, "alice", "alice-pw", pkce=pkce)
    assert tokens["token_type"] == "Bearer"
    assert tokens["refresh_token"]

    expected = {
        "sub": "u-alice",
        "preferred_username": "alice",
        "name": "Alice Example",
        "email": "alice@example.org",
        "groups": ["staff", "gpu"],
    }
    assert expected.items() <= userinfo(op, tokens["access_token"]).items()
    assert expected.items() <= id_claims(op, tokens["id_token"]).items()


def test_wrong_password_shows_form_again(op):
    state = secrets.token_urlsafe(8)
    with httpx.Client(timeout=10) as browser:
        form = start_login(browser, op, state)
        r = submit(browser, form, "alice", "wrong")
        assert r.status_code == 200
        assert "Invalid username or password." in r.text
        assert 'name="password"' in r.text
        assert "code=" not in r.headers.get("location", "")

        r = submit(browser, form, "nobody", "alice-pw")
        assert "Invalid username or password." in r.text

        # the same form still works with the right password
        r = follow(browser, submit(browser, form, "alice", "alice-pw"))
        assert code_from(r, state)


def test_group_change_shows_in_new_login_and_refresh(op):
    before = login(op, "alice", "alice-pw")
    assert id_claims(op, before["id_token"])["groups"] == ["staff", "gpu"]

    op.set_groups("alice", ["staff"])

    after = login(op, "alice", "alice-pw")
    assert id_claims(op, after["id_token"])["groups"] == ["staff"]
    assert userinfo(op, after["access_token"])["groups"] == ["staff"]

    refreshed = token(op, {"grant_type": "refresh_token", "refresh_token": before["refresh_token"]})
    assert id_claims(op, refreshed["id_token"])["groups"] == ["staff"]
    assert userinfo(op, refreshed["access_token"])["groups"] == ["staff"]

    # other accounts are untouched
    assert id_claims(op, login(op, "bob", "bob-pw")["id_token"])["groups"] == ["students"]


def test_admin_hook_rejects_bad_requests(op):
    r = httpx.post(op.url("test-admin/accounts/nobody/groups"), json=["x"], timeout=10)
    assert r.status_code == 404
    r = httpx.post(op.url("test-admin/accounts/alice/groups"), json={"x": 1}, timeout=10)
    assert r.status_code == 400
