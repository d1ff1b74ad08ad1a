"""``labspace install-service`` and the units it writes (labspace/service_units.py,
labspace/cli_service.py): what each unit says for which settings, checked by
``systemd-analyze verify`` (the real parser; it fails on a bad key under CI=true
only through its output, so the tests require that output to be empty), and the
command's refusals as one line naming the option; and (e2e) ``labspace up`` with
a local workspace inside the file system the native unit leaves it (a mount
namespace: read-only but ``ReadWritePaths``, private ``/tmp``).
``tests/e2e/test_hub_image.py`` runs the hub image with the same ``docker run``
arguments as the docker unit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from labspace import cli, service_units
from labspace.settings import load

LABSPACE = Path("/opt/venv/bin/labspace")


def settings_in(folder: Path, values: dict | None = None):
    path = folder / "labspace.yaml"
    path.write_text(yaml.safe_dump(values or {}))
    return load(path, environ={})


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_native_unit_runs_the_venvs_labspace_up_hardened(tmp_path):
    s = settings_in(tmp_path, {"data_dir": "state"})
    unit = lines(service_units.native_unit(s, user="lab", labspace=LABSPACE))
    for line in [
        "User=lab",
        f"WorkingDirectory={tmp_path}",
        f"ExecStart=/opt/venv/bin/labspace up --config {tmp_path}/labspace.yaml",
        "Environment=PATH=/opt/venv/bin:" + service_units.SYSTEM_PATH,
        f"EnvironmentFile=-{tmp_path}/labspace.env",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={tmp_path}/state",
        "PrivateTmp=yes",
        "WantedBy=multi-user.target",
    ]:
        assert line in unit
    # the local backend on unprivileged ports: no capability, no docker group
    assert not [x for x in unit if x.startswith(("AmbientCapabilities", "SupplementaryGroups"))]
    assert "docker.service" not in "\n".join(unit)


TLS = {"type": "files", "domain": "hub.example.org", "certificate": "c.pem", "key": "k.pem"}


@pytest.mark.parametrize(
    "values, granted",
    [
        ({}, False),
        ({"hub": {"port": 80}}, True),
        ({"hub": {"ip": "127.0.0.1", "tls": TLS}}, True),
        ({"hub": {"ip": "127.0.0.1", "tls": {**TLS, "port": 8443, "http_port": 8080}}}, False),
    ],
    ids=["plain-8000", "hub-port-80", "tls-443", "tls-high-ports"],
)
def test_capability_only_for_ports_below_1024(tmp_path, values, granted):
    s = settings_in(tmp_path, values)
    unit = lines(service_units.native_unit(s, user="lab", labspace=LABSPACE))
    assert ("AmbientCapabilities=CAP_NET_BIND_SERVICE" in unit) is granted
    assert bool(service_units.privileged_ports(s)) is granted


@pytest.mark.parametrize(
    "values, mode",
    [
        ({}, "mixed"),
        ({"hub": {"cleanup_servers": False}}, "process"),
        ({"hub": {"cleanup_servers": False}, "backend": {"type": "docker"}}, "mixed"),
    ],
    ids=["cleanup", "local-kept", "docker-kept"],
)
def test_local_workspaces_outlive_a_restart_only_when_asked(tmp_path, values, mode):
    s = settings_in(tmp_path, values)
    unit = lines(service_units.native_unit(s, user="lab", labspace=LABSPACE))
    assert f"KillMode={mode}" in unit


def test_docker_backend_natively_joins_the_docker_group(tmp_path):
    s = settings_in(tmp_path, {"backend": {"type": "docker"}})
    unit = lines(service_units.native_unit(s, user="lab", labspace=LABSPACE))
    assert "SupplementaryGroups=docker" in unit
    assert "After=network-online.target docker.service" in unit


def test_docker_run_args_keep_every_path_the_same_inside(tmp_path):
    (tmp_path / "labspace.env").write_text("LABSPACE_AUTH_CLIENT_SECRET=x\n")
    s = settings_in(
        tmp_path,
        {
            "backend": {"type": "docker"},
            "hub": {"ip": "127.0.0.1", "tls": TLS},
            "data": {"enabled": True, "roots": ["/srv/datasets"]},
        },
    )
    args = service_units.docker_run_args(s, image="img:1")
    joined = " ".join(args)
    assert args[:4] == ["--name", "labspace-hub", "--network", "host"]
    assert f"--workdir {tmp_path} " in joined
    for volume in [
        f"{tmp_path}/labspace.yaml:{tmp_path}/labspace.yaml:ro",
        f"{tmp_path}/labspace-data:{tmp_path}/labspace-data",
        f"{tmp_path}:{tmp_path}:ro",  # the certificate's folder: a renewed file shows
        "/srv/datasets:/srv/datasets:ro",
        "/var/run/docker.sock:/var/run/docker.sock",
    ]:
        assert f"--volume {volume} " in joined
    assert f"--env-file {tmp_path}/labspace.env " in joined
    assert f"--env LABSPACE_CONFIG={tmp_path}/labspace.yaml " in joined
    assert args[-5:] == ["img:1", "labspace", "up", "--config", f"{tmp_path}/labspace.yaml"]


def test_docker_run_args_mount_certbots_folders(tmp_path):
    live, archive = tmp_path / "le" / "live" / "hub", tmp_path / "le" / "archive" / "hub"
    live.mkdir(parents=True)
    archive.mkdir(parents=True)
    for name in ("fullchain", "privkey"):
        (archive / f"{name}1.pem").write_text("x")
        (live / f"{name}.pem").symlink_to(f"../../archive/hub/{name}1.pem")
    tls = {**TLS, "certificate": f"{live}/fullchain.pem", "key": f"{live}/privkey.pem"}
    s = settings_in(tmp_path / "le", {"hub": {"ip": "127.0.0.1", "tls": tls}})
    volumes = [a for a in service_units.docker_run_args(s) if a.endswith(":ro")]
    assert volumes == [
        f"{tmp_path}/le/labspace.yaml:{tmp_path}/le/labspace.yaml:ro",
        f"{live}:{live}:ro",
        f"{archive}:{archive}:ro",
    ]


def test_docker_run_args_local_backend_no_socket(tmp_path):
    args = service_units.docker_run_args(settings_in(tmp_path))
    assert "/var/run/docker.sock:/var/run/docker.sock" not in " ".join(args)
    assert "--env-file" not in args
    assert service_units.DEFAULT_IMAGE in args


def test_docker_unit_runs_the_container_in_the_foreground(tmp_path):
    s = settings_in(tmp_path, {"backend": {"type": "docker"}})
    unit = lines(service_units.docker_unit(s, docker="/usr/bin/docker"))
    run = " ".join(["/usr/bin/docker run --rm", *service_units.docker_run_args(s)])
    assert f"ExecStart={run}" in unit
    assert "ExecStartPre=-/usr/bin/docker rm --force labspace-hub" in unit
    assert "ExecStop=/usr/bin/docker stop --time 90 labspace-hub" in unit
    assert "Requires=docker.service" in unit
    assert "Restart=on-failure" in unit
    assert not [x for x in unit if x.startswith("User=")]  # docker's socket is root's


def test_unit_quotes_odd_paths(tmp_path):
    folder = tmp_path / "with space 100%"
    folder.mkdir()
    s = settings_in(folder)
    unit = lines(service_units.native_unit(s, user="lab", labspace=LABSPACE))
    conf = f"{folder}/labspace.yaml".replace("%", "%%")
    assert f"ExecStart=/opt/venv/bin/labspace up --config '{conf}'" in unit
    assert f'ReadWritePaths="{folder}/labspace-data"'.replace("%", "%%") in unit


@pytest.fixture
def verify(need):
    """``systemd-analyze verify`` of a unit text: its complaints (empty: clean)."""
    found = shutil.which("systemd-analyze")
    need("systemd-analyze", found is not None, "apt install systemd")

    def run(text: str, folder: Path) -> str:
        unit = folder / "units" / service_units.UNIT_NAME
        unit.parent.mkdir(exist_ok=True)
        unit.write_text(text)
        done = subprocess.run(
            [found, "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
        return (done.stdout + done.stderr).strip() + ("" if done.returncode == 0 else " [failed]")

    return run


def test_systemd_accepts_both_units(tmp_path, verify):
    tls = {"hub": {"ip": "127.0.0.1", "tls": TLS}, "backend": {"type": "docker"}}
    s = settings_in(tmp_path, tls)
    labspace = Path(shutil.which("true"))  # verify wants an executable ExecStart
    assert verify(service_units.native_unit(s, user="root", labspace=labspace), tmp_path) == ""
    docker = shutil.which("true")
    assert verify(service_units.docker_unit(s, docker=docker), tmp_path) == ""


def test_systemd_verify_can_fail(tmp_path, verify):
    s = settings_in(tmp_path)
    text = service_units.native_unit(s, user="root", labspace=Path("/nonexistent/labspace"))
    assert "is not executable" in verify(text, tmp_path)
    good = service_units.native_unit(s, user="root", labspace=Path(shutil.which("true")))
    assert "Unknown key" in verify(good.replace("PrivateTmp=", "PrivatTmp="), tmp_path)


# -- the command ---------------------------------------------------------------


def invoke(*args, env=None):
    return CliRunner().invoke(cli.main, ["install-service", *args], env=env or {})


def test_command_writes_the_unit_and_says_what_to_run(tmp_path):
    settings_in(tmp_path)
    conf = str(tmp_path / "labspace.yaml")
    result = invoke("--config", conf, "--user", "lab", "--dir", str(tmp_path / "u"))
    assert result.exit_code == 0, result.output
    unit = tmp_path / "u" / "labspace.service"
    assert f"Wrote {unit}" in result.output
    assert "sudo systemctl enable --now labspace.service" in result.output
    assert "hub.cleanup_servers: true, so a restart stops every workspace" in result.output
    assert "ExecStart=" in unit.read_text() and (unit.stat().st_mode & 0o777) == 0o644
    printed = invoke("--config", conf, "--docker", "--print")
    assert printed.exit_code == 0 and "docker run --rm --name labspace-hub" in printed.output


@pytest.mark.parametrize(
    "args, env, says",
    [
        ([], {"SUDO_USER": "root"}, "--user: not given, and you are root"),
        (["--docker", "--user", "lab"], {}, "--user: not with --docker"),
        (["--user", "lab", "--dir", "/proc/labspace"], {}, "--dir: /proc/labspace/labspace"),
        (["--user", "lab", "--enable", "--dir", "{tmp}"], {}, "--enable: systemd does not run"),
    ],
    ids=["root", "docker-user", "dir", "enable-no-systemd"],
)
def test_command_refusals_are_one_line(tmp_path, args, env, says):
    if "--enable" in args and Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here: --enable would enable the unit")
    settings_in(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = invoke("--config", str(tmp_path / "labspace.yaml"), *args, env=env)
    assert result.exit_code == 1
    assert says in result.output and "Traceback" not in result.output


def test_command_bad_settings_named(tmp_path):
    (tmp_path / "labspace.yaml").write_text("hub:\n  prot: 1\n")
    result = invoke("--config", str(tmp_path / "labspace.yaml"), "--print", "--user", "lab")
    assert result.exit_code == 1
    assert "hub.prot: unknown key" in result.output


def test_health_says_no_answer(tmp_path):
    settings_in(tmp_path, {"hub": {"port": 9}})  # discard: nothing answers HTTP
    result = CliRunner().invoke(
        cli.main, ["health", "--config", str(tmp_path / "labspace.yaml"), "--timeout", "2"]
    )
    assert result.exit_code == 1
    assert "http://127.0.0.1:9/hub/health: no answer" in result.output


# -- the native unit's sandbox, for real -----------------------------------------

SANDBOX = r"""
set -eu
# what ProtectSystem=strict, ReadWritePaths= and PrivateTmp= make of the file
# system, in a mount namespace of our own: $@ = writable paths, --, command
writable=()
while [ "$1" != -- ]; do writable+=("$1"); shift; done
shift
mount --make-rprivate /
for w in "${writable[@]}"; do mount --bind "$w" "$w"; done
findmnt -rno TARGET | sort -u | while read -r m; do
  keep=false
  case "$m" in /proc*|/sys*|/dev*|/mnt/*) keep=true ;; esac
  for w in "${writable[@]}"; do [ "$m" = "$w" ] && keep=true; done
  $keep || mount -o remount,bind,ro "$m"
done
# a checkout under /tmp (a CI clone) would vanish under a private /tmp: it is
# kept then (a real install lives in /opt or a home, as the docs say)
case "$SANDBOX_REPO" in
  /tmp/*) echo "sandbox: /tmp kept (Labspace itself is in it)" ;;
  *) mount -t tmpfs -o mode=1777 tmpfs /tmp ;;
esac
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
if touch /etc/.labspace-sandbox-probe 2>/dev/null; then
  echo "sandbox: /etc is writable" >&2; exit 1
fi
echo "sandbox: read-only but ${writable[*]}"
exec "$@"
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_labspace_up_works_in_the_units_sandbox(need, proxy_command, service_token):
    """``labspace up`` and a local workspace run with the file system the native
    unit leaves them (everything read-only but ``ReadWritePaths``, private
    ``/tmp``), started with the unit's ``PATH``, and stop on SIGTERM as systemd
    stops them. Not systemd itself (it is not PID 1 here): its mount namespace."""
    import os
    import secrets
    import signal
    import sys

    from harness import REPO, HubAPI, hub_settings_for, wait_for

    tools = all(shutil.which(t) for t in ("unshare", "findmnt", "mount"))
    need("a mount namespace", os.geteuid() == 0 and tools, "needs root and util-linux")
    # outside /tmp, which the sandbox replaces
    folder = REPO / "build" / f"service-sandbox-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    values = hub_settings_for(folder / "data", proxy_command, service_token)
    s = settings_in(folder, values)
    labspace = Path(sys.executable).with_name("labspace")
    unit = lines(service_units.native_unit(s, user="root", labspace=labspace))
    writable = [x.partition("=")[2] for x in unit if x.startswith("ReadWritePaths=")]
    path = next(x for x in unit if x.startswith("Environment=PATH="))
    env = {**os.environ, "PATH": path.partition("PATH=")[2], "SANDBOX_REPO": str(REPO)}
    (folder / "data").mkdir()
    log = open(folder / "up.log", "w")  # noqa: SIM115 (closed below)
    cmd = [str(labspace), "up", "--config", str(s.source)]
    proc = subprocess.Popen(
        ["unshare", "--mount", "bash", "-c", SANDBOX, "sandbox", *writable, "--", *cmd],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=folder,
    )
    api = HubAPI(s.local_url(), service_token)
    try:

        def running():
            text = (folder / "up.log").read_text()
            if proc.poll() is not None:
                pytest.fail(f"labspace up exited with {proc.returncode}:\n{text[-3000:]}")
            return "Labspace is running" in text

        wait_for(running, 120, 0.5, what="labspace up in the sandbox")
        api.create_user("alice")
        api.start_server("alice", timeout=120)
        r = api.client.get("user/alice/api/status")
        assert r.status_code == 200, r.text[:300]
        api.stop_server("alice")
        proc.send_signal(signal.SIGTERM)  # what systemctl stop sends
        assert proc.wait(timeout=60) == 0
        text = (folder / "up.log").read_text()
        assert f"sandbox: read-only but {s.data_dir}" in text
        assert "Read-only file system" not in text, text[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
        api.close()
        shutil.rmtree(folder, ignore_errors=True)
