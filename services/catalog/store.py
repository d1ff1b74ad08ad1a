"""The catalog database: seeding, versions and launches.

``Catalog`` is the one place that reads and writes the tables, on a
``kit.db.Database``: every query runs on the database's own threads
(``await catalog.list_apps(...)``), never on the event loop; only ``seed``
is synchronous (the service's factory runs it on those threads at start).
Only the service opens the database (the hub side asks it over HTTP). Every changed
definition is a new version whose label is the definition's ``version``, with
``+r<revision>`` appended when that label is taken already, so old versions
stay visible and launchable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from labspace.services.kit.db import Database

from . import apps as appdefs
from .iconsafe import IconError, clean_icon, safe_icon
from .models import App, AppVersion, Launch, utcnow

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LIVE = ("starting", "running")  # launch states that follow their server
FINAL = ("failed", "stopped", "superseded")  # ... and those that never change again


class CatalogError(Exception):
    """A request the catalog refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


def digest(defn: dict[str, Any]) -> str:
    """What makes two definitions the same version (label and state aside)."""
    body = {k: v for k, v in defn.items() if k not in ("version", "disabled")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def version_model(v: AppVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "revision": v.revision,
        "source": v.source,
        "created_by": v.created_by,
        "created": v.created.isoformat(),
        "definition": v.definition,
    }


def app_model(app: App, version: AppVersion | None = None) -> dict[str, Any]:
    """The API view of an app: its current (or given) version's definition."""
    v = version or app.current
    d = v.definition
    return {
        "id": app.id,
        "version": v.version,
        "latest": app.current.version,
        "title": d["title"],
        "description": d.get("description", ""),
        "category": d.get("category", ""),
        "icon": safe_icon(d.get("icon") or "") or safe_icon(appdefs.default_icon()),
        "groups": d.get("groups", []),
        "kind": d["kind"],
        "bundled": d.get("launch", {}).get("bundled", False),
        "disabled": app.disabled,
        "source": app.source,
        "versions": len(app.versions),
        "updated": app.updated.isoformat(),
    }


def launch_model(launch: Launch) -> dict[str, Any]:
    return {
        "id": launch.id,
        "user": launch.user,
        "app": launch.app_id,
        "version": launch.version,
        "kind": launch.kind,
        "server_name": launch.server_name,
        "state": launch.state,
        "message": launch.message,
        "created": launch.created.isoformat(),
        "updated": launch.updated.isoformat(),
    }


def _load(s: Session, app_id: str) -> App | None:
    q = select(App).where(App.id == app_id).options(selectinload(App.versions))
    return s.scalars(q).one_or_none()


def _require(s: Session, app_id: str) -> App:
    app = _load(s, app_id)
    if app is None:
        raise CatalogError(404, f"No such app: {app_id}")
    return app


def _add_version(app: App, defn: dict[str, Any], source: str, by: str) -> AppVersion | None:
    """A new version of ``app`` unless ``defn`` equals its current one."""
    dig = digest(defn)
    if (
        app.versions
        and app.current.digest == dig
        and (
            defn["version"] == app.current.version
            or defn["version"] == app.current.version.split("+r")[0]
        )
    ):
        return None
    revision = len(app.versions) + 1 if not app.versions else app.current.revision + 1
    label = defn["version"]
    if any(v.version == label for v in app.versions):
        label = f"{label.split('+r')[0]}+r{revision}"
    stored = {**defn, "version": label}
    stored.pop("disabled", None)
    version = AppVersion(
        app_id=app.id,
        revision=revision,
        version=label,
        definition=stored,
        digest=dig,
        source=source,
        created_by=by,
        created=utcnow(),
    )
    app.versions.append(version)
    app.updated = utcnow()
    return version


def _new_app(s: Session, app_id: str, source: str) -> App:
    app = App(id=app_id, source=source, created=utcnow(), updated=utcnow())
    app.versions = []
    s.add(app)
    return app


def _seed(s: Session, definitions: list[dict[str, Any]], source: str) -> list[str]:
    changed = []
    for raw in definitions:
        defn = appdefs.with_defaults(raw)
        app = _load(s, defn["id"]) or _new_app(s, defn["id"], source)
        if _add_version(app, defn, source, source) is not None:
            app.disabled = defn.get("disabled", False)
            changed.append(defn["id"])
    return changed


def _create(s: Session, defn: dict[str, Any], by: str) -> dict[str, Any]:
    if _load(s, defn["id"]) is not None:
        raise CatalogError(409, f"App {defn['id']!r} exists already (update it instead)")
    app = _new_app(s, defn["id"], "admin")
    app.disabled = defn.get("disabled", False)
    _add_version(app, defn, "admin", by)
    return app_model(app)


def _set_disabled(s: Session, app_id: str, disabled: bool) -> dict[str, Any]:
    app = _require(s, app_id)
    app.disabled = disabled
    app.updated = utcnow()
    return app_model(app)


def _delete(s: Session, app_id: str) -> None:
    s.delete(_require(s, app_id))


def _list_apps(s: Session, groups: set[str] | None, disabled: bool) -> list[dict]:
    q = select(App).options(selectinload(App.versions)).order_by(App.id)
    out = []
    for app in s.scalars(q):
        if app.disabled and not disabled:
            continue
        if groups is None or appdefs.allowed(app.current.definition["groups"], groups):
            out.append(app_model(app))
    return out


def _get(s: Session, app_id: str, groups: set[str] | None, disabled: bool) -> App:
    app = _load(s, app_id)
    if app is None or (app.disabled and not disabled):
        raise CatalogError(404, f"No such app: {app_id}")
    if groups is not None and not appdefs.allowed(app.current.definition["groups"], groups):
        raise CatalogError(404, f"No such app: {app_id}")
    s.expunge_all()
    return app


def _proxied_for(s: Session, groups: set[str]) -> list[dict[str, Any]]:
    q = select(App).where(App.disabled.is_(False)).options(selectinload(App.versions))
    out = []
    for app in s.scalars(q).all():
        d = app.current.definition
        if d["kind"] != "proxied" or d["launch"].get("bundled"):
            continue
        if appdefs.allowed(d["groups"], groups):
            out.append(d)
    return sorted(out, key=lambda d: d["id"])


def _add_launch(s: Session, user: str, defn: dict[str, Any], server_name: str) -> dict[str, Any]:
    q = select(Launch).where(
        Launch.user == user,
        Launch.app_id == defn["id"],
        Launch.server_name == server_name,
        Launch.state.in_(LIVE),
    )
    older = list(s.scalars(q))
    launch = Launch(
        user=user,
        app_id=defn["id"],
        version=defn["version"],
        kind=defn["kind"],
        server_name=server_name,
        state="starting",
        created=utcnow(),
        updated=utcnow(),
    )
    s.add(launch)
    s.flush()
    for old in older:
        old.state = "superseded"
        old.message = f"Superseded by launch {launch.id}"
        old.updated = utcnow()
    return launch_model(launch)


def _set_launch(s: Session, launch_id: int, state: str, message: str | None) -> None:
    launch = s.get(Launch, launch_id)
    if launch is None or (launch.state == "superseded" and state != "stopped"):
        return  # a superseded launch's follower tells nothing more
    if launch.state != state or (message is not None and message != launch.message):
        launch.state = state
        if message is not None:
            launch.message = message
        launch.updated = utcnow()


def _launches(s: Session, user: str, active: bool) -> list[dict[str, Any]]:
    q = select(Launch).where(Launch.user == user).order_by(Launch.id.desc())
    if active:
        q = q.where(Launch.state.in_(LIVE))
    return [launch_model(x) for x in s.scalars(q.limit(200))]


def _launch(s: Session, launch_id: int) -> dict[str, Any] | None:
    launch = s.get(Launch, launch_id)
    return launch_model(launch) if launch else None


class Catalog:
    """Apps, versions and launches in one ``Database``."""

    def __init__(self, db: Database, profiles: list[str] | None = None, shared_loopback=False):
        self.db = db
        self.warm: asyncio.Future | None = None  # what start-up left running (app.start)
        self.profiles = profiles
        # workspaces share 127.0.0.1: an app on a TCP port is refused (apps.loopback_shared)
        self.shared_loopback = shared_loopback

    def _check(self, defn: Any) -> dict[str, Any]:
        problems = appdefs.definition_problems(defn, "app", self.profiles, self.shared_loopback)
        if problems:
            raise CatalogError(400, "; ".join(problems))
        defn = appdefs.with_defaults(defn)
        try:
            defn["icon"] = clean_icon(defn.get("icon") or "")
        except IconError as e:
            raise CatalogError(400, f"app.icon: {e}") from None
        return defn

    # -- apps ------------------------------------------------------------------

    def seed(self, definitions: list[dict[str, Any]], source: str) -> list[str]:
        """Seed settings-defined or bundled apps (synchronous: at start, on the
        database's threads); returns the ids given a new version."""
        return self.db.work(_seed, definitions, source)

    async def create(self, raw: Any, by: str) -> dict[str, Any]:
        return await self.db.run(lambda s: _create(s, self._check(raw), by))

    async def update(self, app_id: str, raw: Any, by: str) -> dict[str, Any]:
        """A new version of ``app_id``; fields left out keep their current value."""
        if not isinstance(raw, dict):
            raise CatalogError(400, "The body must be a JSON object (an app definition)")
        return await self.db.run(self._update, app_id, raw, by)

    def _update(self, s: Session, app_id: str, raw: dict[str, Any], by: str) -> dict[str, Any]:
        app = _require(s, app_id)
        current = dict(app.current.definition)
        current["version"] = current["version"].split("+r")[0]
        merged = {**current, **raw}
        if merged.get("id") != app_id:
            raise CatalogError(400, f"app.id: cannot change the id of {app_id!r}")
        defn = self._check(merged)
        if _add_version(app, defn, "admin", by) is None:
            raise CatalogError(409, f"Nothing changed: {app_id} {app.current.version}")
        if "disabled" in raw:
            app.disabled = bool(raw["disabled"])
        return app_model(app)

    async def set_disabled(self, app_id: str, disabled: bool) -> dict[str, Any]:
        return await self.db.run(_set_disabled, app_id, disabled)

    async def delete(self, app_id: str) -> None:
        await self.db.run(_delete, app_id)

    async def list_apps(self, groups: set[str] | None = None, disabled: bool = False) -> list:
        """Apps visible to someone in ``groups`` (None: all, for admins)."""
        return await self.db.read(_list_apps, groups, disabled)

    async def get(self, app_id: str, groups: set[str] | None = None, disabled=False) -> App:
        """The app, detached; 404 when absent, disabled or outside ``groups``."""
        return await self.db.read(_get, app_id, groups, disabled)

    @staticmethod
    def version(app: App, label: str | None) -> AppVersion:
        if not label:
            return app.current
        for v in app.versions:
            if v.version == label:
                return v
        known = ", ".join(v.version for v in app.versions)
        raise CatalogError(404, f"No version {label!r} of {app.id} (versions: {known})")

    async def proxied_for(self, groups: set[str]) -> list[dict[str, Any]]:
        """Definitions of the enabled proxied apps with a command open to ``groups``."""
        return await self.db.read(_proxied_for, groups)

    # -- launches --------------------------------------------------------------

    async def add_launch(self, user: str, defn: dict[str, Any], server_name: str) -> dict:
        """A new launch; earlier live launches of that app in that server are
        marked ``superseded`` (the new one tells the state from now on)."""
        return await self.db.run(_add_launch, user, defn, server_name)

    async def set_launch(self, launch_id: int, state: str, message: str | None = None) -> None:
        await self.db.run(_set_launch, launch_id, state, message)

    async def launches(self, user: str, active: bool = False) -> list[dict[str, Any]]:
        return await self.db.read(_launches, user, active)

    async def launch(self, launch_id: int) -> dict[str, Any] | None:
        return await self.db.read(_launch, launch_id)
