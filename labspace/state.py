"""State kept under ``data_dir``: generated secrets and the users' homes.

Secrets are created once, with mode 0600, and kept, so a restart keeps the admin
password, the proxy token and every signed-in session. ``data_dir`` is private
(0700), and every Labspace process runs with ``private_umask()``, so the
databases it writes there (the hub's, the services', the outbox) are 0600.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyterhub.slugs import safe_slug

from .rules import database_url

if TYPE_CHECKING:  # settings loads jsonschema, which takes seconds to import
    from .settings import Settings

__all__ = ["database_url"]  # kept here for the service kit (labspace.rules owns it)

SECRETS_DIR = "secrets"
ADMIN_PASSWORD_FILE = "admin-password"  # noqa: S105 (a file name)
PROXY_TOKEN_FILE = "proxy-auth-token"  # noqa: S105
COOKIE_SECRET_FILE = "cookie-secret"  # noqa: S105
CRYPT_KEY_FILE = "auth-state-key"
PROXY_PID_FILE = "proxy.pid"
PROXY_PROGRAM = "configurable-http-proxy"
USERS_DIR = "users"
PRIVATE_UMASK = 0o077
DATABASE_FILES = "*.sqlite*"  # the hub's and the services' SQLite files, journals included
# secrets that may come from the environment, under the names JupyterHub and
# zero-to-jupyterhub use (the chart's Secret sets them): file -> (variable, hex)
ENV_SECRETS = {
    PROXY_TOKEN_FILE: ("CONFIGPROXY_AUTH_TOKEN", False),
    COOKIE_SECRET_FILE: ("JPY_COOKIE_SECRET", True),
    CRYPT_KEY_FILE: ("JUPYTERHUB_CRYPT_KEY", True),
}
HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


def private_umask() -> None:
    """Files and folders this process (and its children) creates are its
    owner's alone. Every Labspace process calls it first: the hub, the
    launcher, the managed services and the accounting deliverer."""
    os.umask(PRIVATE_UMASK)


class StateError(Exception):
    """``data_dir`` cannot hold Labspace's state; the message says how to fix it."""


def ensure_secret(path: Path, nbytes: int = 32, hex: bool = False) -> str:
    """Return the secret stored at ``path``, creating it (mode 0600) if absent."""
    return make_secret(path, nbytes, hex)[0]


def make_secret(path: Path, nbytes: int = 32, hex: bool = False) -> tuple[str, bool]:
    """``(secret, created)``: the secret at ``path``, and whether this call made it."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
        value = path.read_text().strip()
        if value:
            return value, False
        raise StateError(f"{path}: is empty (delete it and a new secret is generated)") from None
    except OSError as e:
        raise StateError(
            f"{path.parent}: cannot be written: {e.strerror} (make data_dir writable)"
        ) from None
    value = secrets.token_hex(nbytes) if hex else secrets.token_urlsafe(nbytes)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value, True


def running_pid(pid_file: Path, *programs: str) -> int | None:
    """The PID in ``pid_file`` when that process runs and its command line names
    one of ``programs``; else None. After a crash, a reboot or a container's
    restart the number may belong to another process by now."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):  # no file, no number, no such process
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc to ask: a live process is taken for it
    return pid if any(p.encode() in cmdline for p in programs) else None


def keep_secret(path: Path, value: str) -> Path:
    """Write ``value`` (a secret from the settings, e.g. a database URL with a
    password) to ``path``, 0600 in a 0700 folder, unless it holds it already;
    returns ``path``. Services get the file's path (``*_FILE``), never the value."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() and path.read_text().strip() == value:
        os.chmod(path, 0o600)
        return path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return path


def user_dir_name(username: str) -> str:
    """A safe folder name for a user: the name itself when it is already safe,
    else a slug plus a hash, so two names never share a home."""
    return safe_slug(username, max_length=48)


def _env_secret_problem(name: str, value: str, hex: bool) -> str | None:
    """What is wrong with the secret ``value`` of the variable ``name`` (never
    the value itself), or None."""
    if name == "JUPYTERHUB_CRYPT_KEY":  # keys separated by ';', the first in use
        keys = [k.strip() for k in value.split(";") if k.strip()]
        if keys and all(HEX.match(k) and len(k) == 64 for k in keys):
            return None
        return f"{name}: not a 32-byte key in hex (64 hex digits, e.g. `openssl rand -hex 32`)"
    if hex and not HEX.match(value):
        return (
            f"{name}: not hexadecimal (an even number of hex digits, e.g. `openssl rand -hex 32`)"
        )
    return None


class State:
    """The files Labspace keeps under ``data_dir``.

    The proxy token, the cookie secret and the auth-state key may come from the
    environment instead (``CONFIGPROXY_AUTH_TOKEN``, ``JPY_COOKIE_SECRET``,
    ``JUPYTERHUB_CRYPT_KEY``, as JupyterHub and zero-to-jupyterhub name them:
    the chart's Secret sets them in the hub and proxy pods). A value given there
    is kept in its file, so everything that reads the file reads it."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None):
        self.settings = settings
        self.data_dir = settings.data_dir
        self.environ = os.environ if environ is None else environ
        self.admin_password_created = False  # generated by this process just now

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / SECRETS_DIR

    @property
    def users_dir(self) -> Path:
        return self.data_dir / USERS_DIR

    @property
    def cookie_secret_file(self) -> Path:
        return self.secrets_dir / COOKIE_SECRET_FILE

    @property
    def db_url(self) -> str:
        url = self.settings.get("hub.db_url")
        return database_url(url, self.data_dir / "jupyterhub.sqlite", "hub.db_url")

    def prepare(self) -> None:
        """Create ``data_dir`` and its folders, make it private (0700, its
        databases 0600) and check that it can be written."""
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
            self.users_dir.mkdir(mode=0o755, exist_ok=True)
        except OSError as e:
            raise StateError(
                f"data_dir: {self.data_dir} cannot be created: {e.strerror} "
                "(choose a writable folder)"
            ) from None
        try:
            probe = self.data_dir / f".write-check-{os.getpid()}"
            probe.touch(mode=0o600)
            probe.unlink()
        except OSError as e:
            raise StateError(
                f"data_dir: {self.data_dir} cannot be written: {e.strerror} "
                "(make it writable by this user, or set data_dir to a writable folder)"
            ) from None
        self._make_private()
        for filename in ENV_SECRETS:
            self._env_secret(filename)

    def _env_secret(self, filename: str) -> str | None:
        """The secret of ``filename`` given in the environment (see ``ENV_SECRETS``),
        kept in ``secrets/<filename>``; None when the variable is not set."""
        name, hex = ENV_SECRETS[filename]
        value = (self.environ.get(name) or "").strip()
        if not value:
            return None
        problem = _env_secret_problem(name, value, hex)
        if problem:
            raise StateError(problem)
        try:
            keep_secret(self.secrets_dir / filename, value)
        except OSError as e:
            raise StateError(
                f"{self.secrets_dir}: cannot be written: {e.strerror} (make data_dir writable)"
            ) from None
        return value

    def _secret(self, filename: str, hex: bool = False) -> str:
        """The secret of ``filename``: from the environment, else kept under
        ``secrets/`` (generated on first use)."""
        given = self._env_secret(filename)
        if given is not None:
            return given
        return ensure_secret(self.secrets_dir / filename, nbytes=32, hex=hex)

    def _make_private(self) -> None:
        """data_dir and secrets/ 0700, the databases in data_dir 0600, whatever
        mode an older Labspace or another program left them with."""
        for path in (self.data_dir, self.secrets_dir, *self.data_dir.glob(DATABASE_FILES)):
            mode = stat.S_IMODE(path.stat().st_mode)
            if not mode & 0o077:
                continue
            try:
                os.chmod(path, 0o700 if path.is_dir() else 0o600)
            except OSError as e:
                raise StateError(
                    f"data_dir: {path} is open to other users (mode {mode:o}) and cannot be "
                    f"made private: {e.strerror} (make the user that runs Labspace its "
                    "owner, or set data_dir to a folder of that user)"
                ) from None

    @property
    def admin_password_file(self) -> Path:
        return self.secrets_dir / ADMIN_PASSWORD_FILE

    def admin_password(self) -> str:
        """The configured admin password, else the generated one (made on the
        first start; ``admin_password_created`` says whether that was now)."""
        configured = self.settings.get("auth.admin_password")
        if configured:
            return configured
        value, created = make_secret(self.admin_password_file, nbytes=24)
        self.admin_password_created = self.admin_password_created or created
        return value

    @property
    def admin_password_generated(self) -> bool:
        return not self.settings.get("auth.admin_password")

    def crypt_keys(self) -> list[str]:
        """Keys that encrypt SSO tokens kept in the hub database (auth_state):
        the first encrypts, all decrypt (``JUPYTERHUB_CRYPT_KEY`` may list
        several, separated by ';', to rotate them)."""
        value = self._secret(CRYPT_KEY_FILE, hex=True)
        return [k.strip() for k in value.split(";") if k.strip()]

    @property
    def proxy_pid_file(self) -> Path:
        return self.data_dir / PROXY_PID_FILE

    def forget_stale_proxy_pid(self) -> None:
        """Remove the proxy's pid file unless its process is still a proxy.

        JupyterHub stops the process a leftover pid file names (an orphaned
        proxy would hold the port). After a reboot, or in a restarted container
        whose PIDs count from 1 again, that number may now be another process:
        the hub itself, which then stopped its own start in a loop."""
        if running_pid(self.proxy_pid_file, PROXY_PROGRAM) is None:
            self.proxy_pid_file.unlink(missing_ok=True)

    def proxy_token(self) -> str:
        """The token the hub and the proxy share."""
        return self._secret(PROXY_TOKEN_FILE)

    def service_token(self, name: str) -> str:
        """The API token of Labspace's service ``name``, generated once and kept."""
        return ensure_secret(self.secrets_dir / f"{name}-api-token", nbytes=32, hex=True)

    def service_db_url(self, name: str) -> str:
        """The database of service ``name``: ``<name>.db_url``, else SQLite under data_dir."""
        url = self.settings.get(f"{name}.db_url")
        return database_url(url, self.data_dir / f"{name}.sqlite", f"{name}.db_url")

    def service_environment(
        self,
        name: str,
        config: dict[str, Any],
        secrets: dict[str, str | Path] | None = None,
        database: bool = True,
    ) -> dict[str, str]:
        """How every service gets its configuration: ``LABSPACE_<NAME>_CONFIG``,
        the JSON of ``config`` plus ``data_dir`` and a ``<key>_file`` for each
        secret (``labspace.services.kit.run.ServiceContext`` reads it). With
        ``database``, the service's database URL is one (``db_url``, from the
        ``<name>`` section of the settings). A secret given as text is kept in
        ``secrets/<name>-<key>`` (0600); a ``Path`` names the file that holds it.
        No secret value travels in the environment (JupyterHub keeps a service's
        environment in its database)."""
        files = {"db_url": self.service_db_url(name)} if database else {}
        files.update(secrets or {})
        out = {**config, "data_dir": str(self.data_dir)}
        for key, value in files.items():
            if not isinstance(value, Path):
                slug = key.replace("_", "-")
                value = keep_secret(self.secrets_dir / f"{name}-{slug}", value)
            out[f"{key}_file"] = str(value)
        prefix = "LABSPACE_" + name.upper().replace("-", "_")
        return {f"{prefix}_CONFIG": json.dumps(out), "PYTHONUNBUFFERED": "1"}
