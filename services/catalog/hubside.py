"""The catalog's spawner hook, run in the hub process before anything starts.

``CatalogOptions(db_url, profiles)`` is a ``check_options`` hook
``(spawner, user_options)``:

- options ``{"app": id, "version": v}`` (a standalone app in the named server
  ``<id>``): the app must exist, be enabled, standalone, open to the user's
  groups, and have that version; else HTTP 400 and nothing starts. It sets
  ``LABSPACE_CATALOG_APPS`` to that app alone, ``LABSPACE_STANDALONE_APP=<id>``
  and ``spawner.default_url = "/<id>/"``;
- any other start: ``LABSPACE_CATALOG_APPS`` lists the proxied catalog apps
  (current versions) open to the user's groups.

Either way it sets ``LABSPACE_LOOPBACK=private`` when the workspace has a
network namespace of its own (kubernetes, docker on a network other than
``host``). Without it the workspace assumes that other users share its
127.0.0.1 and refuses apps on a TCP port (extensions/appspec.py).

It reads the catalog's database directly (no round trip to the service).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from tornado import web

from . import apps as appdefs
from .store import Catalog, CatalogError

log = logging.getLogger("labspace.catalog")


def loopback_private(spawner) -> bool:
    """Whether this spawner gives the workspace a loopback of its own."""
    if hasattr(spawner, "host_network"):  # labspace's DockerSpawner
        return not spawner.host_network
    return any(cls.__name__ == "KubeSpawner" for cls in type(spawner).__mro__)


class CatalogOptions:
    """The ``check_options`` hook; opens the database on first use."""

    def __init__(self, db_url: str, profiles: list[str] | None = None):
        self.db_url = db_url
        self.profiles = profiles
        self._catalog: Catalog | None = None

    def __repr__(self) -> str:
        return "CatalogOptions()"

    def __deepcopy__(self, memo):
        return self  # traitlets copies config values; one database handle is enough

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog.open(self.db_url, self.profiles)
        return self._catalog

    def __call__(self, spawner, user_options: dict[str, Any]) -> None:
        groups = spawner.user_groups()
        env = spawner.extra_env
        if loopback_private(spawner):
            env["LABSPACE_LOOPBACK"] = "private"
        app_id = user_options.get("app")
        version = user_options.get("version")
        if app_id is None:
            if version is not None:
                raise web.HTTPError(400, "Option 'version' needs 'app' (the catalog app's id)")
            try:
                apps = self.catalog.proxied_for(groups)
            except SQLAlchemyError as e:
                log.error(
                    "Catalog database unreadable; no catalog apps for %s: %s", spawner.user.name, e
                )
                apps = []
            env["LABSPACE_CATALOG_APPS"] = json.dumps([appdefs.workspace_entry(d) for d in apps])
            return
        defn = self.standalone(spawner, groups, app_id, version, user_options.get("profile"))
        bundled = defn["launch"].get("bundled", False)
        env["LABSPACE_CATALOG_APPS"] = json.dumps(
            [] if bundled else [appdefs.workspace_entry(defn)]
        )
        env["LABSPACE_STANDALONE_APP"] = app_id
        env["LABSPACE_CATALOG_APP_VERSION"] = defn["version"]
        spawner.default_url = f"/{app_id}/"
        log.info("%s runs catalog app %s %s", spawner.user.name, app_id, defn["version"])

    def standalone(self, spawner, groups, app_id, version, profile) -> dict[str, Any]:
        """The definition to run, or HTTP 400 saying why not."""
        if not isinstance(app_id, str) or not (version is None or isinstance(version, str)):
            raise web.HTTPError(400, "Options 'app' and 'version' must be strings")
        try:
            app = self.catalog.get(app_id, groups)
            chosen = self.catalog.version(app, version)
        except CatalogError as e:
            # unknown, disabled or outside the groups: the same answer
            raise web.HTTPError(400, e.message.replace("%", "%%")) from None
        except SQLAlchemyError as e:
            log.error("Catalog database unreadable: %s", e)
            raise web.HTTPError(503, "The app catalog is not available; try again") from None
        defn = chosen.definition
        if defn["kind"] != "standalone":
            raise web.HTTPError(
                400,
                f"{app_id} runs inside your workspace at /user/{spawner.user.name}/{app_id}/, "
                "not as a server of its own",
            )
        if spawner.name != app_id:
            raise web.HTTPError(400, f"App {app_id} runs in the named server {app_id!r}")
        wanted = defn["launch"].get("profile") or ""
        if wanted and profile != wanted:
            raise web.HTTPError(400, f"App {app_id} runs on profile {wanted!r} (send it too)")
        return defn
