"""systemd units that run Labspace as a service: pure builders, no I/O.

- :func:`native_unit`: the embedded default, the venv's ``labspace up`` as an
  unprivileged user, restarted on failure, logging to the journal, with the
  hardening that still lets the hub, its proxy, Caddy and local workspaces run;
- :func:`docker_run_args`: ``docker run`` arguments of the hub image with the
  same paths inside the container as outside (the settings file, ``data_dir``,
  certificate files, dataset roots), host networking and, for the docker
  backend, the Docker socket;
- :func:`docker_unit`: a unit that runs that container in the foreground, so
  systemd restarts it and the journal holds its log.

``labspace install-service`` (:mod:`labspace.cli_service`) writes them.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path

from . import rules
from . import settings as settings_mod
from .settings import Settings

UNIT_NAME = "labspace.service"
CONTAINER_NAME = "labspace-hub"
DEFAULT_IMAGE = "labspace/hub:latest"
DOCKER_SOCKET = "/var/run/docker.sock"
ENV_FILE = "labspace.env"
"""Next to the settings file: ``LABSPACE_<KEY>=value`` lines (secrets), optional."""
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def privileged_ports(settings: Settings) -> list[str]:
    """``key: port`` of every port below 1024 that Labspace binds (``hub.tls``'s
    443 and 80, or a ``hub.port`` of 80): each needs CAP_NET_BIND_SERVICE."""
    return [f"{key}: {port}" for key, _ip, port in rules.ports(settings.values) if port < 1024]


def _quote(arg: str) -> str:
    """One ``ExecStart=`` word: systemd's quoting is close enough to the shell's
    for paths and options, and ``%`` (a specifier) is doubled."""
    return shlex.quote(arg).replace("%", "%%")


def _exec(args: Iterable[str]) -> str:
    return " ".join(_quote(a) for a in args)


def _path(path: Path) -> str:
    """A path in a unit's path setting (``ReadWritePaths=``), quoted when it has spaces."""
    text = str(path).replace("%", "%%")
    return f'"{text}"' if " " in text else text


def kill_mode(settings: Settings) -> str:
    """``KillMode=`` of the native unit. ``labspace up`` gets SIGTERM and stops
    the hub, its proxy, the services and (unless ``hub.cleanup_servers`` is
    false) the workspaces; ``mixed`` then kills what is left in the unit's
    cgroup. Local workspaces are processes in that cgroup: to outlive a restart
    as ``hub.cleanup_servers: false`` asks, they need ``process`` (only the main
    process is signalled). Docker's and Kubernetes' workspaces live elsewhere."""
    keep = not settings.get("hub.cleanup_servers") and settings.get("backend.type") == "local"
    return "process" if keep else "mixed"


def _docker_backend(settings: Settings) -> bool:
    return settings.get("backend.type") == "docker"


def _unit_section(description: str, after: list[str], wants: list[str], requires=()) -> list[str]:
    lines = ["[Unit]", f"Description={description}"]
    lines.append(f"After={' '.join(after)}")
    lines.append(f"Wants={' '.join(wants)}")
    if requires:
        lines.append(f"Requires={' '.join(requires)}")
    return lines


def native_unit(settings: Settings, *, user: str, labspace: Path) -> str:
    """The unit of ``labspace up`` from ``labspace`` (the venv's command) with
    ``settings``, run as ``user``."""
    source = settings.source or Path.cwd() / "labspace.yaml"
    data_dir = settings.data_dir
    venv_bin = labspace.parent
    docker = _docker_backend(settings)
    after = ["network-online.target", *(["docker.service"] if docker else [])]
    lines = _unit_section(f"Labspace from {source}", after, after)
    lines += [
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"WorkingDirectory={_path(source.parent)}",
        # the venv's bin first: JupyterHub runs `alembic` from PATH to migrate its database
        f"Environment={_quote('PATH=' + str(venv_bin) + ':' + SYSTEM_PATH)}",
        f"EnvironmentFile=-{_path(source.parent / ENV_FILE)}",
        f"ExecStart={_exec([str(labspace), 'up', '--config', str(source)])}",
        "Restart=on-failure",
        "RestartSec=5s",
        f"KillMode={kill_mode(settings)}",
        "TimeoutStopSec=120s",
        "SyslogIdentifier=labspace",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={_path(data_dir)}",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
    ]
    if docker:
        lines.append("SupplementaryGroups=docker")
    if privileged_ports(settings):
        lines.append("AmbientCapabilities=CAP_NET_BIND_SERVICE")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def _folders_of(path: Path) -> list[Path]:
    """The folders to mount so that ``path`` stays readable inside when it is
    replaced (a renewal writes a new file, which a bind mount of the file
    itself would not show) or is a link (certbot's ``live/`` files point into
    ``archive/``)."""
    folders = [path.parent]
    if path.resolve().parent != path.parent:
        folders.append(path.resolve().parent)
    return folders


def _mounted_files(settings: Settings) -> list[tuple[Path, bool]]:
    """``(path, read_only)`` that the hub in a container must see where the
    settings say: the settings file, ``data_dir``, the folders of
    ``hub.tls``'s files and the data service's roots."""
    source = settings.source or Path.cwd() / "labspace.yaml"
    data_dir = settings.data_dir
    out = [(source, True), (data_dir, False)]
    tls = settings.get("hub.tls")
    kind = tls.get("type", "none")
    names = []
    if kind == "files":
        names = [tls.get("certificate"), tls.get("key")]
    elif kind == "acme":
        names = [tls.get("acme", {}).get("ca_root")]
    for name in filter(None, names):
        path = Path(os.path.abspath(settings.base_dir / Path(name).expanduser()))
        for folder in _folders_of(path):
            if not folder.is_relative_to(data_dir):  # there already, writable
                out.append((folder, True))
    data = settings.values.get("data", {})
    if data.get("enabled"):
        out += [(Path(root), True) for root in data.get("roots", [])]
    return out


def docker_run_args(
    settings: Settings, *, image: str = DEFAULT_IMAGE, name: str = CONTAINER_NAME
) -> list[str]:
    """``docker run`` arguments (without ``docker run`` itself, a restart policy
    or ``-d``) that run ``labspace up`` in ``image`` with ``settings``. Every
    path is the same inside and outside, so relative paths in the settings,
    ``backend.docker.home: bind`` and the homes under ``data_dir`` mean the
    same to the hub in its container and to the Docker daemon."""
    source = settings.source or Path.cwd() / "labspace.yaml"
    args = ["--name", name, "--network", "host", "--workdir", str(source.parent)]
    seen: set[Path] = set()
    for path, read_only in _mounted_files(settings):
        if path in seen:
            continue
        seen.add(path)
        args += ["--volume", f"{path}:{path}{':ro' if read_only else ''}"]
    if _docker_backend(settings):
        args += ["--volume", f"{DOCKER_SOCKET}:{DOCKER_SOCKET}"]
    # labspace health (the image's HEALTHCHECK) reads the same file
    args += ["--env", f"{settings_mod.CONFIG_ENV}={source}"]
    env_file = source.parent / ENV_FILE
    if env_file.is_file():
        args += ["--env-file", str(env_file)]
    return [*args, image, "labspace", "up", "--config", str(source)]


def docker_unit(
    settings: Settings, *, docker: str = "/usr/bin/docker", image: str = DEFAULT_IMAGE
) -> str:
    """The unit that runs the hub image in the foreground with ``settings``:
    systemd restarts it, the journal holds its log, ``systemctl stop`` stops
    the container (``docker stop``: SIGTERM, then the stop timeout)."""
    source = settings.source or Path.cwd() / "labspace.yaml"
    run = [docker, "run", "--rm", *docker_run_args(settings, image=image)]
    lines = _unit_section(
        f"Labspace hub image {image} with {source}",
        ["docker.service", "network-online.target"],
        ["network-online.target"],
        requires=["docker.service"],
    )
    lines += [
        "",
        "[Service]",
        "Type=simple",
        f"ExecStartPre=-{_exec([docker, 'rm', '--force', CONTAINER_NAME])}",
        f"ExecStart={_exec(run)}",
        f"ExecStop={_exec([docker, 'stop', '--time', '90', CONTAINER_NAME])}",
        "Restart=on-failure",
        "RestartSec=5s",
        "TimeoutStopSec=120s",
        "SyslogIdentifier=labspace",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)
