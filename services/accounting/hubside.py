"""Accounting, as the hub sees it: spawner hooks and the banner's alerts.

One ``HubSide`` object per hub, built by ``config.hub_parts``, holds the
accounting service's internal address and token, the outbox and the
``on_unreachable`` policy; its bound methods are the ``LabspaceSpawnerMixin``
hooks, and the hub's config holds them (``config.hub_parts`` wires them through
``spawner_traits`` and ``template_vars`` below):

- ``form_part(spawner)``: the project ``<select>`` with balances, and each
  profile's price per hour;
- ``check_options(spawner, user_options)``: the ``project`` option is a string
  naming one of the user's projects (the service checks again on reserve);
- ``before_start(spawner, spec)``: reserves the minimum period with the service
  (a 402/403 refuses the start with the service's message), then writes the
  ``start`` event durably to the outbox;
- ``after_stop(spawner)``: writes the ``stop`` event to the outbox;
- ``pool_event(event)``: the warm pool's hook (``WarmPool.hooks``): each member's
  time from ready to claimed or gone is a usage session of the platform's
  (``pool``), written to the same outbox;
- ``alerts(user)``: the user's budget warnings for the hub banner, cached.

The usage session key is ``<user>/<server>/<hub start time>``; the start time is
JupyterHub's ``orm_spawner.started``, kept in the hub database, so a hub restart
keeps the key. The outbox remembers the key of each running server, because
JupyterHub clears ``started`` before after-stop hooks run.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tornado import web

from labspace.services import hub_side_url
from labspace.services.kit.caller import ServiceCaller, Unreachable
from labspace.state import SECRETS_DIR, ensure_secret

from . import pool
from .outbox import Outbox, path_in

# a child of the hub's own logger: these lines appear in the hub's log, in its format
log = logging.getLogger("JupyterHub.accounting")

SERVICE = "accounting"
DELIVERER = "accounting-deliverer"
DELIVERER_SECRET = "accounting-deliverer-secret"  # noqa: S105 (a file name)
ALERT_TTL = 30.0
UNREACHABLE_MESSAGE = (
    "Budgets cannot be checked right now (the accounting service is not answering), "
    "so workspaces cannot start; try again in a few minutes or tell your administrator"
)


def utc_iso(when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    if when.tzinfo is None:  # JupyterHub keeps naive UTC times
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def session_key(user: str, server: str, started: datetime) -> str:
    """The idempotency key of a usage session: user, server name, hub start time."""
    return f"{user}/{server}/{utc_iso(started)}"


def service_base(settings) -> str:
    """The accounting service's API root, straight to its port (no proxy hop)."""
    return hub_side_url(settings, SERVICE)


def resources(spec) -> dict[str, Any]:
    mem = spec.mem_limit if spec.mem_limit is not None else spec.mem_guarantee
    cpu = spec.cpu_limit if spec.cpu_limit is not None else spec.cpu_guarantee
    return {
        "cpu": float(cpu) if cpu is not None else None,
        "mem_gib": round(mem / 1024**3, 3) if mem is not None else None,
        "gpus": int(spec.gpus or 0),
    }


class HubSide:
    """The accounting hooks of one hub."""

    def __init__(
        self,
        base_url: str,
        token: str,
        outbox_path: str,
        on_unreachable: str = "closed",
        timeout: float = 5.0,
        tries: int = 3,
        pool_profiles: list[str] | None = None,
        pool_enabled: bool = False,
        profile_images: dict[str, str] | None = None,
    ):
        self.service = ServiceCaller(SERVICE, base_url, token, timeout=timeout, tries=tries)
        self.outbox = Outbox(outbox_path)
        self.on_unreachable = on_unreachable
        self.pool_profiles = list(pool_profiles or [])  # backend.warm_pool.profiles
        self.pool_enabled = pool_enabled  # backend.warm_pool.enabled: the hook is wired
        self.profile_images = dict(profile_images or {})  # slug -> image (docker's pool keys)
        self._pool_seen = False
        self._alerts: dict[str, tuple[float, list[dict]]] = {}
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def base_url(self) -> str:
        """The service's root URL (its internal endpoints are under ``api/internal/``)."""
        return self.service.base_url

    @classmethod
    def from_settings(cls, settings, state) -> HubSide:
        return cls(
            service_base(settings),
            state.service_token(SERVICE),
            str(path_in(state.data_dir)),
            settings.get("accounting.on_unreachable"),
            pool_profiles=pooled_profiles(settings),
            pool_enabled=pool_enabled(settings),
            profile_images=profile_images(settings),
        )

    # -- talking to the service ------------------------------------------------

    async def spawn_info(self, spawner) -> dict[str, Any]:
        groups = ",".join(sorted(spawner.user_groups()))
        query = urlencode({"user": spawner.user.name, "groups": groups})
        status, data = await self.service.call("GET", f"spawn-info?{query}", timeout=3)
        if status != 200:
            raise Unreachable(f"spawn-info answered {status}: {data.get('message')}")
        return data

    # -- the spawn form ----------------------------------------------------------

    async def form_part(self, spawner) -> dict[str, Any]:
        """The project choice and each profile's price, for the spawn form."""
        try:
            info = await self.spawn_info(spawner)
        except Unreachable as e:
            log.warning("No budget information for %s's spawn form: %s", spawner.user.name, e)
            return {
                "html": '<p class="labspace-accounting-notice">Prices and budgets cannot '
                "be shown right now (the accounting service is not answering).</p>",
                "labels": {},
            }
        return render_form(info)

    # -- hooks -----------------------------------------------------------------

    async def check_options(self, spawner, user_options: dict) -> None:
        """Refuse a ``project`` that is not a string naming one of the user's projects."""
        project = user_options.get("project")
        if project in (None, ""):
            user_options.pop("project", None)
            return
        if not isinstance(project, str):
            raise web.HTTPError(400, "Option 'project' must be a project name (a string)")
        try:
            info = await self.spawn_info(spawner)
        except Unreachable:
            return  # the reserve decides (and applies on_unreachable)
        mine = [p["name"] for p in info.get("projects", [])]
        if project not in mine:
            yours = ", ".join(mine) or "none"
            raise web.HTTPError(403, f"Project {project!r} is not one of yours (yours: {yours})")

    async def before_start(self, spawner, spec) -> None:
        """Reserve the minimum period, then record the start durably."""
        user, server = spawner.user.name, spawner.name
        key = session_key(user, server, spawner.orm_spawner.started)
        project = (spawner.user_options or {}).get("project") or None
        reserve = {
            "key": key,
            "user": user,
            "server": server,
            "groups": sorted(spawner.user_groups()),
            "project": project,
            "profile": spec.profile,
            "display_name": spec.display_name,
            "resources": resources(spec),
            "at": utc_iso(spawner.orm_spawner.started),
        }
        try:
            status, answer = await self.service.call_retrying("POST", "reserve", reserve)
        except Unreachable as e:
            await self._unreachable(spawner, reserve, str(e))
        else:
            if status != 200:
                message = answer.get("message") or f"Accounting refused the start ({status})"
                log.info("Accounting refused %s's start (%s): %s", user, status, message)
                raise web.HTTPError(status if 400 <= status < 500 else 502, message)
            log.info(
                "Reserved %s for %s (project %s)",
                answer.get("reserved"),
                key,
                answer.get("project"),
            )
        stale = await asyncio.to_thread(self.outbox.open_key, user, server)
        events = []
        if stale and stale != key:  # its stop was never seen (the reconciler had it)
            events.append(self._event(stale, "stop", user, server, reason="not seen stopping"))
        events.append(self._event(key, "start", user, server, at=reserve["at"], reserve=reserve))
        await asyncio.to_thread(self.outbox.append, *events, open_key=(user, server, key))
        self.nudge([e["id"] for e in events])

    async def _unreachable(self, spawner, reserve: dict, error: str) -> None:
        """No answer from the service: allow or refuse, as ``on_unreachable`` says."""
        allowed = self.on_unreachable == "open"
        decision = "allowed" if allowed else "refused"
        log.error(
            "Accounting service unreachable for %s (%s); start %s (on_unreachable: %s)",
            reserve["key"],
            error,
            decision,
            self.on_unreachable,
        )
        event = self._event(
            reserve["key"],
            "unreachable",
            reserve["user"],
            reserve["server"],
            decision=decision,
            mode=self.on_unreachable,
            error=error[:200],
        )
        await asyncio.to_thread(self.outbox.append, event)
        if not allowed:
            raise web.HTTPError(503, UNREACHABLE_MESSAGE)

    async def after_stop(self, spawner) -> None:
        """Record the stop of the server's usage session, if it had one."""
        user, server = spawner.user.name, spawner.name
        key = await asyncio.to_thread(self.outbox.open_key, user, server)
        if key is None:
            return  # refused or never reserved: no session
        event = self._event(key, "stop", user, server, reason=stop_reason(spawner))
        await asyncio.to_thread(self.outbox.append, event, close_key=(user, server))
        log.info("Recorded the stop of %s (%s)", key, event["reason"])
        self.nudge([event["id"]])

    async def pool_event(self, event: dict[str, Any]) -> None:
        """The warm pool's hook: a member that is ``ready`` opens a session of
        the platform's, ``claimed`` or ``gone`` closes it (see ``pool``). The
        first event of a hub run also closes the sessions of members an earlier
        run never saw go (that run was killed; this pool removed them)."""
        kind, key, member = event.get("event"), event.get("key"), event.get("member")
        if kind not in ("ready", "claimed", "gone") or not (
            isinstance(key, str) and key and isinstance(member, str) and member
        ):
            log.warning("Ignored a warm pool event without event, key or member: %r", event)
            return
        stamp = event.get("at")
        when = datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, int | float) else None
        at = utc_iso(when)
        user, session = pool.POOL_USER, pool.session_key(key, member)
        if not self._pool_seen:
            self._pool_seen = True
            for server, stale in await asyncio.to_thread(self.outbox.open_keys_of, user):
                if server == member:
                    continue
                left = self._event(stale, "stop", user, server, at=at, reason="left by a hub run")
                await asyncio.to_thread(self.outbox.append, left, close_key=(user, server))
                self.nudge([left["id"]])
        if kind == "ready":
            reserve = {
                "key": session,
                "user": user,
                "server": member,
                "groups": [],
                "project": None,
                "profile": f"warm-pool:{key}"[:64],
                "display_name": f"Warm pool member ({key})"[:255],
                "resources": {},
                "platform": {"pool": key, "profiles": self.profiles_of(key)},
            }
            start = self._event(session, "start", user, member, at=at, reserve=reserve)
            await asyncio.to_thread(self.outbox.append, start, open_key=(user, member, session))
            self.nudge([start["id"]])
            return
        if await asyncio.to_thread(self.outbox.open_key, user, member) is None:
            return  # never seen ready (e.g. a leftover): no session
        reason = "claimed" if kind == "claimed" else f"gone: {event.get('reason') or 'ended'}"
        stop = self._event(session, "stop", user, member, at=at, reason=str(reason)[:200])
        await asyncio.to_thread(self.outbox.append, stop, close_key=(user, member))
        self.nudge([stop["id"]])

    def profiles_of(self, pool_key: str) -> list[str]:
        """The pooled profiles a member of ``pool_key`` may become: those whose
        image it is (docker's keys are images), else every pooled profile
        (``[]``: all of them, the local backend's one pool)."""
        pooled = self.pool_profiles or list(self.profile_images)
        same = [slug for slug in pooled if self.profile_images.get(slug) == pool_key]
        return same or self.pool_profiles

    @staticmethod
    def _event(key: str, kind: str, user: str, server: str, at: str | None = None, **extra):
        return {
            "id": f"{key}:{kind}",
            "key": key,
            "type": kind,
            "at": at or utc_iso(),
            "user": user,
            "server": server,
            **extra,
        }

    # -- delivery ----------------------------------------------------------------

    def nudge(self, ids: list[str]) -> None:
        """Try to deliver these (already durable) events now, in the background;
        whatever fails stays in the outbox for the deliverer."""
        self._spawn(self._deliver_now(ids))

    async def _deliver_now(self, ids: list[str]) -> None:
        claimed = await asyncio.to_thread(self.outbox.claim, len(ids), 30.0, ids)
        if not claimed:
            return  # the deliverer has them
        seqs = [seq for seq, _ in claimed]
        try:
            status, answer = await self.service.call(
                "POST", "events", {"events": [e for _, e in claimed]}
            )
        except Unreachable as e:
            await asyncio.to_thread(self.outbox.release, seqs, str(e), 1.0)
            return
        if status == 200:
            await asyncio.to_thread(self.outbox.ack, seqs)
        else:
            await asyncio.to_thread(self.outbox.release, seqs, f"HTTP {status}: {answer}", 5.0)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception():
            log.warning("Accounting background task failed: %r", task.exception())

    # -- the banner --------------------------------------------------------------

    def alerts(self, user=None) -> list[dict]:
        """The user's budget alerts for the hub banner: the cached list (empty at
        first), refreshed in the background when older than ``ALERT_TTL``.
        Never blocks the page and never raises."""
        name = getattr(user, "name", user)
        if not isinstance(name, str) or not name:
            return []
        cached_at, alerts = self._alerts.get(name, (0.0, []))
        if time.monotonic() - cached_at > ALERT_TTL and name not in self._refreshing:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return alerts
            self._refreshing.add(name)
            self._spawn(self._refresh_alerts(name))
        return alerts

    async def _refresh_alerts(self, name: str) -> None:
        try:
            status, data = await self.service.call(
                "GET", f"alerts?{urlencode({'user': name})}", timeout=3
            )
            if status == 200 and isinstance(data.get("alerts"), list):
                self._alerts[name] = (time.monotonic(), data["alerts"])
            else:
                self._alerts[name] = (time.monotonic(), [])
        except Unreachable as e:
            log.debug("No alerts for %s: %s", name, e)
            stale = self._alerts.get(name, (0.0, []))[1]
            self._alerts[name] = (time.monotonic() - ALERT_TTL / 2, stale)
        finally:
            self._refreshing.discard(name)


def warm_pool_settings(settings) -> dict[str, Any]:
    """``backend.warm_pool`` ({} when the settings have none)."""
    try:
        warm = settings.get("backend.warm_pool")
    except (KeyError, IndexError, TypeError):
        return {}
    return warm if isinstance(warm, dict) else {}


def pool_enabled(settings) -> bool:
    """``backend.warm_pool.enabled`` for this backend (``auto``: local only)."""
    from labspace.warm import pool_on

    try:
        return pool_on(settings.get("backend"))
    except (KeyError, IndexError, TypeError):
        return False


def pooled_profiles(settings) -> list[str]:
    """``backend.warm_pool.profiles`` (the profiles a pool member may become)."""
    profiles = warm_pool_settings(settings).get("profiles") or []
    return [p for p in profiles if isinstance(p, str)]


def profile_images(settings) -> dict[str, str]:
    """Each profile's image (its own, else ``backend.image``), by slug."""
    try:
        profiles = settings.get("profiles") or []
        default = settings.get("backend.image") or ""
    except (KeyError, IndexError, TypeError):
        return {}
    return {
        p["slug"]: p.get("image") or default
        for p in profiles
        if isinstance(p, dict) and isinstance(p.get("slug"), str)
    }


def stop_reason(spawner) -> str:
    """Why the server ended, as well as the hub can tell."""
    return "start failed" if spawner.start_failed else "stopped"


def render_form(info: dict[str, Any]) -> dict[str, Any]:
    """The spawn form part for a ``spawn-info`` answer (pure)."""
    currency = html.escape(info.get("currency") or "credits")
    labels = {
        slug: f"{price} {info.get('currency') or 'credits'}/hour"
        for slug, price in (info.get("prices") or {}).items()
    }
    projects = info.get("projects") or []
    if projects:
        options = []
        for p in projects:
            name = html.escape(p["name"])
            selected = " selected" if p.get("default") else ""
            options.append(
                f'<option value="{name}"{selected}>{name} — '
                f"{html.escape(str(p['balance']))} {currency} left</option>"
            )
        part = (
            '<div class="form-group labspace-project">'
            '<label for="labspace-project">Charge to project</label>'
            '<select class="form-control" id="labspace-project" name="project">'
            + "".join(options)
            + "</select></div>"
        )
    elif info.get("personal"):
        balance = html.escape(str(info["personal"].get("balance")))
        part = (
            '<p class="labspace-project">You are in no project: usage is charged to '
            f"your personal allowance ({balance} {currency} left).</p>"
        )
    elif info.get("refuse_without_project"):
        part = (
            '<p class="labspace-project labspace-accounting-notice">You are in no project, '
            "so you cannot start a workspace; ask an administrator to add you to one.</p>"
        )
    else:
        part = ""
    return {"html": part, "labels": labels}


# -- what config.hub_parts wires ------------------------------------------------


def spawner_traits(hub: HubSide) -> dict[str, Any]:
    """``LabspaceSpawnerMixin`` traits for accounting (hook lists are appended):
    bound methods of ``hub``, the one ``HubSide`` that ``config.hub_parts`` builds
    for the hub; the spawners reach it through these hooks (the warm pool's
    ``pool_event`` only with ``backend.warm_pool.enabled``)."""
    traits = {
        "option_keys": {"project": "the project to charge (one of your projects)"},
        "check_options": [hub.check_options],
        "form_parts": [hub.form_part],
        "before_start": [hub.before_start],
        "after_stop": [hub.after_stop],
    }
    if hub.pool_enabled:
        traits["pool_events"] = [hub.pool_event]
    return traits


def template_vars(hub: HubSide) -> dict[str, Any]:
    """The hub banner's alerts, from the same ``HubSide`` as the spawner hooks."""
    return {"labspace_alerts_accounting": hub.alerts}


def deliverer_secret_file(state) -> Path:
    """The deliverer's own secret for the service's internal endpoints (events and
    outbox status only), generated once and kept; never the service's hub token."""
    path = Path(state.data_dir) / SECRETS_DIR / DELIVERER_SECRET
    ensure_secret(path, nbytes=32, hex=True)
    return path


def deliverer_service(settings, state) -> dict[str, Any]:
    """The ``accounting-deliverer`` managed service (no URL: it only sends)."""
    return {
        "name": DELIVERER,
        "command": [sys.executable, "-m", "labspace.services.accounting.deliver"],
        "environment": {
            "LABSPACE_ACCOUNTING_DELIVERER_CONFIG": json.dumps(
                {
                    "outbox": str(path_in(state.data_dir)),
                    "url": service_base(settings),
                    "data_dir": str(state.data_dir),
                    "secret_file": str(deliverer_secret_file(state)),
                }
            ),
            "PYTHONUNBUFFERED": "1",
        },
        "display": False,
    }
