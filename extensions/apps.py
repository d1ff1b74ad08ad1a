"""The Labspace apps server extension (``labspace.extensions.apps``).

It serves jupyter-server-proxy's apps itself, so that every app gets:
- readiness by path and status (not "any answer"), a start timeout, a failure
  page with the app's last log lines;
- the lifecycle API ``<base>/labspace-apps/api/apps`` (handlers.py).

At link time it turns off jupyter-server-proxy's own loader (both would route
the same paths); at load time it registers, first name wins:
1. ``c.ServerProxy.servers`` from the server's config (the operator's own);
2. the bundled apps (bundled.py: Data Explorer, Dashboards, TensorBoard);
3. other ``jupyter_serverproxy_servers`` entry points;
4. the catalog's apps from ``LABSPACE_CATALOG_APPS`` (appspec.py validates;
   a bad entry is logged and skipped).
``LABSPACE_STANDALONE_APP=<id>`` makes ``/<id>/`` the server's default URL, and
(under JupyterHub) lets users other than the owner reach that app only (appauth.py).
It also registers launcher metadata and icons, as jupyter-server-proxy would.

Where the loopback is shared with other users' workspaces (the local backend,
docker's ``network: host``: unless ``LABSPACE_LOOPBACK=private``), an app that
would listen on a TCP port is not registered (it has no login: anyone on the
machine could reach it), and jupyter-server-proxy's ``/proxy/<port>`` routes are
off (they would reach other users' ports), and kernels listen on private unix
sockets (kernels.py). Where it is private, ``/proxy/`` is registered with
``ServerProxy.host_allowlist``.
"""

from __future__ import annotations

import base64
import logging
import os
import urllib.parse
from importlib.metadata import entry_points

from jupyter_server.utils import url_path_join as ujoin
from jupyter_server_proxy.api import IconHandler, ServersInfoHandler
from jupyter_server_proxy.config import ServerProcess, ServerProxy
from jupyter_server_proxy.handlers import setup_handlers

from . import appauth, appspec, bundled, kernels
from .handlers import (
    AppAddSlashHandler,
    AppProxyHandler,
    InsideAppHandler,
    ProxyOffHandler,
    api_handlers,
    strip_cdn_links_under,
)
from .runtime import AppConfig, AppRuntime

log = logging.getLogger("labspace.apps")
ICON_TYPES = {"image/svg+xml": ".svg", "image/png": ".png"}
MAX_ICON_BYTES = 256 * 1024


def _jupyter_server_extension_points():
    return [{"module": "labspace.extensions.apps"}]


def _link_jupyter_server_extension(serverapp):
    manager = serverapp.extension_manager
    proxy = manager.extensions.get("jupyter_server_proxy")
    if proxy is not None and proxy.enabled:
        proxy.enabled = False
        serverapp.log.info(
            "labspace-apps: serving jupyter-server-proxy's apps with readiness checks "
            "(jupyter_server_proxy's own loader is off)"
        )
    if appspec.loopback_shared(os.environ) and kernels.use_private_kernels(serverapp.config):
        serverapp.log.info("labspace-apps: kernels on private unix sockets (shared loopback)")
    if kernels.use_prestarted_kernel(serverapp):
        serverapp.log.info("labspace-apps: one kernel started ahead of the first notebook")
    standalone = os.environ.get("LABSPACE_STANDALONE_APP", "").strip()
    if standalone:
        if appspec.APP_ID.match(standalone):
            serverapp.default_url = f"/{standalone}/"
            appauth.link(serverapp, standalone)
        else:
            serverapp.log.error(
                "labspace-apps: LABSPACE_STANDALONE_APP=%r is not an app id", standalone
            )


def icon_file(app_id: str, icon: str, folder: str) -> str:
    """A catalog icon (``data:image/svg+xml;base64,...`` or a PNG) as a file for
    the launcher; "" when there is none or it is not an SVG/PNG data URL."""
    if not icon.startswith("data:") or "," not in icon:
        return ""
    header, payload = icon[5:].split(",", 1)
    media, *params = header.split(";")
    suffix = ICON_TYPES.get(media.strip().lower())
    if not suffix:
        return ""
    try:
        data = (
            base64.b64decode(payload, validate=True)
            if "base64" in params
            else urllib.parse.unquote_to_bytes(payload)
        )
    except ValueError:
        return ""
    if not data or len(data) > MAX_ICON_BYTES:
        return ""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, app_id + suffix)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _config_from_process(sp: ServerProcess, source: str) -> AppConfig:
    path, status = (
        bundled.READINESS.get(sp.name, ("/", None)) if source == "bundled" else ("/", None)
    )
    return AppConfig(
        name=sp.name,
        title=sp.launcher_entry.title or sp.name,
        command=sp.command,
        environment=sp.environment,
        timeout=sp.timeout,
        ready_path=path,
        ready_status=status,
        unix_socket=sp.unix_socket or False,
        port=sp.port,
        icon=sp.launcher_entry.icon_path,
        category=sp.launcher_entry.category,
        source=source,
    )


def catalog_processes(
    text: str | None, icon_dir: str, log: logging.Logger = log, shared_loopback: bool = False
) -> list[tuple[ServerProcess, AppConfig]]:
    apps, problems = appspec.parse_catalog_apps(text, shared_loopback)
    for problem in problems:
        log.error("labspace-apps: %s", problem)
    found = []
    for app in apps:
        if app.bundled:
            continue  # a bundled app: registered from bundled.py already
        icon = icon_file(app.id, app.icon, icon_dir) if app.icon else ""
        sp = ServerProcess(
            name=app.id,
            command=list(app.command),
            environment=app.environment,
            timeout=app.timeout,
            absolute_url=app.absolute_url,
            unix_socket=app.unix_socket,
            launcher_entry={
                "title": app.title,
                "icon_path": icon,
                "category": bundled.LAUNCHER_CATEGORY,
            },
            new_browser_tab=True,
        )
        config = AppConfig(
            name=app.id,
            title=app.title,
            command=list(app.command),
            environment=app.environment,
            timeout=app.timeout,
            ready_path=app.ready_path,
            ready_status=app.ready_status,
            unix_socket=app.unix_socket,
            cwd=app.cwd,
            icon=icon,
            category=app.category,
            source="catalog",
            version=app.version,
        )
        found.append((sp, config))
    return found


def _entry_point_processes(log: logging.Logger = log) -> list[ServerProcess]:
    found = []
    for ep in entry_points(group="jupyter_serverproxy_servers"):
        try:
            options = ep.load()()
            if options is None:  # not installed here
                continue
            found.append(ServerProcess(name=ep.name, **options))
        except Exception as e:  # a broken third-party entry point must not stop the server
            log.error("labspace-apps: entry point %s skipped: %s", ep.name, e)
    return found


def collect(
    config: ServerProxy,
    catalog_text: str | None,
    icon_dir: str,
    log: logging.Logger = log,
    shared_loopback: bool = False,
):
    """Every app to serve, in priority order: [(ServerProcess, AppConfig | None)];
    None for servers without a command (jupyter-server-proxy proxies them as is,
    or, for :data:`bundled.INSIDE`, the Jupyter server serves them itself)."""
    chosen: dict[str, tuple[ServerProcess, AppConfig | None]] = {}

    def add(sp: ServerProcess, app: AppConfig | None, source: str):
        if sp.name in chosen:
            log.warning("labspace-apps: %s %s skipped: the name is taken", source, sp.name)
            return
        if source != "config" and (sp.name in appspec.RESERVED_IDS or not sp.command):
            log.warning(
                "labspace-apps: %s %s skipped: no command or reserved name", source, sp.name
            )
            return
        if shared_loopback and sp.command and not sp.unix_socket:
            log.error(
                "labspace-apps: %s %s skipped: it %s", source, sp.name, appspec.SHARED_LOOPBACK
            )
            return
        chosen[sp.name] = (sp, app)

    for sp in config.servers.values():
        add(sp, _config_from_process(sp, "config") if sp.command else None, "config")
    for name, make in bundled.BUNDLED.items():
        options = make()
        if options is None:
            continue
        sp = ServerProcess(name=name, **options)
        if name in bundled.INSIDE:
            chosen.setdefault(name, (sp, None))
        else:
            add(sp, _config_from_process(sp, "bundled"), "bundled")
    for sp in _entry_point_processes(log):
        if sp.name not in bundled.BUNDLED:
            add(sp, _config_from_process(sp, "entry-point"), "entry point")
    for sp, app in catalog_processes(catalog_text, icon_dir, log, shared_loopback):
        add(sp, app, "catalog app")
    return list(chosen.values())


def _app_handlers(serverapp, apps, runtimes: dict[str, AppRuntime]) -> list[tuple]:
    """The routes of each app: its proxy (or, inside the server, a redirect)."""
    base_url = serverapp.web_app.settings["base_url"]
    home = os.path.expanduser("~")
    handlers = []
    for sp, app in apps:
        if sp.name in bundled.INSIDE and app is None:
            path, front = bundled.INSIDE[sp.name]
            handler, kwargs = InsideAppHandler, {"path": path, "home": front}
        elif app is None:
            handler, kwargs = sp.make_proxy_handler()
        else:
            runtime = AppRuntime(app, base_url, home, serverapp.log)
            runtimes[sp.name] = runtime
            attributes = {
                k: v
                for k, v in sp.get_proxy_attributes().items()
                if k not in ("requested_port", "requested_unix_socket", "timeout")
            }
            handler, kwargs = AppProxyHandler, {"runtime": runtime, "attributes": attributes}
        if handler is not None:
            handlers.append((ujoin(base_url, sp.name, r"(.*)"), handler, kwargs))
            handlers.append((ujoin(base_url, sp.name), AppAddSlashHandler))
    return handlers


def _inside_apps_enabled(serverapp, apps):
    """Drop the apps of :data:`bundled.INSIDE` whose server extension is off."""
    extensions = serverapp.extension_manager.extensions
    voila = extensions.get("voila.server_extension") or extensions.get("voila")
    if voila is not None and voila.enabled:
        return apps
    serverapp.log.warning("labspace-apps: Voilà's server extension is off: no Dashboards")
    return [(sp, app) for sp, app in apps if sp.name not in bundled.INSIDE]


def _load_jupyter_server_extension(serverapp):
    kernels.prestart_on_arrival(serverapp)
    standalone = os.environ.get("LABSPACE_STANDALONE_APP", "").strip()
    if appspec.APP_ID.match(standalone):
        appauth.load(serverapp, standalone)
    web_app = serverapp.web_app
    base_url = web_app.settings["base_url"]
    shared = appspec.loopback_shared(os.environ)
    config = ServerProxy(parent=serverapp)
    # the catalog's icons as files, next to the server's other runtime files
    icon_dir = os.path.join(serverapp.runtime_dir, "labspace-icons")
    catalog = os.environ.get("LABSPACE_CATALOG_APPS")
    apps = collect(config, catalog, icon_dir, serverapp.log, shared)
    apps = _inside_apps_enabled(serverapp, apps)
    runtimes: dict[str, AppRuntime] = {}
    handlers = _app_handlers(serverapp, apps, runtimes)
    processes = [sp for sp, _ in apps]
    icons = {
        sp.name: sp.launcher_entry.icon_path
        for sp in processes
        if sp.launcher_entry.enabled and sp.launcher_entry.icon_path
    }
    handlers += [
        (
            ujoin(base_url, "server-proxy/servers-info"),
            ServersInfoHandler,
            {"server_processes": processes},
        ),
        (ujoin(base_url, "server-proxy/icon/(.*)"), IconHandler, {"icons": icons}),
        *api_handlers(base_url, runtimes),
    ]
    if shared:
        handlers.append((ujoin(base_url, "proxy/.*"), ProxyOffHandler))
    web_app.add_handlers(".*", handlers)
    if not shared:
        setup_handlers(web_app, config)
    web_app.add_transform(strip_cdn_links_under(ujoin(base_url, "voila/")))
    web_app.settings["labspace_apps"] = runtimes
    serverapp.log.info(
        "labspace-apps: serving %s%s",
        ", ".join(sp.name for sp in processes) or "no apps",
        "; /proxy/<port> off (shared loopback)" if shared else "",
    )


load_jupyter_server_extension = _load_jupyter_server_extension
