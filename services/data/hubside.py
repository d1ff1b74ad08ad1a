"""The data service's spawner hook, run in the hub process at every start.

``DataGrants(base_url, token, on_unreachable, roots, backend)`` is a
``before_start`` hook ``(spawner, spec)``. It asks the data service which
datasets the person may use (``POST <base_url>api/internal/start`` with the
service's own token and the person's groups as the hub knows them; the service
records the start in its audit) and never opens the service's database. Then:

- it checks every dataset again here (``rules.check_dataset`` against the hub's
  own ``data.roots`` and backend: a host path with ``..``, outside every root or
  through a link out of its root is dropped and logged; the answer is never
  trusted);
- each mountable dataset becomes a ``labspace.profiles.Mount`` (read-only for a
  read grant; ``sub_path`` for volume, pvc and nfs), added to a copy of the
  spec that replaces ``spawner.workspace_spec`` (the mixin applies it), so the
  backends need no data-specific code;
- the s3 datasets' credentials go into one boto-style INI file (a profile
  ``labspace-<id>`` each) delivered as a ``WorkspaceFile`` outside the home,
  readable by the workspace's user only, and gone with the workspace;
- ``LABSPACE_DATASETS`` announces the datasets to the workspace, as JSON
  ``[{id, title, kind, level, path}]`` (s3: ``url``, ``endpoint_url``,
  ``region``, ``profile``, ``credentials_file``), without any secret.

When the service does not answer (or answers 5xx, as it does while starting),
``data.on_unreachable`` decides: ``start-without-data`` starts the workspace
without datasets and the spawn page says so, ``refuse`` refuses the start (503).
Either way the hub's log says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from typing import Any

from tornado import web

from labspace.profiles import Mount, WorkspaceFile, WorkspaceSpec
from labspace.services.kit.caller import ServiceCaller, Unreachable

from . import rules

# a child of the hub's own logger: these lines appear in the hub's log, in its format
log = logging.getLogger("JupyterHub.data")

ON_UNREACHABLE = ("start-without-data", "refuse")
UNREACHABLE_PROGRESS = "The data service is not answering: this workspace starts without datasets"
UNREACHABLE_START = (
    "The data service is not answering, so workspaces cannot start right now; "
    "try again in a few minutes or tell your administrator"
)
CREDENTIALS_NAME = "data-credentials.ini"
MOUNT_PREFIX = "data-"  # a dataset's mount name: data-<id>
_INI_VALUE = re.compile(r"[^\x00-\x1f\x7f]+")


def profile_name(dataset_id: str) -> str:
    """The credentials profile of an s3 dataset."""
    return f"labspace-{dataset_id}"


def credentials_ini(credentials: dict[str, dict[str, str]]) -> str:
    """``{dataset id: credential}`` as a boto-style credentials file, one
    ``[labspace-<id>]`` section each. Values with a line break or other control
    character are refused (ValueError): they could write another section."""
    lines = []
    for dataset_id, cred in sorted(credentials.items()):
        lines.append(f"[{profile_name(dataset_id)}]")
        for key, ini_key in (
            ("access_key_id", "aws_access_key_id"),
            ("secret_access_key", "aws_secret_access_key"),
            ("session_token", "aws_session_token"),
        ):
            value = cred.get(key)
            if value is None or (key == "session_token" and not value):
                continue
            if not isinstance(value, str) or not _INI_VALUE.fullmatch(value):
                raise ValueError(f"the {key} of {dataset_id} is not a one-line text")
            lines.append(f"{ini_key} = {value}")
        lines.append("")
    return "\n".join(lines)


def workspace_path(target: str, home: str | None) -> str:
    """Where a mount target is in the workspace: ``~/x`` in ``home`` when known."""
    if target.startswith("~/") and home:
        return os.path.join(home, target[2:])
    return target


def _checked(d: dict[str, Any], roots: list[str], backend: str) -> dict[str, Any]:
    """The service's dataset checked again here; DataError when refused."""
    fields = ("id", "title", "kind", "source", "sub_path", "mount_path", "s3")
    mine = {k: d.get(k) for k in fields if d.get(k) is not None}
    if mine.get("kind") == "s3":
        mine.pop("mount_path", None)  # nothing is mounted: where it would be is moot
    # a kubernetes host dataset is a folder of the node: no link to follow here
    return rules.check_dataset(mine, roots, backend, resolve_links=backend != "kubernetes")


def plan(
    datasets: list[dict[str, Any]],
    roots: list[str],
    backend: str,
    home: str | None,
    files_dir: str,
) -> tuple[tuple[Mount, ...], tuple[WorkspaceFile, ...], list[dict[str, Any]]]:
    """Pure: the service's answer → ``(mounts, files, LABSPACE_DATASETS
    entries)``. A dataset refused by the rules here is left out and logged."""
    mounts, entries, creds = [], [], {}
    for d in datasets:
        level = d.get("level")
        if level not in rules.LEVELS:
            log.error("Data service gave dataset %r with level %r: left out", d.get("id"), level)
            continue
        try:
            ok = _checked(d, roots, backend)
        except rules.DataError as e:
            log.error("Dataset %r refused at mount time: %s", d.get("id"), e.message)
            continue
        target = rules.mount_path(ok, backend)
        entry = {"id": ok["id"], "title": ok["title"], "kind": ok["kind"], "level": level}
        if ok["kind"] != "s3":
            mounts.append(
                Mount(
                    f"{MOUNT_PREFIX}{ok['id']}",
                    ok["kind"],
                    ok["source"],
                    target,
                    read_only=level != "write",
                    sub_path=ok["sub_path"],
                )
            )
            entries.append({**entry, "path": workspace_path(target, home)})
            continue
        s3 = ok["s3"]
        entry.update(
            path="",
            url=f"s3://{s3['bucket']}/{s3['prefix']}",
            endpoint_url=s3["endpoint"],
            region=s3["region"],
            profile="",
            credentials_file="",
        )
        cred = d.get("credentials")
        if isinstance(cred, dict):
            try:
                credentials_ini({ok["id"]: cred})
            except ValueError as e:
                log.error("Credential of dataset %r left out: %s", ok["id"], e)
            else:
                creds[ok["id"]] = cred
                entry["profile"] = profile_name(ok["id"])
                entry["credentials_file"] = f"{files_dir}/{CREDENTIALS_NAME}"
        entries.append(entry)
    files = (WorkspaceFile(CREDENTIALS_NAME, credentials_ini(creds)),) if creds else ()
    return tuple(mounts), files, entries


def with_datasets(
    spec: WorkspaceSpec, mounts: tuple[Mount, ...], files: tuple[WorkspaceFile, ...]
) -> WorkspaceSpec:
    """``spec`` plus the datasets' mounts and files (a profile's own mounts
    first; a mount of the same target as a profile's is left out)."""
    taken = {m.target for m in spec.mounts}
    extra = tuple(m for m in mounts if m.target not in taken)
    for m in mounts:
        if m.target in taken:
            log.warning("Dataset mount %s: %s is a profile's mount already", m.name, m.target)
    return dataclasses.replace(spec, mounts=spec.mounts + extra, files=spec.files + files)


class DataGrants:
    """The ``before_start`` hook of one hub."""

    def __init__(
        self,
        base_url: str,
        token: str,
        on_unreachable: str = "start-without-data",
        roots: list[str] | None = None,
        backend: str = "local",
        timeout: float = 3.0,
        tries: int = 2,
    ):
        if on_unreachable not in ON_UNREACHABLE:
            raise ValueError(f"data.on_unreachable: one of {', '.join(ON_UNREACHABLE)}")
        if backend not in rules.BACKEND_KINDS:
            raise ValueError(f"backend.type: one of {', '.join(rules.BACKEND_KINDS)}")
        self.caller = ServiceCaller("data", base_url, token, timeout=timeout, tries=tries)
        self.on_unreachable = on_unreachable
        self.roots = list(roots or [])
        self.backend = backend

    def __repr__(self) -> str:
        return f"DataGrants({self.caller!r}, on_unreachable={self.on_unreachable!r})"

    def __deepcopy__(self, memo):
        return self  # traitlets copies config values; the hook holds no per-spawner state

    async def ask(self, spawner) -> list[dict[str, Any]]:
        """The person's datasets; ``Unreachable`` for no answer, a 5xx, a
        service still starting, or an answer that is not the contract's (a 403
        or 404 is not this service's token or API)."""
        body = {
            "user": spawner.user.name,
            "server": spawner.name,
            "groups": sorted(spawner.user_groups()),
            "backend": self.backend,
        }
        status, answer = await self.caller.call_retrying("POST", "start", body)
        datasets = answer.get("datasets") if isinstance(answer, dict) else None
        if status != 200 or not isinstance(datasets, list):
            raise Unreachable(f"HTTP {status}")
        return [d for d in datasets if isinstance(d, dict)]

    async def __call__(self, spawner, spec: WorkspaceSpec) -> None:
        spawner.extra_env["LABSPACE_DATASETS"] = "[]"
        try:
            datasets = await self.ask(spawner)
        except Unreachable as e:
            self.unreachable(spawner, str(e))
            return
        self.grant(spawner, spec, datasets)

    def grant(self, spawner, spec: WorkspaceSpec, datasets: list[dict[str, Any]]) -> None:
        """The service's answer into this start: mounts and files in a new spec
        for the backend, ``LABSPACE_DATASETS`` in its environment."""
        home = getattr(spawner, "home_dir", None) if self.backend == "local" else None
        mounts, files, entries = plan(datasets, self.roots, self.backend, home, spawner.files_dir)
        spawner.extra_env["LABSPACE_DATASETS"] = json.dumps(entries)
        if mounts or files:
            spawner.workspace_spec = with_datasets(spec, mounts, files)
        log.info(
            "%s gets datasets %s",
            spawner._log_name,
            ", ".join(f"{e['id']} ({e['level']})" for e in entries) or "none",
        )

    def unreachable(self, spawner, error: str) -> None:
        """No answer: start without datasets, or refuse, as ``on_unreachable`` says."""
        refused = self.on_unreachable == "refuse"
        log.error(
            "Data service unreachable at %s's start (%s): %s (on_unreachable: %s)",
            spawner._log_name,
            error,
            "refused" if refused else "no datasets",
            self.on_unreachable,
        )
        if refused:
            raise web.HTTPError(503, UNREACHABLE_START)
        spawner.emit(UNREACHABLE_PROGRESS, 12)
