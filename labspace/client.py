"""A Python client for Labspace's REST APIs: the hub's and its services'.

    from labspace.client import Client

    with Client("https://labspace.example.org/", token) as ls:
        ls.users()
        ls.usage_report(start="2026-11-01", end="2026-12-01", by="project")
        ls.launch("data-explorer")

The token is an API token from the hub's Token page (or a service's); it is
sent in the ``Authorization`` header only, never in a URL, and never appears in
an error. Without arguments the URL and token come from ``LABSPACE_URL`` and
``LABSPACE_TOKEN`` (inside a workspace: ``JUPYTERHUB_API_URL`` and
``JUPYTERHUB_API_TOKEN``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urljoin

import httpx

DEFAULT_URL = "http://127.0.0.1:8000/"


class ClientError(Exception):
    """An API answered with an error; ``status`` and the API's own ``message``."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


def _default_url() -> str:
    if os.environ.get("LABSPACE_URL"):
        return os.environ["LABSPACE_URL"]
    hub_api = os.environ.get("JUPYTERHUB_API_URL", "")
    if hub_api.endswith("/hub/api"):  # inside a workspace
        return hub_api[: -len("hub/api")]
    return DEFAULT_URL


def _default_token() -> str:
    return os.environ.get("LABSPACE_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN", "")


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "error"
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.reason_phrase or "error"


class Client:
    """Labspace at ``url`` with ``token``."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30):
        self.url = (url or _default_url()).rstrip("/") + "/"
        token = token if token is not None else _default_token()
        headers = {"Authorization": f"token {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def http_status(self, method: str, path: str, **kw) -> int:
        """A hub API call whose status is the answer (2xx), else ClientError."""
        try:
            r = self.http.request(method, "hub/api/" + path.lstrip("/"), **kw)
        except httpx.HTTPError as e:
            raise ClientError(0, f"cannot reach {self.url}: {type(e).__name__}") from None
        return _status(r)

    def request(self, method: str, path: str, **kw) -> Any:
        """``path`` below the Labspace URL, e.g. ``hub/api/users``; returns the
        decoded JSON (or text for other content), raises ClientError on 4xx/5xx."""
        try:
            r = self.http.request(method, path.lstrip("/"), **kw)
        except httpx.HTTPError as e:
            raise ClientError(0, f"cannot reach {self.url}: {type(e).__name__}") from None
        if r.status_code >= 400:
            raise ClientError(r.status_code, _message(r))
        if not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    def hub(self, method: str, path: str, **kw) -> Any:
        return self.request(method, "hub/api/" + path.lstrip("/"), **kw)

    def service(self, name: str, method: str, path: str, **kw) -> Any:
        return self.request(method, f"services/{name}/api/" + path.lstrip("/"), **kw)

    # -- hub ------------------------------------------------------------------

    def users(self) -> list[dict[str, Any]]:
        return self.hub("GET", "users")

    def add_user(self, name: str) -> dict[str, Any]:
        return self.hub("POST", f"users/{quote(name)}")

    def groups(self) -> list[dict[str, Any]]:
        return self.hub("GET", "groups")

    def me(self) -> dict[str, Any]:
        """The model of whoever holds the token (a user, or a service)."""
        return self.hub("GET", "user")

    def user(self, name: str) -> dict[str, Any]:
        return self.hub("GET", f"users/{quote(name, safe='')}")

    # -- servers --------------------------------------------------------------

    def servers(self, everyone: bool = False) -> list[dict[str, Any]]:
        """Running and pending servers, one row each (``user``, ``name``, ``ready``,
        ``pending``, ``url`` in full, ``profile``, ``started``, ``last_activity``):
        mine, or with ``everyone`` every user's (needs ``read:servers``)."""
        users = self.users() if everyone else [self.me()]
        return [
            server_row(self.url, user["name"], server)
            for user in users
            for server in (user.get("servers") or {}).values()
        ]

    def server(self, user: str, name: str = "") -> dict[str, Any] | None:
        """One server's row, or None when it is not running nor pending."""
        found = (self.user(user).get("servers") or {}).get(name)
        return server_row(self.url, user, found) if found else None

    def start_server(
        self, user: str, name: str = "", options: dict[str, Any] | None = None
    ) -> bool:
        """Ask the hub to start a server with ``options`` (``user_options``, e.g.
        ``{"profile": "small"}``); True when it is ready already, False when pending."""
        answer = self.http_status("POST", _server_path(user, name), json=options or {})
        return answer == 201

    def stop_server(self, user: str, name: str = "") -> bool:
        """Ask the hub to stop a server; True when it is stopped already."""
        return self.http_status("DELETE", _server_path(user, name)) == 204

    def progress(self, user: str, name: str = "", timeout: float = 300) -> Iterator[dict]:
        """The events of a start under way (``progress`` 0-100, ``message``,
        ``ready`` / ``failed`` on the last), from the hub's progress stream,
        until the start ends or ``timeout`` seconds pass."""
        path = "hub/api/" + _server_path(user, name) + "/progress"
        deadline = time.monotonic() + timeout
        try:
            with self.http.stream("GET", path) as r:
                if r.status_code >= 400:
                    r.read()
                    raise ClientError(r.status_code, _message(r))
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        event = _event(line.removeprefix("data:"))
                        yield event
                        if event.get("ready") or event.get("failed"):
                            return
                    if time.monotonic() > deadline:
                        return
        except httpx.HTTPError as e:
            raise ClientError(0, f"progress of {user}'s server: {type(e).__name__}") from None

    def start_with_progress(
        self, user: str, name: str = "", options: dict[str, Any] | None = None, timeout=300
    ) -> Iterator[dict]:
        """Start a server and yield its progress events as they happen: the hub
        answers the start only once it is ready (or after its slow-spawn timeout),
        so the request runs in a thread while the progress stream is read here.
        A refused start is the hub's ClientError (e.g. a 400 for a bad profile)."""
        import threading

        answer: dict[str, Any] = {}
        path = _server_path(user, name)

        def start() -> None:
            with httpx.Client(base_url=self.url, headers=self.http.headers, timeout=timeout) as c:
                try:
                    answer["status"] = _status(c.request("POST", "hub/api/" + path, json=options))
                except ClientError as e:
                    answer["error"] = e
                except httpx.HTTPError as e:
                    answer["error"] = ClientError(0, f"cannot reach {self.url}: {type(e).__name__}")

        asked = threading.Thread(target=start, name="labspace-start", daemon=True)
        asked.start()
        deadline = time.monotonic() + timeout
        # the stream of this start under way (not of an earlier one that failed), or
        # once the hub has answered (a fast start is ready then; a refusal is raised)
        while asked.is_alive():
            row = self.server(user, name)
            if row and row["pending"] == "spawn":
                break
            if time.monotonic() > deadline:
                raise ClientError(0, f"{_label(user, name)}: not started after {timeout:g} s")
            time.sleep(0.05)
        if "error" in answer:
            raise answer["error"]
        for event in self.progress(user, name, max(1.0, deadline - time.monotonic())):
            if event.get("failed"):
                asked.join(max(1.0, deadline - time.monotonic()))
                if "error" in answer:  # the hub's own answer says it best
                    raise answer["error"]
            yield event

    def wait_server(
        self, user: str, name: str = "", until: str = "ready", timeout: float = 300
    ) -> dict[str, Any] | None:
        """Poll until the server is ready (``until="ready"``) or gone
        (``until="stopped"``); returns its row (None when stopped). A server that
        stops while waited on for ready, or ``timeout`` seconds, is a ClientError."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.server(user, name)
            if until == "stopped" and row is None:
                return None
            if until == "ready" and row is not None and row["ready"]:
                return row
            if until == "ready" and row is None:
                raise ClientError(0, f"{_label(user, name)} is not running (it stopped)")
            if time.monotonic() > deadline:
                raise ClientError(0, f"{_label(user, name)}: not {until} after {timeout:g} s")
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    # -- tokens ---------------------------------------------------------------

    def create_token(
        self,
        user: str,
        scopes: list[str] | None = None,
        expires_in: int | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """A new API token of ``user``; the answer's ``token`` is shown only now."""
        body: dict[str, Any] = {"note": note or "labspace CLI"}
        if scopes:
            body["scopes"] = list(scopes)
        if expires_in:
            body["expires_in"] = int(expires_in)
        return self.hub("POST", f"users/{quote(user, safe='')}/tokens", json=body)

    def tokens(self, user: str) -> list[dict[str, Any]]:
        found = self.hub("GET", f"users/{quote(user, safe='')}/tokens")
        return _items(found, "api_tokens")

    def revoke_token(self, user: str, token_id: str) -> None:
        self.hub("DELETE", f"users/{quote(user, safe='')}/tokens/{quote(token_id, safe='')}")

    def add_group(self, name: str) -> dict[str, Any]:
        return self.hub("POST", f"groups/{quote(name)}")

    def add_members(self, group: str, users: list[str]) -> dict[str, Any]:
        return self.hub("POST", f"groups/{quote(group)}/users", json={"users": users})

    def remove_members(self, group: str, users: list[str]) -> dict[str, Any]:
        return self.hub("DELETE", f"groups/{quote(group)}/users", json={"users": users})

    # -- accounting -----------------------------------------------------------

    def prices(self) -> Any:
        return self.service("accounting", "GET", "prices")

    def my_usage(self) -> Any:
        return self.service("accounting", "GET", "me")

    def projects(self) -> Any:
        return self.service("accounting", "GET", "projects")

    def usage_report(
        self,
        start: str,
        end: str,
        by: str = "project",
        fmt: str = "json",
        user: str | None = None,
        project: str | None = None,
    ) -> Any:
        """Usage from ``start`` to ``end`` (dates) grouped by day, user, project or
        profile; ``fmt="csv"`` returns the CSV text."""
        params = {"from": start, "to": end, "group_by": by, "format": fmt}
        params.update({k: v for k, v in (("user", user), ("project", project)) if v})
        return self.service("accounting", "GET", "usage", params=params)

    def sessions(self, status: str = "open", **filters: str) -> Any:
        return self.service("accounting", "GET", "sessions", params={"status": status, **filters})

    def ledger(self, op: str, **body: Any) -> Any:
        """A ledger operation: ``topup`` (project, amount, reason), ``assign``
        (parent, child, amount, reason), ``move`` (from, to, amount, reason),
        ``reverse`` (transaction, reason) or ``renew`` (reason)."""
        return self.service("accounting", "POST", f"ledger/{op}", json=body)

    def top_up(self, project: str, amount: str, reason: str) -> Any:
        return self.ledger("topup", project=project, amount=check_amount(amount), reason=reason)

    def assign(self, parent: str, child: str, amount: str, reason: str) -> Any:
        """Give ``amount`` of ``parent``'s budget to its child project ``child``."""
        body = {"parent": parent, "child": child, "amount": check_amount(amount)}
        return self.ledger("assign", **body, reason=reason)

    def move(self, source: str, target: str, amount: str, reason: str) -> Any:
        """Move ``amount`` of budget from project ``source`` to project ``target``."""
        body = {"from": source, "to": target, "amount": check_amount(amount)}
        return self.ledger("move", **body, reason=reason)

    def reverse(self, transaction: int, reason: str) -> Any:
        """Undo ledger transaction ``transaction`` (once)."""
        return self.ledger("reverse", transaction=int(transaction), reason=reason)

    def transactions(self, account: str | None = None, limit: int = 100) -> Any:
        params = {"limit": str(limit), **({"account": account} if account else {})}
        return _items(self.service("accounting", "GET", "ledger", params=params), "transactions")

    # -- catalog --------------------------------------------------------------

    def apps(self, category: str | None = None, query: str | None = None) -> Any:
        params = {k: v for k, v in (("category", category), ("q", query)) if v}
        return self.service("catalog", "GET", "apps", params=params)["apps"]

    def launch(self, app: str, version: str | None = None) -> Any:
        body = {"version": version} if version else {}
        return self.service("catalog", "POST", f"apps/{quote(app)}/launch", json=body)

    def launches(self, active: bool = False) -> Any:
        params = {"active": "1"} if active else {}
        return self.service("catalog", "GET", "launches", params=params)["launches"]

    def stop_launch(self, launch_id: int) -> Any:
        return self.service("catalog", "POST", f"launches/{int(launch_id)}/stop")

    def shares(self, launch_id: int) -> list[dict[str, Any]]:
        """Who a running standalone app is shared with."""
        return _items(self.service("catalog", "GET", f"launches/{int(launch_id)}/shares"), "shares")

    def share(self, launch_id: int, *, group: str | None = None, user: str | None = None) -> Any:
        """Share a running standalone app (a launch of mine) with a user or a group."""
        path = f"launches/{int(launch_id)}/shares"
        return self.service("catalog", "POST", path, json=_subject(group, user))

    def unshare(self, launch_id: int, *, group: str | None = None, user: str | None = None) -> None:
        path = f"launches/{int(launch_id)}/shares"
        self.service("catalog", "DELETE", path, json=_subject(group, user))

    # -- data -----------------------------------------------------------------

    def datasets(self) -> list[dict[str, Any]]:
        """Admins: every dataset; others: those they hold a grant for, with their level."""
        return _items(self.service("data", "GET", "datasets"), "datasets")

    def my_datasets(self) -> list[dict[str, Any]]:
        """My datasets: level, where they appear in my workspace, size, s3 URL."""
        return _items(self.service("data", "GET", "me/datasets"), "datasets")

    def dataset(self, dataset: str) -> dict[str, Any]:
        return self.service("data", "GET", f"datasets/{quote(dataset, safe='')}")

    def grants(self, dataset: str) -> list[dict[str, Any]]:
        path = f"datasets/{quote(dataset, safe='')}/grants"
        return _items(self.service("data", "GET", path), "grants")

    def grant(
        self,
        dataset: str,
        level: str,
        reason: str,
        *,
        group: str | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """Give ``group`` or ``user`` ``level`` (read|write) on ``dataset``, or change
        the level it has; the reason is kept in the audit."""
        body = {**_subject(group, user), "level": level, "reason": reason}
        path = f"datasets/{quote(dataset, safe='')}/grants"
        return self.service("data", "POST", path, json=body)

    def revoke(
        self, dataset: str, reason: str, *, group: str | None = None, user: str | None = None
    ) -> None:
        """Remove the grant of ``group`` or ``user`` on ``dataset`` (gone at its next start)."""
        ((kind, name),) = _subject(group, user).items()
        path = f"datasets/{quote(dataset, safe='')}/grants/{kind}/{quote(name, safe='')}"
        self.service("data", "DELETE", path, params={"reason": reason})

    def data_audit(
        self,
        dataset: str | None = None,
        user: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        fmt: str = "json",
    ) -> Any:
        """Audit events, newest first (grant changes, dataset changes, starts);
        ``fmt="csv"`` returns the CSV text."""
        filters = {"dataset": dataset, "user": user, "since": since, "until": until}
        params = {k: v for k, v in filters.items() if v}
        if limit:
            params["limit"] = str(limit)
        result = self.service("data", "GET", "audit", params={**params, "format": fmt})
        return result if fmt == "csv" else _items(result, "events")

    def data_holders(self) -> list[dict[str, Any]]:
        """Running workspaces holding a grant stronger than the user has now."""
        return _items(self.service("data", "GET", "holders"), "holders")


def _items(result: Any, key: str) -> Any:
    """A list answer, whether the API sends the list or ``{key: [...]}``."""
    return result[key] if isinstance(result, dict) and key in result else result


def _subject(group: str | None, user: str | None) -> dict[str, str]:
    if bool(group) == bool(user):
        raise ValueError("name a group or a user (one of them)")
    return {"group": group} if group else {"user": user}


def _status(response: httpx.Response) -> int:
    if response.status_code >= 400:
        raise ClientError(response.status_code, _message(response))
    return response.status_code


def _server_path(user: str, name: str) -> str:
    user = quote(user, safe="")
    return f"users/{user}/servers/{quote(name, safe='')}" if name else f"users/{user}/server"


def _label(user: str, name: str) -> str:
    return f"{user}'s server {name!r}" if name else f"{user}'s server"


def _event(text: str) -> dict[str, Any]:
    import json

    try:
        event = json.loads(text)
    except ValueError:
        return {"message": text.strip()}
    return event if isinstance(event, dict) else {"message": str(event)}


def server_row(base_url: str, user: str, server: dict[str, Any]) -> dict[str, Any]:
    """A server of the hub's user model as one flat row, its URL in full."""
    options = server.get("user_options") or {}
    return {
        "user": user,
        "name": server.get("name", ""),
        "ready": bool(server.get("ready")),
        "pending": server.get("pending"),
        "profile": options.get("profile", "") if isinstance(options, dict) else "",
        "url": urljoin(base_url, server.get("url") or ""),
        "started": server.get("started"),
        "last_activity": server.get("last_activity"),
    }


AMOUNT_TEXT = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")
MAX_AMOUNT = Decimal("1000000000")


def check_amount(amount: Any) -> str:
    """``amount`` as the ledger takes it (services/accounting: above 0, at most
    1000000000, at most 6 decimals), as text; else ValueError saying so."""
    text = str(amount).strip()
    wanted = f"an amount is above 0 and at most {MAX_AMOUNT}, at most 6 decimals, e.g. 12.50"
    if isinstance(amount, bool) or not AMOUNT_TEXT.fullmatch(text):
        raise ValueError(f"{amount!r} is not an amount: {wanted}")
    if not 0 < Decimal(text) <= MAX_AMOUNT:
        raise ValueError(f"{amount!r} is out of range: {wanted}")
    return text
