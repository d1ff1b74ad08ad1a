"""The s3 credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) with one key.

The key lives in ``<data_dir>/secrets/data-credentials-key`` (0600), made once
and kept: a new key would make every stored credential unreadable. A sealed
credential is a JSON object ``{"access_key_id", "secret_access_key",
"session_token"?}``; it is opened only to hand it to the hub side at a start
(``api/internal/start``), never returned by the REST API, never logged.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "data-credentials-key"
FIELDS = ("access_key_id", "secret_access_key", "session_token")
MAX_FIELD = 4096  # characters of one credential value (STS session tokens run to ~2 KB)
VALUE_PATTERN = f"[!-~]{{1,{MAX_FIELD}}}"  # printable ASCII, no spaces (keys, base64 tokens)
VALUE = re.compile(VALUE_PATTERN)


class CredentialError(ValueError):
    """A credential that is not what the data service takes (message: which field, what fix)."""


def key_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "secrets" / KEY_FILE


def ensure_key(path: Path) -> bytes:
    """The Fernet key at ``path``, made (0600, never overwritten) on first use."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
        key = path.read_bytes().strip()
        if not key:
            raise SystemExit(
                f"{path}: is empty (stored credentials cannot be read without it)"
            ) from None
        return key
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key


def check_credential(value: Any, where: str = "credentials") -> dict[str, str]:
    """A credential as stored: the two keys and an optional session token, all
    non-empty strings; ``CredentialError`` naming the field otherwise."""
    if not isinstance(value, dict):
        raise CredentialError(
            f"{where}: must be an object "
            '{"access_key_id": ..., "secret_access_key": ..., "session_token": ...}'
        )
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise CredentialError(
            f"{where}.{unknown[0]}: unknown key (use access_key_id, secret_access_key, "
            "session_token)"
        )
    out = {}
    for name in FIELDS:
        item = value.get(name)
        if item is None and name == "session_token":
            continue
        if not isinstance(item, str) or not VALUE.fullmatch(item):
            raise CredentialError(
                f"{where}.{name}: must be 1 to {MAX_FIELD} printable ASCII characters "
                "without spaces (as the S3 service gave it)"
            )
        out[name] = item
    return out


class Vault:
    """Seals and opens credentials with the service's one key."""

    def __init__(self, key: bytes):
        self._fernet = Fernet(key)

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> Vault:
        return cls(ensure_key(key_path(data_dir)))

    def __repr__(self) -> str:  # never the key
        return "Vault()"

    def seal(self, credential: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(credential, sort_keys=True).encode())

    def open(self, sealed: bytes) -> dict[str, str] | None:
        """The credential, or None when it was sealed with another key."""
        try:
            return json.loads(self._fernet.decrypt(sealed))
        except (InvalidToken, ValueError):
            return None
