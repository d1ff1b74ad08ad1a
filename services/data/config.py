"""What the data section means for settings checks and for the hub.

- ``problems(values)``: rules the schema cannot say, one line each, naming the
  key and the fix (duplicate ids, host paths outside ``data.roots``, kinds the
  backend cannot mount, grants named twice, credentials on a dataset that is not
  s3, a credential's environment variable or file that is missing or unreadable);
- ``service_environment(settings, state)``: ``LABSPACE_DATA_CONFIG`` for the
  service process; its database URL and the settings' s3 credentials are 0600
  files under ``data_dir/secrets``, never values in its environment;
- ``hub_parts(settings, state)``: the managed data service, its role with the
  least scopes, the custom scopes, what users and admins get, the
  ``before_start`` hook that asks the service for a person's datasets at every
  start (``hubside.DataGrants``), and the "Data" link (builds dicts and files,
  starts nothing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labspace import rules as settings_rules
from labspace.rules import SettingValueError
from labspace.services import hub_side_url, managed_service, service_role
from labspace.state import keep_secret

from . import rules

NAME = "data"
SCOPE = "custom:labspace-data"
READ, ADMIN = f"{SCOPE}:read", f"{SCOPE}:admin"
# What the service may do in the hub (jupyterhub/scopes.py), each for a reason;
# all for the admin page's "running workspaces still holding a revoked grant":
# - ``list:users``: list the users that have a running server;
# - ``read:servers``: their servers' models (which are running, since when);
# - ``read:users:groups``: their groups now, to compare with the grants they
#   started with (the groups at a start come from the hub in the start call);
# - ``delete:servers``: stop such a server when an admin presses Stop. Not
#   ``servers``: the service never starts one.
SERVICE_SCOPES = ["list:users", "read:servers", "read:users:groups", "delete:servers"]
CREDENTIALS_FILE = "data-settings-credentials.json"
CREDENTIAL_KEYS = ("access_key_id", "secret_access_key", "session_token")
CREDENTIAL_FIX = (
    'JSON such as {"access_key_id": "...", "secret_access_key": "...", "session_token": "..."}'
    " (session_token optional)"
)


def _backend(values: dict[str, Any]) -> str:
    backend = values.get("backend") or {}
    return backend.get("type") or "local" if isinstance(backend, dict) else "local"


def read_credential(key: str, ref: dict[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The credential that ``ref`` (``{"env": NAME}`` or ``{"file": path}``) names,
    checked; raises SettingValueError with the problem line (never the value)."""
    if "env" in ref:
        name = ref["env"]
        if name not in environ:
            raise SettingValueError(
                f"{key}.env: {name} is not set in the hub's environment "
                f"(set it to {CREDENTIAL_FIX} before starting the hub)"
            )
        text, where = environ[name], f"{key}.env: {name}"
    else:
        path = Path(ref.get("file") or "")
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise SettingValueError(f"{key}.file: {path} does not exist (create it)") from None
        except OSError as e:
            raise SettingValueError(
                f"{key}.file: {path} cannot be read ({e.strerror}; let the hub's user read it)"
            ) from None
        where = f"{key}.file: {path}"
    try:
        value = json.loads(text)
    except ValueError:
        raise SettingValueError(f"{where} does not hold JSON ({CREDENTIAL_FIX})") from None
    if not isinstance(value, dict):
        raise SettingValueError(f"{where} does not hold a JSON object ({CREDENTIAL_FIX})")
    unknown = sorted(set(value) - set(CREDENTIAL_KEYS))
    missing = [k for k in CREDENTIAL_KEYS[:2] if not isinstance(value.get(k), str) or not value[k]]
    if unknown or missing:
        what = f"has an unknown key {unknown[0]!r}" if unknown else f"has no {missing[0]}"
        raise SettingValueError(f"{where} {what} ({CREDENTIAL_FIX})")
    if value.get("session_token") is not None and not isinstance(value["session_token"], str):
        raise SettingValueError(f"{where}: session_token is not a text ({CREDENTIAL_FIX})")
    return {k: value[k] for k in CREDENTIAL_KEYS if value.get(k)}


def _credential_problems(where: str, d: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    creds = d.get("credentials")
    if not creds:
        return []
    if d.get("kind") != "s3":
        return [
            f"{where}.credentials: only s3 datasets have credentials (this one is "
            f"{d.get('kind')}; remove them)"
        ]
    out = []
    for level, ref in sorted(creds.items()):
        try:
            read_credential(f"{where}.credentials.{level}", ref, environ)
        except SettingValueError as e:
            out.append(str(e))
    return out


def _grant_problems(where: str, grants: list[dict[str, Any]]) -> list[str]:
    out, seen = [], {}
    for j, grant in enumerate(grants or []):
        key = f"{where}.grants[{j}]"
        try:
            g = rules.check_grant(grant)
        except rules.DataError as e:
            out.append(f"{key}: {e.message}")
            continue
        subject = (g["subject_type"], g["subject"])
        if subject in seen:
            out.append(
                f"{key}: {g['subject_type']} {g['subject']!r} is also granted by "
                f"{where}.grants[{seen[subject]}] (one grant each; the strongest would win)"
            )
        seen.setdefault(subject, j)
    return out


def problems(values: dict[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """Semantic problems of ``values["data"]`` (full settings, defaults filled)."""
    section = values.get("data") or {}
    if not isinstance(section, dict):
        return []
    environ = os.environ if environ is None else environ
    backend = _backend(values)
    roots = list(section.get("roots") or [])
    out = settings_rules.database_url_problems("data.db_url", section.get("db_url"))
    out += settings_rules.port_clashes(values, prefix="data.")
    for i, root in enumerate(roots):
        if ".." in root.split("/"):
            out.append(f"data.roots[{i}]: {root!r} has a '..' part (give the path without it)")
    seen: dict[str, int] = {}
    for i, d in enumerate(section.get("datasets") or []):
        where = f"data.datasets[{i}]"
        # kubernetes: a host dataset is a folder of the node, not of this host
        follow = backend != "kubernetes"
        out += rules.dataset_problems(where, d, roots, backend, resolve_links=follow)
        if not isinstance(d, dict):
            continue
        if d.get("id") in seen:
            out.append(f"{where}.id: {d['id']!r} is also data.datasets[{seen[d['id']]}] (one each)")
        seen.setdefault(d.get("id"), i)
        out += _grant_problems(where, d.get("grants") or [])
        out += _credential_problems(where, d, environ)
    return out


def settings_credentials(
    datasets: list[dict[str, Any]], environ: Mapping[str, str]
) -> dict[str, dict[str, dict[str, str]]]:
    """``{dataset id: {level: credential}}`` read from what the settings name."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for i, d in enumerate(datasets):
        for level, ref in sorted((d.get("credentials") or {}).items()):
            key = f"data.datasets[{i}].credentials.{level}"
            out.setdefault(d["id"], {})[level] = read_credential(key, ref, environ)
    return out


def service_environment(settings, state, environ: Mapping[str, str] | None = None):
    """What the service process needs (``LABSPACE_DATA_CONFIG``): the datasets
    of the settings without their credentials; the credentials they name, read
    here from the hub's environment or files, go into a 0600 file under
    ``data_dir/secrets`` (``credentials_file``, "" when none) which the service
    stores encrypted at its start. The database URL, which may hold a password,
    is a file too (``db_url_file``)."""
    environ = os.environ if environ is None else environ
    datasets = list(settings.get("data.datasets") or [])
    creds = settings_credentials(datasets, environ)
    creds_path = Path(state.data_dir) / "secrets" / CREDENTIALS_FILE
    secrets: dict[str, str | Path] = {}
    if creds:
        secrets["credentials"] = keep_secret(creds_path, json.dumps(creds, sort_keys=True))
    elif creds_path.exists():
        creds_path.unlink()  # credentials taken out of the settings are gone
    config = {
        "base_url": settings.get("hub.base_url"),
        "backend": settings.get("backend.type"),
        "roots": list(settings.get("data.roots") or []),
        "datasets": [{k: v for k, v in d.items() if k != "credentials"} for d in datasets],
        "credentials_file": "",
    }
    return state.service_environment(NAME, config, secrets)


def hub_parts(settings, state) -> dict[str, Any]:
    """The data pieces of the hub's configuration (empty when disabled)."""
    if not settings.get("data.enabled"):
        return {}
    from .hubside import DataGrants

    service = managed_service(
        NAME,
        settings,
        state,
        description="Datasets: what your groups may use, read-only or writable",
        scopes=[READ, ADMIN],
        environment=service_environment(settings, state),
    )
    hook = DataGrants(
        hub_side_url(settings, NAME),
        service["api_token"],
        on_unreachable=settings.get("data.on_unreachable"),
        roots=list(settings.get("data.roots") or []),
        backend=settings.get("backend.type"),
    )
    return {
        "services": [service],
        "roles": [
            service_role(
                NAME,
                "What the data service may do: see running servers and users' groups, stop servers",
                SERVICE_SCOPES,
            )
        ],
        "custom_scopes": {
            READ: {"description": "See the datasets granted to you or your groups."},
            ADMIN: {
                "description": "See every dataset; change datasets, grants and credentials; "
                "read the audit trail; stop workspaces holding revoked grants.",
                "subscopes": [READ],
            },
        },
        "user_scopes": [f"access:services!service={NAME}", READ],
        "admin_scopes": [f"access:services!service={NAME}", ADMIN],
        "spawner": {"before_start": [hook]},
        "nav": [{"title": "Data", "url": f"/services/{NAME}/", "admin": False}],
    }
