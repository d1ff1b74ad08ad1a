"""Endpoints for the hub side (``api/internal/``), service token only.

Bodies are checked here (``check_*``: pure, raise ``HTTPError(400)`` with the
key at fault); the units of work live in ``usage``.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from tornado import web

from . import alerts, ledger, pool, reports, usage
from .clock import now
from .pricing import iso, parse_time, show
from .web import InternalHandler

EVENT_TYPES = ("start", "stop", "start_failed", "unreachable")
MAX_EVENTS = 1000
MAX_OPEN = 10_000  # open sessions listed at once (one per running server)
MAX_RESOURCE = 1_000_000  # cpus, GiB or GPUs of one server: more is a mistake


def _text(body: dict, key: str, required: bool = True, max_len: int = 255) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and key != "server" and not value):
        raise web.HTTPError(400, f"{key!r} must be a non-empty string")
    if len(value) > max_len:
        raise web.HTTPError(400, f"{key!r} is too long (at most {max_len} characters)")
    return value


def _time(body: dict, key: str) -> datetime:
    try:
        return parse_time(body.get(key))
    except (ValueError, TypeError):
        raise web.HTTPError(400, f"{key!r} must be an ISO 8601 time") from None


def check_reserve(body: dict[str, Any]) -> dict[str, Any]:
    req = {k: _text(body, k, max_len=512 if k == "key" else 255) for k in ("key", "user")}
    req["server"] = _text(body, "server", required=False) or ""
    req["profile"] = _text(body, "profile", max_len=64)
    req["display_name"] = _text(body, "display_name", required=False) or req["profile"]
    project = body.get("project")
    if project is not None and (not isinstance(project, str) or not project):
        raise web.HTTPError(400, "'project' must be a project name or null")
    req["project"] = project
    groups = body.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise web.HTTPError(400, "'groups' must be a list of group names")
    req["groups"] = groups
    res = body.get("resources")
    res = {} if res is None else res
    if not isinstance(res, dict):
        raise web.HTTPError(400, "'resources' must be an object {cpu, mem_gib, gpus}")
    for key in ("cpu", "mem_gib", "gpus"):
        value = res.get(key)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= MAX_RESOURCE
        ):
            raise web.HTTPError(
                400, f"'resources.{key}' must be a number from 0 to {MAX_RESOURCE} or null"
            )
    req["resources"] = res
    req["at"] = _time(body, "at")
    return req


def check_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise web.HTTPError(400, "'events' must be a non-empty list")
    if len(events) > MAX_EVENTS:
        raise web.HTTPError(400, f"At most {MAX_EVENTS} events per request")
    out = []
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            raise web.HTTPError(400, f"events[{i}] must be an object")
        if e.get("type") not in EVENT_TYPES:
            raise web.HTTPError(400, f"events[{i}].type must be one of {', '.join(EVENT_TYPES)}")
        try:
            checked = check_event(e)
        except web.HTTPError as err:
            raise web.HTTPError(400, f"events[{i}]: {err.log_message}") from None
        out.append({**e, **checked})
    return out


def check_event(e: dict[str, Any]) -> dict[str, Any]:
    """The fields of one event that the service reads, checked."""
    checked = {
        "id": _text(e, "id", max_len=600),
        "key": _text(e, "key", max_len=512),
        "at": _time(e, "at"),
        "user": _text(e, "user", required=False) or "",
        "server": _text(e, "server", required=False) or "",
    }
    for key in ("reason", "decision"):
        value = e.get(key)
        if value is not None and not isinstance(value, str):
            raise web.HTTPError(400, f"{key!r} must be a string or null")
    reserve = e.get("reserve")
    if reserve is not None:
        if not isinstance(reserve, dict):
            raise web.HTTPError(400, "'reserve' must be an object (a reserve body) or null")
        checked["reserve"] = check_reserve({**reserve, "at": e.get("at")})
        platform = reserve.get("platform")
        if platform is not None:
            checked["reserve"]["platform"] = check_platform(platform, checked)
    return checked


def check_platform(platform: Any, checked: dict[str, Any]) -> dict[str, Any]:
    """A warm pool member's start (``pool``): only from the hub side's outbox
    (events, never ``reserve``), keyed and named as the pool's."""
    if not isinstance(platform, dict):
        raise web.HTTPError(400, "'reserve.platform' must be an object {pool, profiles} or null")
    if not pool.is_pool_session(checked["reserve"]["user"], checked["key"]):
        raise web.HTTPError(
            400,
            f"'reserve.platform' is only for warm pool sessions (user {pool.POOL_USER!r}, "
            f"key {pool.KEY_PREFIX}...)",
        )
    profiles = platform.get("profiles") or []
    if (
        not isinstance(profiles, list)
        or len(profiles) > 1000
        or not all(isinstance(p, str) and 0 < len(p) <= 64 for p in profiles)
    ):
        raise web.HTTPError(400, "'reserve.platform.profiles' must be a list of profile slugs")
    return {"pool": str(platform.get("pool") or "")[:255], "profiles": profiles}


def user_argument(handler: InternalHandler) -> str:
    user = handler.get_query_argument("user", "")
    if not user or len(user) > 255:
        raise web.HTTPError(400, "'user' is required (a user name, at most 255 characters)")
    return user


class SpawnInfoHandler(InternalHandler):
    async def get(self):
        user = user_argument(self)
        groups = [g for g in self.get_query_argument("groups", "").split(",") if g]
        svc = self.service
        self.write_json(await svc.db.read(spawn_info, svc.policy, user, groups, now()))


def spawn_info(session, policy, user: str, groups: list[str], at: datetime) -> dict[str, Any]:
    mine = policy.projects_of(groups)
    default = policy.default_project(user, mine)
    projects = [
        {
            "name": p,
            "balance": show(ledger.available(session, ledger.get_account(session, "project", p))),
            "default": p == default,
        }
        for p in mine
    ]
    personal = None
    if not mine and not policy.refuse_without_project:
        account = usage.budget_account(session, "personal", user, policy, at)
        personal = {"balance": show(ledger.available(session, account))}
    points = usage.load_prices(session)
    prices = {
        slug: show(usage.price_now(points, slug, at))
        for slug in policy.display_names()
        if usage.price_now(points, slug, at) is not None
    }
    return {
        "currency": policy.currency,
        "projects": projects,
        "personal": personal,
        "prices": prices,
        "min_period_hours": policy.min_period_hours,
        "refuse_without_project": policy.refuse_without_project and not mine,
    }


class ReserveHandler(InternalHandler):
    async def post(self):
        req = check_reserve(self.json_body())
        svc = self.service
        try:
            answer = await svc.db.run(usage.reserve, svc.policy, req, now())
        except usage.Refusal as e:
            svc.metrics.refusals.labels("budget" if e.status == 402 else "project").inc()
            raise web.HTTPError(e.status, e.message) from None
        svc.metrics.reservations.inc()
        self.write_json(answer)


class EventsHandler(InternalHandler):
    deliverer_may = True

    async def post(self):
        events = check_events(self.json_body())
        svc = self.service
        result = await svc.db.run(usage.ingest, svc.policy, events, now())
        for e in events:
            svc.metrics.events.labels(e["type"]).inc()
        if result["duplicates"]:
            svc.metrics.duplicates.inc(result["duplicates"])
        self.write_json(result)


class AlertsHandler(InternalHandler):
    async def get(self):
        user = user_argument(self)
        svc = self.service
        url = self.settings["prefix"]
        found = await svc.db.read(alerts.for_user, svc.policy, user, now(), url)
        self.write_json({"alerts": found})


class OpenSessionsHandler(InternalHandler):
    """The open usage sessions with their cost so far (the hub's operations page)."""

    async def get(self):
        rows = await self.service.db.read(reports.sessions, None, None, "open", MAX_OPEN)
        self.write_json({"currency": self.service.policy.currency, "sessions": rows})


class OutboxStatusHandler(InternalHandler):
    deliverer_may = True

    async def post(self):
        body = self.json_body()
        depth = body.get("depth")
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth < 2**63:
            raise web.HTTPError(400, "'depth' must be a whole number >= 0")
        oldest = body.get("oldest")
        if oldest is not None and (
            isinstance(oldest, bool)
            or not isinstance(oldest, str | int | float)
            or (isinstance(oldest, float) and not math.isfinite(oldest))
            or (isinstance(oldest, str) and len(oldest) > 64)
        ):
            raise web.HTTPError(400, "'oldest' must be a time or null")
        svc = self.service
        svc.outbox = {"depth": depth, "oldest": oldest, "reported_at": iso(now())}
        svc.metrics.outbox_depth.set(depth)
        self.write_json({"ok": True})


def routes(prefix: str) -> list[tuple[str, type]]:
    base = prefix + "api/internal/"
    return [
        (base + "spawn-info", SpawnInfoHandler),
        (base + "reserve", ReserveHandler),
        (base + "events", EventsHandler),
        (base + "alerts", AlertsHandler),
        (base + "open-sessions", OpenSessionsHandler),
        (base + "outbox-status", OutboxStatusHandler),
    ]
