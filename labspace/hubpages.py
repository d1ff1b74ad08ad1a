"""Labspace's own pages served by the hub itself, and their way to the services.

Two pieces every such page shares:

- ``ServiceDirectory``: the enabled Labspace services as the hub's process
  reaches them (``services.hub_side_url``, straight to each one's port, with the
  service's own token, the way the spawner hooks do). ``await
  directory.ask(name, path)`` asks ``<service>/api/internal/<path>`` for JSON
  with a short timeout and answers ``None`` when the service is off (not in the
  settings), down, slow, or answers anything but a 2xx: a page then shows that
  part as unavailable and the rest of itself. It never raises and never shows
  or logs the token. The browser and the workspaces never see a service token:
  the hub asks on the person's behalf and renders what they may see.
- ``LabspacePage``: a base for pages served through ``JupyterHub.extra_handlers``
  (signed-in people, templates in ``labspace/templates`` extending
  ``page.html``, the hub's XSRF and error pages), with the directory at hand.

``hub_values(settings, state, out)`` is what ``hubconfig.build`` calls: the
directory, the pages' routes (each module in ``PAGE_MODULES`` has
``routes() -> [(pattern, handler class)]``; patterns are under ``/hub``) and
the home page's template variable (``labspace.home``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from jupyterhub.handlers import BaseHandler
from tornado import web

from labspace.services.kit.caller import ServiceCaller, Unreachable

log = logging.getLogger("JupyterHub.labspace")

# Modules with Labspace's hub pages: each has ``routes() -> [(pattern, class)]``.
PAGE_MODULES: tuple[str, ...] = ("labspace.ops_pages",)
TIMEOUT = 2.0


class ServiceDirectory:
    """The enabled services' internal APIs, as the hub's process calls them."""

    def __init__(self, callers: dict[str, ServiceCaller], settings=None, state=None):
        self.callers = dict(callers)
        self.settings = settings  # the Settings and State it was built from, for pages
        self.state = state  # that need more (the ops page's cull-now)

    def __repr__(self) -> str:  # never a token
        return f"ServiceDirectory({sorted(self.callers)})"

    def __deepcopy__(self, memo):
        return self  # traitlets copies config values; this holds no per-request state

    def __eq__(self, other):
        return isinstance(other, ServiceDirectory) and {
            n: c.base_url for n, c in self.callers.items()
        } == {n: c.base_url for n, c in other.callers.items()}

    @classmethod
    def from_settings(cls, settings, state, timeout: float = TIMEOUT) -> ServiceDirectory:
        from labspace import settings as settings_mod
        from labspace.services import hub_side_url

        callers = {}
        for name in settings_mod.SERVICE_SECTIONS:
            if (settings.get(name) or {}).get("enabled"):
                url, token = hub_side_url(settings, name), state.service_token(name)
                callers[name] = ServiceCaller(name, url, token, timeout=timeout, tries=1)
        return cls(callers, settings, state)

    def enabled(self, name: str) -> bool:
        """Whether service ``name`` is on in the settings (up or not)."""
        return name in self.callers

    @property
    def names(self) -> list[str]:
        return list(self.callers)

    async def ask(
        self,
        name: str,
        path: str,
        *,
        method: str = "GET",
        body: Any = None,
        timeout: float | None = None,
    ) -> Any | None:
        """The JSON of ``<service>/api/internal/<path>``, or None (off, down,
        slow, or not a 2xx; the hub's log says which)."""
        caller = self.callers.get(name)
        if caller is None:
            return None
        try:
            status, data = await caller.call(method, path, body, timeout=timeout)
        except Unreachable as e:
            log.warning("%s did not answer %s %s: %s", name, method, path.split("?")[0], e)
            return None
        if not 200 <= status < 300:
            message = data.get("message") if isinstance(data, dict) else None
            log.warning("%s answered %s %s with %s: %s", name, method, path, status, message)
            return None
        return data

    async def ask_many(self, asks: dict[str, tuple[str, str]]) -> dict[str, Any | None]:
        """``{key: (service, path)}`` asked at once: ``{key: JSON or None}``."""
        keys = list(asks)
        answers = await asyncio.gather(*(self.ask(*asks[k]) for k in keys))
        return dict(zip(keys, answers, strict=True))


class LabspacePage(BaseHandler):
    """A Labspace page in the hub: ``self.directory`` (a ``ServiceDirectory``;
    not ``services``, which is JupyterHub's own map of services),
    ``require_scope`` and ``render_page``. Subclasses write ``get``/``post``
    with ``@web.authenticated``; JupyterHub's XSRF check covers their forms."""

    def initialize(self, directory: ServiceDirectory):
        self.directory = directory

    def require_scope(self, *scopes: str) -> None:
        """403 unless the signed-in person holds one of ``scopes`` (as
        JupyterHub expands them: ``admin-ui``, ``admin:servers``, ...)."""
        if not any(s in self.parsed_scopes for s in scopes):
            raise web.HTTPError(403, "You may not see this page")

    async def render_page(self, template: str, **ns: Any) -> None:
        """Render ``template`` (from ``labspace/templates``) with ``ns`` and finish."""
        html = await self.render_template(template, **ns)
        self.finish(html)


def routes(directory: ServiceDirectory, modules: tuple[str, ...] = PAGE_MODULES) -> list:
    """``JupyterHub.extra_handlers``: each page module's routes with the directory."""
    out = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for pattern, handler in module.routes():
            out.append((pattern, handler, {"directory": directory}))
    return out


def hub_values(settings, state, out: dict) -> None:
    """The pages' part of ``hubconfig.build``: extra handlers and the home
    page's ``labspace_home`` template variable."""
    from labspace import home

    directory = ServiceDirectory.from_settings(settings, state)
    hub = out.setdefault("JupyterHub", {})
    pages = routes(directory)
    if pages:
        hub["extra_handlers"] = pages
    hub.setdefault("template_vars", {})["labspace_home"] = home.HomeData(
        directory, settings.get("profiles"), settings.get("backend")
    )
