"""State kept under ``data_dir``: generated secrets and the users' homes.

Secrets are created once, with mode 0600, and kept, so a restart keeps the admin
password, the proxy token and every signed-in session.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from jupyterhub.slugs import safe_slug

from .settings import Settings

SECRETS_DIR = "secrets"
ADMIN_PASSWORD_FILE = "admin-password"  # noqa: S105 (a file name)
PROXY_TOKEN_FILE = "proxy-auth-token"  # noqa: S105
COOKIE_SECRET_FILE = "cookie-secret"  # noqa: S105
CRYPT_KEY_FILE = "auth-state-key"
USERS_DIR = "users"


class StateError(Exception):
    """``data_dir`` cannot hold Labspace's state; the message says how to fix it."""


def ensure_secret(path: Path, nbytes: int = 32, hex: bool = False) -> str:
    """Return the secret stored at ``path``, creating it (mode 0600) if absent."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
        value = path.read_text().strip()
        if value:
            return value
        raise StateError(f"{path}: is empty (delete it and a new secret is generated)") from None
    except OSError as e:
        raise StateError(
            f"{path.parent}: cannot be written: {e.strerror} (make data_dir writable)"
        ) from None
    value = secrets.token_hex(nbytes) if hex else secrets.token_urlsafe(nbytes)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def user_dir_name(username: str) -> str:
    """A safe folder name for a user: the name itself when it is already safe,
    else a slug plus a hash, so two names never share a home."""
    return safe_slug(username, max_length=48)


def database_url(url: str | None, sqlite_file: Path) -> str:
    """A SQLAlchemy URL: ``url`` with plain ``postgresql://`` read as psycopg 3,
    or SQLite at ``sqlite_file`` when ``url`` is empty."""
    if not url:
        return f"sqlite:///{sqlite_file}"
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


class State:
    """The files Labspace keeps under ``data_dir``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = settings.data_dir

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
        return database_url(self.settings.get("hub.db_url"), self.data_dir / "jupyterhub.sqlite")

    def prepare(self) -> None:
        """Create ``data_dir`` and its folders."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
            self.users_dir.mkdir(mode=0o755, exist_ok=True)
        except OSError as e:
            raise StateError(
                f"data_dir: {self.data_dir} cannot be created: {e.strerror} "
                "(choose a writable folder)"
            ) from None

    def admin_password(self) -> str:
        """The configured admin password, else the generated one."""
        return self.settings.get("auth.admin_password") or ensure_secret(
            self.secrets_dir / ADMIN_PASSWORD_FILE, nbytes=24
        )

    @property
    def admin_password_generated(self) -> bool:
        return not self.settings.get("auth.admin_password")

    def crypt_key(self) -> str:
        """Key that encrypts SSO tokens kept in the hub database (auth_state)."""
        return ensure_secret(self.secrets_dir / CRYPT_KEY_FILE, nbytes=32, hex=True)

    def proxy_token(self) -> str:
        return ensure_secret(self.secrets_dir / PROXY_TOKEN_FILE)

    def service_token(self, name: str) -> str:
        """The API token of Labspace's service ``name``, generated once and kept."""
        return ensure_secret(self.secrets_dir / f"{name}-api-token", nbytes=32, hex=True)

    def service_db_url(self, name: str) -> str:
        """The database of service ``name``: ``<name>.db_url``, else SQLite under data_dir."""
        return database_url(self.settings.get(f"{name}.db_url"), self.data_dir / f"{name}.sqlite")
