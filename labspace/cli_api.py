"""The ``labspace`` commands that call Labspace's REST APIs (users, groups,
usage, apps, api): tables for people, ``--json`` for scripts, an API error as
one line on stderr and exit 1 (in ``--json`` mode too). ``labspace data`` is in
``cli_data``, ``servers``/``tokens``/``completion`` in ``cli_servers``; they use
the helpers here. ``labspace.cli`` adds them all to the ``labspace`` command."""

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
    # a terminal's width; piped to a file or a pager, whole cells (up to 240 columns)
    wide = out if out.is_terminal else Console(file=out.file, highlight=False, width=240)
    wide.print(table)


def when(value) -> str:
    """A time of the APIs (ISO 8601, UTC) as people read it, to the minute."""
    return str(value or "")[:16].replace("T", " ")


def _done(as_json: bool, result, line: str) -> None:
    """An action's answer: JSON for scripts (``{}`` when the API sent none), else one line."""
    if as_json:
        click.echo(json.dumps(result if result is not None else {}, indent=2, default=str))
    else:
        out.print(line, markup=False)


def _amount(ctx, param, value):
    """An amount as the ledger takes it, checked before anything is sent."""
    from .client import check_amount

    try:
        return check_amount(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _cell(value) -> str:
    if isinstance(value, (list, tuple, set)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(sorted(value)) if value else ""
    return "" if value is None else str(value)


def _subject_options(fn):
    fn = click.option("--user", default=None, help="A user (or --group).")(fn)
    return click.option("--group", default=None, help="A group (or --user).")(fn)


def _one_subject(group, user) -> None:
    if bool(group) == bool(user):
        err.print("error: name --group or --user (one of them)", markup=False)
        sys.exit(2)


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
@_JSON
@click.argument("names", nargs=-1, required=True)
def users_add(url, as_json, names):
    """Add users by name."""
    added = []
    with _client(url) as ls:
        for name in names:
            added.append(_call(ls.add_user, name))
            if not as_json:
                out.print(f"added {name}", markup=False)
    if as_json:
        click.echo(json.dumps(added, indent=2, default=str))


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
@_JSON
@click.argument("group")
@click.argument("members", nargs=-1)
def groups_add(url, as_json, group, members):
    """Create GROUP (if needed) and add MEMBERS to it."""
    from .client import ClientError

    with _client(url) as ls:
        try:
            ls.add_group(group)
        except ClientError as e:
            if e.status != 409:  # exists already
                err.print(f"error: {e}", markup=False)
                sys.exit(1)
        found = _call(ls.add_members, group, list(members)) if members else None
    _done(as_json, found, f"{group}: {', '.join(members) or 'no new members'}")


@groups.command("remove")
@_URL
@_JSON
@click.argument("group")
@click.argument("members", nargs=-1, required=True)
def groups_remove(url, as_json, group, members):
    """Remove MEMBERS from GROUP."""
    with _client(url) as ls:
        found = _call(ls.remove_members, group, list(members))
    _done(as_json, found, f"{group}: removed {', '.join(members)}")


@click.group()
def usage():
    """Usage, budgets and the ledger (the accounting service)."""


@usage.command("me")
@_URL
@_JSON
def usage_me(url, as_json):
    """My balances, projects and current sessions."""
    with _client(url) as ls:
        found = _call(ls.my_usage)
    if as_json or not isinstance(found, dict):
        click.echo(json.dumps(found, indent=2, default=str))
        return
    for key, value in found.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.print(f"{key}:", markup=False)
            _show(value, False, _ME_COLUMNS.get(key) or list(value[0]))
        elif isinstance(value, dict):  # e.g. personal: balance 12.00
            pairs = ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
            out.print(f"{key}: {pairs}", markup=False)
        else:
            out.print(f"{key}: {_cell(value) if value not in ([], None) else 'none'}", markup=False)


# the columns people read of a session (--json has them all)
_ME_COLUMNS = {
    "open_sessions": ["server", "project", "profile", "started_at", "price_per_hour", "cost"]
}


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
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (--format json).")
def usage_report(url, start, end, by, user, project, fmt, as_json):
    """Usage over a date range, grouped by day, user, project or profile."""
    fmt = "json" if as_json else fmt
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


_REASON = click.option("--reason", required=True, help="Why (kept in the ledger).")
_AMOUNT = click.argument("amount", callback=_amount)


def _balances(result, *projects: str) -> str:
    found = (result or {}).get("balances") or {}
    return ", ".join(f"{p} {found.get(p, '?')}" for p in projects)


@usage.command("top-up")
@_URL
@_JSON
@click.argument("project")
@_AMOUNT
@_REASON
def usage_top_up(url, as_json, project, amount, reason):
    """Add AMOUNT to PROJECT's budget (needs accounting admin)."""
    with _client(url) as ls:
        result = _call(ls.top_up, project, amount, reason)
    balance = (result.get("balances") or {}).get(project, "?")
    _done(as_json, result, f"{project}: topped up {amount}; balance {balance}")


@usage.command("assign")
@_URL
@_JSON
@click.argument("parent")
@click.argument("child")
@_AMOUNT
@_REASON
def usage_assign(url, as_json, parent, child, amount, reason):
    """Give AMOUNT of PARENT's budget to its child project CHILD (accounting admin).

    Who is whose parent: accounting.projects.parents in labspace.yaml."""
    with _client(url) as ls:
        result = _call(ls.assign, parent, child, amount, reason)
    line = f"transaction {result.get('transaction')}: assigned {amount} from {parent} to {child}"
    _done(as_json, result, f"{line}; balances {_balances(result, parent, child)}")


@usage.command("move")
@_URL
@_JSON
@click.argument("source", metavar="FROM")
@click.argument("target", metavar="TO")
@_AMOUNT
@_REASON
def usage_move(url, as_json, source, target, amount, reason):
    """Move AMOUNT of budget from project FROM to project TO (accounting admin)."""
    with _client(url) as ls:
        result = _call(ls.move, source, target, amount, reason)
    line = f"transaction {result.get('transaction')}: moved {amount} from {source} to {target}"
    _done(as_json, result, f"{line}; balances {_balances(result, source, target)}")


@usage.command("reverse")
@_URL
@_JSON
@click.argument("transaction", type=click.IntRange(1))
@_REASON
def usage_reverse(url, as_json, transaction, reason):
    """Undo ledger TRANSACTION (once; accounting admin).

    The ids are in `labspace usage ledger` and in each operation's output."""
    with _client(url) as ls:
        result = _call(ls.reverse, transaction, reason)
    balances = ", ".join(f"{k} {v}" for k, v in (result.get("balances") or {}).items())
    line = f"transaction {result.get('transaction')}: reversed {transaction}"
    _done(as_json, result, f"{line}; balances {balances}")


@usage.command("ledger")
@_URL
@_JSON
@click.option("--account", default=None, help="Only this account, e.g. project:lab-x.")
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True)
def usage_ledger(url, as_json, account, limit):
    """Recent ledger transactions, newest first (accounting read-all)."""
    with _client(url) as ls:
        rows = _call(ls.transactions, account, limit)
    if not as_json:
        for row in rows:
            row["at"] = when(row.get("at"))
    columns = list(rows[0]) if rows and isinstance(rows[0], dict) else ["id"]
    _show(rows, as_json, columns)


@click.group()
def apps():
    """Interactive apps of the catalog: list, launch, share, stop."""


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
@_JSON
@click.argument("app")
@click.option("--version", default=None, help="A version (default: the current one).")
def apps_launch(url, as_json, app, version):
    """Launch APP; prints its launch id and where it opens."""
    from urllib.parse import urljoin

    with _client(url) as ls:
        launch = _call(ls.launch, app, version)
        where = urljoin(ls.url, launch["url"]) if launch.get("url") else ""
    _done(as_json, launch, f"launch {launch.get('id')}: {app} {launch.get('state', '')} {where}")


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
@_JSON
@click.argument("launch_id", type=int)
def apps_stop(url, as_json, launch_id):
    """Stop a launch (its id from `labspace apps launches`)."""
    with _client(url) as ls:
        result = _call(ls.stop_launch, launch_id)
    _done(as_json, result, f"stopped launch {launch_id}")


@apps.command("shares")
@_URL
@_JSON
@click.argument("launch_id", metavar="LAUNCH", type=int)
def apps_shares(url, as_json, launch_id):
    """Who a running standalone app (launch LAUNCH) is shared with."""
    with _client(url) as ls:
        rows = _call(ls.shares, launch_id)
    _show(rows, as_json, ["user", "group", "scopes"])


@apps.command("share")
@_URL
@_JSON
@click.argument("launch_id", metavar="LAUNCH", type=int)
@_subject_options
def apps_share(url, as_json, launch_id, group, user):
    """Let a user or a group open my running standalone app (launch LAUNCH).

    Only standalone apps (each in a server of its own) can be shared."""
    _one_subject(group, user)
    with _client(url) as ls:
        result = _call(ls.share, launch_id, group=group, user=user)
    who = f"group {group}" if group else f"user {user}"
    _done(as_json, result, f"launch {launch_id}: shared with {who}")


@apps.command("unshare")
@_URL
@_JSON
@click.argument("launch_id", metavar="LAUNCH", type=int)
@_subject_options
def apps_unshare(url, as_json, launch_id, group, user):
    """Take back a share of launch LAUNCH from a user or a group."""
    _one_subject(group, user)
    with _client(url) as ls:
        _call(ls.unshare, launch_id, group=group, user=user)
    who = f"group {group}" if group else f"user {user}"
    _done(
        as_json,
        {"unshared": {"group": group} if group else {"user": user}},
        f"launch {launch_id}: no longer shared with {who}",
    )


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


COMMANDS = [users, groups, usage, apps, api_cmd]
