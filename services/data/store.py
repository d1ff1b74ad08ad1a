"""The data service's database: datasets, grants, credentials and the audit trail.

``DataStore`` is the one place that reads and writes the tables, on a
``kit.db.Database``: every query runs on the database's own threads
(``await store.list_datasets(...)``), never on the event loop; only ``seed``
is synchronous (the service's factory runs it on those threads at start).

Every change of a dataset, a grant or a credential adds an audit event in the
same transaction (who, when, before, after, reason), so the trail cannot miss
a change that happened. Credentials are stored sealed (``crypto.Vault``) and
leave the store only through ``start`` (the hub side's ``api/internal/start``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labspace.services.kit.db import Database

from . import audit as trail
from . import rules
from .changes import (
    FIELDS,
    add_dataset,
    change_dataset,
    find_grant,
    given,
    remove_dataset,
    s3_entry,
    write_credential,
    write_grant,
)
from .crypto import Vault
from .models import MAX_SIZE, Credential, Dataset, Grant, iso

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LEVELS = ("read", "write")
log = logging.getLogger("labspace.data")


class StoreError(Exception):
    """A request the store refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Who:
    """A person as the grants see them: a name and the groups the hub knows."""

    user: str
    groups: frozenset[str]


def dataset_model(
    ds: Dataset, backend: str, creds: set[str], level: str | None = None
) -> dict[str, Any]:
    """The API view of a dataset: credentials only as whether each is set."""
    out = given(ds)
    out["mount_path"] = rules.mount_path(out, backend)
    out["size"] = size_of(ds)
    out["tags"] = list(ds.tags or [])
    out["credentials"] = {lv: lv in creds for lv in LEVELS}
    out["source_of"] = ds.source_of
    out["created"] = iso(ds.created)
    out["updated"] = iso(ds.updated)
    out["level"] = level
    return out


def size_of(ds: Dataset) -> int | None:
    """The size given, else the one measured (host datasets), else None."""
    return ds.size if ds.size is not None else ds.measured


def grant_model(g: Grant) -> dict[str, Any]:
    return {
        "dataset": g.dataset_id,
        "subject_type": g.subject_type,
        "subject": g.subject,
        "level": g.level,
        "granted_by": g.granted_by,
        "granted_at": iso(g.granted_at),
        "source_of": g.source_of,
    }


def _creds(s: Session, ids: list[str] | None = None) -> dict[str, set[str]]:
    q = select(Credential.dataset_id, Credential.level)
    if ids is not None:
        q = q.where(Credential.dataset_id.in_(ids))
    out: dict[str, set[str]] = {}
    for dataset_id, level in s.execute(q):
        out.setdefault(dataset_id, set()).add(level)
    return out


def _levels(s: Session, who: Who) -> dict[str, str]:
    """Dataset id -> the strongest level ``who`` holds (own grant or a group's)."""
    q = select(Grant.dataset_id, Grant.level).where(
        or_(
            and_(Grant.subject_type == "user", Grant.subject == who.user),
            and_(Grant.subject_type == "group", Grant.subject.in_(sorted(who.groups))),
        )
    )
    held: dict[str, list[str]] = {}
    for dataset_id, level in s.execute(q):
        held.setdefault(dataset_id, []).append(level)
    return {k: rules.strongest(v) for k, v in held.items()}


def _require(s: Session, dataset_id: str, who: Who | None = None, *, lock: bool = False) -> Dataset:
    """The dataset; 404 when absent or (``who``) not granted, the same answer.
    ``lock``: its row is locked until the transaction ends (PostgreSQL; SQLite's
    writing transactions hold the whole database), so two changes of a dataset or
    its grants never read the same "before"."""
    ds = s.get(Dataset, dataset_id, with_for_update=lock or None)
    if ds is None or (who is not None and dataset_id not in _levels(s, who)):
        raise StoreError(404, f"No such dataset: {dataset_id}")
    return ds


class DataStore:
    """Datasets, grants, credentials and the audit trail in one ``Database``."""

    def __init__(self, db: Database, vault: Vault, roots: list[str], backend: str):
        self.db = db
        self.vault = vault
        self.roots = list(roots)
        self.backend = backend

    def check(self, raw: Any) -> dict[str, Any]:
        """A dataset as stored (``rules.check_dataset``), or ``StoreError(400)``."""
        if not isinstance(raw, dict):
            raise StoreError(400, "The body must be a JSON object (a dataset)")
        try:
            # on kubernetes a host dataset is a folder of the node: links on this
            # machine's disk say nothing about it (``..``, roots and siblings still count)
            d = rules.check_dataset(
                raw, self.roots, self.backend, resolve_links=self.backend != "kubernetes"
            )
        except rules.DataError as e:
            raise StoreError(e.status, e.message) from None
        if d.get("size") is not None and d["size"] > MAX_SIZE:
            raise StoreError(400, f"size: at most {MAX_SIZE} bytes (8 EiB)")
        return {"id": d["id"], **{k: d.get(k) for k in FIELDS}}

    def model(self, s: Session, ds: Dataset, level: str | None = None) -> dict[str, Any]:
        return dataset_model(ds, self.backend, _creds(s, [ds.id]).get(ds.id, set()), level)

    # -- datasets ---------------------------------------------------------------

    def _list(self, s: Session, who: Who | None) -> list[dict[str, Any]]:
        creds = _creds(s)
        levels = _levels(s, who) if who is not None else {}
        q = select(Dataset).order_by(Dataset.id)
        if who is not None:
            q = q.where(Dataset.id.in_(sorted(levels)))
        return [
            dataset_model(ds, self.backend, creds.get(ds.id, set()), levels.get(ds.id))
            for ds in s.scalars(q)
        ]

    async def list_datasets(self, who: Who | None = None) -> list[dict[str, Any]]:
        """Every dataset (``who`` None: admins), else those ``who`` holds a grant
        for, each with ``level``."""
        return await self.db.read(self._list, who)

    async def get(self, dataset_id: str, who: Who | None = None) -> dict[str, Any]:
        """One dataset; 404 when absent or (``who``) not granted."""

        def work(s: Session) -> dict[str, Any]:
            ds = _require(s, dataset_id, who)
            return self.model(s, ds, _levels(s, who).get(ds.id) if who else None)

        return await self.db.read(work)

    async def create(self, raw: Any, actor: str) -> dict[str, Any]:
        def work(s: Session) -> dict[str, Any]:
            d = self.check(raw)
            if s.get(Dataset, d["id"]) is not None:
                raise StoreError(409, f"Dataset {d['id']!r} exists already (update it instead)")
            ds = add_dataset(s, d, actor, "api")
            s.flush()
            return self.model(s, ds)

        try:
            return await self.db.run(work)
        except IntegrityError:
            raise StoreError(409, "That dataset exists already (update it instead)") from None

    def _settings_only(self, ds: Dataset, what: str) -> None:
        if ds.source_of == "settings":
            raise StoreError(
                409,
                f"Dataset {ds.id!r} is defined in labspace.yaml (data.datasets): {what} it there",
            )

    async def update(self, dataset_id: str, raw: Any, actor: str) -> dict[str, Any]:
        """Change the keys of ``raw``; the others keep their value."""
        if not isinstance(raw, dict) or not raw:
            raise StoreError(400, "The body must be a JSON object with the keys to change")
        if "id" in raw:
            raise StoreError(400, "id: cannot change (the dataset's id is in the path)")

        def work(s: Session) -> dict[str, Any]:
            ds = _require(s, dataset_id, lock=True)
            self._settings_only(ds, "change")
            change_dataset(s, ds, self.check({**given(ds), **raw}), actor)
            return self.model(s, ds)

        return await self.db.run(work)

    async def delete(self, dataset_id: str, actor: str) -> None:
        def work(s: Session) -> None:
            ds = _require(s, dataset_id, lock=True)
            self._settings_only(ds, "remove")
            remove_dataset(s, ds, actor)

        await self.db.run(work)

    # -- grants and credentials ---------------------------------------------------

    async def grants(self, dataset_id: str) -> list[dict[str, Any]]:
        def work(s: Session) -> list[dict[str, Any]]:
            _require(s, dataset_id)
            q = (
                select(Grant)
                .where(Grant.dataset_id == dataset_id)
                .order_by(Grant.subject_type, Grant.subject)
            )
            return [grant_model(g) for g in s.scalars(q)]

        return await self.db.read(work)

    async def set_grant(
        self,
        dataset_id: str,
        subject: tuple[str, str],
        level: str | None,
        *,
        actor: str,
        reason: str,
    ) -> dict[str, Any] | None:
        """Add or change (``level``) or remove (None) a grant; 404 when the dataset
        (or, to remove, the grant) does not exist."""

        def work(s: Session) -> dict[str, Any] | None:
            _require(s, dataset_id, lock=True)
            if level is None and find_grant(s, dataset_id, *subject) is None:
                raise StoreError(404, f"No grant of {dataset_id} to {subject[0]} {subject[1]!r}")
            g = write_grant(
                s, dataset_id, *subject, level, actor=actor, reason=reason, source_of="api"
            )
            s.flush()
            return grant_model(g) if g is not None else None

        try:
            return await self.db.run(work)
        except IntegrityError:  # a concurrent add of the same grant (PostgreSQL)
            raise StoreError(409, "That grant changed meanwhile; try again") from None

    async def set_credential(
        self, dataset_id: str, level: str, credential: dict[str, str] | None, actor: str
    ) -> None:
        """Store (sealed) or remove an s3 dataset's credential for ``level``."""

        def work(s: Session) -> None:
            ds = _require(s, dataset_id, lock=True)
            if ds.kind != "s3":
                raise StoreError(
                    400,
                    f"Dataset {dataset_id!r} is of kind {ds.kind}: only s3 datasets "
                    "have credentials",
                )
            if credential is None and s.get(Credential, (dataset_id, level)) is None:
                raise StoreError(404, f"Dataset {dataset_id!r} has no {level} credential")
            write_credential(
                s, self.vault, dataset_id, level, credential, actor=actor, source_of="api"
            )

        await self.db.run(work)

    # -- what a person gets ---------------------------------------------------------

    def entry(self, ds: Dataset, level: str) -> dict[str, Any]:
        """What the caller's own list shows of a dataset (no credential)."""
        d = given(ds)
        out = {
            "id": ds.id,
            "title": ds.title,
            "description": ds.description,
            "kind": ds.kind,
            "level": level,
            "mount_path": rules.mount_path(d, self.backend),
            "size": size_of(ds),
            "tags": list(ds.tags or []),
        }
        if ds.kind == "s3" and ds.s3:
            out["url"] = f"s3://{ds.s3.get('bucket', '')}/{ds.s3.get('prefix', '')}"
        return out

    async def mine(self, who: Who) -> list[dict[str, Any]]:
        def work(s: Session) -> list[dict[str, Any]]:
            levels = _levels(s, who)
            q = select(Dataset).where(Dataset.id.in_(sorted(levels))).order_by(Dataset.id)
            return [self.entry(ds, levels[ds.id]) for ds in s.scalars(q)]

        return await self.db.read(work)

    def still_safe(self, ds: Dataset, backend: str) -> bool:
        """A host dataset's folder checked again at the start (a link swapped in
        after it was saved): one that now leads out of its root is left out of
        the start, and so out of its audit event (the hub checks it again too)."""
        if ds.kind != "host":
            return True
        try:
            rules.check_path(ds.source, self.roots, resolve_links=backend != "kubernetes")
        except rules.DataError as e:
            log.error("Dataset %s left out of a start: %s", ds.id, e.message)
            return False
        return True

    def _start(self, s: Session, who: Who, server: str, backend: str) -> list[dict[str, Any]]:
        levels = _levels(s, who)
        out = []
        q = select(Dataset).where(Dataset.id.in_(sorted(levels))).order_by(Dataset.id)
        for ds in s.scalars(q):
            if not self.still_safe(ds, backend):
                continue
            level, credential = levels[ds.id], None
            if ds.kind == "s3":
                level, credential = s3_entry(s, self.vault, ds, level)
            d = given(ds)
            out.append(
                {
                    "id": ds.id,
                    "title": ds.title,
                    "kind": ds.kind,
                    "level": level,
                    "mount_path": rules.mount_path(d, backend),
                    "source": ds.source,
                    "sub_path": ds.sub_path,
                    "size": size_of(ds),
                    "s3": dict(ds.s3) if ds.kind == "s3" and ds.s3 else None,
                    "credentials": credential,
                }
            )
        trail.add(
            s,
            "start",
            actor="hub",
            user=who.user,
            server=server,
            datasets=[{"id": x["id"], "level": x["level"]} for x in out],
        )
        return out

    async def start(self, who: Who, server: str, backend: str = "") -> list[dict[str, Any]]:
        """The datasets a start of ``who``'s ``server`` gets (strongest grant wins;
        s3 ones with the credential of their level), recorded in the audit."""
        return await self.db.run(self._start, who, server, backend or self.backend)

    # -- audit and holders ----------------------------------------------------------

    async def audit(self, **filters: Any) -> list[dict[str, Any]]:
        return await self.db.read(lambda s: trail.events(s, **filters))

    async def last_starts(self, servers: list[tuple[str, str]]) -> dict:
        return await self.db.read(trail.last_starts, servers)

    async def levels(self, people: list[Who]) -> dict[str, dict[str, str]]:
        """User name -> (dataset id -> the level they hold now)."""
        return await self.db.read(lambda s: {w.user: _levels(s, w) for w in people})
