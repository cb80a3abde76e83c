"""The server key, and encryption at rest of what the server must be able to read back.

HMAC verification needs an API secret in clear at request time, so a hash will not do; instead the
secret is stored encrypted (Fernet: AES-128-CBC + HMAC-SHA256) under a key that is not in the
database: `EXCHANGE_SECRET_KEY` in the environment, or a key file created at first start (mode 0600).
A leaked database alone then reveals no API secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

ENV_KEY = "EXCHANGE_SECRET_KEY"


class WrongServerKey(ValueError):
    """A sealed secret does not open with this server key: it was sealed under another one."""


def key_source(key_file: str | os.PathLike[str]) -> str:
    """Where `load_server_key` takes the key from, for messages to the operator."""
    return ENV_KEY if os.environ.get(ENV_KEY) else f"the key file {os.fspath(key_file)}"


def key_check(master: bytes) -> str:
    """A fingerprint of the server key, kept in the store to tell a wrong key at start: it is an
    HMAC of a fixed text, so it reveals nothing of the key itself."""
    return hmac.new(master, b"pyexchange:server-key-check", hashlib.sha256).hexdigest()


def load_server_key(key_file: str | os.PathLike[str]) -> bytes:
    """The master key: from the environment, else from (or into) the key file."""
    env = os.environ.get(ENV_KEY)
    if env:
        return env.encode()
    path = Path(key_file)
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(os.urandom(32))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key


class SecretBox:
    """Encrypts small secrets with a key derived from the master key for one purpose."""

    def __init__(self, master: bytes, purpose: str) -> None:
        derived = hashlib.sha256(b"pyexchange:" + purpose.encode() + b":" + master).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise WrongServerKey("secret cannot be decrypted with this server key") from None
