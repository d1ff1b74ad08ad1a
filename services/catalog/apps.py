"""App definitions: the strict schema, the rules one schema keyword cannot say,
the bundled apps, and what a workspace gets. Pure functions, golden-tested.

A *definition* is one app as written in ``catalog.apps`` of labspace.yaml or sent
to the API: ``id``, ``version``, ``title``, ``description``, ``category``,
``icon``, ``groups``, ``kind``, ``disabled`` and ``launch``.
"""

from __future__ import annotations

import base64
import json
import mimetypes
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from labspace import rules
from labspace.extensions import appspec

# the apps bundled with the workspace image (extensions/, jupyter_serverproxy_servers)
BUNDLED_IDS = ("data-explorer", "dashboards")
_BUNDLED = [
    {
        "id": "data-explorer",
        "title": "Data Explorer",
        "description": "Open CSV, Parquet and NetCDF files from your home and your "
        "mounted data, and plot them interactively.",
        "category": "Data",
        "icon": "icons/data-explorer.svg",
    },
    {
        "id": "dashboards",
        "title": "Dashboards",
        "description": "Voilà: run any notebook of your home as an interactive app.",
        "category": "Dashboards",
        "icon": "icons/dashboards.svg",
    },
]
ICON_TYPES = {".svg": "image/svg+xml", ".png": "image/png"}
MAX_ICON_BYTES = 256 * 1024


@cache
def section_schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("settings.schema.json").read_text()
    return json.loads(text)


def app_schema() -> dict[str, Any]:
    """The JSON Schema of one app definition (``catalog.apps[]``)."""
    return section_schema()["properties"]["apps"]["items"]


def with_defaults(defn: dict[str, Any]) -> dict[str, Any]:
    """``defn`` with every schema default filled in (``launch`` included)."""
    return rules.with_defaults(app_schema(), defn)


def schema_problems(defn: Any, where: str = "app") -> list[str]:
    """One line per schema error, ``where.key: what is wrong (hint)``, worded as
    labspace.yaml's are."""
    return rules.schema_problems(app_schema(), defn, where)


def loopback_shared(values: dict[str, Any]) -> bool:
    """Whether workspaces share one 127.0.0.1 under these settings: the local
    backend and docker's ``network: host`` do, unless the operator of a one-person
    platform declared it private (``hub.config.Spawner.environment``
    ``LABSPACE_LOOPBACK: private``); kubernetes and other docker networks do not."""
    backend = values.get("backend") or {}
    hub_config = (values.get("hub") or {}).get("config") or {}
    env = (hub_config.get("Spawner") or {}).get("environment") or {}
    if str(env.get("LABSPACE_LOOPBACK", "")).strip().lower() == "private":
        return False
    kind = backend.get("type", "local")
    if kind == "kubernetes":
        return False
    if kind == "docker":
        return (backend.get("docker") or {}).get("network", "host") == "host"
    return True


def launch_problems(
    defn: dict[str, Any],
    where: str,
    profiles: list[str] | None = None,
) -> list[str]:
    """The catalog's own rules across keys of one schema-valid definition
    (defaults filled): a bundled app's command, standalone profiles. What a
    workspace needs of a command is the app contract's (:func:`contract_problems`)."""
    problems = []
    launch = defn.get("launch", {})
    key = f"{where}.launch"
    if launch.get("bundled", False) and launch.get("command", []):
        problems.append(f"{key}.command: a bundled app has no command (drop one of the two)")
    profile = launch.get("profile", "")
    if profile and defn["kind"] != "standalone":
        problems.append(f"{key}.profile: only standalone apps have a profile (drop it)")
    if profile and profiles is not None and profile not in profiles:
        names = ", ".join(profiles) or "none"
        problems.append(f"{key}.profile: no profile {profile!r} (profiles: {names})")
    return problems


def contract_problems(
    defn: dict[str, Any], where: str = "app", shared_loopback: bool = False
) -> list[str]:
    """What a workspace would refuse in a schema-valid definition (defaults
    filled), one line each, ``where.key: what is wrong (the fix)``: the app
    contract is extensions/appspec.py, so the catalog keeps no app a workspace
    would skip. On a shared loopback (:func:`loopback_shared`) an app on a TCP
    ``{port}`` is refused: it has no login of its own, and every workspace on the
    machine could reach it."""
    entry = workspace_entry(defn)
    if defn.get("launch", {}).get("bundled"):
        entry["launch"] = {"bundled": True}
    return [r.at(where) for r in appspec.refusals(entry, shared_loopback)]


def definition_problems(
    defn: Any,
    where: str = "app",
    profiles: list[str] | None = None,
    shared_loopback: bool = False,
) -> list[str]:
    """Everything wrong with one definition: the schema first, then the rules
    across keys, then the workspace's contract."""
    problems = schema_problems(defn, where)
    if problems:
        return problems
    defn = with_defaults(defn)
    return launch_problems(defn, where, profiles) + contract_problems(defn, where, shared_loopback)


def profile_slugs(values: dict[str, Any]) -> list[str]:
    """The profile slugs of full settings (the implicit ``default`` when none)."""
    return [p["slug"] for p in values.get("profiles") or []] or ["default"]


def problems(values: dict[str, Any]) -> list[str]:
    """Semantic checks of the ``catalog`` section of full settings."""
    section = values.get("catalog") or {}
    apps = section.get("apps") or []
    slugs = profile_slugs(values)
    shared = loopback_shared(values)
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, app in enumerate(apps):
        if not isinstance(app, dict):
            continue
        where = f"catalog.apps[{i}]"
        app_id = app.get("id")
        if app_id in seen:
            out.append(f"{where}.id: {app_id!r} is also catalog.apps[{seen[app_id]}] (one each)")
        elif isinstance(app_id, str):
            seen[app_id] = i
        launch = app.get("launch") if isinstance(app.get("launch"), dict) else {}
        if app_id in BUNDLED_IDS and not launch.get("bundled"):
            out.append(
                f"{where}.id: {app_id!r} is the id of a bundled app (rename it, or set "
                "launch.bundled: true to change the bundled app's title, groups or icon)"
            )
        if isinstance(app.get("kind"), str) and isinstance(app.get("launch", {}), dict):
            app = with_defaults(app)
            out += launch_problems(app, where, slugs) + contract_problems(app, where, shared)
    return out


def icon_data(icon: str, base_dir: Path | None = None) -> str:
    """``icon`` as a data: URL; a path is read (relative to ``base_dir``)."""
    if not icon or icon.startswith("data:"):
        return icon
    path = Path(icon).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    kind = ICON_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if kind not in ICON_TYPES.values():
        raise ValueError(f"icon {icon!r}: use an .svg or .png file")
    data = path.read_bytes()
    if len(data) > MAX_ICON_BYTES:
        raise ValueError(f"icon {icon!r}: {len(data)} bytes (at most {MAX_ICON_BYTES})")
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


@cache
def default_icon() -> str:
    """The icon of an app that has none."""
    return icon_data("icons/app.svg", Path(__file__).resolve().parent)


def bundled_definitions() -> list[dict[str, Any]]:
    """Catalog entries for the apps of the workspace image, icons inlined."""
    here = Path(__file__).resolve().parent
    out = []
    for entry in _BUNDLED:
        defn = {**entry, "version": "1", "kind": "proxied", "launch": {"bundled": True}}
        # the workspace extension's own icon (the one its launcher shows), else ours
        try:
            shipped = resources.files("labspace.extensions").joinpath(entry["icon"])
            icon = str(shipped) if shipped.is_file() else entry["icon"]
        except ModuleNotFoundError:
            icon = entry["icon"]
        defn["icon"] = icon_data(icon, here)
        out.append(with_defaults(defn))
    return out


def allowed(groups: list[str], user_groups: set[str] | list[str]) -> bool:
    """Whether someone in ``user_groups`` may see an app open to ``groups``."""
    return not groups or bool(set(groups) & set(user_groups))


def workspace_entry(defn: dict[str, Any]) -> dict[str, Any]:
    """One item of ``LABSPACE_CATALOG_APPS`` (the contract with extensions/)."""
    launch = defn["launch"]
    return {
        "id": defn["id"],
        "version": defn["version"],
        "title": defn["title"],
        "description": defn.get("description", ""),
        "category": defn.get("category", ""),
        "icon": defn.get("icon", ""),
        "launch": {
            "command": list(launch.get("command", [])),
            "unix_socket": launch.get("unix_socket", False),
            "ready_path": launch.get("ready_path", "/"),
            "ready_status": launch.get("ready_status", 200),
            "timeout": launch.get("timeout", 30),
            "environment": dict(launch.get("environment", {})),
            "cwd": launch.get("cwd", ""),
        },
    }
