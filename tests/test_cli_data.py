"""Tier 2: ``labspace data ...`` and the Python client against the real data
service in-process (real SQLite, real HubOAuth).

The hub is a small in-process stand-in that answers ``/hub/api/user`` for the
tokens the tests make, so the service authenticates every request as it does
behind a real hub. The CLI runs in a thread (it is a blocking program) while the
service serves on the test's event loop: what a person or a script sees
(tables, JSON, CSV, one-line errors, exit codes) is what is asserted.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import secrets

import pytest
from click.testing import CliRunner
from harness import free_port
from tornado import web

from labspace.cli import main
from labspace.client import Client, ClientError
from labspace.services.data import app as service
from labspace.services.kit import web as kit
from labspace.services.kit.run import ServiceContext

SERVICE_TOKEN = secrets.token_hex(8)
PREFIX = "/services/data/"
READ, ADMIN = "custom:labspace-data:read", "custom:labspace-data:admin"
READ_KEY = {"access_key_id": "AKIACLIMATEREAD", "secret_access_key": secrets.token_hex(20)}


def fake_hub(tokens: dict[str, dict]) -> web.Application:
    class Me(web.RequestHandler):
        def get(self):
            token = self.request.headers.get("Authorization", "").removeprefix("token ")
            if token not in tokens:
                raise web.HTTPError(403)
            self.finish(tokens[token])

    class Users(web.RequestHandler):  # the service's holders ask who runs what
        def get(self, name=None):
            if self.request.headers.get("Authorization") != f"token {SERVICE_TOKEN}":
                raise web.HTTPError(403)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"name": name, "groups": [], "servers": {}} if name else []))

    return web.Application(
        [("/hub/api/user", Me), ("/hub/api/users", Users), ("/hub/api/users/([^/]+)", Users)]
    )


class Data:
    """The running service: its URL, and tokens for a data admin and for users."""

    def __init__(self, url: str, tokens: dict[str, dict]):
        self.url = url
        self.tokens = tokens

    def token(self, name: str, scopes: list[str], groups: list[str] = ()) -> str:
        token = secrets.token_hex(8)
        self.tokens[token] = {
            "kind": "user",
            "name": name,
            "admin": False,
            "groups": list(groups),
            "scopes": ["access:services!service=data", *scopes],
        }
        return token

    async def cli(self, token: str, *args: str):
        """``labspace <args>`` as a person runs it, with LABSPACE_URL/TOKEN set."""
        env = {"LABSPACE_URL": self.url, "LABSPACE_TOKEN": token}
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, main, list(args), env=env)


@pytest.fixture
async def data(monkeypatch, tmp_path):
    tokens: dict[str, dict] = {}
    hub_port, port = free_port(), free_port()
    hub_server = fake_hub(tokens).listen(hub_port, address="127.0.0.1")
    root = tmp_path / "datasets"
    (root / "genomes").mkdir(parents=True)
    (root / "genomes" / "a.txt").write_text("ACGT\n")
    (root / "scratch").mkdir()
    for name, value in {
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub_port}/hub/api",
        "JUPYTERHUB_API_TOKEN": SERVICE_TOKEN,
        "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
        "JUPYTERHUB_SERVICE_NAME": "data",
        "JUPYTERHUB_CLIENT_ID": "service-data",
        "JUPYTERHUB_BASE_URL": "/",
    }.items():
        monkeypatch.setenv(name, value)
    datasets = [
        {
            "id": "genomes",
            "title": "Reference genomes",
            "kind": "host",
            "source": str(root / "genomes"),
            "grants": [{"group": "lab-a", "level": "read"}],
        },
        {
            "id": "scratch",
            "title": "Lab A scratch",
            "kind": "host",
            "source": str(root / "scratch"),
        },
        {
            "id": "climate",
            "kind": "s3",
            "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "research", "prefix": "climate/"},
        },
    ]
    credentials = tmp_path / "data-settings-credentials.json"
    credentials.write_text(json.dumps({"climate": {"read": READ_KEY}}))
    credentials.chmod(0o600)
    config = {
        "db_url": f"sqlite:///{tmp_path / 'data.sqlite'}",
        "data_dir": str(tmp_path),
        "backend": "docker",
        "roots": [str(root)],
        "datasets": datasets,
        "credentials_file": str(credentials),
    }
    monkeypatch.setenv("LABSPACE_DATA_CONFIG", json.dumps(config))
    started = await service.start(ServiceContext("data"))
    server = kit.make_server(started.app)
    server.listen(port, address="127.0.0.1")
    yield Data(f"http://127.0.0.1:{port}/", tokens)
    server.stop()
    hub_server.stop()
    await started.stop()


def admin(data: Data) -> str:
    return data.token("root", [READ, ADMIN])


def ann(data: Data) -> str:
    """A researcher in lab-a (seeded: read on genomes)."""
    return data.token("ann", [READ], ["lab-a"])


async def test_admin_lists_every_dataset_as_a_table_and_as_json(data):
    done = await data.cli(admin(data), "data", "list")
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0].split() == ["id", "title", "kind", "level", "mount_path", "size"]
    assert any(line.split()[:2] == ["genomes", "Reference"] for line in lines)
    assert "/data/scratch" in done.output  # docker backend: /data/<id>
    done = await data.cli(admin(data), "data", "list", "--json")
    assert {d["id"] for d in json.loads(done.output)} == {"genomes", "scratch", "climate"}


async def test_show_says_where_an_s3_dataset_is_and_whether_keys_are_set_never_them(data):
    done = await data.cli(admin(data), "data", "show", "climate")
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert "s3: endpoint=http://127.0.0.1:9, bucket=research, prefix=climate/" in lines
    assert "credentials: read set, write not set" in lines
    for args in (("show", "climate", "--json"), ("list", "--json"), ("list",), ("audit", "--csv")):
        done = await data.cli(admin(data), "data", *args)
        assert done.exit_code == 0, done.output
        assert READ_KEY["secret_access_key"] not in done.output
        assert READ_KEY["access_key_id"] not in done.output


async def test_a_user_lists_only_the_datasets_granted_with_the_level(data):
    done = await data.cli(ann(data), "data", "list", "--json")
    assert done.exit_code == 0, done.output
    assert [(d["id"], d["level"]) for d in json.loads(done.output)] == [("genomes", "read")]
    done = await data.cli(ann(data), "data", "show", "genomes")
    assert done.exit_code == 0, done.output
    assert "id: genomes" in done.output and "level: read" in done.output
    assert "grants:" not in done.output  # who else holds it is for admins


async def test_an_ungranted_dataset_is_a_one_line_404_without_the_token(data):
    token = ann(data)
    done = await data.cli(token, "data", "show", "scratch")
    assert done.exit_code == 1
    assert done.output.startswith("error: 404: ") and done.output.count("\n") == 1
    assert token not in done.output and "Traceback" not in done.output


async def test_grant_show_audit_and_revoke(data):
    token = admin(data)
    done = await data.cli(
        token, "data", "grant", "scratch", "--group", "lab-a", "--level", "write",
        "--reason", "ticket 42",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert done.output == "scratch: group lab-a may write (from their next start)\n"
    # ann sees it at once in the API (the workspace gets it at its next start)
    done = await data.cli(ann(data), "data", "list", "--json")
    assert {d["id"]: d["level"] for d in json.loads(done.output)} == {
        "genomes": "read",
        "scratch": "write",
    }
    done = await data.cli(token, "data", "show", "scratch", "--json")
    grants = json.loads(done.output)["grants"]
    assert [(g["subject_type"], g["subject"], g["level"]) for g in grants] == [
        ("group", "lab-a", "write")
    ]
    done = await data.cli(token, "data", "show", "scratch")
    assert "grants:" in done.output and "lab-a" in done.output

    done = await data.cli(token, "data", "audit", "--dataset", "scratch")
    assert done.exit_code == 0, done.output
    row = next(line for line in done.output.splitlines() if "ticket 42" in line)
    assert "grant" in row and "group:lab-a" in row and "none ->" in row  # "write" may wrap
    assert "created" in done.output  # the dataset's own event, from the settings

    done = await data.cli(
        token, "data", "revoke", "scratch", "--group", "lab-a", "--reason", "project over"
    )
    assert done.exit_code == 0, done.output
    assert done.output.startswith("scratch: revoked for group lab-a;")
    done = await data.cli(ann(data), "data", "list", "--json")
    assert [d["id"] for d in json.loads(done.output)] == ["genomes"]

    done = await data.cli(token, "data", "audit", "--dataset", "scratch", "--csv")
    rows = list(csv.DictReader(io.StringIO(done.output)))
    assert [(r["reason"], r["actor"]) for r in rows if r["kind"] == "grant"] == [
        ("project over", "root"),
        ("ticket 42", "root"),
    ]  # newest first
    done = await data.cli(token, "data", "audit", "--dataset", "scratch", "--json", "--limit", "1")
    (event,) = json.loads(done.output)
    assert event["kind"] == "grant" and (event["before"], event["after"]) == ("write", None)


async def test_revoking_what_nobody_holds_is_a_404(data):
    done = await data.cli(
        admin(data), "data", "revoke", "genomes", "--user", "nobody", "--reason", "x"
    )
    assert done.exit_code == 1
    assert done.output.startswith("error: 404: ") and done.output.count("\n") == 1


async def test_a_user_cannot_grant(data):
    done = await data.cli(
        ann(data), "data", "grant", "scratch", "--user", "ann", "--level", "write", "--reason", "me"
    )
    assert done.exit_code == 1
    assert done.output.startswith("error: 403: ")
    done = await data.cli(ann(data), "data", "audit")
    assert done.exit_code == 1 and done.output.startswith("error: 403: ")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--level", "read", "--reason", "r"], "name --group or --user"),
        (["--group", "g", "--user", "u", "--level", "read", "--reason", "r"], "name --group or"),
        (["--group", "g", "--level", "admin", "--reason", "r"], "'admin' is not one of"),
        (["--group", "g", "--level", "read"], "Missing option '--reason'"),
    ],
    ids=["no-subject", "two-subjects", "bad-level", "no-reason"],
)
async def test_grant_usage_errors_exit_2(data, args, message):
    done = await data.cli(admin(data), "data", "grant", "genomes", *args)
    assert done.exit_code == 2
    assert message in done.output


async def test_bad_filter_is_the_services_message(data):
    done = await data.cli(admin(data), "data", "audit", "--since", "last tuesday")
    assert done.exit_code == 1
    assert done.output.startswith("error: 400: ") and "since" in done.output


async def test_python_client(data):
    token = admin(data)

    def script():
        with Client(data.url, token) as ls:
            ls.grant("genomes", "write", "analysis", user="bea")
            grants = {(g["subject_type"], g["subject"]): g["level"] for g in ls.grants("genomes")}
            assert grants == {("group", "lab-a"): "read", ("user", "bea"): "write"}
            ls.revoke("genomes", "done", user="bea")
            events = ls.data_audit(dataset="genomes", user="bea")
            assert [(e["before"], e["after"]) for e in events] == [("write", None), (None, "write")]
            assert ls.data_audit(dataset="genomes", fmt="csv").startswith("id,at,kind,")
            with pytest.raises(ValueError):
                ls.grant("genomes", "read", "x", user="bea", group="lab-a")
            with pytest.raises(ClientError) as e:
                ls.dataset("no-such")
            assert e.value.status == 404
            assert ls.data_holders() == []

    await asyncio.to_thread(script)


async def test_python_client_my_datasets(data):
    token = ann(data)

    def script():
        with Client(data.url, token) as ls:
            (mine,) = ls.my_datasets()
            assert (mine["id"], mine["level"], mine["mount_path"]) == (
                "genomes",
                "read",
                "/data/genomes",
            )
            assert [d["id"] for d in ls.datasets()] == ["genomes"]
            with pytest.raises(ClientError) as e:
                ls.grants("genomes")
            assert e.value.status == 403

    await asyncio.to_thread(script)
