"""The server's secret key, and the encryption of secrets at rest (Fernet, from `cryptography`).

Envelope encryption, two levels:
- the **server key** (a key ring, newest first) comes from `FNSTAGE_SECRET_KEY` (Fernet keys separated
  by commas) or from a key file (one key a line; `fnstage up` creates `secret-key`, mode 0600, in its
  data folder on first start). It never reaches the store;
- each gateway has a **data key** (a random Fernet key) stored in `secret_keys` *wrapped* (encrypted)
  by the server key; a secret's value is stored as a Fernet token under its gateway's data key.

`fnstage secrets rotate-key -g GW` (an owner) makes a new data key, re-encrypts the gateway's secrets
(every configuration version, so a rollback still decrypts) and wraps the new key with the newest
server key: the way to retire a server key is to put a new one first in the ring, rotate every
gateway, then drop the old one. Fernet is AES-128-CBC with HMAC-SHA256 (authenticated): a token
changed in the database is refused, never decrypted to something else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes, hmac

KEY_ENV = "FNSTAGE_SECRET_KEY"
KEY_FILE_ENV = "FNSTAGE_SECRET_KEY_FILE"
KEY_FILENAME = "secret-key"


class SecretKeyError(Exception):
    """No usable server key, or a token it cannot open (another key, or changed bytes)."""


@dataclass(frozen=True)
class KeyRing:
    """The server key: Fernet keys, newest first (the first encrypts, any decrypts)."""

    keys: tuple[bytes, ...]
    source: str  # where it came from, for messages: "$FNSTAGE_SECRET_KEY" or the file's path

    @classmethod
    def parse(cls, text: str, source: str) -> KeyRing:
        keys = tuple(part.strip().encode() for part in text.replace(",", "\n").splitlines() if part.strip())
        if not keys:
            raise SecretKeyError(f"the secret key in {source} is empty")
        for number, key in enumerate(keys, 1):
            try:
                Fernet(key)
            except ValueError:
                raise SecretKeyError(
                    f"key {number} in {source} is not a Fernet key (32 bytes, url-safe base64; "
                    "make one with `python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`)"
                ) from None
        return cls(keys, source)

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise SecretKeyError(f"cannot read the secret key file {path}: {reason}") from None
        return cls.parse(text, str(path))

    @classmethod
    def from_env(cls, file: Path | None = None) -> KeyRing | None:
        """`FNSTAGE_SECRET_KEY`, else the key file given (or named by `FNSTAGE_SECRET_KEY_FILE`);
        None when there is neither (secrets cannot be set or delivered then)."""
        value = os.environ.get(KEY_ENV)
        if value:
            return cls.parse(value, f"${KEY_ENV}")
        named = file or (Path(os.environ[KEY_FILE_ENV]) if os.environ.get(KEY_FILE_ENV) else None)
        return cls.from_file(named) if named is not None else None

    def _fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(key) for key in self.keys])

    def wrap(self, data_key: bytes) -> str:
        return self._fernet().encrypt(data_key).decode()

    def unwrap(self, wrapped: str) -> bytes:
        try:
            return self._fernet().decrypt(wrapped.encode())
        except InvalidToken:
            raise SecretKeyError(
                f"the gateway's data key does not open with the server key from {self.source} "
                "(another key, or the stored key was changed)"
            ) from None


def create_key_file(path: Path) -> bool:
    """Write a new server key to `path`, mode 0600, unless the file exists; True if it wrote one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(Fernet.generate_key().decode() + "\n")
    return True


def new_data_key() -> bytes:
    return Fernet.generate_key()


def encrypt(data_key: bytes, value: str) -> str:
    return Fernet(data_key).encrypt(value.encode()).decode()


def decrypt(data_key: bytes, token: str) -> str:
    try:
        return Fernet(data_key).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretKeyError("a stored secret does not open with its gateway's key") from None


def fingerprint(data_key: bytes, value: str) -> str:
    """A short, keyed fingerprint (HMAC-SHA256 under the data key): tells two values apart without
    letting anyone who reads it guess a short secret offline."""
    mac = hmac.HMAC(data_key, hashes.SHA256())
    mac.update(value.encode())
    return mac.finalize().hex()[:12]
