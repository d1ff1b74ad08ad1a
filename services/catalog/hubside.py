"""The catalog's spawner hook, run in the hub process before anything starts.

``CatalogOptions(base_url, token, on_unreachable)`` is a ``check_options`` hook
``(spawner, user_options)``. It asks the catalog service
(``POST <base_url>api/internal/spawn-options`` with the service's own token,
see ``internal.py``) and never opens the catalog's database:

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

When the service does not answer (or answers 5xx, as it does while starting),
``catalog.on_unreachable`` decides: ``start-without-apps`` starts a workspace
with no catalog apps and refuses a standalone app's start (503), ``refuse``
refuses every start (503). Either way the hub's log says so.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tornado import web

from labspace.services.kit.caller import ServiceCaller, Unreachable

# a child of the hub's own logger: these lines appear in the hub's log, in its format
log = logging.getLogger("JupyterHub.catalog")

ON_UNREACHABLE = ("start-without-apps", "refuse")
UNREACHABLE_APP = (
    "The app catalog is not answering, so catalog apps cannot start right now; "
    "try again in a few minutes or tell your administrator"
)
UNREACHABLE_START = (
    "The app catalog is not answering, so workspaces cannot start right now; "
    "try again in a few minutes or tell your administrator"
)


def loopback_private(spawner) -> bool:
    """Whether this spawner gives the workspace a loopback of its own."""
    if hasattr(spawner, "host_network"):  # labspace's DockerSpawner
        return not spawner.host_network
    return any(cls.__name__ == "KubeSpawner" for cls in type(spawner).__mro__)


def check_app_options(options: dict[str, Any]) -> None:
    """The catalog's options alone, before anyone is asked (pure): 400 when
    ``version`` comes without ``app`` or either is not a string."""
    app_id, version = options.get("app"), options.get("version")
    if app_id is None:
        if version is not None:
            raise web.HTTPError(400, "Option 'version' needs 'app' (the catalog app's id)")
        return
    if not isinstance(app_id, str) or not (version is None or isinstance(version, str)):
        raise web.HTTPError(400, "Options 'app' and 'version' must be strings")


class CatalogOptions:
    """The ``check_options`` hook of one hub."""

    def __init__(
        self,
        base_url: str,
        token: str,
        on_unreachable: str = "start-without-apps",
        timeout: float = 3.0,
        tries: int = 2,
    ):
        if on_unreachable not in ON_UNREACHABLE:
            raise ValueError(f"catalog.on_unreachable: one of {', '.join(ON_UNREACHABLE)}")
        self.caller = ServiceCaller("catalog", base_url, token, timeout=timeout, tries=tries)
        self.on_unreachable = on_unreachable

    def __repr__(self) -> str:
        return f"CatalogOptions({self.caller!r}, on_unreachable={self.on_unreachable!r})"

    def __deepcopy__(self, memo):
        return self  # traitlets copies config values; the hook holds no per-spawner state

    async def ask(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``(status, answer)`` of a 200 or a 400; ``Unreachable`` otherwise (no
        answer, a 5xx, a service still starting; a 403 or 404 is not this
        catalog's token or API)."""
        status, answer = await self.caller.call_retrying("POST", "spawn-options", body)
        if status not in (200, 400) or not isinstance(answer, dict):
            raise Unreachable(f"HTTP {status}")
        return status, answer

    async def __call__(self, spawner, user_options: dict[str, Any]) -> None:
        env = spawner.extra_env
        if loopback_private(spawner):
            env["LABSPACE_LOOPBACK"] = "private"
        check_app_options(user_options)
        app_id = user_options.get("app")
        options = {k: user_options[k] for k in ("app", "version", "profile") if k in user_options}
        body = {
            "user": spawner.user.name,
            "server": spawner.name,
            "groups": sorted(spawner.user_groups()),
            "options": options,
        }
        try:
            status, answer = await self.ask(body)
        except Unreachable as e:
            self.unreachable(spawner, app_id, str(e))
            return
        if status != 200:
            message = answer.get("message") or f"The catalog refused this start ({status})"
            raise web.HTTPError(400, str(message).replace("%", "%%"))
        env["LABSPACE_CATALOG_APPS"] = json.dumps(answer.get("apps") or [])
        if app_id is None:
            return
        env["LABSPACE_STANDALONE_APP"] = app_id
        env["LABSPACE_CATALOG_APP_VERSION"] = answer["version"]
        spawner.default_url = answer["default_url"]
        log.info("%s runs catalog app %s %s", spawner.user.name, app_id, answer["version"])

    def unreachable(self, spawner, app_id: str | None, error: str) -> None:
        """No answer: start without catalog apps, or refuse, as ``on_unreachable`` says."""
        refused = app_id is not None or self.on_unreachable == "refuse"
        log.error(
            "Catalog service unreachable at %s's start (%s): %s (on_unreachable: %s)",
            spawner.user.name,
            error,
            "refused" if refused else "no catalog apps",
            self.on_unreachable,
        )
        if refused:
            raise web.HTTPError(503, UNREACHABLE_APP if app_id is not None else UNREACHABLE_START)
        spawner.extra_env["LABSPACE_CATALOG_APPS"] = "[]"
