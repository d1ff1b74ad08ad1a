"""The hub's REST API as the catalog service uses it, with its own token:
users' servers (start, stop, progress), shares, and the workspace lifecycle
endpoints of extensions/ reached through the proxy.

A workspace is its user's code, so the service's token never goes there: calls
to a workspace carry a token of that user, minted through the hub API for that
one server (``access:servers!server=<user>/<server>``) and short-lived, kept
for its life (``ServerTokens``).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

from labspace.services.kit.hub import HubClient, HubUnreachable

log = logging.getLogger("labspace.catalog")


class HubError(Exception):
    """The hub (or a workspace) answered an error; ``status`` and its message."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


TOKEN_LIFE = 300  # seconds a minted workspace token lives
TOKEN_MARGIN = 60  # ... and is not used in its last minute


def server_path(user: str, server: str) -> str:
    """``users/<user>/server`` for the default server, else ``.../servers/<name>``."""
    base = f"users/{quote(user, safe='')}"
    return f"{base}/servers/{quote(server, safe='')}" if server else f"{base}/server"


def answer(status: int, body: Any) -> tuple[int, Any]:
    """``(status, body)`` of a success, else ``HubError`` (a redirect too)."""
    if status >= 300:
        raise HubError(status, body if isinstance(body, str) else f"HTTP {status}")
    return status, body


class Hub:
    """Calls to the hub API (``kit.hub.HubClient``, the service's token) and to
    workspaces through the proxy (``proxy_url``, a minted token of their user)."""

    def __init__(self, client: HubClient, proxy_url: str = ""):
        self.client = client
        self.proxy_url = proxy_url.rstrip("/") + "/" if proxy_url else ""
        # (user, server) -> (minted token, monotonic time until it is used)
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The hub API, with the service's own token (to the hub, nowhere else)."""
        try:
            return answer(*await self.client.request(method, path, body))
        except HubUnreachable as e:
            raise HubError(502, f"cannot reach the hub: {e}") from None

    async def user(self, name: str) -> dict[str, Any] | None:
        try:
            _, model = await self.api("GET", f"users/{quote(name, safe='')}")
        except HubError as e:
            if e.status == 404:
                return None
            raise
        return model

    async def server(self, user: str, server: str) -> dict[str, Any] | None:
        model = await self.user(user)
        if model is None:
            return None
        return (model.get("servers") or {}).get(server)

    async def start(self, user: str, server: str, options: dict[str, Any]) -> int:
        status, _ = await self.api("POST", server_path(user, server), options)
        return status

    async def stop(self, user: str, server: str) -> int:
        status, _ = await self.api("DELETE", server_path(user, server))
        return status

    async def progress(self, user: str, server: str, on_event, timeout: float) -> None:
        """Read the start's event stream, calling ``on_event(dict)`` per event."""
        path = server_path(user, server) + "/progress"
        try:
            status = await self.client.stream(path, on_event, timeout)
        except HubUnreachable as e:
            raise HubError(502, f"cannot reach the hub: {e}") from None
        if status >= 300:
            raise HubError(status, f"progress of {user}/{server}: HTTP {status}")

    # -- sharing (JupyterHub 5+) -------------------------------------------------

    def _share_path(self, user: str, server: str) -> str:
        return f"shares/{quote(user, safe='')}/{quote(server, safe='')}"

    async def shares(self, user: str, server: str) -> list[dict[str, Any]]:
        _, model = await self.api("GET", self._share_path(user, server))
        return (model or {}).get("items", [])

    async def share(self, user: str, server: str, target: dict[str, str]) -> dict[str, Any]:
        _, model = await self.api("POST", self._share_path(user, server), target)
        return model or {}

    async def revoke(self, user: str, server: str, target: dict[str, str]) -> None:
        # PATCH with no scopes revokes every permission of that share
        await self.api("PATCH", self._share_path(user, server), target)

    # -- workspace lifecycle endpoints (extensions/) ------------------------------

    def workspace_url(self, user: str, server: str, path: str) -> str:
        base = f"{self.proxy_url}user/{quote(user, safe='')}/"
        if server:
            base += f"{quote(server, safe='')}/"
        return base + path

    async def server_token(self, user: str, server: str) -> str:
        """A token of ``user`` for their server ``server`` only, minted by the hub
        (the service holds ``tokens`` for this) and reused while it lives."""
        now = time.monotonic()
        self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
        if (user, server) in self._tokens:
            return self._tokens[(user, server)][0]
        body = {
            "scopes": [f"access:servers!server={user}/{server}"],
            "expires_in": TOKEN_LIFE,
            "note": f"labspace-catalog: app log and stop in {user}/{server}",
        }
        _, model = await self.api("POST", f"users/{quote(user, safe='')}/tokens", body)
        if not isinstance(model, dict) or not model.get("token"):
            raise HubError(502, f"The hub gave no token for {user}/{server}")
        self._tokens[(user, server)] = (model["token"], now + TOKEN_LIFE - TOKEN_MARGIN)
        return model["token"]

    async def workspace(self, user: str, server: str, method: str, path: str) -> Any:
        """Call the workspace lifecycle API of ``user``'s ``server`` with a token
        of theirs for that server alone, never the service's."""
        if not self.proxy_url:
            raise HubError(503, "The catalog does not know the proxy's address")
        token = await self.server_token(user, server)
        url = self.workspace_url(user, server, path)
        try:
            _, body = answer(*await self.client.fetch(url, method, token=token, timeout=15))
        except HubUnreachable as e:
            raise HubError(502, f"cannot reach the workspace: {e}") from None
        except HubError as e:
            if e.status in (401, 403):  # revoked or expired early: mint anew next time
                self._tokens.pop((user, server), None)
            raise
        return body
