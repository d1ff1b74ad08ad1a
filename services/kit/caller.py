"""A service's hub side calling its service: ``ServiceCaller``.

Spawner hooks run in the hub process. They never open a service's database;
they call the service's ``api/internal/...`` endpoints with the service's token
(the hub made it and knows it). A service that does not answer, answers 5xx, or
is still starting (``run_service`` answers 503 until it is ready) is
``Unreachable``: each service's ``on_unreachable`` setting says what a start
does then.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

log = logging.getLogger("JupyterHub.labspace")


class Unreachable(Exception):
    """The service did not answer, answered 5xx, or is still starting."""


class ServiceCaller:
    """``call(method, path)`` on ``<base_url>api/internal/<path>`` with ``token``."""

    def __init__(self, name: str, base_url: str, token: str, timeout: float = 5.0, tries: int = 3):
        self.name = name
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.token = token
        self.timeout = timeout
        self.tries = tries

    def __repr__(self) -> str:  # never the token
        return f"ServiceCaller({self.name!r}, {self.base_url!r})"

    async def call(
        self, method: str, path: str, body: Any = None, timeout: float | None = None
    ) -> tuple[int, Any]:
        """One request: ``(status, JSON body or {})`` for a 2xx-4xx answer;
        ``Unreachable`` for no answer or a 5xx."""
        req = HTTPRequest(
            f"{self.base_url}api/internal/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=json.dumps(body) if body is not None else None,
            connect_timeout=timeout or self.timeout,
            request_timeout=timeout or self.timeout,
        )
        try:
            resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        except (OSError, HTTPClientError) as e:  # TimeoutError is an OSError
            raise Unreachable(f"{type(e).__name__}: {e}") from None
        if resp.code >= 500:
            raise Unreachable(f"HTTP {resp.code}")
        try:
            data = json.loads(resp.body or b"{}")
        except ValueError:
            data = {}
        return resp.code, data

    async def call_retrying(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``call`` with ``tries`` tries and growing pauses (bounded: about
        ``tries * timeout`` seconds at worst)."""
        delay = 0.25
        for attempt in range(1, self.tries + 1):
            try:
                return await self.call(method, path, body)
            except Unreachable as e:
                if attempt == self.tries:
                    raise
                log.warning("%s %s %s failed (%s); retrying", self.name, method, path, e)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")
