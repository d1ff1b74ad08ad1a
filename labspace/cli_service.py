"""``labspace install-service`` (a systemd unit that runs Labspace, natively or
as the hub image under Docker) and ``labspace health`` (whether the hub answers
through its proxy: the hub image's HEALTHCHECK). ``labspace.cli`` adds them to
the ``labspace`` command; the units come from :mod:`labspace.service_units`."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import click

from . import service_units
from .cli_api import err, load_settings, out

SYSTEMD_DIR = "/etc/systemd/system"


def _fail(line: str) -> NoReturn:
    err.print(line, markup=False)
    sys.exit(1)


def _user(user: str | None) -> str:
    """The account the native unit runs as: ``--user``, else whoever ran
    ``sudo``, else the current user; root only when named."""
    if user:
        return user
    name = os.environ.get("SUDO_USER") or getpass.getuser()
    if name == "root":
        _fail(
            "--user: not given, and you are root: the service (and on the local "
            "backend every workspace) would run as root; name an account, e.g. "
            "--user labspace (make it with `useradd --system --create-home labspace`)"
        )
    return name


def _labspace_command() -> Path:
    """This installation's ``labspace`` command (the venv's), by absolute path."""
    here = Path(sys.executable).parent / "labspace"
    if here.is_file():
        return here
    found = shutil.which("labspace")
    if found:
        return Path(found).absolute()
    _fail(
        f"no labspace command next to {sys.executable} or on PATH "
        "(run this from the venv `make up` made: .venv/bin/labspace install-service)"
    )


def _systemd_runs() -> bool:
    """Whether systemd is PID 1 here (what ``sd_booted()`` checks)."""
    return Path("/run/systemd/system").is_dir()


def _enable(unit: Path) -> None:
    if not _systemd_runs():
        _fail(
            "--enable: systemd does not run this machine (no /run/systemd/system); "
            "the unit is written, start Labspace another way (labspace up)"
        )
    for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", unit.name]):
        out.print("$ " + " ".join(cmd), markup=False)
        done = subprocess.run(cmd, check=False)  # noqa: S603 (fixed commands)
        if done.returncode:
            _fail(f"--enable: `{' '.join(cmd)}` failed with status {done.returncode}")
    out.print(f"Labspace runs as {unit.name}: journalctl -u {unit.stem} -f", markup=False)


@click.command("install-service")
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Settings file the service runs with. Default: $LABSPACE_CONFIG, else ./labspace.yaml.",
)
@click.option(
    "--docker",
    "use_docker",
    is_flag=True,
    help="Run the hub image under Docker instead of this venv's labspace up.",
)
@click.option(
    "--image",
    default=service_units.DEFAULT_IMAGE,
    show_default=True,
    help="With --docker: the hub image (make images builds it).",
)
@click.option(
    "--user",
    default=None,
    help="Account the service runs as (not with --docker). Default: the one who ran sudo.",
)
@click.option("--print", "to_stdout", is_flag=True, help="Print the unit instead of writing it.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=SYSTEMD_DIR,
    show_default=True,
    help="Folder the unit is written to.",
)
@click.option("--enable", is_flag=True, help="Then run systemctl daemon-reload and enable --now.")
def install_service(config, use_docker, image, user, to_stdout, directory, enable):
    """Write a systemd unit that runs Labspace: restarted when it fails, logs
    in the journal, started at boot once enabled."""
    settings = load_settings(config)
    if use_docker and user:
        _fail("--user: not with --docker (the container runs as the image's user; see --image)")
    if use_docker:
        docker = shutil.which("docker") or "/usr/bin/docker"
        text = service_units.docker_unit(settings, docker=docker, image=image)
    else:
        text = service_units.native_unit(settings, user=_user(user), labspace=_labspace_command())
    if to_stdout:
        click.echo(text, nl=False)
        return
    unit = Path(directory) / service_units.UNIT_NAME
    try:
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(text)
        unit.chmod(0o644)
    except OSError as e:
        _fail(f"--dir: {unit} cannot be written: {e.strerror} (run with sudo, or use --print)")
    out.print(f"Wrote {unit}", markup=False)
    for port in service_units.privileged_ports(settings):
        if not use_docker:
            out.print(f"  {port}: the unit grants CAP_NET_BIND_SERVICE", markup=False)
    if settings.get("hub.cleanup_servers"):
        out.print(
            "  hub.cleanup_servers: true, so a restart stops every workspace "
            "(false keeps them running; see docs/how-to/service.md)",
            markup=False,
        )
    if enable:
        _enable(unit)
        return
    out.print("Start it now and at every boot:", markup=False)
    if Path(directory).resolve() != Path(SYSTEMD_DIR):
        out.print(f"  sudo cp {unit} {SYSTEMD_DIR}/", markup=False)
    out.print("  sudo systemctl daemon-reload", markup=False)
    out.print(f"  sudo systemctl enable --now {service_units.UNIT_NAME}", markup=False)
    out.print("  journalctl -u labspace -f        # its log", markup=False)


@click.command()
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings file. Default: $LABSPACE_CONFIG, else ./labspace.yaml.",
)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait.")
def health(config, timeout):
    """Whether the hub answers /hub/health through its proxy on this machine
    (exit 0) or not (exit 1): the hub image's HEALTHCHECK."""
    import httpx

    settings = load_settings(config)
    url = settings.local_url() + "hub/health"
    try:
        status = httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError as e:
        _fail(f"{url}: no answer ({type(e).__name__})")
    if status != 200:
        _fail(f"{url}: status {status}")
    out.print(f"{url}: healthy", markup=False)


COMMANDS: list = [install_service, health]
