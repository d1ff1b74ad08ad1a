"""Map validated settings onto JupyterHub traitlets.

``build(settings, state)`` is pure: it returns ``{Class: {trait: value}}`` and has
golden tests. ``configure(c)`` is what ``jupyterhub_config.py`` calls: it loads
the settings, stops start-up with one line per problem when they are bad, and
applies the table to the hub's config object.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__, rules, tls
from . import settings as settings_mod
from .settings import Settings, SettingsError
from .state import PROXY_PROGRAM, State, StateError, private_umask
from .warm import pool_on

PROXY_BIN = PROXY_PROGRAM
log = logging.getLogger("labspace")

# settings key -> (Class, trait, conversion); copied as they are.
DIRECT: list[tuple[str, str, str, Callable[[Any], Any] | None]] = [
    ("hub.ip", "JupyterHub", "ip", None),
    ("hub.port", "JupyterHub", "port", None),
    ("hub.hub_port", "JupyterHub", "hub_port", None),
    ("hub.base_url", "JupyterHub", "base_url", None),
    ("hub.log_level", "Application", "log_level", lambda v: {"WARNING": "WARN"}.get(v, v)),
    ("hub.admin_users", "Authenticator", "admin_users", set),
    ("hub.cleanup_servers", "JupyterHub", "cleanup_servers", None),
    ("auth.allow_all", "Authenticator", "allow_all", None),
    ("backend.default_url", "Spawner", "default_url", None),
    ("backend.start_timeout", "Spawner", "start_timeout", None),
    ("backend.http_timeout", "Spawner", "http_timeout", None),
]

# backend.type -> spawner entry point (jupyterhub.spawners)
SPAWNERS = {
    "local": "labspace-local",
    "docker": "labspace-docker",
    "kubernetes": "labspace-kubernetes",
}


class ProxyNotFound(Exception):
    """configurable-http-proxy is not installed where Labspace looks for it."""


def proxy_folders(settings: Settings) -> list[Path]:
    """Where ``node_modules/.bin`` may hold the proxy: next to the settings file,
    then where Labspace is installed (its folder, for ``make up``; the folder of
    its environment). Never the current folder: the launcher's and the hub's
    differ (the hub runs in data_dir), and both must find the same proxy."""
    from . import needs

    folders = [settings.base_dir.resolve()]
    folders += [f for f in needs.install_folders() if f not in folders]
    return folders


def find_proxy(settings: Settings) -> list[str]:
    """The command that runs configurable-http-proxy (see ``hub.proxy_command``)."""
    configured = settings.get("hub.proxy_command")
    if configured:
        return list(configured)
    folders = proxy_folders(settings)
    for base in folders:
        local = base / "node_modules" / ".bin" / PROXY_BIN
        if local.exists():
            return [str(local)]
    on_path = shutil.which(PROXY_BIN)
    if on_path:
        return [on_path]
    raise ProxyNotFound(
        f"hub.proxy_command: {PROXY_BIN} was not found on PATH nor in node_modules/.bin "
        f"of {', '.join(map(str, folders))} (run `npm ci` in the Labspace folder, "
        "or `npm install -g configurable-http-proxy`, or set hub.proxy_command)"
    )


def _set(out: dict[str, dict[str, Any]], cls: str, trait: str, value: Any) -> None:
    out.setdefault(cls, {})[trait] = value


PACKAGE_DIR = Path(__file__).resolve().parent


def _theme(out: dict) -> None:
    """Labspace branding through JupyterHub's template override mechanism."""
    _set(out, "JupyterHub", "template_paths", [str(PACKAGE_DIR / "templates")])
    _set(out, "JupyterHub", "logo_file", str(PACKAGE_DIR / "static" / "labspace-logo.svg"))
    # the footers name the version that runs (labspace/templates/page.html)
    _template_vars(out)["labspace_version"] = __version__


def _template_vars(out: dict) -> dict:
    return out.setdefault("JupyterHub", {}).setdefault("template_vars", {})


def _auth(settings: Settings, state: State, out: dict) -> None:
    # imported here: it loads OAuthenticator (~2 s), which find_proxy never needs
    from . import auth

    kind = settings.get("auth.type")
    refresh = settings.get("auth.refresh_interval")
    _set(out, "Authenticator", "auth_refresh_age", refresh)
    _set(out, "Authenticator", "refresh_pre_spawn", refresh > 0)
    if kind != "shared-password":
        _set(out, "JupyterHub", "authenticator_class", auth.class_path(kind))
        callback = settings.public_url() + "hub/oauth_callback"
        for cls, traits in auth.traits(settings, callback).items():
            out.setdefault(cls, {}).update(traits)
        _set(out, "CryptKeeper", "keys", [k.encode() for k in state.crypt_keys()])
        return
    _set(out, "JupyterHub", "authenticator_class", "shared-password")
    # admins may always sign in; users an admin adds are let in by
    # Authenticator.allow_existing_users, which is on once allowed_users is set
    allowed = set(settings.get("auth.allowed_users")) | set(settings.get("hub.admin_users"))
    _set(out, "Authenticator", "allowed_users", allowed)
    cls = "SharedPasswordAuthenticator"
    _set(out, cls, "admin_password", state.admin_password())
    if settings.get("auth.user_password"):
        _set(out, cls, "user_password", settings.get("auth.user_password"))


def _backend(settings: Settings, state: State, out: dict) -> None:
    kind = settings.get("backend.type")
    _set(out, "JupyterHub", "spawner_class", SPAWNERS[kind])
    mixin = "LabspaceSpawnerMixin"
    _set(out, mixin, "profiles", settings.get("profiles"))
    _set(out, mixin, "backend_settings", settings.get("backend"))
    _set(out, mixin, "spawn_concurrency", settings.get("backend.spawn_concurrency"))
    # `enabled: auto` resolved here, once: every reader sees true or false
    warm = {**settings.get("backend.warm_pool"), "enabled": pool_on(settings.get("backend"))}
    _set(out, mixin, "warm_pool", warm)
    # homes on the host under data_dir: local, and docker with home: bind
    _set(out, mixin, "home_root", str(state.users_dir))


# Labspace's own hub-side features, always on, in the same shape as a service's
# parts: each module's ``hub_parts(settings, state)`` (scopes, nav, hooks)
HUB_PART_MODULES = ("labspace.ops", "labspace.culling", "labspace.metrics")


def service_parts(settings: Settings, state: State) -> list[dict[str, Any]]:
    """What each enabled service adds to the hub (its ``config.hub_parts``),
    then what the hub's own features add (``HUB_PART_MODULES``)."""
    import importlib

    parts = []
    for name in settings_mod.SERVICE_SECTIONS:
        module = settings_mod.service_config(name)
        if module is not None and settings.get(name).get("enabled"):
            parts.append(module.hub_parts(settings, state))
    for name in HUB_PART_MODULES:
        parts.append(importlib.import_module(name).hub_parts(settings, state))
    return parts


def _services(settings: Settings, state: State, out: dict) -> None:
    """Labspace's hub services: processes, roles, scopes, hooks, links and banners.

    Each service says what it needs in ``hub_parts``; this merges them: one
    ``user`` role (``self`` plus what services grant everyone), one
    ``labspace-admin`` role for every hub admin, ``hub.admin_users`` and the
    members of ``auth.admin_groups`` (JupyterHub's own ``admin`` role cannot be
    changed), hook lists appended in section order.
    """
    services, roles, scopes, nav, template_vars = [], [], {}, [], {}
    user_scopes, admin_scopes, spawner = ["self"], [], {}
    for part in service_parts(settings, state):
        services += part.get("services", [])
        roles += part.get("roles", [])
        scopes.update(part.get("custom_scopes", {}))
        user_scopes += part.get("user_scopes", [])
        admin_scopes += part.get("admin_scopes", [])
        nav += part.get("nav", [])
        template_vars.update(part.get("template_vars", {}))
        for trait, value in part.get("spawner", {}).items():
            if isinstance(value, list):
                spawner[trait] = spawner.get(trait, []) + value
            elif isinstance(value, dict):
                spawner[trait] = {**spawner.get(trait, {}), **value}
            else:
                spawner[trait] = value
    for service in services:  # every service page shows the hub's links
        service.setdefault("environment", {})["LABSPACE_NAV"] = json.dumps(nav)
    roles.append({"name": "user", "description": "Every Labspace user", "scopes": user_scopes})
    if admin_scopes:
        roles.append(admin_role(settings, admin_scopes))
    if services:
        _set(out, "JupyterHub", "services", services)
    _set(out, "JupyterHub", "load_roles", roles)
    _set(out, "JupyterHub", "custom_scopes", scopes)
    alerts = [template_vars.pop(k) for k in sorted(template_vars) if k.startswith(ALERTS)]
    template_vars["labspace_alerts"] = Alerts(alerts)
    template_vars["labspace_nav"] = nav
    _template_vars(out).update(template_vars)
    for trait, value in spawner.items():
        _set(out, "LabspaceSpawnerMixin", trait, value)


def _pages(settings: Settings, state: State, out: dict) -> None:
    """The home page's data and Labspace's own hub pages (``hubpages``)."""
    # imported here: it loads JupyterHub's handlers (~1 s), which the launcher never needs
    from . import hubpages

    hubpages.hub_values(settings, state, out)


def admin_role(settings: Settings, scopes: list[str]) -> dict[str, Any]:
    """``labspace-admin``: the services' admin scopes for the same people the hub
    makes admins, ``hub.admin_users`` and, with SSO, whoever is in one of
    ``auth.admin_groups`` (held through the group, so it ends with the membership)."""
    role = {
        "name": "labspace-admin",
        "description": "Administers Labspace's services",
        "scopes": scopes,
        "users": list(settings.get("hub.admin_users")),
    }
    if settings.get("auth.type") != "shared-password" and settings.get("auth.admin_groups"):
        role["groups"] = list(settings.get("auth.admin_groups"))
    return role


ALERTS = "labspace_alerts_"


class Alerts:
    """The banners every hub page shows a person: each service's
    ``labspace_alerts_<name>`` callable ``(user) -> [{"level", "text", "url"}]``,
    merged. A failing service costs its banners, never the page."""

    def __init__(self, sources: list[Callable[[Any], list[dict[str, Any]]]]):
        self.sources = sources

    def __call__(self, user) -> list[dict[str, Any]]:
        if user is None:
            return []
        found = []
        for source in self.sources:
            try:
                found += source(user) or []
            except Exception:  # noqa: BLE001 - a banner is never worth a broken page
                log.exception("Alerts from %r failed", source)
        return found

    def __eq__(self, other):
        return isinstance(other, Alerts) and other.sources == self.sources


def _merge_config(out: dict, extra: dict[str, dict[str, Any]]) -> None:
    """``hub.config`` last: it wins, except that lists of services and roles
    are added to Labspace's own rather than replacing them."""
    for cls, traits in extra.items():
        for trait, value in traits.items():
            current = out.get(cls, {}).get(trait)
            if (cls, trait) in MERGED_LISTS and isinstance(current, list):
                value = current + list(value)
            _set(out, cls, trait, value)


MERGED_LISTS = {("JupyterHub", "services"), ("JupyterHub", "load_roles")}


def _proxy(settings: Settings, state: State, proxy_cmd: list[str], out: dict) -> None:
    """The proxy: the hub's own child on loopback, or with ``hub.proxy_api_url``
    one run separately (the chart's Deployment), which the hub only drives."""
    cls = "ConfigurableHTTPProxy"
    _set(out, cls, "auth_token", state.proxy_token())
    apart = settings.get("hub.proxy_api_url")
    if apart:
        _set(out, cls, "should_start", False)
        _set(out, cls, "api_url", apart.rstrip("/"))
        return
    _set(out, cls, "command", proxy_cmd)
    _set(out, cls, "api_url", f"http://127.0.0.1:{settings.get('hub.proxy_api_port')}")
    _set(out, cls, "pid_file", str(state.proxy_pid_file))


def _hub_address(settings: Settings, out: dict) -> None:
    """Where the hub listens (``hub.hub_ip``) and, with ``hub.connect_host``, the
    URL the proxy and the workspaces use for it (``JUPYTERHUB_API_URL``)."""
    _set(out, "JupyterHub", "hub_ip", settings.get("hub.hub_ip"))
    host = settings.get("hub.connect_host")
    if host:
        url = f"http://{host}:{settings.get('hub.hub_port')}"
        _set(out, "JupyterHub", "hub_connect_url", url)


def build(settings: Settings, state: State, proxy_cmd: list[str]) -> dict[str, dict[str, Any]]:
    """The traitlets values for ``settings``: ``{Class: {trait: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, cls, trait, convert in DIRECT:
        value = settings.get(key)
        _set(out, cls, trait, convert(value) if convert else value)
    _set(out, "JupyterHub", "db_url", state.db_url)
    _set(out, "JupyterHub", "cookie_secret_file", str(state.cookie_secret_file))
    _set(out, "JupyterHub", "pid_file", str(state.data_dir / "jupyterhub.pid"))
    _hub_address(settings, out)
    # a new JupyterHub migrates the hub's database at start, as the services
    # migrate theirs (JupyterHub copies a SQLite file aside first; `labspace
    # backup` before an upgrade covers PostgreSQL)
    _set(out, "JupyterHub", "upgrade_db", True)
    # the app catalog runs apps as named servers
    _set(out, "JupyterHub", "allow_named_servers", True)
    # people land on the home page and press "Start My Server"
    _set(out, "JupyterHub", "redirect_to_server", False)
    if settings.get("hub.public_url"):
        _set(out, "JupyterHub", "public_url", settings.get("hub.public_url"))
    _theme(out)
    _auth(settings, state, out)
    _backend(settings, state, out)
    _proxy(settings, state, proxy_cmd, out)
    tls.hub_values(settings, state, out)
    _services(settings, state, out)
    _pages(settings, state, out)
    _merge_config(out, settings.get("hub.config"))
    return out


def apply(c, values: dict[str, dict[str, Any]]) -> None:
    """Set ``values`` on a traitlets Config object."""
    for cls, traits in values.items():
        for trait, value in traits.items():
            setattr(c[cls], trait, value)


def fail(message: str) -> None:
    """Stop start-up with ``message`` and no traceback."""
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(2)


def proxy_command(settings: Settings) -> list[str]:
    """The proxy's command, or ``[]`` when it runs separately (``hub.proxy_api_url``)."""
    return [] if rules.proxy_runs_apart(settings.values) else find_proxy(settings)


def configure(c, path: str | None = None) -> Settings:
    """Load settings and apply them to ``c``; the body of ``jupyterhub_config.py``."""
    from . import auth, needs

    private_umask()  # the hub's database and files, and its services', are private
    try:
        settings = settings_mod.load(path)
        lacking = needs.missing(settings)  # before build, which imports what they need
        if lacking:
            raise SettingsError(str(settings.source), lacking)
        state = State(settings)
        state.prepare()
        state.forget_stale_proxy_pid()
        values = build(settings, state, proxy_command(settings))
    except SettingsError as e:
        fail(e.report())
    except (StateError, ProxyNotFound, auth.DiscoveryError) as e:
        fail(f"Labspace cannot start: {e}")
    for warning in settings.warnings:
        print(f"Labspace warning: {warning}", file=sys.stderr, flush=True)
    apply(c, values)
    return settings
