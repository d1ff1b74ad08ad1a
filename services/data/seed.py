"""Seeding at start: the datasets, grants and credentials of ``labspace.yaml``.

``labspace.yaml`` is the truth for what it lists: its datasets are created or
updated (``source_of`` "settings"), its grants set to the level it says, and
its credentials (read by the hub from the env vars or files the settings name,
handed over in a 0600 file) stored sealed. What an earlier start seeded and the
settings no longer list is removed. Every change is audited with the actor
"settings"; a start that changes nothing records nothing. A dataset the settings
describe wrongly is skipped with one log line (``labspace config validate``
reports it first), never a service that does not start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import rules
from .changes import add_dataset, change_dataset, remove_dataset, write_credential, write_grant
from .crypto import CredentialError, check_credential
from .models import Credential, Dataset, Grant
from .store import LEVELS, DataStore, StoreError

ACTOR = "settings"
REASON = "labspace.yaml"
log = logging.getLogger("labspace.data")


def read_credentials(path: str) -> dict[str, Any] | None:
    """The credentials file the hub wrote: ``{}`` when the settings name none
    (``path`` ""), None when it is named but cannot be read (the stored ones are
    then kept as they are). Its content is never logged."""
    if not path:
        return {}
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        log.error(
            "%s: cannot read the settings' credentials (%s); the stored ones are kept",
            path,
            type(e).__name__,
        )
        return None
    if not isinstance(value, dict):
        log.error("%s: not a JSON object; the stored credentials are kept", path)
        return None
    return value


def _datasets(s: Session, store: DataStore, listed: list[dict[str, Any]]) -> dict[str, list]:
    """Create or update the settings' datasets; their grants by dataset id."""
    grants: dict[str, list] = {}
    for raw in listed:
        raw = dict(raw) if isinstance(raw, dict) else {}
        wanted = raw.pop("grants", None) or []
        raw.pop("credentials", None)
        try:
            d = store.check(raw)
        except StoreError as e:
            log.warning("data.datasets %s: %s; not seeded", raw.get("id", "?"), e.message)
            continue
        ds = s.get(Dataset, d["id"])
        if ds is None:
            add_dataset(s, d, ACTOR, "settings")
        else:
            change_dataset(s, ds, d, ACTOR, REASON)
            ds.source_of = "settings"
        grants[d["id"]] = wanted
    s.flush()
    q = select(Dataset).where(Dataset.source_of == "settings", Dataset.id.not_in(sorted(grants)))
    for gone in s.scalars(q).all():
        remove_dataset(s, gone, ACTOR, "no longer in labspace.yaml")
    return grants


def _grants(s: Session, grants: dict[str, list]) -> None:
    kept = set()
    for dataset_id, listed in grants.items():
        for g in listed:
            try:
                grant = rules.check_grant(g)
            except rules.DataError as e:
                log.warning("data.datasets %s grants: %s; not seeded", dataset_id, e.message)
                continue
            subject = (grant["subject_type"], grant["subject"])
            write_grant(
                s,
                dataset_id,
                *subject,
                grant["level"],
                actor=ACTOR,
                reason=REASON,
                source_of="settings",
            )
            kept.add((dataset_id, *subject))
    s.flush()
    for g in s.scalars(select(Grant).where(Grant.source_of == "settings")).all():
        if (g.dataset_id, g.subject_type, g.subject) not in kept:
            write_grant(
                s,
                g.dataset_id,
                g.subject_type,
                g.subject,
                None,
                actor=ACTOR,
                reason="no longer in labspace.yaml",
                source_of="settings",
            )


def _credentials(s: Session, store: DataStore, given: dict[str, Any]) -> None:
    kept = set()
    for dataset_id, levels in given.items():
        ds = s.get(Dataset, dataset_id)
        if ds is None or ds.kind != "s3" or not isinstance(levels, dict):
            log.warning("data.datasets %s: credentials for no s3 dataset; ignored", dataset_id)
            continue
        for level in LEVELS:
            if levels.get(level) is None:
                continue
            try:
                cred = check_credential(levels[level], f"data.datasets.{dataset_id}.{level}")
            except CredentialError as e:
                log.warning("%s; not stored", e)
                continue
            write_credential(
                s, store.vault, dataset_id, level, cred, actor=ACTOR, source_of="settings"
            )
            kept.add((dataset_id, level))
    for row in s.scalars(select(Credential).where(Credential.source_of == "settings")).all():
        if (row.dataset_id, row.level) not in kept:
            write_credential(
                s, store.vault, row.dataset_id, row.level, None, actor=ACTOR, source_of="settings"
            )


def seed(
    store: DataStore, datasets: list[dict[str, Any]] | None, credentials: dict[str, Any] | None
) -> None:
    """Apply the settings in one transaction (synchronous: at start, on the
    database's threads); None for ``datasets`` or ``credentials``: leave the
    stored ones alone."""

    def work(s: Session) -> None:
        if datasets is not None:
            grants = _datasets(s, store, datasets if isinstance(datasets, list) else [])
            _grants(s, grants)
            s.flush()
        if credentials is not None:
            _credentials(s, store, credentials)

    store.db.work(work)
