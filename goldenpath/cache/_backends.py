"""Where entries live: this process, or Redis shared by every gateway replica."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, cast

import numpy as np
import redis.asyncio

from goldenpath.cache._index import EntryStore, SemanticRow, VectorIndex

# (partition id, max rows): which semantic partition a lookup compares against, and its bound.
Partition = tuple[str, int]


class Backend(abc.ABC):
    """Exact entries by (tenant, key), and the vector index the semantic layer searches locally."""

    index: VectorIndex

    @abc.abstractmethod
    async def get(self, tenant: str, key: str, sync: Partition | None = None) -> bytes | None:
        """The entry's body. With ``sync``, a shared backend also brings that partition of the local
        index up to date, in the same round trip.
        """

    @abc.abstractmethod
    async def put(
        self, tenant: str, key: str, body: bytes, ttl_s: float, max_entries: int, row: SemanticRow | None
    ) -> None:
        """Store an entry, and its semantic row if it has one."""


class MemoryBackend(Backend):
    def __init__(self) -> None:
        self.entries = EntryStore(time.monotonic)
        self.index = VectorIndex(time.monotonic)

    async def get(self, tenant: str, key: str, sync: Partition | None = None) -> bytes | None:
        return self.entries.get(tenant, key)

    async def put(
        self, tenant: str, key: str, body: bytes, ttl_s: float, max_entries: int, row: SemanticRow | None
    ) -> None:
        self.entries.put(tenant, key, body, ttl_s, max_entries)
        if row is not None:
            self.index.add(tenant, key, row, time.monotonic() + ttl_s, max_entries)


# KEYS: entry, partition stream. ARGV: stream cursor, batch size.
# The entry's body, or else the stream entries after the cursor (the mirror's increment).
_LOOKUP = """
local body = redis.call('HGET', KEYS[1], 'b')
if body then return body end
return redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
"""

# KEYS: entry, tenant index, [partition stream]. ARGV: entry key hash, body, ttl ms, max entries,
# entry key prefix, vector, text. Writes the entry (and its stream row), then trims the tenant to its bound.
_STORE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local function forget(entry)
  local ref = redis.call('HMGET', entry, 's', 'i')
  if ref[1] and ref[2] then redis.call('XDEL', ref[1], ref[2]) end
  redis.call('DEL', entry)
end
local function extend(key)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
forget(KEYS[1])
redis.call('HSET', KEYS[1], 'b', ARGV[2])
if KEYS[3] then
  local id = redis.call('XADD', KEYS[3], 'MINID', now - ttl, '*', 'k', ARGV[1], 'v', ARGV[6], 't', ARGV[7],
    'e', now + ttl)
  redis.call('HSET', KEYS[1], 's', KEYS[3], 'i', id)
  extend(KEYS[3])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #old, 2 do forget(ARGV[5] .. old[i]) end
end
extend(KEYS[2])
return 1
"""

_SAFE_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_SYNC_BATCH = 512
_MAX_CURSORS = 65_536
_RETRY_AFTER_S = 5.0


class RedisUnavailable(Exception):
    """Redis failed moments ago; calls are skipped until ``_RETRY_AFTER_S`` has passed."""


def _tenant_tag(tenant: str) -> str:
    """The tenant as written in keys: itself when plain, else ``=`` and its UTF-8 in hex (injective)."""
    return tenant if _SAFE_TENANT.fullmatch(tenant) else "=" + tenant.encode().hex()


class RedisBackend(Backend):
    """Keys ``{prefix}:{<tenant>}:…`` (the braces are a cluster hash tag: one tenant, one slot; the
    store script also deletes evicted keys it was not handed, which the tag keeps in its slot).
    Needs Redis ≥ 6.2 (``XADD MINID``, exclusive ``XRANGE``).

    - ``e:<key>``: hash ``b`` (body), ``s``/``i`` (its semantic stream row), expiring after the TTL;
    - ``idx``: sorted set of the tenant's entry keys by expiry time, trimmed to the bound on store;
    - ``s:<partition>``: stream of semantic rows ``k`` (entry key), ``v`` (float32 vector), ``t``
      (text), ``e`` (expiry, ms), trimmed by age on every add and by eviction; replicas mirror it in
      ``index``.
    """

    def __init__(self, client: redis.asyncio.Redis, prefix: str, timeout_s: float) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the cache needs a Redis client with decode_responses=False (it stores bytes)")
        self._client = client
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._lookup = client.register_script(_LOOKUP)
        self._store = client.register_script(_STORE)
        self.index = VectorIndex(time.time)  # expiries are Redis server times
        self._cursors: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._down_until = 0.0

    @contextlib.asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        """Bound a round trip by the timeout; after a failure, skip Redis for ``_RETRY_AFTER_S``
        rather than make every request wait for a dead server.
        """
        if time.monotonic() < self._down_until:
            raise RedisUnavailable(f"skipped: Redis failed less than {_RETRY_AFTER_S:g} s ago")
        try:
            async with asyncio.timeout(self._timeout_s):
                yield
        except TimeoutError as exc:
            self._down_until = time.monotonic() + _RETRY_AFTER_S
            raise TimeoutError(f"Redis did not answer within {self._timeout_s:g} s") from exc
        except Exception:
            self._down_until = time.monotonic() + _RETRY_AFTER_S
            raise

    def _base(self, tenant: str) -> str:
        return f"{self._prefix}:{{{_tenant_tag(tenant)}}}"

    async def get(self, tenant: str, key: str, sync: Partition | None = None) -> bytes | None:
        base = self._base(tenant)
        async with self._call():
            if sync is None:
                return cast("bytes | None", await self._client.hget(f"{base}:e:{key}", "b"))
            cursor = self._cursors.get((tenant, sync[0]), b"-")
            reply = await self._lookup(keys=[f"{base}:e:{key}", f"{base}:s:{sync[0]}"], args=[cursor, _SYNC_BATCH])
        if isinstance(reply, bytes):
            return reply
        self._mirror(tenant, sync, reply)
        return None

    def _mirror(self, tenant: str, sync: Partition, rows: list[Any]) -> None:
        partition, max_rows = sync
        for _, fields in rows:
            row = dict(zip(fields[::2], fields[1::2], strict=True))
            semantic = SemanticRow(partition, row[b"t"].decode(), np.frombuffer(row[b"v"], dtype=np.float32))
            self.index.add(tenant, row[b"k"].decode(), semantic, int(row[b"e"]) / 1000, max_rows)
        if rows:
            self._cursors[(tenant, partition)] = b"(" + rows[-1][0]
            self._cursors.move_to_end((tenant, partition))
            if len(self._cursors) > _MAX_CURSORS:
                self._cursors.popitem(last=False)  # that partition is read again from its start

    async def put(
        self, tenant: str, key: str, body: bytes, ttl_s: float, max_entries: int, row: SemanticRow | None
    ) -> None:
        base = self._base(tenant)
        keys = [f"{base}:e:{key}", f"{base}:idx"]
        args: list[bytes | str | int] = [key, body, max(1, round(ttl_s * 1000)), max_entries, f"{base}:e:"]
        if row is not None:
            keys.append(f"{base}:s:{row.partition}")
            args += [row.vector.astype(np.float32).tobytes(), row.text.encode()]
        async with self._call():
            await self._store(keys=keys, args=args)
