"""API keys: generated with a recognisable prefix, stored only as HMAC-SHA256 under a server secret."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from goldenpath.store import Store, StoredKey

KEY_PREFIX = "gp-"
ADMIN_KEY_ID = "admin"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)


def load_server_secret(data_dir: Path, env: dict[str, str]) -> bytes:
    """The key of the key hashes: ``GOLDENPATH_SECRET``, or a random one kept in the data directory."""
    if env.get("GOLDENPATH_SECRET"):
        return env["GOLDENPATH_SECRET"].encode()
    path = data_dir / "server.secret"
    if path.exists():
        return path.read_text(encoding="utf-8").strip().encode()
    secret = secrets.token_urlsafe(48)
    _write_private(path, secret + "\n")
    return secret.encode()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is calling: resolved from the bearer key on every request."""

    key_id: str
    tenant: str
    name: str
    is_admin: bool


class KeyRing:
    """Hashes presented keys and looks them up in memory; the store is read at start and on refresh."""

    def __init__(self, store: Store, secret: bytes) -> None:
        self.store = store
        self._secret = secret
        self._by_hash: dict[str, Principal] = {}

    def hash(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def refresh(self) -> None:
        self._by_hash = {
            k.key_hash: Principal(key_id=k.id, tenant=k.tenant, name=k.name, is_admin=k.is_admin)
            for k in self.store.active_keys()
        }

    def authenticate(self, key: str) -> Principal | None:
        return self._by_hash.get(self.hash(key))

    def ensure_admin_key(self, data_dir: Path, env: dict[str, str]) -> str | None:
        """Make the admin key exist. Returns the plain key only when it was generated now (print it once)."""
        path = data_dir / "admin.key"
        given = env.get("GOLDENPATH_ADMIN_KEY")
        current = self.store.get_key(ADMIN_KEY_ID)
        if given:
            if current is None or not hmac.compare_digest(current.key_hash, self.hash(given)):
                self._put_admin(given)
            return None
        if current is not None and current.revoked_at is None:
            return None
        key = generate_key()
        self._put_admin(key)
        _write_private(path, key + "\n")
        return key

    def _put_admin(self, key: str) -> None:
        self.store.put_key(
            StoredKey(
                id=ADMIN_KEY_ID,
                key_hash=self.hash(key),
                prefix=key[:8],
                name="admin",
                tenant="default",
                is_admin=True,
                created_at=time.time(),
                revoked_at=None,
            )
        )
