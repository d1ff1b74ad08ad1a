"""The ``labspace`` commands that call Labspace's REST APIs (users, groups,
usage, apps, data, api): tables for people, ``--json`` for scripts, an API error
as one line and exit 1. ``labspace.cli`` adds them to the ``labspace`` command."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def load_settings(config: str | None):
    """The settings a command works on (``--config``, else $LABSPACE_CONFIG, else
    ./labspace.yaml); a file that is not valid prints its report and exits 1."""
    from . import settings as settings_mod

    try:
        return settings_mod.load(config)
    except settings_mod.SettingsError as e:
        err.print(e.report(), markup=False)
        sys.exit(1)


# -- the REST APIs, for people and scripts --------------------------------------

_URL = click.option(
    "--url", envvar="LABSPACE_URL", default=None, help="Labspace URL (default: $LABSPACE_URL)."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _client(url):
    from .client import Client

    return Client(url)


def _call(fn, *args, **kw):
    """Run one API call; an API error is one line on stderr and exit 1."""
    from .client import ClientError

    try:
        return fn(*args, **kw)
    except ClientError as e:
        err.print(f"error: {e}", markup=False)
        sys.exit(1)


def _show(rows, as_json: bool, columns: list[str]) -> None:
    """JSON for scripts, a table for people."""
    if as_json or not isinstance(rows, list):
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(*columns, box=None, header_style="bold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    out.print(table)


def _cell(value) -> str:
    if isinstance(value, (list, tuple, set)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(sorted(value)) if value else ""
    return "" if value is None else str(value)


@click.group()
def users():
    """List and add users (needs a token with admin:users)."""


@users.command("list")
@_URL
@_JSON
def users_list(url, as_json):
    """List users."""
    with _client(url) as ls:
        _show(_call(ls.users), as_json, ["name", "admin", "groups", "servers", "last_activity"])


@users.command("add")
@_URL
@click.argument("names", nargs=-1, required=True)
def users_add(url, names):
    """Add users by name."""
    with _client(url) as ls:
        for name in names:
            _call(ls.add_user, name)
            out.print(f"added {name}", markup=False)


@click.group()
def groups():
    """List groups (Labspace projects are groups) and change their members."""


@groups.command("list")
@_URL
@_JSON
def groups_list(url, as_json):
    """List groups and their members."""
    with _client(url) as ls:
        _show(_call(ls.groups), as_json, ["name", "users"])


@groups.command("add")
@_URL
@click.argument("group")
@click.argument("members", nargs=-1)
def groups_add(url, group, members):
    """Create GROUP (if needed) and add MEMBERS to it."""
    from .client import ClientError

    with _client(url) as ls:
        try:
            ls.add_group(group)
        except ClientError as e:
            if e.status != 409:  # exists already
                err.print(f"error: {e}", markup=False)
                sys.exit(1)
        if members:
            _call(ls.add_members, group, list(members))
        out.print(f"{group}: {', '.join(members) or 'no new members'}", markup=False)


@groups.command("remove")
@_URL
@click.argument("group")
@click.argument("members", nargs=-1, required=True)
def groups_remove(url, group, members):
    """Remove MEMBERS from GROUP."""
    with _client(url) as ls:
        _call(ls.remove_members, group, list(members))
        out.print(f"{group}: removed {', '.join(members)}", markup=False)


@click.group()
def usage():
    """Usage, budgets and the ledger (the accounting service)."""


@usage.command("me")
@_URL
def usage_me(url):
    """My balances, projects and current sessions (JSON)."""
    with _client(url) as ls:
        click.echo(json.dumps(_call(ls.my_usage), indent=2))


@usage.command("report")
@_URL
@click.option("--from", "start", required=True, help="First day, e.g. 2026-11-01.")
@click.option("--to", "end", required=True, help="Day after the last, e.g. 2026-12-01.")
@click.option(
    "--by",
    type=click.Choice(["day", "user", "project", "profile"]),
    default="project",
    show_default=True,
)
@click.option("--user", default=None, help="Only this user.")
@click.option("--project", default=None, help="Only this project.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
def usage_report(url, start, end, by, user, project, fmt):
    """Usage over a date range, grouped by day, user, project or profile."""
    with _client(url) as ls:
        result = _call(
            ls.usage_report,
            start,
            end,
            by,
            "csv" if fmt == "csv" else "json",
            user=user,
            project=project,
        )
    if fmt == "csv":
        click.echo(result, nl=False)
    elif fmt == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        rows = result.get("rows", [])
        _show(rows, False, list(rows[0]) if rows else [by])


@usage.command("top-up")
@_URL
@click.argument("project")
@click.argument("amount")
@click.option("--reason", required=True, help="Why (kept in the ledger).")
def usage_top_up(url, project, amount, reason):
    """Add AMOUNT to PROJECT's budget (needs accounting admin)."""
    with _client(url) as ls:
        result = _call(ls.top_up, project, amount, reason)
    balance = (result.get("balances") or {}).get(project, "?")
    out.print(f"{project}: topped up {amount}; balance {balance}", markup=False)


@click.group()
def apps():
    """Interactive apps of the catalog: list, launch, stop."""


@apps.command("list")
@_URL
@_JSON
@click.option("--category", default=None)
@click.option("--search", "query", default=None)
def apps_list(url, as_json, category, query):
    """Apps you may launch."""
    with _client(url) as ls:
        rows = _call(ls.apps, category, query)
    _show(rows, as_json, ["id", "title", "version", "kind", "category"])


@apps.command("launch")
@_URL
@click.argument("app")
@click.option("--version", default=None, help="A version (default: the current one).")
def apps_launch(url, app, version):
    """Launch APP; prints where it opens."""
    with _client(url) as ls:
        launch = _call(ls.launch, app, version)
    click.echo(json.dumps(launch, indent=2))


@apps.command("launches")
@_URL
@_JSON
def apps_launches(url, as_json):
    """My launches that are still running."""
    with _client(url) as ls:
        rows = _call(ls.launches, True)
    _show(rows, as_json, ["id", "app", "version", "kind", "state", "url"])


@apps.command("stop")
@_URL
@click.argument("launch_id", type=int)
def apps_stop(url, launch_id):
    """Stop a launch (its id from `labspace apps launches`)."""
    with _client(url) as ls:
        _call(ls.stop_launch, launch_id)
    out.print(f"stopped launch {launch_id}", markup=False)


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


def _subject_options(fn):
    fn = click.option("--user", default=None, help="A user (or --group).")(fn)
    return click.option("--group", default=None, help="A group (or --user).")(fn)


def _one_subject(group, user) -> None:
    if bool(group) == bool(user):
        err.print("error: name --group or --user (one of them)", markup=False)
        sys.exit(2)


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
@click.argument("dataset")
@_subject_options
@click.option(
    "--level",
    type=click.Choice(["read", "write"]),
    required=True,
    help="read: read-only; write: read and write.",
)
@click.option("--reason", required=True, help="Why (kept in the audit).")
def data_grant(url, dataset, group, user, level, reason):
    """Let a group or user read or write DATASET.

    Their workspaces get it at their next start."""
    _one_subject(group, user)
    with _client(url) as ls:
        _call(ls.grant, dataset, level, reason, group=group, user=user)
    who = f"group {group}" if group else f"user {user}"
    out.print(f"{dataset}: {who} may {level} (from their next start)", markup=False)


@data.command("revoke")
@_URL
@click.argument("dataset")
@_subject_options
@click.option("--reason", required=True, help="Why (kept in the audit).")
def data_revoke(url, dataset, group, user, reason):
    """Remove a group's or user's grant on DATASET.

    It is gone at their next start; running workspaces keep it until they stop."""
    _one_subject(group, user)
    with _client(url) as ls:
        _call(ls.revoke, dataset, reason, group=group, user=user)
    who = f"group {group}" if group else f"user {user}"
    out.print(
        f"{dataset}: revoked for {who}; running workspaces keep it until they stop "
        "(`labspace api GET services/data/api/holders` lists them)",
        markup=False,
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


@click.command("api")
@_URL
@click.argument("method", type=click.Choice(["GET", "POST", "PATCH", "PUT", "DELETE"], False))
@click.argument("path")
@click.option("--data", "-d", default=None, help="JSON body.")
def api_cmd(url, method, path, data):
    """Call any Labspace API, e.g. `labspace api GET hub/api/users`."""
    try:
        body = json.loads(data) if data else None
    except ValueError as e:
        err.print(f"--data: not JSON: {e}", markup=False)
        sys.exit(2)
    with _client(url) as ls:
        result = _call(ls.request, method.upper(), path, json=body)
    click.echo(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))


COMMANDS = [users, groups, usage, apps, data, api_cmd]
