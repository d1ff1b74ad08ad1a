"""REST API of the data service (``<prefix>api/...``), authorised with custom scopes.

| scope                      | may                                                  |
|----------------------------|------------------------------------------------------|
| custom:labspace-data:read  | list and read the datasets they hold a grant for     |
| custom:labspace-data:admin | every dataset; create, change, delete; grants,       |
|                            | credentials, the audit trail, holders and their stop |

A dataset the caller holds no grant for is invisible: 404, as for an unknown
one. Credentials are written (PUT) and removed (DELETE), never read back. Bad
input is a 4xx ``{"status", "message"}`` naming the field and the fix.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tornado import web

from labspace.services.kit import web as kit

from . import audit as trail
from . import rules
from .crypto import CredentialError, check_credential
from .openapi import document
from .store import StoreError, Who

SCOPE = "custom:labspace-data:"
READ, ADMIN = SCOPE + "read", SCOPE + "admin"
SCOPE_IMPLIES = {READ: [ADMIN]}  # admin includes read (config's subscopes)
MAX_NAME = 255
MAX_REASON = 1000
log = logging.getLogger("labspace.data")


@contextmanager
def refusals() -> Iterator[None]:
    """The store's refusals as the HTTP errors they are."""
    try:
        yield
    except StoreError as e:
        raise web.HTTPError(e.status, e.message.replace("%", "%%")) from None


def name_value(value: Any, field: str) -> str:
    """A user, group or server name: a non-empty string without control characters."""
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_NAME
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
    ):
        raise web.HTTPError(
            400,
            f"{field}: must be a name of 1 to {MAX_NAME} characters without control characters",
        )
    return value


def reason_value(value: Any, field: str = "reason") -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_REASON:
        raise web.HTTPError(400, f"{field}: must be a string of at most {MAX_REASON} characters")
    return value.strip()


DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
TIME_RE = re.compile(
    rf"{DATE}|{DATE}[Tt][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(\.[0-9]{{1,9}})?([Zz]|[+-][0-9]{{2}}:[0-9]{{2}})"
)


def when(text: str, field: str) -> datetime | None:
    """A time of a query, in UTC: an RFC 3339 date-time (2026-01-31T12:00:00Z) or
    a date (2026-01-31, midnight UTC); None when empty."""
    if not text:
        return None
    value = None
    if TIME_RE.fullmatch(text):
        try:
            value = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        except ValueError:
            value = None
    if value is None:
        raise web.HTTPError(
            400,
            f"{field}: not a date or an RFC 3339 time (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)",
        )
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class APIHandler(kit.APIHandler):
    """The data service's API: ``kit.web.APIHandler`` with the store at hand."""

    signin_message = "Not signed in: send a hub token with the data service's scopes"

    @property
    def store(self):
        return self.settings["store"]

    @property
    def who(self) -> Who:
        return Who(self.user["name"], frozenset(self.groups))

    def visible_to(self) -> Who | None:
        """None (every dataset) for data admins, else the caller."""
        self.need(READ)
        return None if self.can(ADMIN) else self.who

    def measure(self, ds: dict[str, Any]) -> None:
        """A host dataset without a size is measured soon (off the loop)."""
        if ds["kind"] == "host" and ds["size"] is None:
            self.settings["measurer"].soon([ds["id"]])

    def no_content(self) -> None:
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class DatasetsHandler(APIHandler):
    async def get(self):
        self.write_json(await self.store.list_datasets(self.visible_to()))

    async def post(self):
        self.need(ADMIN)
        body = check_dataset_body(self.json_body())
        with refusals():
            ds = await self.store.create(body, self.user["name"])
        log.info("%s created dataset %s", self.user["name"], ds["id"])
        self.measure(ds)
        self.write_json(ds, 201)


def check_dataset_body(body: dict[str, Any]) -> dict[str, Any]:
    """Keys a dataset body may not carry, each with where it belongs."""
    elsewhere = {
        "grants": "add grants with POST api/datasets/<id>/grants",
        "credentials": "set them with PUT api/datasets/<id>/credentials/read|write",
        "source_of": "the service sets it",
        "level": "a grant's level is set with POST api/datasets/<id>/grants",
        "created": "the service sets it",
        "updated": "the service sets it",
    }
    for key, fix in elsewhere.items():
        if key in body:
            raise web.HTTPError(400, f"{key}: not part of a dataset's body ({fix})")
    return body


class DatasetHandler(APIHandler):
    async def get(self, dataset_id):
        who = self.visible_to()
        with refusals():
            ds = await self.store.get(dataset_id, who)
        self.write_json(ds)

    async def patch(self, dataset_id):
        self.need(ADMIN)
        body = check_dataset_body(self.json_body())
        with refusals():
            ds = await self.store.update(dataset_id, body, self.user["name"])
        log.info("%s changed dataset %s", self.user["name"], dataset_id)
        self.measure(ds)
        self.write_json(ds)

    async def delete(self, dataset_id):
        self.need(ADMIN)
        with refusals():
            await self.store.delete(dataset_id, self.user["name"])
        log.info("%s deleted dataset %s", self.user["name"], dataset_id)
        self.no_content()


class GrantsHandler(APIHandler):
    async def get(self, dataset_id):
        self.need(ADMIN)
        with refusals():
            self.write_json(await self.store.grants(dataset_id))

    async def post(self, dataset_id):
        self.need(ADMIN)
        subject, level, reason = check_grant_body(self.json_body())
        with refusals():
            grant = await self.store.set_grant(
                dataset_id, subject, level, actor=self.user["name"], reason=reason
            )
        log.info("%s granted %s %s on %s", self.user["name"], subject, level, dataset_id)
        self.write_json(grant)


def check_grant_body(body: dict[str, Any]) -> tuple[tuple[str, str], str, str]:
    """``((subject_type, subject), level, reason)`` of a grant body, or 400."""
    unknown = sorted(set(body) - {"group", "user", "level", "reason"})
    if unknown:
        raise web.HTTPError(
            400, f"{unknown[0]}: unknown key (send group or user, level and reason)"
        )
    kinds = [k for k in ("group", "user") if k in body]
    if len(kinds) != 1:
        raise web.HTTPError(400, 'group/user: send exactly one of "group" or "user" (a name)')
    name_value(body[kinds[0]], kinds[0])
    try:
        grant = rules.check_grant({k: v for k, v in body.items() if k != "reason"})
    except rules.DataError as e:
        raise web.HTTPError(e.status, e.message.replace("%", "%%")) from None
    subject = (grant["subject_type"], grant["subject"])
    return subject, grant["level"], reason_value(body.get("reason"))


class GrantHandler(APIHandler):
    async def delete(self, dataset_id, subject_type, subject):
        self.need(ADMIN)
        subject = name_value(subject, subject_type)
        reason = reason_value(self.get_argument("reason", ""))
        with refusals():
            await self.store.set_grant(
                dataset_id, (subject_type, subject), None, actor=self.user["name"], reason=reason
            )
        log.info("%s revoked %s %s on %s", self.user["name"], subject_type, subject, dataset_id)
        self.no_content()


class CredentialHandler(APIHandler):
    """An s3 dataset's credential for one level: written and removed, never read."""

    async def put(self, dataset_id, level):
        self.need(ADMIN)
        try:
            credential = check_credential(self.json_body(), "body")
        except CredentialError as e:
            raise web.HTTPError(400, str(e).replace("%", "%%")) from None
        with refusals():
            await self.store.set_credential(dataset_id, level, credential, self.user["name"])
        log.info("%s set the %s credential of %s", self.user["name"], level, dataset_id)
        self.no_content()

    async def delete(self, dataset_id, level):
        self.need(ADMIN)
        with refusals():
            await self.store.set_credential(dataset_id, level, None, self.user["name"])
        log.info("%s removed the %s credential of %s", self.user["name"], level, dataset_id)
        self.no_content()


class MyDatasetsHandler(APIHandler):
    async def get(self):
        self.need(READ)
        self.write_json(await self.store.mine(self.who))


class AuditHandler(APIHandler):
    def filters(self) -> dict[str, Any]:
        limit_text = self.get_argument("limit", str(trail.DEFAULT_LIMIT))
        if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 6):
            limit_text = "0"
        limit = int(limit_text)
        if not 1 <= limit <= trail.MAX_LIMIT:
            raise web.HTTPError(400, f"limit: must be a whole number from 1 to {trail.MAX_LIMIT}")
        since = when(self.get_argument("since", ""), "since")
        until = when(self.get_argument("until", ""), "until")
        if since and until and until <= since:
            raise web.HTTPError(400, "until: must be after since")
        return {
            "dataset": self.get_argument("dataset", ""),
            "user": self.get_argument("user", ""),
            "since": since,
            "until": until,
            "limit": limit,
        }

    async def get(self):
        self.need(ADMIN)
        fmt = self.get_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise web.HTTPError(400, "format: must be json or csv")
        events = await self.store.audit(**self.filters())
        if fmt == "json":
            return self.write_json(events)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="data-audit.csv"')
        self.finish(trail.to_csv(events))


class HoldersHandler(APIHandler):
    async def get(self):
        self.need(ADMIN)
        with refusals():
            self.write_json(await self.settings["holders"].holders())


class StopHolderHandler(APIHandler):
    async def post(self, user):
        self.need(ADMIN)
        user = name_value(user, "user")
        body = self.json_body()
        unknown = sorted(set(body) - {"server"})
        if unknown:
            raise web.HTTPError(400, f"{unknown[0]}: unknown key (send server)")
        server = body.get("server", "")
        if not isinstance(server, str) or len(server) > MAX_NAME:
            raise web.HTTPError(400, 'server: must be the server\'s name ("" for the default)')
        with refusals():
            await self.settings["holders"].stop(user, server)
        log.info("%s stopped %s's server %r (revoked grants)", self.user["name"], user, server)
        self.write_json({"user": user, "server": server, "stopping": True}, 202)


class OpenAPIHandler(kit.ServiceHandler):
    """The OpenAPI document: public (any other method is a 405)."""

    is_api = True

    def check_xsrf_cookie(self):
        """A public document: nothing to protect."""

    def get(self):
        self.write_json(document(self.settings["prefix"], self.settings["data_backend"]))


class NotFoundHandler(APIHandler):
    async def prepare(self):
        raise web.HTTPError(404, f"No such endpoint: {self.request.path}")


def routes(prefix: str) -> list[tuple[str, type]]:
    api = prefix + "api/"
    ds = api + r"datasets/([^/]+)"
    return [
        (api + "openapi.json", OpenAPIHandler),
        (api + "datasets", DatasetsHandler),
        (ds, DatasetHandler),
        (ds + "/grants", GrantsHandler),
        (ds + "/grants/(group|user)/([^/]+)", GrantHandler),
        (ds + "/credentials/(read|write)", CredentialHandler),
        (api + "me/datasets", MyDatasetsHandler),
        (api + "audit", AuditHandler),
        (api + "holders", HoldersHandler),
        (api + r"holders/([^/]+)/stop", StopHolderHandler),
    ]
