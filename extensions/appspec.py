"""What a proxied app is: the one app contract, and the strict parsing of the
catalog's list of apps.

The contract says which app definitions a workspace refuses and why
(:func:`refusals`); the catalog asks it when an app is saved or read from
labspace.yaml, so an app the workspace would skip is refused there, with the
reason. It also spells the app id once (:data:`ID_PATTERN`, and the route
fragments :data:`ID_ROUTE` and :data:`NAME_ROUTE`).

Pure functions, no I/O, standard library only: a workspace imports this without
the services. The catalog passes the apps a workspace may run as the JSON list
``LABSPACE_CATALOG_APPS`` (one object per app), and :func:`parse_catalog_apps`
turns it into :class:`AppSpec` objects. Unlike jupyter-server-proxy, an unknown
key is an error: a bad entry is reported with a message naming the app and the
key, and skipped; the other entries still load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# an app id is one URL path segment (/user/<name>/<id>/) and, for a standalone
# app, the name of its named server, which JupyterHub (6+) creates only for a
# "safe slug" (jupyterhub.slugs.is_valid_safe_slug): a NEW id (an app saved or
# given a new version) is one, whatever the kind (an app may change kind). The
# catalog's schema spells the same pattern.
ID_MAX = 30
ID_PATTERN = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
ID_HINT = (
    "lower-case letters and digits, single '-' between them, starting with a letter, "
    f"at most {ID_MAX}, e.g. my-viewer"
)
NEW_APP_ID = re.compile(rf"^(?=.{{1,{ID_MAX}}}\Z){ID_PATTERN}\Z")
# what a workspace serves: any id a catalog may hold, one saved before the rule
# above was tightened included (nothing stored is lost)
APP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
SERVED_HINT = "lower-case letters, digits, '-' and '_', at most 63"
# route fragments, one group each: any id a catalog may hold (checked when a
# version is saved); the name of any app a workspace serves (the operator's
# jupyter-server-proxy servers have free names)
ID_ROUTE = r"([a-z0-9][a-z0-9-]*)"
NAME_ROUTE = r"([^/]+)"
# path names the workspace itself serves: an app must not shadow them
RESERVED_IDS = frozenset(
    {
        "api",
        "lab",
        "tree",
        "files",
        "view",
        "edit",
        "static",
        "proxy",
        "nbconvert",
        "kernelspecs",
        "labspace-apps",
        "server-proxy",
        "login",
        "logout",
        "voila",
        "doc",
        "notebooks",
        "terminals",
    }
)
APP_KEYS = {"id", "version", "title", "description", "category", "icon", "launch", "kind", "groups"}
LAUNCH_KEYS = {
    "command",
    "unix_socket",
    "ready_path",
    "ready_status",
    "timeout",
    "environment",
    "cwd",
    "absolute_url",
    "bundled",
    "profile",
}
TEXT_KEYS = ("title", "description", "category", "icon")
TEMPLATE_FIELDS = {"port", "unix_socket", "base_url"}
MAX_TIMEOUT = 600.0
# LABSPACE_LOOPBACK=private: the workspace has a network namespace of its own
# (kubernetes, a docker network other than host); the hub's catalog hook sets it
LOOPBACK_ENV = "LABSPACE_LOOPBACK"
SHARED_LOOPBACK = (
    "listens on a TCP port of 127.0.0.1, which every workspace on this machine shares: "
    "other users could reach it without logging in. Make it listen on a unix socket "
    "(launch.unix_socket: true and {unix_socket} in the command)"
)
# the same, as the catalog and the settings say it (key launch.unix_socket)
SHARED_LOOPBACK_FIX = (
    "an app on a TCP '{port}' listens on 127.0.0.1, which every workspace of this "
    "platform shares: other users could open it without logging in. Set unix_socket: "
    "true and put '{unix_socket}' in the command (TCP ports are for kubernetes and "
    "docker networks other than host)"
)


def loopback_shared(environ: Mapping[str, str]) -> bool:
    """Whether other users' workspaces share this one's 127.0.0.1 (the local backend,
    docker with network: host). Unless the hub said otherwise, assume they do."""
    return environ.get(LOOPBACK_ENV, "").strip().lower() != "private"


@dataclass(frozen=True)
class Refusal:
    """One reason the workspace refuses an app definition: the key at fault
    (dotted, e.g. ``launch.cwd``; ``""`` for the entry as a whole) and what is
    wrong, with the fix, worded to follow the key."""

    key: str
    problem: str
    said: str = ""  # the workspace's own wording, where "<key> <problem>" reads badly

    def line(self, app_id: str | None) -> str:
        """The workspace's line: ``app <id>: <key> <problem>``."""
        text = self.said or " ".join(filter(None, (self.key, self.problem)))
        if app_id is not None:
            return f"app {app_id}: {text}"
        return f"app {text}" if self.key else text

    def at(self, where: str) -> str:
        """The settings' and the catalog API's line: ``<where>.<key>: <problem>``."""
        return f"{where}.{self.key}: {self.problem}" if self.key else f"{where}: {self.problem}"


class AppSpecError(ValueError):
    """An entry that cannot be registered; the message names the app and the fix."""

    def __init__(self, refusal: Refusal, app_id: str | None):
        super().__init__(refusal.line(app_id))
        self.refusal = refusal


def _refuse(app: str | None, key: str, problem: str, said: str = "") -> AppSpecError:
    return AppSpecError(Refusal(key, problem, said), app)


@dataclass(frozen=True)
class AppSpec:
    """One proxied app, as Labspace registers it with jupyter-server-proxy."""

    id: str
    title: str
    command: tuple[str, ...]
    version: str = ""
    description: str = ""
    category: str = "Apps"
    icon: str = ""  # a data: URL, a file path, or ""
    unix_socket: bool = False
    ready_path: str = "/"
    ready_status: int | None = 200  # None: any status below 500
    timeout: float = 30.0
    environment: dict[str, str] = field(default_factory=dict)
    cwd: str = ""  # relative to the home folder
    absolute_url: bool = False
    bundled: bool = False


def _template_fields(text: str) -> set[str]:
    return set(re.findall(r"\{([^{}]*)\}", text))


def _check_template(app: str, key: str, text: str) -> None:
    unknown = _template_fields(text) - TEMPLATE_FIELDS
    if unknown:
        raise _refuse(
            app,
            key,
            f"has an unknown placeholder {{{sorted(unknown)[0]}}} "
            "(use {port}, {unix_socket} or {base_url})",
            f"{key}: unknown placeholder {{{sorted(unknown)[0]}}} "
            "(use {port}, {unix_socket} or {base_url})",
        )


def _string(app: str, key: str, value, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise _refuse(app, key, f"must be a string, not {type(value).__name__}")
    return value


def _command(app: str, launch: dict, unix_socket: bool) -> tuple[str, ...]:
    command = launch.get("command")
    key = "launch.command"
    if not isinstance(command, list) or not command:
        raise _refuse(
            app,
            key,
            "the app needs a command, e.g. [my-app, --socket, '{unix_socket}'] with "
            "unix_socket: true (or bundled: true for an app of the image)",
            f"{key} must be a non-empty list of arguments "
            '(e.g. ["my-app", "--port={port}"]), never a shell string',
        )
    if not all(isinstance(arg, str) and arg for arg in command):
        raise _refuse(
            app,
            key,
            "must be a list of non-empty strings",
            f"every {key} argument must be a non-empty string",
        )
    for arg in command:
        _check_template(app, key, arg)
    wanted = "unix_socket" if unix_socket else "port"
    if not any(wanted in _template_fields(arg) for arg in command):
        fix = (
            "unix_socket is true: the app must listen on the socket it is given"
            if unix_socket
            else "the app must listen on the port it is given, or set unix_socket: true "
            "and use '{unix_socket}'"
        )
        raise _refuse(
            app,
            key,
            f"'{{{wanted}}}' is missing ({fix})",
            f"{key} must contain {{{wanted}}} so the app listens where the workspace proxies to",
        )
    return tuple(command)


def _environment(app: str, launch: dict) -> dict[str, str]:
    env = launch.get("environment") or {}
    if not isinstance(env, dict):
        raise _refuse(app, "launch.environment", "must be an object of strings")
    for key, value in env.items():
        if not (isinstance(key, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", key)):
            raise _refuse(
                app,
                "launch.environment",
                f"has a bad variable name {key!r} (letters, digits and '_', not starting "
                "with a digit)",
                f"launch.environment has a bad variable name {key!r}",
            )
        if not isinstance(value, str):
            raise _refuse(app, f"launch.environment.{key}", "must be a string")
        _check_template(app, f"launch.environment.{key}", value)
    return dict(env)


def _cwd(app: str, launch: dict) -> str:
    cwd = _string(app, "launch.cwd", launch.get("cwd"))
    parts = [p for p in cwd.split("/") if p not in ("", ".")]
    if cwd.startswith("/") or ".." in parts:
        raise _refuse(
            app,
            "launch.cwd",
            f"must be a folder relative to the home folder, without '..' (got {cwd!r})",
        )
    return "/".join(parts)


def _readiness(app: str, launch: dict) -> tuple[str, int, float]:
    path = _string(app, "launch.ready_path", launch.get("ready_path"), "/") or "/"
    if not path.replace("{base_url}", "/").startswith("/"):
        raise _refuse(app, "launch.ready_path", f"must start with '/' (got {path!r})")
    _check_template(app, "launch.ready_path", path)
    status = launch.get("ready_status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise _refuse(app, "launch.ready_status", "must be an HTTP status (e.g. 200)")
    timeout = launch.get("timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise _refuse(app, "launch.timeout", "must be a number of seconds")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise _refuse(app, "launch.timeout", f"must be between 0 and {MAX_TIMEOUT:g} s")
    return path, status, float(timeout)


def _flag(app: str, launch: dict, key: str) -> bool:
    value = launch.get(key, False)
    if not isinstance(value, bool):
        raise _refuse(app, f"launch.{key}", "must be true or false")
    return value


def _app_id(entry, new: bool) -> str:
    """The entry's id, or the refusal of an entry that cannot be named."""
    if not isinstance(entry, dict):
        raise _refuse(None, "", f"an app must be an object, not {type(entry).__name__}")
    app_id = entry.get("id")
    rule, hint = (NEW_APP_ID, ID_HINT) if new else (APP_ID, SERVED_HINT)
    if not isinstance(app_id, str) or not rule.match(app_id):
        raise _refuse(None, "id", f"{app_id!r} is not a valid path name ({hint})")
    return app_id


def _reserved(app_id: str) -> None:
    if app_id in RESERVED_IDS:
        taken = ", ".join(sorted(RESERVED_IDS))
        fix = f"choose another id; the workspace's own paths are {taken}"
        raise _refuse(
            app_id,
            "id",
            f"{app_id!r} is a path the workspace already serves ({fix})",
            f"the id is a path the workspace already serves ({fix})",
        )


def _launch(app_id: str, entry: dict) -> dict:
    unknown = sorted(set(entry) - APP_KEYS)
    if unknown:
        raise _refuse(app_id, unknown[0], "unknown key", f"unknown key {unknown[0]!r}")
    launch = entry.get("launch")
    if not isinstance(launch, dict):
        raise _refuse(app_id, "launch", "must be an object")
    unknown = sorted(set(launch) - LAUNCH_KEYS)
    if unknown:
        raise _refuse(
            app_id, f"launch.{unknown[0]}", "unknown key", f"unknown key launch.{unknown[0]!r}"
        )
    return launch


def _checks(app_id: str, entry: dict, launch: dict, shared_loopback: bool) -> list:
    """The checks of a named entry whose launch is an object, in the order a
    workspace reports them; each returns a value or raises AppSpecError."""

    def loopback():
        on_tcp = launch.get("command") and not (launch.get("bundled") is True or unix_socket())
        if shared_loopback and on_tcp:
            raise _refuse(app_id, "launch.unix_socket", SHARED_LOOPBACK_FIX, SHARED_LOOPBACK)

    def unix_socket():
        return launch.get("unix_socket") is True

    def command():
        return () if launch.get("bundled") is True else _command(app_id, launch, unix_socket())

    return [
        lambda: _flag(app_id, launch, "bundled"),
        lambda: _flag(app_id, launch, "unix_socket"),
        lambda: _readiness(app_id, launch),
        command,
        loopback,
        *(lambda k=k: _string(app_id, k, entry.get(k)) for k in TEXT_KEYS),
        lambda: _environment(app_id, launch),
        lambda: _cwd(app_id, launch),
        lambda: _flag(app_id, launch, "absolute_url"),
    ]


def _collect(checks) -> list[Refusal]:
    found = []
    for check in checks:
        try:
            check()
        except AppSpecError as e:
            found.append(e.refusal)
    return found


def refusals(entry, shared_loopback: bool = False, new: bool = True) -> list[Refusal]:
    """Every reason a workspace refuses the app ``entry`` (one item of
    ``LABSPACE_CATALOG_APPS``), in the order it reports them; empty when it would
    serve it. On a shared loopback an app on a TCP ``{port}`` is refused (it has
    no login of its own). ``new``: the app is being saved, so its id must follow
    today's rule (:data:`NEW_APP_ID`); a workspace serves any id a catalog holds."""
    try:
        app_id = _app_id(entry, new)
    except AppSpecError as e:
        return [e.refusal]
    found = _collect([lambda: _reserved(app_id)])
    try:
        launch = _launch(app_id, entry)
    except AppSpecError as e:
        return [*found, e.refusal]
    return found + _collect(_checks(app_id, entry, launch, shared_loopback))


def parse_app(entry, shared_loopback: bool = False) -> AppSpec:
    """One catalog entry -> AppSpec, or AppSpecError naming the first thing wrong
    (see :func:`refusals`)."""
    found = refusals(entry, shared_loopback, new=False)
    if found:
        app_id = entry.get("id") if isinstance(entry, dict) else None
        named = isinstance(app_id, str) and APP_ID.match(app_id)
        raise AppSpecError(found[0], app_id if named else None)
    launch = entry["launch"]
    bundled = launch.get("bundled", False)
    unix_socket = launch.get("unix_socket", False)
    app_id = entry["id"]
    ready_path, ready_status, timeout = _readiness(app_id, launch)
    return AppSpec(
        id=app_id,
        title=entry.get("title") or app_id,
        version=str(entry.get("version") or ""),
        description=entry.get("description") or "",
        category=entry.get("category") or "Apps",
        icon=entry.get("icon") or "",
        command=() if bundled else tuple(launch["command"]),
        unix_socket=unix_socket,
        ready_path=ready_path,
        ready_status=ready_status,
        timeout=timeout,
        environment=_environment(app_id, launch),
        cwd=_cwd(app_id, launch),
        absolute_url=launch.get("absolute_url", False),
        bundled=bundled,
    )


def parse_catalog_apps(
    text: str | None, shared_loopback: bool = False
) -> tuple[list[AppSpec], list[str]]:
    """``LABSPACE_CATALOG_APPS`` -> (valid apps, one problem line per skipped entry).

    Never raises: a workspace must start even when the catalog sent nonsense.
    """
    if not text or not text.strip():
        return [], []
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as e:
        return [], [f"LABSPACE_CATALOG_APPS is not JSON ({e}); no catalog apps registered"]
    if not isinstance(entries, list):
        return [], ["LABSPACE_CATALOG_APPS must be a JSON list; no catalog apps registered"]
    apps: list[AppSpec] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        try:
            app = parse_app(entry, shared_loopback)
        except AppSpecError as e:
            problems.append(f"LABSPACE_CATALOG_APPS[{index}]: {e}; skipped")
            continue
        if app.id in seen:
            problems.append(
                f"LABSPACE_CATALOG_APPS[{index}]: app {app.id} is listed twice; skipped"
            )
            continue
        seen.add(app.id)
        apps.append(app)
    return apps, problems
