"""What ``labspace version`` reports: what is installed here, what runs, and the
revision of every database against the newest the installed code knows.

- installed: Labspace and the libraries it runs on, Python, the proxy;
- running: asked of the hub at its local address (or ``--url``): JupyterHub's
  version from ``/hub/api`` (no token needed) and, with a token that may
  ``read:hub`` (``LABSPACE_TOKEN``), Labspace's, from ``/hub/api/info`` (the
  version of the spawner's package); each service on answers or not;
- databases: the Alembic revision stored in the hub's and each service's
  database, and the newest one of the installed code. A database behind the
  newest migrates at the next start (``JupyterHub.upgrade_db`` for the hub's,
  each service's migrations for theirs).

Nothing here writes: a SQLite file that does not exist is reported, never
made; a database URL (it may hold a password) is never printed.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from . import __version__

LIBRARIES = ("jupyterhub", "jupyterlab", "traitlets", "tornado", "sqlalchemy")
SERVICES = ("accounting", "catalog", "data")
# each database's Alembic version table (services that share one database keep apart)
VERSION_TABLES = {
    "hub": "alembic_version",
    "accounting": "alembic_version",
    "catalog": "catalog_alembic_version",
    "data": "data_alembic_version",
}
TIMEOUT = 5.0


def installed(proxy: str) -> dict[str, str]:
    """``name -> version`` of what is installed here (``proxy``: the proxy's)."""
    found = {"labspace": __version__}
    for dist in LIBRARIES:
        try:
            found[dist] = dist_version(dist)
        except PackageNotFoundError:
            found[dist] = "(not installed)"
    found["python"] = sys.version.split()[0]
    found["configurable-http-proxy"] = proxy
    return found


def migrations(name: str) -> Path:
    """The Alembic scripts of database ``name``."""
    if name == "hub":
        import jupyterhub

        return Path(jupyterhub.__file__).parent / "alembic"
    if name == "accounting":
        from .services.accounting.db import MIGRATIONS

        return Path(str(MIGRATIONS))
    if name == "catalog":
        from .services.catalog.store import MIGRATIONS
    else:
        from .services.data.store import MIGRATIONS
    return Path(MIGRATIONS)


def newest(name: str) -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(migrations(name))).get_current_head() or ""


def known(name: str, revision: str) -> bool:
    """Whether the installed code has migration ``revision`` of database ``name``."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory(str(migrations(name))).get_revision(revision) is not None
    except CommandError:
        return False


def stored(url: str, table: str, key: str) -> tuple[str | None, str]:
    """``(revision, note)`` stored in the database at ``url``: the revision, or
    None and why not (no database yet, unreadable)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            return None, "no database yet (made at the first start)"
        url = f"sqlite:///file:{path}?mode=ro&uri=true"  # read only: never made or changed
    args = {"connect_timeout": int(TIMEOUT)} if url.startswith("postgresql") else {}
    try:
        engine = create_engine(url, connect_args=args)
    except (SQLAlchemyError, ImportError, ValueError) as e:
        return None, f"cannot be read ({type(e).__name__}: check {key})"
    try:
        with engine.connect() as conn:
            value = conn.execute(text(f"SELECT version_num FROM {table}")).scalar()  # noqa: S608
    except SQLAlchemyError as e:
        if "no such table" in str(e) or "does not exist" in str(e):
            return None, "no tables yet (made at the first start)"
        return None, f"cannot be read ({type(e).__name__}: check {key} and its server)"
    finally:
        engine.dispose()
    return value, ""


def databases(settings) -> dict[str, dict[str, Any]]:
    """Each database's stored and newest revision (the services that are on)."""
    from .rules import SettingValueError
    from .state import State

    state = State(settings)
    names = ["hub", *(n for n in SERVICES if settings.get(f"{n}.enabled"))]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            url = state.db_url if name == "hub" else state.service_db_url(name)
        except SettingValueError as e:
            out[name] = {"revision": None, "newest": newest(name), "note": str(e)}
            continue
        revision, note = stored(url, VERSION_TABLES[name], f"{name}.db_url")
        out[name] = {"revision": revision, "newest": newest(name)}
        if revision is not None and not known(name, revision):
            out[name]["known"] = False
        if note:
            out[name]["note"] = note
    return out


def running(url: str, token: str, services: list[str]) -> dict[str, Any]:
    """What the hub at ``url`` says it runs; ``state`` is ``running`` or ``not
    running``."""
    import httpx

    report: dict[str, Any] = {"url": url, "state": "not running"}
    headers = {"Authorization": f"token {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=TIMEOUT, headers=headers) as client:
        try:
            root = client.get("hub/api/")
        except httpx.HTTPError:
            return report
        if root.status_code != 200 or "version" not in _json(root):
            report["state"] = f"something else answers (HTTP {root.status_code})"
            return report
        report.update(state="running", jupyterhub=_json(root)["version"], labspace=None)
        info = client.get("hub/api/info") if token else None
        if info is not None and info.status_code == 200:
            report["labspace"] = (_json(info).get("spawner") or {}).get("version")
        elif token:
            report["labspace_note"] = f"the token may not read:hub (HTTP {info.status_code})"
        else:
            report["labspace_note"] = "set LABSPACE_TOKEN to a token that may read:hub"
        report["services"] = {name: _answers(client, name) for name in services}
    return report


def _answers(client, name: str) -> str:
    import httpx

    try:
        r = client.get(f"services/{name}/api/openapi.json")
    except httpx.HTTPError:
        return "not answering"
    return "up" if r.status_code < 500 else f"not answering (HTTP {r.status_code})"


def _json(response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def lines(report: dict[str, Any]) -> list[str]:
    """The report for people: one ``name value`` line each; what is installed
    first, then what runs and the databases, Python and the proxy last."""
    inst = dict(report["installed"])
    tail = [f"{k} {inst.pop(k)}" for k in ("python", "configurable-http-proxy")]
    out = [f"{k} {v}" for k, v in inst.items()]
    run = report["running"]
    if run["state"] != "running":
        out.append(f"hub at {run['url']}: {run['state']}")
    else:
        labspace = run.get("labspace") or f"? ({run.get('labspace_note', 'unknown')})"
        out.append(f"hub at {run['url']}: JupyterHub {run['jupyterhub']}, Labspace {labspace}")
        for name, state in run.get("services", {}).items():
            out.append(f"{name} service: {state}")
    for name, db in report["databases"].items():
        if db["revision"] is None:
            out.append(f"{name} database: {db.get('note', 'unknown')}")
        elif not db.get("known", True):
            out.append(
                f"{name} database: {db['revision']} (newer than this Labspace knows: "
                "made by a later release; to go back, restore the backup taken before it)"
            )
        elif db["revision"] == db["newest"]:
            out.append(f"{name} database: {db['revision']} (newest)")
        else:
            out.append(
                f"{name} database: {db['revision']} ({db['newest']} is newest: "
                "it migrates at the next start)"
            )
    return out + tail
