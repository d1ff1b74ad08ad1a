"""The audited writes of the data service: each change of a dataset, a grant or a
credential adds its audit event in the same transaction (who, when, before,
after, reason), so the trail cannot miss a change that happened. Credentials
are sealed (``crypto.Vault``) before they are stored and audited without
their values. Used by ``store`` (the API's changes) and ``seed`` (the settings').
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit as trail
from .crypto import Vault
from .models import Credential, Dataset, Grant, utcnow

log = logging.getLogger("labspace.data")

FIELDS = (
    "title",
    "description",
    "kind",
    "source",
    "sub_path",
    "mount_path",
    "size",
    "owner_group",
    "tags",
    "s3",
)


def given(ds: Dataset) -> dict[str, Any]:
    """The dataset as it was given (``mount_path`` "" when the default)."""
    return {"id": ds.id, **{k: getattr(ds, k) for k in FIELDS}}


def find_grant(s: Session, dataset_id: str, subject_type: str, subject: str) -> Grant | None:
    q = select(Grant).where(
        Grant.dataset_id == dataset_id,
        Grant.subject_type == subject_type,
        Grant.subject == subject,
    )
    return s.scalars(q).one_or_none()


def apply_fields(ds: Dataset, d: dict[str, Any]) -> None:
    if ds.source != d["source"] or d["kind"] != "host":
        ds.measured = None  # measured again (``measure``) when it is a host folder
    for k in FIELDS:
        setattr(ds, k, d[k])
    ds.updated = utcnow()


def write_grant(
    s: Session,
    dataset_id: str,
    subject_type: str,
    subject: str,
    level: str | None,
    *,
    actor: str,
    reason: str,
    source_of: str,
) -> Grant | None:
    """Add, change (``level``) or remove (``level=None``) one grant, audited;
    the grant after (None when removed)."""
    g = find_grant(s, dataset_id, subject_type, subject)
    before = g.level if g else None
    if level is None:
        if g is not None:
            s.delete(g)
    elif g is None:
        g = Grant(
            dataset_id=dataset_id,
            subject_type=subject_type,
            subject=subject,
            level=level,
            source_of=source_of,
            granted_by=actor,
            granted_at=utcnow(),
        )
        s.add(g)
    elif g.level != level or g.source_of != source_of:
        g.level, g.source_of, g.granted_by, g.granted_at = level, source_of, actor, utcnow()
    if before != level:
        trail.add(
            s,
            "grant",
            actor=actor,
            dataset=dataset_id,
            subject=f"{subject_type}:{subject}",
            before=before,
            after=level,
            reason=reason,
        )
    return g if level is not None else None


def write_credential(
    s: Session,
    vault: Vault,
    dataset_id: str,
    level: str,
    credential: dict[str, str] | None,
    *,
    actor: str,
    source_of: str,
) -> None:
    """Store (sealed), replace or remove (``None``) one credential, audited
    without its value; nothing when it is the same as before."""
    row = s.get(Credential, (dataset_id, level))
    if credential is None:
        if row is None:
            return
        s.delete(row)
    elif row is not None and vault.open(row.sealed) == credential:
        if row.source_of != source_of:
            row.source_of = source_of
        return
    elif row is None:
        s.add(
            Credential(
                dataset_id=dataset_id,
                level=level,
                sealed=vault.seal(credential),
                source_of=source_of,
                updated_by=actor,
                updated=utcnow(),
            )
        )
    else:
        row.sealed, row.source_of, row.updated_by, row.updated = (
            vault.seal(credential),
            source_of,
            actor,
            utcnow(),
        )
    trail.add(
        s,
        "credential",
        actor=actor,
        dataset=dataset_id,
        subject=level,
        before="set" if row is not None else None,
        after="set" if credential is not None else None,
    )


def add_dataset(s: Session, d: dict[str, Any], actor: str, source_of: str) -> Dataset:
    ds = Dataset(id=d["id"], source_of=source_of, created=utcnow())
    apply_fields(ds, d)
    s.add(ds)
    trail.add(s, "dataset", actor=actor, dataset=ds.id, before=None, after=given(ds))
    return ds


def change_dataset(
    s: Session, ds: Dataset, d: dict[str, Any], actor: str, reason: str = ""
) -> bool:
    """Apply ``d`` to ``ds``, audited; whether anything changed."""
    before = given(ds)
    if before == {"id": ds.id, **{k: d[k] for k in FIELDS}}:
        return False
    apply_fields(ds, d)
    trail.add(
        s, "dataset", actor=actor, dataset=ds.id, before=before, after=given(ds), reason=reason
    )
    return True


def remove_dataset(s: Session, ds: Dataset, actor: str, reason: str = "") -> None:
    """Delete ``ds`` with its grants and credentials; each removal audited."""
    for g in s.scalars(select(Grant).where(Grant.dataset_id == ds.id)).all():
        write_grant(
            s,
            ds.id,
            g.subject_type,
            g.subject,
            None,
            actor=actor,
            reason=reason or "dataset deleted",
            source_of=g.source_of,
        )
    for c in s.scalars(select(Credential).where(Credential.dataset_id == ds.id)).all():
        s.delete(c)
    s.flush()
    trail.add(s, "dataset", actor=actor, dataset=ds.id, before=given(ds), after=None, reason=reason)
    s.delete(ds)


def s3_entry(
    s: Session, vault: Vault, ds: Dataset, level: str
) -> tuple[str, dict[str, str] | None]:
    """The level and credential an s3 dataset gives at a start: the grant's
    level's; a write grant without a write credential gets the read one, as read."""
    for lv in ("write", "read") if level == "write" else ("read",):
        row = s.get(Credential, (ds.id, lv))
        opened = vault.open(row.sealed) if row is not None else None
        if opened is not None:
            return lv, opened
        if row is not None:
            log.error("Credential %s of %s cannot be opened (another key?)", lv, ds.id)
    return "read", None
