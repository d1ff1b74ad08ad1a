"""Sign-in settings: every ``auth.type`` preset builds its OAuthenticator with the
right key traits, and bad SSO settings give one clear line each.

Discovery (``issuer``) reads a real ``oidc-provider``'s OpenID configuration;
nothing here signs anyone in (``tests/e2e/test_sso.py`` does)."""

from __future__ import annotations

import os

import pytest
import yaml
from oidc_provider import OIDCProvider, available
from traitlets.config import Config
from traitlets.utils.importstring import import_item

from labspace import auth, hubconfig, settings
from labspace.state import State

SECRET = "client-secret-value-123"
ENV = {"LABSPACE_AUTH_CLIENT_SECRET": SECRET}


@pytest.fixture(scope="module")
def issuer(need, tmp_path_factory):
    ok, why = available()
    need("oidc-provider", ok, why)
    provider = OIDCProvider(
        ["http://127.0.0.1:8000/hub/oauth_callback"], workdir=tmp_path_factory.mktemp("op")
    ).start()
    yield provider.issuer
    provider.stop()


@pytest.fixture
def keep_umask():
    """``configure`` sets the hub's private umask: give the test process its own back."""
    mask = os.umask(0o022)
    os.umask(mask)
    yield
    os.umask(mask)


def load(tmp_path, data: dict, env: dict | None = None) -> settings.Settings:
    path = tmp_path / "labspace.yaml"
    path.write_text(yaml.safe_dump(data))
    return settings.load(path, environ=ENV if env is None else env)


def build_authenticator(tmp_path, auth_settings: dict):
    loaded = load(
        tmp_path, {"auth": auth_settings, "hub": {"public_url": "https://hub.example.org/"}}
    )
    values = hubconfig.build(loaded, State(loaded), ["configurable-http-proxy"])
    cls = import_item(values["JupyterHub"]["authenticator_class"])
    return cls(config=Config(values)), values


PRESETS = {
    # type: (extra settings, expected traits)
    "oidc": (
        {"groups_claim": "groups", "allowed_groups": ["staff"], "allowed_users": ["guest"]},
        {
            "login_service": "OpenID Connect",
            "username_claim": "preferred_username",
            "scope": ["openid", "profile", "email"],
            "basic_auth": True,
            "manage_groups": True,
            "auth_state_groups_key": "oauth_user.groups",
            "allowed_groups": {"staff"},
        },
    ),
    "keycloak": (
        {"admin_groups": ["admins"]},
        {
            "login_service": "Keycloak",
            "username_claim": "preferred_username",
            "manage_groups": True,
            "auth_state_groups_key": "oauth_user.groups",
            "admin_groups": {"admins"},
        },
    ),
    "okta": (
        {},
        {
            "login_service": "Okta",
            "scope": ["openid", "profile", "email", "groups"],
            "auth_state_groups_key": "oauth_user.groups",
        },
    ),
    "azuread": (
        {"tenant_id": "tenant-123", "allowed_groups": ["researchers"]},
        {
            "login_service": "Microsoft",
            "tenant_id": "tenant-123",
            "username_claim": "preferred_username",
            "auth_state_groups_key": "user.groups",
            "authorize_url": "https://login.microsoftonline.com/tenant-123/oauth2/authorize",
            "manage_groups": True,
        },
    ),
    "github": (
        {"allowed_organizations": ["my-lab"], "allowed_groups": ["my-lab:gpu-users"]},
        {
            "login_service": "GitHub",
            "username_claim": "login",
            "scope": ["read:user", "read:org"],
            "allowed_organizations": {"my-lab"},
            "populate_teams_in_auth_state": True,
            "manage_groups": True,
        },
    ),
    "gitlab": (
        {"server_url": "https://gitlab.example.org"},
        {
            "login_service": "GitLab",
            "username_claim": "username",
            "gitlab_url": "https://gitlab.example.org",
            "authorize_url": "https://gitlab.example.org/oauth/authorize",
            "manage_groups": False,
        },
    ),
    "google": (
        {"hosted_domain": ["example.org"]},
        {
            "login_service": "Google",
            "username_claim": "email",
            "hosted_domain": ["example.org"],
            "manage_groups": False,
        },
    ),
}


@pytest.mark.parametrize("kind", list(PRESETS))
def test_preset_builds_its_authenticator(kind, tmp_path, request):
    extra, expected = PRESETS[kind]
    conf = {"type": kind, "client_id": "labspace-client", **extra}
    if auth.PROVIDERS[kind].discovery:
        conf["issuer"] = request.getfixturevalue("issuer")
    authenticator, values = build_authenticator(tmp_path, conf)
    assert isinstance(authenticator, auth.PROVIDERS[kind].cls)
    assert isinstance(authenticator, auth.ExplainRefusalMixin)
    assert authenticator.client_id == "labspace-client"
    assert authenticator.client_secret == SECRET
    assert authenticator.oauth_callback_url == "https://hub.example.org/hub/oauth_callback"
    assert authenticator.enable_auth_state is True
    assert authenticator.auth_refresh_age == 300
    assert authenticator.refresh_pre_spawn is True
    assert authenticator.admin_users == {"admin"}
    # only the provider and the settings let people in, never being in the hub's
    # database (JupyterHub turns this on by itself once allowed_users is set)
    assert authenticator.allow_existing_users is False
    for trait, value in expected.items():
        assert getattr(authenticator, trait) == value, trait
    if auth.PROVIDERS[kind].discovery:
        assert authenticator.authorize_url == conf["issuer"] + "/auth"
        assert authenticator.token_url == conf["issuer"] + "/token"
        assert authenticator.userdata_url == conf["issuer"] + "/me"
    # auth_state is encrypted with a key kept under data_dir
    assert len(values["CryptKeeper"]["keys"][0]) == 64


def test_github_teams_become_org_team_groups():
    state = {"teams": [{"slug": "gpu-users", "organization": {"login": "my-lab"}}]}
    assert auth.github_team_groups(state) == ["my-lab:gpu-users"]
    assert auth.github_team_groups({}) == []


def test_explicit_endpoints_need_no_discovery(tmp_path):
    conf = {
        "type": "oidc",
        "client_id": "c",
        "authorize_url": "https://idp.example.org/authorize",
        "token_url": "https://idp.example.org/token",
        "userdata_url": "https://idp.example.org/userinfo",
        "callback_url": "https://other.example.org/hub/oauth_callback",
        "username_claim": "email",
        "display_name": "Example University",
        "refresh_interval": 0,
    }
    authenticator, _ = build_authenticator(tmp_path, conf)
    assert authenticator.authorize_url == "https://idp.example.org/authorize"
    assert authenticator.oauth_callback_url == "https://other.example.org/hub/oauth_callback"
    assert authenticator.username_claim == "email"
    assert authenticator.login_service == "Example University"
    assert authenticator.auth_refresh_age == 0
    assert authenticator.refresh_pre_spawn is False


def test_unreachable_issuer_stops_start_up(tmp_path, capsys):
    from harness import free_port

    path = tmp_path / "labspace.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "auth": {
                    "type": "keycloak",
                    "client_id": "c",
                    "issuer": f"http://127.0.0.1:{free_port()}/realms/x",
                },
                "hub": {"proxy_command": ["chp"]},
                "data_dir": str(tmp_path / "data"),
            }
        )
    )
    with pytest.MonkeyPatch.context() as m:
        m.setenv("LABSPACE_AUTH_CLIENT_SECRET", SECRET)
        with pytest.raises(SystemExit) as exit_info:
            hubconfig.configure(Config(), str(path))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "auth.issuer: OpenID discovery at http://127.0.0.1:" in err
    assert "(check the issuer URL and that Labspace can reach it)" in err
    assert SECRET not in err


BAD = {
    "unknown-provider": (
        {"type": "saml"},
        "auth.type: 'saml' is not a valid choice (one of: shared-password, oidc, keycloak, "
        "okta, azuread, github, gitlab, google)",
    ),
    "no-client-id": (
        {"type": "oidc", "issuer": "https://idp.example.org"},
        "auth.client_id: required for auth.type oidc (the client ID registered for Labspace "
        "at the identity provider)",
    ),
    "issuer-not-url": (
        {"type": "keycloak", "client_id": "c", "issuer": "idp.example.org/realms/x"},
        "auth.issuer: 'idp.example.org/realms/x' is not valid (an http(s) URL, e.g. "
        "https://login.example.org/realms/research)",
    ),
    "no-issuer": (
        {"type": "okta", "client_id": "c"},
        "auth.issuer: required for auth.type okta (the identity provider's issuer URL, e.g. "
        "https://login.example.org/realms/research)",
    ),
    "admin-groups-no-claim": (
        {
            "type": "oidc",
            "client_id": "c",
            "issuer": "https://idp.example.org",
            "admin_groups": ["admins"],
        },
        "auth.admin_groups: needs auth.groups_claim (the claim that lists a person's groups, "
        "usually 'groups')",
    ),
    "azuread-no-tenant": (
        {"type": "azuread", "client_id": "c"},
        "auth.tenant_id: required for auth.type azuread (your directory's tenant ID)",
    ),
    "google-groups": (
        {"type": "google", "client_id": "c", "allowed_groups": ["x"]},
        "auth.allowed_groups: google sign-in has no groups (use auth.allowed_users, or "
        "auth.type oidc against the same provider)",
    ),
    "password-with-sso": (
        {"type": "github", "client_id": "c", "user_password": "a-user-password"},
        "auth.user_password: only used with auth.type shared-password (remove it)",
    ),
    "wrong-provider-key": (
        {"type": "github", "client_id": "c", "tenant_id": "t"},
        "auth.tenant_id: not used by auth.type github (remove it)",
    ),
    "sso-key-with-password": (
        {"client_id": "c"},
        "auth.client_id: only used with an SSO auth.type (remove it, or choose a provider)",
    ),
    "sso-scopes-with-password": (
        {"scopes": ["openid"]},
        "auth.scopes: only used with an SSO auth.type (remove it, or choose a provider)",
    ),
    "groups-with-password": (
        {"allowed_groups": ["staff"]},
        "auth.allowed_groups: shared-password has no groups (remove it, or use an SSO provider)",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_auth_settings(case, tmp_path):
    conf, line = BAD[case]
    with pytest.raises(settings.SettingsError) as e:
        load(tmp_path, {"auth": conf})
    assert line in e.value.problems


def test_missing_client_secret_names_the_environment(tmp_path):
    with pytest.raises(settings.SettingsError) as e:
        load(tmp_path, {"auth": {"type": "github", "client_id": "c"}}, env={})
    assert e.value.problems == [
        "auth.client_secret: required for auth.type github "
        "(set LABSPACE_AUTH_CLIENT_SECRET or LABSPACE_AUTH_CLIENT_SECRET_FILE)"
    ]


def test_no_allow_rule_warns(tmp_path):
    loaded = load(tmp_path, {"auth": {"type": "github", "client_id": "c"}})
    assert loaded.warnings == [
        "auth: no allow rule is set, so only hub.admin_users (admin) can sign in "
        "(set auth.allowed_groups, auth.allowed_users, auth.allowed_organizations "
        "or auth.allow_all)"
    ]
    allowed = load(tmp_path, {"auth": {"type": "github", "client_id": "c", "allow_all": True}})
    assert allowed.warnings == []
    google = load(tmp_path, {"auth": {"type": "google", "client_id": "c"}})
    assert google.warnings[0].endswith("(set auth.allowed_users or auth.allow_all)")


def test_github_organizations_are_an_allow_rule(tmp_path, capsys, monkeypatch, keep_umask):
    """Members of auth.allowed_organizations may sign in: start-up does not warn
    that only admins can (as it did)."""
    path = tmp_path / "labspace.yaml"
    data = {
        "auth": {"type": "github", "client_id": "c", "allowed_organizations": ["my-lab"]},
        "hub": {"proxy_command": ["/usr/bin/chp"]},
    }
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("LABSPACE_AUTH_CLIENT_SECRET", SECRET)
    c = Config()
    hubconfig.configure(c, str(path))
    assert capsys.readouterr().err == ""
    assert c.LabspaceGitHubAuthenticator.allowed_organizations == {"my-lab"}
