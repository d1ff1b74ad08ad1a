"""The hub's REST API as a service calls it: its own token, JSON both ways,
retries while the hub cannot be reached, and paged lists.

``request`` answers ``(status, body)`` for every HTTP answer, errors included
(the body of an error is its message, never the hub's HTML page); only a hub that
cannot be reached raises ``HubUnreachable``. Idempotent calls (GET, HEAD, PUT,
DELETE) are retried with ``jupyterhub.utils.exponential_backoff`` for at most
``retry_for`` seconds; a POST or PATCH is tried once, since it may have landed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from jupyterhub.utils import exponential_backoff
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

log = logging.getLogger("labspace.kit")
PAGE = 200  # items per page of a hub list
MAX_PAGES = 10_000  # bounded: 2,000,000 items
IDEMPOTENT = ("GET", "HEAD", "PUT", "DELETE")


class HubUnreachable(OSError):
    """No HTTP answer (connection refused, timed out, DNS...)."""


def error_message(body: bytes, status: int) -> str:
    """The message of an error answer; never a page (the hub answers HTML for a
    workspace that is not running)."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return f"HTTP {status}"
    if isinstance(data, dict):
        return str(data.get("message") or data.get("reason") or f"HTTP {status}")
    return f"HTTP {status}"


def _decode(response) -> Any:
    if not response.body:
        return None
    if "json" in response.headers.get("Content-Type", "") or response.body[:1] in b"[{":
        try:
            return json.loads(response.body)
        except ValueError:
            pass
    return response.body.decode(errors="replace")


class HubClient:
    """The hub API at ``api_url`` with ``token`` (the service's own: it goes to
    the hub and nowhere else; ``fetch`` takes another token for other places)."""

    def __init__(self, api_url: str, token: str, timeout: float = 10.0, retry_for: float = 10.0):
        self.api_url = api_url.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout
        self.retry_for = retry_for

    async def request(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None, **query
    ) -> tuple[int, Any]:
        """``method`` on ``api_url + path`` (``query`` as its query string)."""
        url = self.api_url + path + (("?" + urlencode(query)) if query else "")
        return await self.fetch(url, method, body, token=self.token, timeout=timeout)

    async def fetch(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        *,
        token: str,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """One call to ``url`` with ``token``, retried while unreachable if
        idempotent; ``(status, body)`` for any HTTP answer."""
        attempts = []

        async def attempt():
            try:
                return await self._once(url, method, body, token, timeout)
            except HubUnreachable as e:
                attempts.append(e)
                if method not in IDEMPOTENT:
                    raise
                return None

        try:
            return await exponential_backoff(
                attempt,
                f"{method} {url.split('?')[0]} did not answer",
                start_wait=0.1,
                max_wait=1,
                timeout=self.retry_for,
            )
        except TimeoutError:
            raise attempts[-1] if attempts else HubUnreachable(url.split("?")[0]) from None

    async def _once(self, url, method, body, token, timeout) -> tuple[int, Any]:
        headers = {
            "Authorization": f"token {token}",
            "Accept": "application/jupyterhub-pagination+json, application/json",
        }
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PATCH", "PUT"):
            data = ""
        request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=data,
            request_timeout=timeout or self.timeout,
            allow_nonstandard_methods=True,
            follow_redirects=False,
        )
        where = url.split("?")[0]
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            if e.response is None:  # 599: timed out or cut
                raise HubUnreachable(f"{method} {where}: {e}") from None
            return e.code, error_message(e.response.body, e.code)
        except OSError as e:
            raise HubUnreachable(f"cannot reach {where}: {e}") from None
        return response.code, _decode(response)

    async def stream(self, path: str, on_event, timeout: float) -> int:
        """Follow the hub's event stream at ``path`` (a server's ``progress``),
        calling ``on_event(dict)`` for each ``data:`` line; the final status."""
        buffer = b""

        def chunk(data: bytes) -> None:
            nonlocal buffer
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.startswith(b"data:"):
                    try:
                        on_event(json.loads(line[5:]))
                    except ValueError:
                        log.debug("Unreadable event line from %s", path)

        request = HTTPRequest(
            self.api_url + path,
            headers={"Authorization": f"token {self.token}", "Accept": "text/event-stream"},
            request_timeout=timeout,
            streaming_callback=chunk,
            follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            if e.response is None:
                raise HubUnreachable(f"GET {path}: {e}") from None
            return e.code
        except OSError as e:
            raise HubUnreachable(f"cannot reach {path}: {e}") from None
        return response.code

    async def paged(self, path: str, **query: Any) -> AsyncIterator[dict[str, Any]]:
        """The items of a hub list (``users``, ``groups``...), page by page."""
        offset = 0
        for _ in range(MAX_PAGES):
            status, data = await self.request("GET", path, offset=offset, limit=PAGE, **query)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {data}")
            items = data["items"] if isinstance(data, dict) else data
            for item in items:
                yield item
            nxt = (data.get("_pagination") or {}).get("next") if isinstance(data, dict) else None
            if not nxt or not items:
                return
            offset = nxt["offset"]
