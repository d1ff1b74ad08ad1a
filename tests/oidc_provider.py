"""A real OpenID Connect provider for the tests: ``tests/oidc/provider.mjs``
(panva's ``oidc-provider``) in a ``node`` subprocess on a free loopback port.

``available()`` says whether it can run; ``OIDCProvider`` starts it with one
confidential client and static accounts, changes an account's groups at runtime
and stops it by PID.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
from harness import REPO, Managed, free_port

SCRIPT = REPO / "tests" / "oidc" / "provider.mjs"
SCOPES = ["openid", "profile", "email", "groups"]

DEFAULT_ACCOUNTS = [
    {
        "sub": "u-alice",
        "username": "alice",
        "password": "alice-pw",
        "email": "alice@example.org",
        "name": "Alice Example",
        "groups": ["staff", "gpu"],
    },
    {
        "sub": "u-bob",
        "username": "bob",
        "password": "bob-pw",
        "email": "bob@example.org",
        "name": "Bob Example",
        "groups": ["students"],
    },
]


def available() -> tuple[bool, str]:
    """Whether the provider can run here, and if not, why."""
    if not shutil.which("node"):
        return False, "`node` is not on PATH (install Node.js 20 or later)"
    if not (REPO / "node_modules" / "oidc-provider").is_dir():
        return False, "node_modules/oidc-provider is missing: run `npm ci` in the repository"
    return True, ""


class OIDCProvider(Managed):
    """One provider process. ``with OIDCProvider(...) as op:`` or ``start()``/``stop()``."""

    def __init__(
        self,
        redirect_uris: list[str],
        accounts: list[dict[str, Any]] | None = None,
        client_id: str = "labspace",
        client_secret: str | None = None,
        workdir: Path | None = None,
    ):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(16)
        self.redirect_uris = redirect_uris
        self.accounts = accounts if accounts is not None else DEFAULT_ACCOUNTS
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="labspace-oidc-"))
        self.log_path = self.workdir / f"oidc-{self.port}.log"

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "issuer": self.issuer,
            "client": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "redirect_uris": self.redirect_uris,
                "token_endpoint_auth_method": "client_secret_basic",
            },
            "accounts": self.accounts,
        }

    def url(self, path: str) -> str:
        return f"{self.issuer}/{path.lstrip('/')}"

    def start(self, timeout: float = 30) -> OIDCProvider:
        self.name = f"OIDC provider at {self.issuer}"
        config = self.workdir / f"oidc-{self.port}.json"
        config.write_text(json.dumps(self.settings))
        self.launch(["node", str(SCRIPT), str(config)], REPO, dict(os.environ), timeout)
        return self

    def ready(self) -> bool:
        if f"READY {self.issuer}" not in self.log():
            return False
        try:
            return httpx.get(self.url(".well-known/openid-configuration"), timeout=5).is_success
        except httpx.HTTPError:
            return False

    def discovery(self) -> dict[str, Any]:
        r = httpx.get(self.url(".well-known/openid-configuration"), timeout=10)
        r.raise_for_status()
        return r.json()

    def oauthenticator_config(self) -> dict[str, Any]:
        """``GenericOAuthenticator`` settings for this provider (groups from userinfo)."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "authorize_url": self.url("auth"),
            "token_url": self.url("token"),
            "userdata_url": self.url("me"),
            "scope": SCOPES,
            "username_claim": "preferred_username",
            "basic_auth": True,  # the client is registered as client_secret_basic
            "manage_groups": True,
            "auth_state_groups_key": "oauth_user.groups",
        }

    def set_groups(self, username: str, groups: list[str]) -> None:
        """Replace ``username``'s groups at the provider (seen by the next login or refresh)."""
        r = httpx.post(self.url(f"test-admin/accounts/{username}/groups"), json=groups, timeout=10)
        r.raise_for_status()

    def __enter__(self) -> OIDCProvider:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
