"""The operations page, served by the hub itself (``hubpages``):

- ``GET /hub/ops``: running workspaces (user, profile, project, started, last
  activity, cost so far from accounting), the warm pool (when the hub has one),
  the services' health, the recent refused and failed starts, and the recent
  actions taken from the page;
- ``POST /hub/ops/stop`` (``user``, ``server``): stops that server;
- ``POST /hub/ops/cull``: one pass of the idle culler now (``hub.culling``).

Everything needs ``custom:labspace-ops:admin`` (the ``labspace-admin`` role);
a stop also needs JupyterHub's ``delete:servers`` for that user. The forms carry
the hub's XSRF token: a POST without it is refused by JupyterHub (403). The
template escapes every name and message (Jinja's autoescape).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from jupyterhub import orm
from jupyterhub.scopes import has_scope
from tornado import web

from . import metrics, ops
from .hubpages import LabspacePage
from .warm.pool import POOL_SETTING, WarmPool

log = logging.getLogger("JupyterHub.labspace")
ACTIONS_KEY = "labspace_ops_actions"
MAX_ACTIONS = 20
NEEDS = (
    f"The operations page needs the scope {ops.SCOPE}, which Labspace gives its "
    "administrators (hub.admin_users and auth.admin_groups, through the labspace-admin role)"
)


def actions(hub_settings: dict[str, Any]) -> deque:
    """The last actions taken from the page in this hub (newest last)."""
    found = hub_settings.get(ACTIONS_KEY)
    if found is None:
        found = hub_settings[ACTIONS_KEY] = deque(maxlen=MAX_ACTIONS)
    return found


class OpsBase(LabspacePage):
    """Signed in, holding the ops scope; the service directory at hand."""

    @property
    def hub_settings(self) -> dict[str, Any]:
        """The hub's own tornado settings, which its users (and so the spawner
        hooks) hold; the application's ``self.settings`` is a copy of it."""
        return self.users.settings

    def need_ops(self) -> None:
        if ops.SCOPE not in self.parsed_scopes:
            raise web.HTTPError(403, NEEDS, reason="For Labspace administrators")

    def note(self, text: str) -> None:
        who = self.current_user.name
        actions(self.hub_settings).append({"at": ops.iso(ops.utcnow()), "who": who, "text": text})
        log.info("Operations page: %s %s", who, text)

    def back(self) -> None:
        self.redirect(self.hub.base_url + "ops", status=303)


def running_servers(db) -> list[tuple[orm.Spawner, orm.User]]:
    """Servers that run, start or stop: those with a server row, or pending."""
    query = db.query(orm.Spawner, orm.User).join(orm.User, orm.Spawner.user_id == orm.User.id)
    return [(s, u) for s, u in query if s.server_id is not None]


class OpsPage(OpsBase):
    @web.authenticated
    async def get(self):
        self.need_ops()
        workspaces, health = await asyncio.gather(self.workspaces(), self.health())
        settings = self.directory.settings
        await self.render_page(
            "ops.html",
            workspaces=workspaces["rows"],
            currency=workspaces["currency"],
            costs_known=workspaces["known"],
            accounting_on=self.directory.enabled("accounting"),
            health=health,
            starts=ops.start_record(self.hub_settings).entries(),
            max_starts=ops.MAX_RECORD,
            actions=list(reversed(actions(self.hub_settings))),
            culling_on=bool(settings and settings.get("hub.culling.enabled")),
            pool=self.pool(),
        )

    def pool(self) -> dict[str, Any] | None:
        """The warm pool's section, or None when the hub has no pool."""
        found = self.hub_settings.get(POOL_SETTING)
        if not isinstance(found, WarmPool) or found.closing:
            return None
        view = ops.pool_view(found.status(), metrics.hub_metrics().pool_tally)
        view["starting"] = not found.started
        return view

    def running(self) -> list[ops.Running]:
        out = []
        for orm_spawner, orm_user in running_servers(self.db):
            user = self.users[orm_user]
            spawner = user.spawners.get(orm_spawner.name)
            options = orm_spawner.user_options or {}
            spec = getattr(spawner, "workspace_spec", None)
            profile = spec.display_name if spec else str(options.get("profile") or "")
            project = options.get("project")
            out.append(
                ops.Running(
                    user=orm_user.name,
                    server=orm_spawner.name,
                    profile=profile,
                    project=project if isinstance(project, str) else None,
                    started=orm_spawner.started,
                    last_activity=orm_spawner.last_activity,
                    pending=spawner.pending if spawner is not None else None,
                )
            )
        return out

    async def workspaces(self) -> dict[str, Any]:
        answer = await self.directory.ask("accounting", "open-sessions")
        sessions = answer.get("sessions") if isinstance(answer, dict) else None
        return {
            "rows": ops.workspace_rows(self.running(), sessions),
            "currency": (answer or {}).get("currency") or "credits",
            "known": sessions is not None,
        }

    async def health(self) -> list[dict[str, Any]]:
        """Each Labspace service (its health endpoint) and each hub-managed
        process without one (up while it runs)."""
        probes = [
            ops.Probe(name, c.base_url, c.token) for name, c in self.directory.callers.items()
        ]
        rows = list(await asyncio.gather(*(ops.ask_health(p) for p in probes)))
        asked = {p.name for p in probes}
        for name, service in sorted(self.services.items()):
            if name in asked or not service.managed or service.url:
                continue
            proc = getattr(service, "proc", None)
            rows.append(ops.process_row(name, proc is not None and proc.poll() is None))
        return rows


class StopHandler(OpsBase):
    @web.authenticated
    async def post(self):
        self.need_ops()
        name = self.get_body_argument("user", "")
        server = self.get_body_argument("server", "")
        user = self.find_user(name) if name else None
        if user is None:
            raise web.HTTPError(404, "No such user")
        if not has_scope(f"delete:servers!user={user.name}", self.parsed_scopes, db=self.db):
            raise web.HTTPError(403, f"Stopping {user.name}'s servers needs delete:servers")
        spawner = user.spawners.get(server) if server in user.orm_spawners else None
        if spawner is None or not (spawner.active or spawner.pending):
            raise web.HTTPError(400, "That server is not running (it may have just stopped)")
        label = f"{user.name}/{server}" if server else user.name
        if spawner.pending == "stop":
            self.note(f"asked again to stop {label} (already stopping)")
        else:
            await self.stop_single_user(user, server)
            self.note(f"stopped {label}")
        self.back()


class CullHandler(OpsBase):
    @web.authenticated
    async def post(self):
        self.need_ops()
        settings = self.directory.settings
        if settings is None or not settings.get("hub.culling.enabled"):
            raise web.HTTPError(400, "Idle culling is off (hub.culling.enabled)")
        from . import culling

        token = self.directory.state.service_token(culling.NAME)
        try:
            culled = await culling.cull_now(settings.hub_local_url() + "api", token, settings)
        except Exception as e:  # noqa: BLE001 - shown on the page, logged in full
            log.exception("Cull now failed")
            self.note(f"asked to cull idle servers: failed ({type(e).__name__})")
        else:
            self.note("culled " + (", ".join(culled) if culled else "nothing (none was idle)"))
        self.back()


def routes() -> list[tuple[str, type]]:
    """Under ``/hub`` (``hubpages.PAGE_MODULES``)."""
    return [(r"/ops", OpsPage), (r"/ops/stop", StopHandler), (r"/ops/cull", CullHandler)]
