"""The everyday admin commands without a hub: ``--json`` on every command that
prints data, ``--option`` and amount parsing (refused before anything is sent),
a server's row, ``servers start``'s progress lines and bar (from a stand-in
client replaying the hub's progress events), errors on stderr in ``--json``
mode, and shell completion (the scripts and the profile names).
tests/e2e/test_cli_servers.py runs the same commands against a real hub."""

from __future__ import annotations

import json

import click
import pytest
from click.shell_completion import BashComplete
from click.testing import CliRunner
from harness import free_port

from labspace import cli, client
from labspace.client import ClientError, check_amount, server_row

# commands that print no data of their own, each for a reason
NOT_DATA = {
    ("up",): "runs Labspace; its log",
    ("config", "validate"): "one line per problem, and the exit status",
    ("config", "init"): "writes a file",
    ("config", "reference"): "prints Markdown (docs/reference/settings.md)",
    ("config", "helm-values"): "prints a Helm values file (YAML)",
    ("config", "prometheus"): "prints a Prometheus scrape config (YAML)",
    ("backup",): "writes a backup folder",
    ("restore",): "restores a backup",
    ("install-service",): "writes a systemd unit",
    ("health",): "the exit status (a HEALTHCHECK)",
    ("completion",): "prints a shell script",
    ("api",): "prints the API's JSON answer as it is",
}


def commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


@pytest.mark.parametrize(
    "path, command",
    list(commands(cli.main)),
    ids=lambda p: "-".join(p) if isinstance(p, tuple) else "",
)
def test_every_data_command_has_json(path, command):
    names = {opt for param in command.params for opt in getattr(param, "opts", [])}
    if path in NOT_DATA:
        return
    assert "--json" in names, f"labspace {' '.join(path)} prints data: give it --json"


def test_the_exemptions_are_real_commands():
    # a renamed or removed command must leave NOT_DATA too
    paths = {path for path, _ in commands(cli.main)}
    assert {p for p in NOT_DATA if p != ("config", "prometheus")} <= paths


@pytest.fixture
def invoke(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli.main, list(args), prog_name="labspace")

    return invoke


# -- parsing ---------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1", "12.50", "0.000001", "999999999.999999", "1000000000"])
def test_amounts_the_ledger_takes(amount):
    assert check_amount(amount) == amount


@pytest.mark.parametrize(
    "amount", ["0", "0.0", "-5", "1.1234567", "1e3", "ten", "", "1000000000.5", True]
)
def test_amounts_refused(amount):
    with pytest.raises(ValueError, match="an amount is above 0 and at most 1000000000"):
        check_amount(amount)


@pytest.mark.parametrize("command", ["assign", "move"])
def test_a_bad_amount_is_a_usage_error_before_any_call(invoke, command):
    url = f"http://127.0.0.1:{free_port()}/"  # nothing listens: a call would be exit 1
    result = invoke("usage", command, "a", "b", "0.0000001", "--reason", "x", "--url", url)
    assert result.exit_code == 2
    assert "Invalid value for 'AMOUNT': '0.0000001' is not an amount" in result.stderr


@pytest.mark.parametrize(
    "pair", ["profile", "=small", " =x"], ids=["no-equals", "no-key", "blank-key"]
)
def test_option_pairs_are_key_equals_value(invoke, pair):
    result = invoke("servers", "start", "--option", pair, "--url", "http://127.0.0.1:1/")
    assert result.exit_code == 2
    assert f"Invalid value for --option: {pair!r}: write it as KEY=VALUE" in result.stderr


def test_server_row_has_the_whole_url_and_the_profile():
    server = {
        "name": "lab2",
        "ready": True,
        "pending": None,
        "url": "/prefix/user/ann/lab2/",
        "user_options": {"profile": "small"},
        "started": "2026-12-04T09:00:00Z",
        "last_activity": None,
    }
    row = server_row("https://labspace.example.org/prefix/", "ann", server)
    assert row == {
        "user": "ann",
        "name": "lab2",
        "ready": True,
        "pending": None,
        "profile": "small",
        "url": "https://labspace.example.org/prefix/user/ann/lab2/",
        "started": "2026-12-04T09:00:00Z",
        "last_activity": None,
    }


# -- servers start against a stand-in client ------------------------------------

EVENTS = [
    {"progress": 0, "message": "Server requested"},
    {"progress": 50, "message": "Spawning server..."},
    {"progress": 100, "ready": True, "message": "Server ready at /user/ann/", "url": "/user/ann/"},
]


class StandIn:
    """Answers as the hub does for ann's start; records the options sent."""

    sent: dict = {}

    def __init__(self, url=None, token=None, timeout=30):
        self.url = "http://hub.test/"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def me(self):
        return {"kind": "user", "name": "ann"}

    def start_server(self, user, name, options):
        StandIn.sent = {"user": user, "name": name, "options": options}
        if options.get("profile") == "nope":
            raise ClientError(400, "No such profile: 'nope' (yours: small)")
        return False

    def start_with_progress(self, user, name, options, timeout):
        self.start_server(user, name, options)
        yield from EVENTS

    def server(self, user, name):
        return server_row(self.url, user, {"name": name, "ready": True, "url": "/user/ann/"})

    def wait_server(self, user, name, until, timeout):
        return self.server(user, name)


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(client, "Client", StandIn)


def test_start_prints_progress_on_stderr_and_the_url_on_stdout(invoke, stand_in):
    result = invoke("servers", "start", "--profile", "small", "--option", "app=viewer")
    assert result.exit_code == 0, result.stderr
    assert StandIn.sent == {
        "user": "ann",
        "name": "",
        "options": {"app": "viewer", "profile": "small"},
    }
    assert result.stdout == "http://hub.test/user/ann/\n"
    lines = result.stderr.splitlines()
    assert lines[:3] == [
        "  0% Server requested",
        " 50% Spawning server...",
        "100% Server ready at /user/ann/",
    ]
    assert lines[-1].startswith("ready ") and lines[-1].endswith(" 100%")
    assert "━" in lines[-1]


def test_start_in_json_mode_prints_only_the_row(invoke, stand_in):
    result = invoke("servers", "start", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["url"] == "http://hub.test/user/ann/"
    assert result.stderr == ""


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_a_refused_start_is_one_line_on_stderr(invoke, stand_in, mode):
    result = invoke("servers", "start", "--profile", "nope", *mode)
    assert result.exit_code == 1
    assert result.stderr == "error: 400: No such profile: 'nope' (yours: small)\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [["servers", "list"], ["tokens", "list"], ["users", "list"], ["usage", "ledger"]],
    ids=lambda a: "-".join(a),
)
def test_errors_in_json_mode_go_to_stderr(invoke, args):
    url = f"http://127.0.0.1:{free_port()}/"
    result = invoke(*args, "--json", "--url", url)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: 0: cannot reach {url}")


# -- completion -------------------------------------------------------------------


@pytest.mark.parametrize(
    "shell, marker",
    [("bash", "complete -o nosort -F"), ("zsh", "#compdef labspace"), ("fish", "complete ")],
)
def test_completion_scripts(invoke, shell, marker):
    result = invoke("completion", shell)
    assert result.exit_code == 0
    assert marker in result.stdout and "_LABSPACE_COMPLETE" in result.stdout


def test_completion_of_an_unknown_shell(invoke):
    result = invoke("completion", "tcsh")
    assert result.exit_code == 2 and "'tcsh' is not one of" in result.stderr


def complete(args: list[str], incomplete: str) -> list[str]:
    done = BashComplete(cli.main, {}, "labspace", "_LABSPACE_COMPLETE")
    return [item.value for item in done.get_completions(args, incomplete)]


def test_completion_of_commands_and_profiles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert complete(["servers"], "st") == ["start", "stop"]
    assert complete(["servers", "start", "--profile"], "") == []  # no settings file here
    (tmp_path / "labspace.yaml").write_text(
        "profiles:\n  - {slug: small, default: true}\n  - {slug: big}\n  - {slug: bigger}\n"
    )
    assert complete(["servers", "start", "--profile"], "") == ["small", "big", "bigger"]
    assert complete(["servers", "start", "--profile"], "bi") == ["big", "bigger"]
    # server names ask the hub; none answering is no completion, not an error
    monkeypatch.setenv("LABSPACE_URL", f"http://127.0.0.1:{free_port()}/")
    assert complete(["servers", "stop", "--name"], "") == []
