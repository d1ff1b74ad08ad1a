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
from typing import Any
from urllib.parse import quote

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
        return self.ledger("topup", project=project, amount=amount, reason=reason)

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
