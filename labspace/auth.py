"""Sign-in: ``auth:`` settings → an OAuthenticator class and its traits.

Each ``auth.type`` is a row of ``PROVIDERS``: which OAuthenticator class runs it,
its defaults (button name, scopes, username and groups claims) and what it
supports. The classes live in ``labspace.authenticators`` and are named here by
import path, so reading and checking settings never loads OAuthenticator (~2 s):
only the hub, when it builds its authenticator's traits, imports them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .settings import Settings

CLASSES = "labspace.authenticators"  # the OAuthenticator classes (loads OAuthenticator)


def github_team_groups(auth_state: dict) -> list[str]:
    """GitHub teams in auth_state → group names ``org:team-slug``."""
    return [f"{t['organization']['login']}:{t['slug']}" for t in auth_state.get("teams") or []]


def __getattr__(name: str) -> Any:
    """``auth.LabspaceOIDCAuthenticator`` and the other classes, loaded when asked for."""
    if name == "REFUSED" or name.endswith(("Authenticator", "Mixin")):
        module = import_module(CLASSES)
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Provider:
    class_name: str  # in labspace.authenticators
    display_name: str
    scopes: tuple[str, ...]
    username_claim: str
    groups_claim: str = ""  # default claim; "" = none unless the operator names one
    groups: str = "claim"  # claim | github-teams | none
    discovery: bool = False  # reads endpoints from issuer/.well-known/openid-configuration
    only: frozenset[str] = field(default_factory=frozenset)  # provider-specific keys

    @property
    def class_path(self) -> str:
        return f"{CLASSES}.{self.class_name}"

    @property
    def cls(self) -> type:
        """The OAuthenticator class (importing it loads OAuthenticator)."""
        return getattr(import_module(CLASSES), self.class_name)


OIDC_SCOPES = ("openid", "profile", "email")

PROVIDERS: dict[str, Provider] = {
    "oidc": Provider(
        "LabspaceOIDCAuthenticator",
        "OpenID Connect",
        OIDC_SCOPES,
        "preferred_username",
        discovery=True,
        only=frozenset({"issuer", "authorize_url", "token_url", "userdata_url"}),
    ),
    "keycloak": Provider(
        "LabspaceOIDCAuthenticator",
        "Keycloak",
        OIDC_SCOPES,
        "preferred_username",
        groups_claim="groups",
        discovery=True,
        only=frozenset({"issuer"}),
    ),
    "okta": Provider(
        "LabspaceOIDCAuthenticator",
        "Okta",
        (*OIDC_SCOPES, "groups"),
        "preferred_username",
        groups_claim="groups",
        discovery=True,
        only=frozenset({"issuer"}),
    ),
    "azuread": Provider(
        "LabspaceAzureADAuthenticator",
        "Microsoft",
        OIDC_SCOPES,
        "preferred_username",
        groups_claim="groups",
        only=frozenset({"tenant_id"}),
    ),
    "github": Provider(
        "LabspaceGitHubAuthenticator",
        "GitHub",
        ("read:user", "read:org"),
        "login",
        groups="github-teams",
        only=frozenset({"allowed_organizations", "server_url"}),
    ),
    "gitlab": Provider(
        "LabspaceGitLabAuthenticator",
        "GitLab",
        ("read_user",),
        "username",
        groups="none",
        only=frozenset({"server_url"}),
    ),
    "google": Provider(
        "LabspaceGoogleAuthenticator",
        "Google",
        OIDC_SCOPES,
        "email",
        groups="none",
        only=frozenset({"hosted_domain"}),
    ),
}

# provider-specific keys that let people in (GitHub organisations and teams)
ALLOW_RULES = frozenset({"allowed_organizations"})
# keys that only some providers use, for the checks below
PROVIDER_KEYS = frozenset().union(*(p.only for p in PROVIDERS.values()))
SHARED_PASSWORD_KEYS = ("admin_password", "user_password")
# what only single sign-on reads: refused with shared-password rather than ignored
SSO_KEYS = frozenset(
    {
        "client_id",
        "client_secret",
        "groups_claim",
        "scopes",
        "username_claim",
        "callback_url",
        "display_name",
    }
)


def display_name(auth: dict[str, Any]) -> str:
    """The identity provider's name on the login button."""
    return auth["display_name"] or PROVIDERS[auth["type"]].display_name


def groups_claim(auth: dict[str, Any]) -> str:
    provider = PROVIDERS[auth["type"]]
    return auth.get("groups_claim") or provider.groups_claim


def problems(auth: dict[str, Any]) -> list[str]:
    """Settings problems of the ``auth`` section (already schema-valid)."""
    kind = auth["type"]
    if kind == "shared-password":
        return [
            f"auth.{key}: only used with an SSO auth.type (remove it, or choose a provider)"
            for key in sorted(PROVIDER_KEYS | SSO_KEYS)
            if auth.get(key)
        ] + [
            f"auth.{key}: shared-password has no groups (remove it, or use an SSO provider)"
            for key in ("allowed_groups", "admin_groups")
            if auth.get(key)
        ]
    provider = PROVIDERS[kind]
    out = []
    for key in SHARED_PASSWORD_KEYS:
        if auth.get(key):
            out.append(f"auth.{key}: only used with auth.type shared-password (remove it)")
    for key in sorted(PROVIDER_KEYS - provider.only):
        if auth.get(key):
            out.append(f"auth.{key}: not used by auth.type {kind} (remove it)")
    if not auth.get("client_id"):
        out.append(
            f"auth.client_id: required for auth.type {kind} "
            "(the client ID registered for Labspace at the identity provider)"
        )
    if not auth.get("client_secret"):
        out.append(
            f"auth.client_secret: required for auth.type {kind} "
            "(set LABSPACE_AUTH_CLIENT_SECRET or LABSPACE_AUTH_CLIENT_SECRET_FILE)"
        )
    explicit = [auth.get(k) for k in ("authorize_url", "token_url", "userdata_url")]
    if provider.discovery and not auth.get("issuer") and not all(explicit):
        out.append(
            f"auth.issuer: required for auth.type {kind} (the identity provider's issuer "
            "URL, e.g. https://login.example.org/realms/research"
            + (", or all of authorize_url, token_url and userdata_url)" if kind == "oidc" else ")")
        )
    if kind == "azuread" and not auth.get("tenant_id"):
        out.append("auth.tenant_id: required for auth.type azuread (your directory's tenant ID)")
    for key in ("allowed_groups", "admin_groups"):
        if not auth.get(key):
            continue
        if provider.groups == "none":
            out.append(
                f"auth.{key}: {kind} sign-in has no groups (use auth.allowed_users, "
                "or auth.type oidc against the same provider)"
            )
        elif provider.groups == "claim" and not groups_claim(auth):
            out.append(
                f"auth.{key}: needs auth.groups_claim (the claim that lists a person's "
                "groups, usually 'groups')"
            )
    return out


def warnings(auth: dict[str, Any], admin_users: list[str]) -> list[str]:
    """Settings that work but are probably not what the operator meant."""
    if auth["type"] == "shared-password":
        return []
    provider = PROVIDERS[auth["type"]]
    rules = ["allowed_users", *sorted(ALLOW_RULES & provider.only)]
    if provider.groups != "none":
        rules.insert(0, "allowed_groups")
    if auth.get("allow_all") or any(auth.get(rule) for rule in rules):
        return []
    who = "admin_groups and " if auth.get("admin_groups") else ""
    tip = ", ".join(f"auth.{rule}" for rule in rules)
    return [
        f"auth: no allow rule is set, so only {who}hub.admin_users ({', '.join(admin_users)}) "
        f"can sign in (set {tip} or auth.allow_all)"
    ]


class DiscoveryError(Exception):
    """The issuer's OpenID configuration could not be read."""


def discover(issuer: str, attempts: int = 5, timeout: float = 5.0) -> dict[str, Any]:
    """Read ``<issuer>/.well-known/openid-configuration``, retrying briefly."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    error = ""
    for attempt in range(attempts):
        try:
            r = httpx.get(url, timeout=timeout, follow_redirects=True)
            if r.status_code == 200:
                doc = r.json()
                missing = [k for k in ("authorization_endpoint", "token_endpoint") if k not in doc]
                if not missing:
                    return doc
                error = f"the document lacks {', '.join(missing)}"
                break
            error = f"HTTP {r.status_code}"
        except (httpx.HTTPError, ValueError) as e:
            error = type(e).__name__ + (f": {e}" if str(e) else "")
        time.sleep(min(2**attempt * 0.25, 2))
    raise DiscoveryError(
        f"auth.issuer: OpenID discovery at {url} failed: {error} "
        "(check the issuer URL and that Labspace can reach it)"
    )


def endpoints(auth: dict[str, Any]) -> dict[str, str]:
    """authorize/token/userdata URLs: explicit ones win, else discovery."""
    explicit = {k: auth.get(k) for k in ("authorize_url", "token_url", "userdata_url")}
    if all(explicit.values()) or not auth.get("issuer"):
        return {k: v for k, v in explicit.items() if v}
    doc = discover(auth["issuer"])
    found = {
        "authorize_url": doc["authorization_endpoint"],
        "token_url": doc["token_endpoint"],
        "userdata_url": doc.get("userinfo_endpoint", ""),
    }
    found.update({k: v for k, v in explicit.items() if v})
    return found


def traits(settings: Settings, callback_url: str) -> dict[str, dict[str, Any]]:
    """Traitlets for an SSO ``auth.type``: ``{ClassName: {trait: value}}``."""
    auth = settings.get("auth")
    kind = auth["type"]
    provider = PROVIDERS[kind]
    t: dict[str, Any] = {
        "client_id": auth["client_id"],
        "client_secret": auth["client_secret"],
        "oauth_callback_url": auth["callback_url"] or callback_url,
        "scope": list(auth["scopes"] or provider.scopes),
        "username_claim": auth["username_claim"] or provider.username_claim,
        "login_service": display_name(auth),
        "enable_auth_state": True,
        "allowed_users": set(auth["allowed_users"]),
        # the identity provider and these settings decide who signs in: being in
        # the hub's database (added in the admin panel, or let in by a group
        # once) is not a pass, so leaving an allowed group ends access
        "allow_existing_users": False,
    }
    if provider.discovery:
        t.update(endpoints(auth))
        # confidential client: credentials in the Authorization header
        t["basic_auth"] = True
    if provider.groups != "none":
        t["manage_groups"] = True
        t["allowed_groups"] = set(auth["allowed_groups"])
        t["admin_groups"] = set(auth["admin_groups"])
        if provider.groups == "github-teams":
            t["populate_teams_in_auth_state"] = True
            t["auth_state_groups_key"] = github_team_groups
        elif groups_claim(auth):
            t["auth_state_groups_key"] = f"{provider.cls.user_auth_state_key}.{groups_claim(auth)}"
    _provider_specific(kind, auth, t)
    return {provider.class_name: t}


def _provider_specific(kind: str, auth: dict[str, Any], t: dict[str, Any]) -> None:
    if kind == "azuread":
        t["tenant_id"] = auth["tenant_id"]
    elif kind == "github":
        t["allowed_organizations"] = set(auth["allowed_organizations"])
        if auth["server_url"]:
            t["github_url"] = auth["server_url"]
    elif kind == "gitlab" and auth["server_url"]:
        t["gitlab_url"] = auth["server_url"]
    elif kind == "google" and auth["hosted_domain"]:
        t["hosted_domain"] = list(auth["hosted_domain"])


def class_path(kind: str) -> str:
    return PROVIDERS[kind].class_path
