"""``labspace servers``, ``labspace tokens`` and ``labspace completion``: the
hub's servers and API tokens for everyday admin work, with the helpers of
``labspace.cli_api`` (``--url``, the token from $LABSPACE_TOKEN, tables for
people, ``--json`` for scripts, an API error as one line on stderr and exit 1).

``servers start`` follows the hub's progress stream (GET
``hub/api/users/{user}/servers/{name}/progress``): each event's message is a
line on stderr under a progress bar, and the server's URL is the one line on
stdout at the end."""

from __future__ import annotations

import itertools
import json
import sys

import click

from .cli_api import _JSON, _URL, _call, _client, _show, err, out, when

COLUMNS = ["user", "name", "profile", "state", "started", "last_activity", "url"]
_USER = click.argument("user", required=False)
_NAME = click.option(
    "--name",
    "name",
    default="",
    help="A named server (default: the user's default server).",
    shell_complete=lambda ctx, param, incomplete: complete_servers(incomplete),
)
_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(1, 3600),
    default=300,
    show_default=True,
    help="Seconds to wait at most.",
)


def _fail(line: str) -> None:
    err.print(f"error: {line}", markup=False)
    sys.exit(1)


def _whoami(ls, user: str | None) -> str:
    """USER, else whoever holds the token (a service token must name USER)."""
    if user:
        return user
    me = _call(ls.me)
    if me.get("kind") == "service":
        _fail("a service token has no servers of its own: name the USER")
    return me["name"]


def _options(pairs: tuple[str, ...], profile: str | None) -> dict:
    """``--option k=v`` pairs (and ``--profile``) as the server's user_options."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: write it as KEY=VALUE", param_hint="--option")
        options[key.strip()] = value
    if profile:
        options["profile"] = profile
    return options


@click.group()
def servers():
    """List, start, stop and wait for servers (workspaces and standalone apps)."""


@servers.command("list")
@_URL
@_JSON
@click.option("--all", "everyone", is_flag=True, help="Every user's (needs read:servers).")
def servers_list(url, as_json, everyone):
    """My running and pending servers (with --all: everyone's)."""
    with _client(url) as ls:
        rows = _call(ls.servers, everyone)
    if not as_json:
        for row in rows:
            row["state"] = "ready" if row["ready"] else f"{row['pending'] or 'not ready'}ing"
            row["started"], row["last_activity"] = when(row["started"]), when(row["last_activity"])
    _show(rows, as_json, COLUMNS)


@servers.command("start")
@_URL
@_JSON
@_USER
@_NAME
@click.option(
    "--profile",
    default=None,
    help="A profile's slug (default: the user's default profile).",
    shell_complete=lambda ctx, param, incomplete: complete_profiles(incomplete),
)
@click.option("--option", "pairs", multiple=True, help="KEY=VALUE, a user option (repeatable).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow its progress.")
@_TIMEOUT
def servers_start(url, as_json, user, name, profile, pairs, wait, timeout):
    """Start USER's server (default: mine) and follow its progress to its URL."""
    options = _options(pairs, profile)
    with _client(url) as ls:
        user = _whoami(ls, user)
        if wait:
            _follow(ls.start_with_progress(user, name, options, timeout), quiet=as_json)
            row = _call(ls.wait_server, user, name, "ready", timeout)
        else:
            _call(ls.start_server, user, name, options)
            row = _call(ls.server, user, name)
    if as_json:
        click.echo(json.dumps(row, indent=2, default=str))
    elif row and row["ready"]:
        click.echo(row["url"])
    else:
        err.print("start requested: `labspace servers wait` follows it", markup=False)


def _follow(events, quiet: bool) -> None:
    """A start's progress events: one line per message and a bar, on stderr
    (from the first event on: a start refused at once is its error line alone)."""
    from rich.progress import BarColumn, Progress, TextColumn

    from .client import ClientError

    percent = TextColumn("{task.percentage:>3.0f}%")
    columns = [TextColumn("{task.description}"), BarColumn(), percent]
    try:
        first = next(events, None)
        if first is None:
            return
        with Progress(*columns, console=err, disable=quiet) as bar:
            task = bar.add_task("starting", total=100)
            for event in itertools.chain([first], events):
                _show_event(bar, task, event, quiet)
    except ClientError as e:
        _fail(str(e))


def _show_event(bar, task, event: dict, quiet: bool) -> None:
    done = event.get("progress")
    if isinstance(done, (int, float)) and not isinstance(done, bool):
        bar.update(task, completed=min(max(done, 0), 100), refresh=True)  # not 0.1 s late
    if event.get("message") and not quiet:
        bar.console.print(f"{'' if done is None else done:>3}% {event['message']}", markup=False)
    if event.get("ready"):
        bar.update(task, description="ready", completed=100)
    if event.get("failed"):
        bar.update(task, description="failed")
        bar.stop()
        _fail(event.get("message") or "the start failed")


@servers.command("stop")
@_URL
@_JSON
@_USER
@_NAME
@click.option("--wait/--no-wait", default=True, show_default=True, help="Until it has stopped.")
@_TIMEOUT
def servers_stop(url, as_json, user, name, wait, timeout):
    """Stop USER's server (default: mine)."""
    with _client(url) as ls:
        user = _whoami(ls, user)
        stopped = _call(ls.stop_server, user, name)
        if wait and not stopped:
            _call(ls.wait_server, user, name, "stopped", timeout)
            stopped = True
    label = f"{user}/{name}" if name else user
    state = "stopped" if stopped else "stopping"
    if as_json:
        click.echo(json.dumps({"user": user, "name": name, "state": state}, indent=2))
    else:
        out.print(f"{label}: {state}", markup=False)


@servers.command("wait")
@_URL
@_JSON
@_USER
@_NAME
@click.option(
    "--until",
    type=click.Choice(["ready", "stopped"]),
    default="ready",
    show_default=True,
    help="ready: until it answers (an error if it stops); stopped: until it is gone.",
)
@_TIMEOUT
def servers_wait(url, as_json, user, name, until, timeout):
    """Wait until USER's server (default: mine) is ready, or has stopped."""
    with _client(url) as ls:
        user = _whoami(ls, user)
        row = _call(ls.wait_server, user, name, until, timeout)
    if as_json:
        click.echo(json.dumps(row or {"user": user, "name": name, "state": "stopped"}, indent=2))
    elif row:
        click.echo(row["url"])
    else:
        out.print(f"{f'{user}/{name}' if name else user}: stopped", markup=False)


@click.group()
def tokens():
    """API tokens: create, list and revoke (mine, or --user's).

    Another user's tokens need a token with the `tokens` scope for them."""


_TOKEN_USER = click.option("--user", default=None, help="Whose tokens (default: mine).")


@tokens.command("create")
@_URL
@_JSON
@_TOKEN_USER
@click.option("--scope", "scopes", multiple=True, help="A scope (repeatable; default: all mine).")
@click.option("--expires-in", type=click.IntRange(1), default=None, help="Seconds it is valid.")
@click.option("--note", default=None, help="What it is for (shown in `tokens list`).")
def tokens_create(url, as_json, user, scopes, expires_in, note):
    """Make a new API token and print it once, on stdout.

    Keep it: the hub never shows it again (`tokens list` shows its id and note)."""
    with _client(url) as ls:
        user = _whoami(ls, user)
        made = _call(ls.create_token, user, list(scopes), expires_in, note)
    if as_json:
        click.echo(json.dumps(made, indent=2, default=str))
        return
    expires = made.get("expires_at") or "never"
    err.print(f"token {made.get('id')} of {user}, expires {expires}:", markup=False)
    click.echo(made["token"])


@tokens.command("list")
@_URL
@_JSON
@_TOKEN_USER
def tokens_list(url, as_json, user):
    """API tokens (their ids and notes, never their values)."""
    with _client(url) as ls:
        rows = _call(ls.tokens, _whoami(ls, user))
    if not as_json:
        for row in rows:
            scopes = row.get("scopes") or []
            row["scopes"] = ", ".join(scopes) if len(scopes) <= 2 else f"{len(scopes)} scopes"
            for key in ("created", "expires_at", "last_activity"):
                row[key] = when(row.get(key))
    _show(rows, as_json, ["id", "note", "scopes", "created", "expires_at", "last_activity"])


@tokens.command("revoke")
@_URL
@_JSON
@_TOKEN_USER
@click.argument("token_id", metavar="ID")
def tokens_revoke(url, as_json, user, token_id):
    """Revoke token ID (its id from `labspace tokens list`)."""
    with _client(url) as ls:
        user = _whoami(ls, user)
        _call(ls.revoke_token, user, token_id)
    if as_json:
        click.echo(json.dumps({"revoked": token_id, "user": user}, indent=2))
    else:
        out.print(f"revoked token {token_id} of {user}", markup=False)


# -- shell completion ---------------------------------------------------------

COMPLETE_VAR = "_LABSPACE_COMPLETE"


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell):
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(labspace completion bash)"   (in ~/.bashrc)
    zsh:   eval "$(labspace completion zsh)"    (in ~/.zshrc)
    fish:  labspace completion fish > ~/.config/fish/completions/labspace.fish
    """
    from click.shell_completion import get_completion_class

    root = click.get_current_context().find_root().command  # the `labspace` group
    cls = get_completion_class(shell)
    click.echo(cls(root, {}, "labspace", COMPLETE_VAR).source())


def complete_profiles(incomplete: str) -> list[str]:
    """Profile slugs from the settings file here ($LABSPACE_CONFIG or ./labspace.yaml)."""
    try:
        from . import settings as settings_mod

        profiles = settings_mod.load(None).get("profiles") or []
    except Exception:  # noqa: BLE001 - completion must never fail the shell
        return []
    return [p["slug"] for p in profiles if str(p.get("slug", "")).startswith(incomplete)]


def complete_servers(incomplete: str) -> list[str]:
    """My servers' names, from the hub at $LABSPACE_URL (2 s at most)."""
    from .client import Client

    try:
        with Client(timeout=2) as ls:
            names = [row["name"] for row in ls.servers()]
    except Exception:  # noqa: BLE001 - completion must never fail the shell
        return []
    return [n for n in names if n and n.startswith(incomplete)]


COMMANDS = [servers, tokens, completion]
