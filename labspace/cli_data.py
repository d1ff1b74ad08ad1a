"""``labspace data``: datasets and who may use them (the data service), with
the helpers of ``labspace.cli_api``. ``labspace.cli`` adds it to ``labspace``."""

from __future__ import annotations

import json
import sys

import click

from .cli_api import (
    _JSON,
    _URL,
    _call,
    _cell,
    _client,
    _done,
    _one_subject,
    _show,
    _subject_options,
    err,
    out,
)


@click.group()
def data():
    """Datasets and who may use them (the data service)."""


def _size(value) -> str:
    """Bytes as people read them: 1.5 GB."""
    if not isinstance(value, (int, float)):
        return ""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""


@data.command("list")
@_URL
@_JSON
def data_list(url, as_json):
    """Datasets you may use, with your level (admins: every dataset)."""
    with _client(url) as ls:
        rows = _call(ls.datasets)
    for row in rows:
        row["size"] = row.get("size") if as_json else _size(row.get("size"))
    _show(rows, as_json, ["id", "title", "kind", "level", "mount_path", "size"])


@data.command("show")
@_URL
@_JSON
@click.argument("dataset")
def data_show(url, as_json, dataset):
    """One dataset, and its grants when you may see them (admins)."""
    from .client import ClientError

    with _client(url) as ls:
        found = _call(ls.dataset, dataset)
        try:
            found["grants"] = ls.grants(dataset)
        except ClientError as e:
            if e.status != 403:  # a plain user sees the dataset, not who else has it
                err.print(f"error: {e}", markup=False)
                sys.exit(1)
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    grants = found.pop("grants", None)
    found["size"] = _size(found.get("size"))
    if isinstance(found.get("credentials"), dict):  # whether set, never a value
        found["credentials"] = ", ".join(
            f"{level} {'set' if is_set else 'not set'}"
            for level, is_set in found["credentials"].items()
        )
    if isinstance(found.get("s3"), dict):
        found["s3"] = ", ".join(f"{k}={v}" for k, v in found["s3"].items() if v)
    for key, value in found.items():
        out.print(f"{key}: {_cell(value)}", markup=False)
    if grants is not None:
        out.print("grants:", markup=False)
        _show(grants, False, ["subject_type", "subject", "level", "granted_by", "granted_at"])


@data.command("grant")
@_URL
@_JSON
@click.argument("dataset")
@_subject_options
@click.option(
    "--level",
    type=click.Choice(["read", "write"]),
    required=True,
    help="read: read-only; write: read and write.",
)
@click.option("--reason", required=True, help="Why (kept in the audit).")
def data_grant(url, as_json, dataset, group, user, level, reason):
    """Let a group or user read or write DATASET.

    Their workspaces get it at their next start."""
    _one_subject(group, user)
    with _client(url) as ls:
        result = _call(ls.grant, dataset, level, reason, group=group, user=user)
    who = f"group {group}" if group else f"user {user}"
    _done(as_json, result, f"{dataset}: {who} may {level} (from their next start)")


@data.command("revoke")
@_URL
@_JSON
@click.argument("dataset")
@_subject_options
@click.option("--reason", required=True, help="Why (kept in the audit).")
def data_revoke(url, as_json, dataset, group, user, reason):
    """Remove a group's or user's grant on DATASET.

    It is gone at their next start; running workspaces keep it until they stop."""
    _one_subject(group, user)
    with _client(url) as ls:
        _call(ls.revoke, dataset, reason, group=group, user=user)
    who = f"group {group}" if group else f"user {user}"
    _done(
        as_json,
        {"revoked": {"dataset": dataset, **({"group": group} if group else {"user": user})}},
        f"{dataset}: revoked for {who}; running workspaces keep it until they stop "
        "(`labspace api GET services/data/api/holders` lists them)",
    )


@data.command("audit")
@_URL
@_JSON
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--user", default=None, help="Only events about this user.")
@click.option("--since", default=None, help="From this time, e.g. 2026-11-01 (UTC).")
@click.option("--until", default=None, help="Before this time, e.g. 2026-12-01 (UTC).")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (with a header row).")
def data_audit(url, as_json, dataset, user, since, until, limit, as_csv):
    """Grant changes and workspace starts, newest first.

    Who got which data when: every grant change (before, after, reason) and
    every start (which datasets at which level). Needs data admin."""
    with _client(url) as ls:
        fmt = "csv" if as_csv else "json"
        events = _call(ls.data_audit, dataset, user, since, until, limit, fmt)
    if as_csv:
        click.echo(events, nl=False)
        return
    if not as_json:
        for event in events:
            event["change"] = _change(event)
            event["subject"] = event.get("subject") or event.get("user")
            event["at"] = str(event.get("at", ""))[:19].replace("T", " ")  # UTC, to the second
    _show(events, as_json, ["at", "kind", "actor", "dataset", "subject", "change", "reason"])


def _change(event: dict) -> str:
    """What changed, in a few words: a grant's levels, a dataset created, changed
    (which keys) or deleted, or the datasets a start got."""
    if event.get("datasets"):
        return ", ".join(f"{d.get('id')} ({d.get('level')})" for d in event["datasets"])
    before, after = event.get("before"), event.get("after")
    if isinstance(before, dict) or isinstance(after, dict):
        if not before or not after:
            return "created" if after else "deleted"
        keys = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
        return "changed " + ", ".join(keys)
    if before is None and after is None:
        return ""
    return f"{before or 'none'} -> {after or 'none'}"


COMMANDS = [data]
