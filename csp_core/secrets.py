"""Encryption of secrets at rest (generated tenant admin passwords) with Fernet.

The vault holds one or more Fernet keys: it encrypts with the first and decrypts with any, so a
key can be rotated by putting the new key first and keeping the old one until `rotate` has
re-encrypted the stored tokens. Keys never appear in logs, reprs or exception messages.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

if TYPE_CHECKING:
    from csp_core.settings import Settings

KEY_FILE_MODE = 0o600


class SecretVaultError(Exception):
    """A vault problem (bad key, undecryptable token); the message never contains key or secret."""


def generate_key() -> str:
    """A fresh url-safe base64 Fernet key."""
    return Fernet.generate_key().decode("ascii")


def _split_keys(value: str) -> list[str]:
    # SECRETS_KEY may list several keys, comma-separated, newest first (rotation).
    return [part.strip() for part in value.split(",") if part.strip()]


def _read_or_create_key_file(path: Path) -> str:
    """Read the key file, creating it with 0600 permissions the first time (race-safe)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write a complete private temp file, then hard-link it into place: the link fails if
        # another process won the race, and nobody ever reads a half-written key.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(generate_key() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text(encoding="ascii").strip()
    if not text:
        raise SecretVaultError(f"the secrets key file {path} is empty")
    return text


class SecretVault:
    """Encrypts and decrypts secrets; tokens are Fernet tokens (authenticated, timestamped)."""

    __slots__ = ("_fernet", "_key_count")

    def __init__(self, keys: str | SecretStr | Sequence[str | bytes | SecretStr]) -> None:
        if isinstance(keys, str | SecretStr):
            raw = keys.get_secret_value() if isinstance(keys, SecretStr) else keys
            key_list: list[str | bytes] = list(_split_keys(raw))
        else:
            key_list = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
        if not key_list:
            raise SecretVaultError("a SecretVault needs at least one Fernet key")
        try:
            fernets = [Fernet(key) for key in key_list]
        except (ValueError, TypeError):
            # The original error text could echo key material: replace it.
            raise SecretVaultError(
                "invalid Fernet key: expected 32 url-safe base64-encoded bytes"
            ) from None
        self._fernet = MultiFernet(fernets)
        self._key_count = len(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretVault:
        """Use SECRETS_KEY when set; otherwise the development key file (generated once)."""
        if settings.secrets_key is not None and settings.secrets_key.get_secret_value().strip():
            return cls(settings.secrets_key)
        return cls(_read_or_create_key_file(Path(settings.secrets_key_file)))

    def encrypt(self, secret: SecretStr) -> str:
        return self._fernet.encrypt(secret.get_secret_value().encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> SecretStr:
        try:
            plain = self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SecretVaultError(
                "cannot decrypt the stored secret: it was encrypted with a key this vault "
                "does not hold, or it was altered"
            ) from None
        return SecretStr(plain.decode("utf-8"))

    def rotate(self, token: str) -> str:
        """Re-encrypt a token with the first (current) key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise SecretVaultError("cannot rotate the stored secret: no key decrypts it") from None

    def __repr__(self) -> str:
        return f"SecretVault(keys=<{self._key_count} redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> object:
        # Pickling would copy the keys somewhere unexpected (e.g. a process pool): refuse.
        raise TypeError("SecretVault cannot be pickled")
