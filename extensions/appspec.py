"""What a proxied app is, and strict validation of the catalog's list of them.

Pure functions, no I/O: the catalog passes the apps a workspace may run as the
JSON list ``LABSPACE_CATALOG_APPS`` (one object per app, see the contract), and
:func:`parse_catalog_apps` turns it into :class:`AppSpec` objects. Unlike
jupyter-server-proxy, an unknown key is an error: a bad entry is reported with a
message naming the app and the key, and skipped; the other entries still load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# an app id is one URL path segment: /user/<name>/<id>/
APP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
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


def loopback_shared(environ: Mapping[str, str]) -> bool:
    """Whether other users' workspaces share this one's 127.0.0.1 (the local backend,
    docker with network: host). Unless the hub said otherwise, assume they do."""
    return environ.get(LOOPBACK_ENV, "").strip().lower() != "private"


class AppSpecError(ValueError):
    """An entry that cannot be registered; the message names the app and the fix."""


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


def _check_template(where: str, text: str) -> None:
    unknown = _template_fields(text) - TEMPLATE_FIELDS
    if unknown:
        raise AppSpecError(
            f"{where}: unknown placeholder {{{sorted(unknown)[0]}}} "
            "(use {port}, {unix_socket} or {base_url})"
        )


def _string(app: str, key: str, value, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise AppSpecError(f"app {app}: {key} must be a string, not {type(value).__name__}")
    return value


def _command(app: str, launch: dict, unix_socket: bool) -> tuple[str, ...]:
    command = launch.get("command")
    if not isinstance(command, list) or not command:
        raise AppSpecError(
            f"app {app}: launch.command must be a non-empty list of arguments "
            '(e.g. ["my-app", "--port={port}"]), never a shell string'
        )
    if not all(isinstance(arg, str) and arg for arg in command):
        raise AppSpecError(f"app {app}: every launch.command argument must be a non-empty string")
    for arg in command:
        _check_template(f"app {app}: launch.command", arg)
    wanted = "unix_socket" if unix_socket else "port"
    if not any(wanted in _template_fields(arg) for arg in command):
        raise AppSpecError(
            f"app {app}: launch.command must contain {{{wanted}}} so the app listens where "
            "the workspace proxies to"
        )
    return tuple(command)


def _environment(app: str, launch: dict) -> dict[str, str]:
    env = launch.get("environment") or {}
    if not isinstance(env, dict):
        raise AppSpecError(f"app {app}: launch.environment must be an object of strings")
    for key, value in env.items():
        if not (isinstance(key, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key)):
            raise AppSpecError(f"app {app}: launch.environment has a bad variable name {key!r}")
        if not isinstance(value, str):
            raise AppSpecError(f"app {app}: launch.environment.{key} must be a string")
        _check_template(f"app {app}: launch.environment.{key}", value)
    return dict(env)


def _cwd(app: str, launch: dict) -> str:
    cwd = _string(app, "launch.cwd", launch.get("cwd"))
    parts = [p for p in cwd.split("/") if p not in ("", ".")]
    if cwd.startswith("/") or ".." in parts:
        raise AppSpecError(
            f"app {app}: launch.cwd must be a folder relative to the home folder, "
            f"without '..' (got {cwd!r})"
        )
    return "/".join(parts)


def _readiness(app: str, launch: dict) -> tuple[str, int, float]:
    path = _string(app, "launch.ready_path", launch.get("ready_path"), "/") or "/"
    if not path.replace("{base_url}", "/").startswith("/"):
        raise AppSpecError(f"app {app}: launch.ready_path must start with '/' (got {path!r})")
    _check_template(f"app {app}: launch.ready_path", path)
    status = launch.get("ready_status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise AppSpecError(f"app {app}: launch.ready_status must be an HTTP status (e.g. 200)")
    timeout = launch.get("timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise AppSpecError(f"app {app}: launch.timeout must be a number of seconds")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise AppSpecError(f"app {app}: launch.timeout must be between 0 and {MAX_TIMEOUT:g} s")
    return path, status, float(timeout)


def _flag(app: str, launch: dict, key: str) -> bool:
    value = launch.get(key, False)
    if not isinstance(value, bool):
        raise AppSpecError(f"app {app}: launch.{key} must be true or false")
    return value


def parse_app(entry, shared_loopback: bool = False) -> AppSpec:
    """One catalog entry -> AppSpec, or AppSpecError naming what is wrong. On a
    shared loopback an app on a TCP ``{port}`` is refused (it has no login)."""
    if not isinstance(entry, dict):
        raise AppSpecError(f"an app must be an object, not {type(entry).__name__}")
    app_id = entry.get("id")
    if not isinstance(app_id, str) or not APP_ID.match(app_id):
        raise AppSpecError(
            f"app id {app_id!r} is not a valid path name "
            "(lower-case letters, digits, '-' and '_', at most 63)"
        )
    if app_id in RESERVED_IDS:
        raise AppSpecError(f"app {app_id}: the id is a path the workspace already serves")
    unknown = sorted(set(entry) - APP_KEYS)
    if unknown:
        raise AppSpecError(f"app {app_id}: unknown key {unknown[0]!r}")
    launch = entry.get("launch")
    if not isinstance(launch, dict):
        raise AppSpecError(f"app {app_id}: launch must be an object")
    unknown = sorted(set(launch) - LAUNCH_KEYS)
    if unknown:
        raise AppSpecError(f"app {app_id}: unknown key launch.{unknown[0]!r}")
    bundled = _flag(app_id, launch, "bundled")
    unix_socket = _flag(app_id, launch, "unix_socket")
    ready_path, ready_status, timeout = _readiness(app_id, launch)
    command = () if bundled else _command(app_id, launch, unix_socket)
    if shared_loopback and not (bundled or unix_socket):
        raise AppSpecError(f"app {app_id}: {SHARED_LOOPBACK}")
    return AppSpec(
        id=app_id,
        title=_string(app_id, "title", entry.get("title"), app_id) or app_id,
        version=str(entry.get("version") or ""),
        description=_string(app_id, "description", entry.get("description")),
        category=_string(app_id, "category", entry.get("category"), "Apps") or "Apps",
        icon=_string(app_id, "icon", entry.get("icon")),
        command=command,
        unix_socket=unix_socket,
        ready_path=ready_path,
        ready_status=ready_status,
        timeout=timeout,
        environment=_environment(app_id, launch),
        cwd=_cwd(app_id, launch),
        absolute_url=_flag(app_id, launch, "absolute_url"),
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
