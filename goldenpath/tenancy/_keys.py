"""API keys: generated with a recognisable prefix, stored only as HMAC-SHA256 under a server secret.

Replicas keep every active key in memory (lookups never touch the store) and reload when the
store's change version moves, which they poll in the background: a revoked key stops working on
every replica within the poll interval.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from goldenpath.store import BudgetPeriod, Store, StoredKey, StoreError, Tenant

KEY_PREFIX = "gp-"
ADMIN_KEY_ID = "admin"
DEFAULT_TENANT = "default"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)


def load_server_secret(data_dir: Path, env: dict[str, str]) -> bytes:
    """The key of the key hashes: ``GOLDENPATH_SECRET`` (set it alike on every replica), or a random one
    kept in the data directory."""
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
class Budget:
    scope: str  # "key:<id>" or "tenant:<name>"
    limit_usd: float
    period: BudgetPeriod
    hard: bool


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is calling, resolved from the bearer key on every request, with everything that governs it."""

    key_id: str
    tenant: str
    name: str
    is_admin: bool
    models: frozenset[str] | None = None  # None: every alias
    key_rpm: int | None = None
    key_tpm: int | None = None
    tenant_rpm: int | None = None
    tenant_tpm: int | None = None
    budgets: tuple[Budget, ...] = ()
    expires_at: float | None = None
    principal_id: str | None = None  # the key's principal in the store (the admin key has none)
    groups: frozenset[str] = frozenset()  # the principal's groups, for document access and Cedar policies

    def may_use(self, alias: str) -> bool:
        return self.models is None or alias in self.models


def _budgets(key: StoredKey, tenant: Tenant | None) -> tuple[Budget, ...]:
    out = []
    if key.budget_usd is not None:
        out.append(Budget(f"key:{key.id}", key.budget_usd, key.budget_period or "month", key.budget_hard))
    if tenant is not None and tenant.budget_usd is not None:
        out.append(
            Budget(f"tenant:{tenant.name}", tenant.budget_usd, tenant.budget_period or "month", tenant.budget_hard)
        )
    return tuple(out)


def principal_for(key: StoredKey, tenant: Tenant | None, groups: frozenset[str] = frozenset()) -> Principal:
    return Principal(
        key_id=key.id,
        tenant=key.tenant,
        name=key.name,
        is_admin=key.is_admin,
        models=frozenset(key.models) if key.models is not None else None,
        key_rpm=key.rpm,
        key_tpm=key.tpm,
        tenant_rpm=tenant.rpm if tenant else None,
        tenant_tpm=tenant.tpm if tenant else None,
        budgets=_budgets(key, tenant),
        expires_at=key.expires_at,
        principal_id=key.principal_id,
        groups=groups,
    )


@dataclass(slots=True, frozen=True)
class NewKey:
    key: str  # shown once
    record: StoredKey


class KeyRing:
    """Hashes presented keys and looks them up in memory; also the admin operations on keys and tenants."""

    def __init__(self, store: Store, secret: bytes) -> None:
        self.store = store
        self._secret = secret
        self._by_hash: dict[str, Principal] = {}
        self.version = -1

    def hash(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    # reading (gateway)

    def refresh(self) -> None:
        version = self.store.version()
        tenant_rows = {t.name: t for t in self.store.list_tenants()}
        groups = {pid: frozenset(g) for pid, g in self.store.principal_groups().items()}
        self._by_hash = {
            k.key_hash: principal_for(k, tenant_rows.get(k.tenant), groups.get(k.principal_id or "", frozenset()))
            for k in self.store.list_keys()
        }
        self.version = version

    def refresh_if_changed(self) -> bool:
        if self.store.version() == self.version:
            return False
        self.refresh()
        return True

    def authenticate(self, key: str) -> Principal | None:
        principal = self._by_hash.get(self.hash(key))
        if principal is None or (principal.expires_at is not None and principal.expires_at <= time.time()):
            return None
        return principal

    def principals(self) -> list[Principal]:
        return list(self._by_hash.values())

    # admin operations (admin API and CLI)

    def ensure_admin_key(self, data_dir: Path, env: dict[str, str]) -> str | None:
        """Make the admin key exist. Returns the plain key only when it was generated now (print it once)."""
        self.store.ensure_tenant(DEFAULT_TENANT, time.time())
        given = env.get("GOLDENPATH_ADMIN_KEY")
        current = self.store.get_key(ADMIN_KEY_ID)
        if given:
            if (
                current is None
                or current.revoked_at is not None
                or not hmac.compare_digest(current.key_hash, self.hash(given))
            ):
                self._put_admin(given)
            return None
        if current is not None and current.revoked_at is None:
            return None
        key = generate_key()
        self._put_admin(key)
        _write_private(data_dir / "admin.key", key + "\n")
        return key

    def _put_admin(self, key: str) -> None:
        self.store.put_key(
            StoredKey(
                id=ADMIN_KEY_ID,
                key_hash=self.hash(key),
                prefix=key[:8],
                name="admin",
                tenant=DEFAULT_TENANT,
                is_admin=True,
                created_at=time.time(),
            )
        )

    def create_key(
        self,
        *,
        tenant: str,
        name: str,
        models: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget_usd: float | None = None,
        budget_period: BudgetPeriod | None = None,
        budget_hard: bool = True,
        expires_in_s: float | None = None,
        is_admin: bool = False,
        groups: list[str] | None = None,
    ) -> NewKey:
        if self.store.get_tenant(tenant) is None:
            raise StoreError(f"tenant {tenant!r} does not exist; create it first (goldenpath tenants create {tenant})")
        now = time.time()
        principal_id = self.store.ensure_principal(tenant, name, "service", now, groups)
        key = generate_key()
        record = StoredKey(
            id="key_" + uuid.uuid4().hex[:16],
            key_hash=self.hash(key),
            prefix=key[:8],
            name=name,
            tenant=tenant,
            principal_id=principal_id,
            is_admin=is_admin,
            models=models,
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget_usd,
            budget_period=budget_period if budget_usd is not None else None,
            budget_hard=budget_hard,
            expires_at=now + expires_in_s if expires_in_s else None,
            created_at=now,
        )
        self.store.put_key(record)
        return NewKey(key, record)

    def rotate_key(self, key_id: str) -> NewKey:
        """A new secret for the same key id (limits, budget and usage carry over); the old one stops at once."""
        current = self.store.get_key(key_id)
        if current is None or current.revoked_at is not None:
            raise StoreError(f"no active key with id {key_id!r}")
        key = generate_key()
        self.store.replace_key_hash(key_id, self.hash(key), key[:8])
        refreshed = self.store.get_key(key_id)
        assert refreshed is not None
        return NewKey(key, refreshed)

    def revoke_key(self, key_id: str) -> None:
        if key_id == ADMIN_KEY_ID:
            raise StoreError("the admin key cannot be revoked; set GOLDENPATH_ADMIN_KEY to replace it")
        if not self.store.revoke_key(key_id, time.time()):
            raise StoreError(f"no active key with id {key_id!r}")
