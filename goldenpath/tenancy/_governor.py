"""Rate limits and budgets, decided in one atomic step per request.

Limits count in one-second buckets over a sliding window: a request is admitted only if the buckets
of the last ``WINDOW_S`` seconds *plus the current one* leave room, so no trailing window of
``WINDOW_S`` seconds ever holds more than the limit (the rule errs by under one second on the side
of refusing). Memory per scope is bounded by the number of buckets, whatever the traffic. With Redis
every replica shares the counters, and one Lua script checks and records every scope atomically.
Budgets reserve the request's largest possible cost before the call and settle the actual cost
after; a reservation lapses with the request deadline if its gateway dies. The in-process governor
implements the same rules for a single gateway.
"""

from __future__ import annotations

import abc
import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

WINDOW_S = 60
BUCKET_S = 1.0


@dataclass(slots=True)
class Admission:
    """What one request asks for. Scopes are opaque strings such as ``key:k1`` or ``model:gpt``."""

    request_id: str
    rpm: list[tuple[str, int]] = field(default_factory=list)
    tpm: list[tuple[str, int]] = field(default_factory=list)
    tokens: int = 0
    budgets: list[tuple[str, int, bool]] = field(default_factory=list)  # (scope-with-period, limit µUSD, hard)
    reserve_micro: int = 0
    reservation_ttl_s: float = 300.0
    bucket: int = -1  # set by admit(): where the counts went, so settle() can correct them

    @property
    def reservation_buckets(self) -> int:
        return math.ceil(self.reservation_ttl_s / BUCKET_S)


@dataclass(slots=True)
class Decision:
    allowed: bool
    reason: Literal["rpm", "tpm", "budget"] | None = None
    scope: str | None = None
    retry_after_s: float | None = None  # None: waiting will not help
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None
    budget_exceeded: list[str] = field(default_factory=list)  # soft budgets already over their limit


class Governor(abc.ABC):
    @abc.abstractmethod
    async def admit(self, a: Admission) -> Decision: ...

    @abc.abstractmethod
    async def settle(self, a: Admission, tokens: int, cost_micro: int) -> list[str]:
        """Replace the token estimate with the actual count, release the reservation and charge the cost.
        Returns the budget scopes that are now over their limit."""

    @abc.abstractmethod
    async def seed_spent(self, scope: str, spent_micro: int, ttl_s: float) -> None:
        """Set a budget's spent amount (from the request log) unless this period already has one."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class _Buckets:
    """Amounts per bucket number over the last ``span`` buckets plus the current one, with their total."""

    __slots__ = ("amounts", "oldest", "span", "total")

    def __init__(self, span: int) -> None:
        self.span = span
        self.amounts: dict[int, int] = {}
        self.total = 0
        self.oldest = 0

    def prune(self, bucket: int) -> None:
        cutoff = bucket - self.span
        if cutoff <= self.oldest:
            return
        if cutoff - self.oldest > self.span:
            self.amounts.clear()
            self.total = 0
        else:
            for j in range(self.oldest, cutoff):
                self.total -= self.amounts.pop(j, 0)
        self.oldest = cutoff

    def add(self, bucket: int, amount: int) -> None:
        if not self.amounts:
            self.oldest = bucket - self.span
        self.amounts[bucket] = self.amounts.get(bucket, 0) + amount
        self.total += amount

    def correct(self, bucket: int, delta: int) -> None:
        if bucket in self.amounts:
            self.amounts[bucket] += delta
            self.total += delta

    def leaves_at(self, j: int) -> float:
        """When bucket ``j`` drops out of the window (Unix time)."""
        return (j + self.span + 1) * BUCKET_S

    def wait_for(self, need: int, now: float) -> float:
        freed = 0
        for j in sorted(self.amounts):
            freed += self.amounts[j]
            if freed >= need:
                return max(0.0, self.leaves_at(j) - now)
        return self.span * BUCKET_S

    def reset_in(self, now: float) -> float:
        live = [j for j, v in self.amounts.items() if v]
        return max(0.0, self.leaves_at(min(live)) - now) if live else 0.0


class MemoryGovernor(Governor):
    """One gateway process: exact, no I/O. Limits restart empty after a restart; budgets are re-seeded
    from the request log."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._counters: dict[str, _Buckets] = {}
        self._spent: dict[str, int] = {}

    def _buckets(self, scope: str, span: int, bucket: int) -> _Buckets:
        b = self._counters.get(scope)
        if b is None:
            b = self._counters[scope] = _Buckets(span)
        b.prune(bucket)
        return b

    async def admit(self, a: Admission) -> Decision:
        now = self._clock()
        bucket = int(now // BUCKET_S)
        d = Decision(allowed=True)
        rpm = [(scope, limit, self._buckets("r:" + scope, WINDOW_S, bucket)) for scope, limit in a.rpm]
        tightest_r: _Buckets | None = None
        for scope, limit, b in rpm:
            remaining = limit - b.total - 1
            if remaining < 0:
                return Decision(
                    False,
                    "rpm",
                    scope,
                    b.wait_for(-remaining, now),
                    limit_requests=limit,
                    remaining_requests=0,
                    reset_requests_s=b.reset_in(now),
                )
            if d.remaining_requests is None or remaining < d.remaining_requests:
                d.limit_requests, d.remaining_requests, tightest_r = limit, remaining, b
        tpm = [(scope, limit, self._buckets("t:" + scope, WINDOW_S, bucket)) for scope, limit in a.tpm]
        tightest_t: _Buckets | None = None
        for scope, limit, b in tpm:
            remaining = limit - b.total - a.tokens
            if remaining < 0:
                retry = None if a.tokens > limit else b.wait_for(-remaining, now)
                return Decision(
                    False,
                    "tpm",
                    scope,
                    retry,
                    limit_tokens=limit,
                    remaining_tokens=max(0, limit - b.total),
                    reset_tokens_s=b.reset_in(now),
                )
            if d.remaining_tokens is None or remaining < d.remaining_tokens:
                d.limit_tokens, d.remaining_tokens, tightest_t = limit, remaining, b
        budgets = [
            (scope, limit, hard, self._buckets("b:" + scope, a.reservation_buckets, bucket))
            for scope, limit, hard in a.budgets
        ]
        for scope, limit, hard, b in budgets:
            spent = self._spent.get(scope, 0)
            if hard and spent + b.total + a.reserve_micro > limit:
                return Decision(False, "budget", scope, None)
            if spent >= limit:
                d.budget_exceeded.append(scope)
        for _, _, b in rpm:
            b.add(bucket, 1)
        for _, _, b in tpm:
            b.add(bucket, a.tokens)
        for _, _, _, b in budgets:
            b.add(bucket, a.reserve_micro)
        a.bucket = bucket
        if tightest_r is not None:
            d.reset_requests_s = tightest_r.reset_in(now)
        if tightest_t is not None:
            d.reset_tokens_s = tightest_t.reset_in(now)
        return d

    async def settle(self, a: Admission, tokens: int, cost_micro: int) -> list[str]:
        for scope, _ in a.tpm:
            counter = self._counters.get("t:" + scope)
            if counter is not None:
                counter.correct(a.bucket, tokens - a.tokens)
        over = []
        for scope, limit, _ in a.budgets:
            counter = self._counters.get("b:" + scope)
            if counter is not None:
                counter.correct(a.bucket, -a.reserve_micro)
            spent = self._spent[scope] = self._spent.get(scope, 0) + cost_micro
            if spent >= limit:
                over.append(scope)
        return over

    async def seed_spent(self, scope: str, spent_micro: int, ttl_s: float) -> None:
        self._spent.setdefault(scope, spent_micro)


_LUA_BUCKETS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bucket_ms = tonumber(ARGV[1])
local b = math.floor(now / bucket_ms)

local function prune(h, span)
  local cutoff = b - span
  local o = tonumber(redis.call('HGET', h, '__o') or cutoff)
  if cutoff <= o then return end
  if cutoff - o > span then
    redis.call('DEL', h)
    return
  end
  local freed = 0
  for j = o, cutoff - 1 do
    local v = redis.call('HGET', h, tostring(j))
    if v then
      freed = freed + tonumber(v)
      redis.call('HDEL', h, tostring(j))
    end
  end
  if freed ~= 0 then redis.call('HINCRBY', h, '__t', -freed) end
  redis.call('HSET', h, '__o', cutoff)
end

local function total(h) return tonumber(redis.call('HGET', h, '__t') or '0') end
local function leaves(j, span) return math.max(0, (j + span + 1) * bucket_ms - now) end

local function wait_for(h, span, need)
  local freed = 0
  for j = tonumber(redis.call('HGET', h, '__o') or b), b do
    freed = freed + tonumber(redis.call('HGET', h, tostring(j)) or '0')
    if freed >= need then return leaves(j, span) end
  end
  return span * bucket_ms
end

local function reset_in(h, span)
  for j = tonumber(redis.call('HGET', h, '__o') or b), b do
    if tonumber(redis.call('HGET', h, tostring(j)) or '0') ~= 0 then return leaves(j, span) end
  end
  return 0
end

local function add(h, amount, span)
  redis.call('HSETNX', h, '__o', b - span)
  redis.call('HINCRBY', h, tostring(b), amount)
  redis.call('HINCRBY', h, '__t', amount)
  redis.call('PEXPIRE', h, (span + 2) * bucket_ms)
end
"""

# KEYS: rpm hashes | tpm hashes | budget reservation hashes | budget spent strings
# ARGV: bucket_ms, id, n_rpm, n_tpm, n_budget, tokens, reserve, window_span, reservation_span, budget_ttl_s,
#       rpm limits..., tpm limits..., budget limits..., budget hard flags...
_ADMIT = (
    _LUA_BUCKETS
    + """
local nr, nt, nb = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tokens, reserve = tonumber(ARGV[6]), tonumber(ARGV[7])
local wspan, rspan, bttl = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local a = 11

local rh, rl, rr = nil, -1, -1
for i = 1, nr do
  local h, lim = KEYS[i], tonumber(ARGV[a + i - 1])
  prune(h, wspan)
  local rem = lim - total(h) - 1
  if rem < 0 then return {0, 'rpm', i, wait_for(h, wspan, -rem), lim, 0, reset_in(h, wspan), -1, -1, -1, '', b} end
  if rr < 0 or rem < rr then rh, rl, rr = h, lim, rem end
end
local th, tl, tr = nil, -1, -1
for j = 1, nt do
  local h, lim = KEYS[nr + j], tonumber(ARGV[a + nr + j - 1])
  prune(h, wspan)
  local sum = total(h)
  local rem = lim - sum - tokens
  if rem < 0 then
    local retry = -1
    if tokens <= lim then retry = wait_for(h, wspan, -rem) end
    return {0, 'tpm', j, retry, rl, rr, -1, lim, math.max(0, lim - sum), reset_in(h, wspan), '', b}
  end
  if tr < 0 or rem < tr then th, tl, tr = h, lim, rem end
end
local over = {}
for k = 1, nb do
  local h, s = KEYS[nr + nt + k], KEYS[nr + nt + nb + k]
  local lim, hard = tonumber(ARGV[a + nr + nt + k - 1]), ARGV[a + nr + nt + nb + k - 1] == '1'
  prune(h, rspan)
  local spent = tonumber(redis.call('GET', s) or '0')
  if hard and spent + total(h) + reserve > lim then return {0, 'budget', k, -1, rl, rr, -1, tl, tr, -1, '', b} end
  if spent >= lim then table.insert(over, tostring(k)) end
end
for i = 1, nr do add(KEYS[i], 1, wspan) end
for j = 1, nt do add(KEYS[nr + j], tokens, wspan) end
for k = 1, nb do
  add(KEYS[nr + nt + k], reserve, rspan)
  redis.call('EXPIRE', KEYS[nr + nt + k], bttl)
end
local rs, ts = -1, -1
if rh then rs = reset_in(rh, wspan) end
if th then ts = reset_in(th, wspan) end
return {1, '', 0, 0, rl, rr, rs, tl, tr, ts, table.concat(over, ','), b}
"""
)

# KEYS: tpm hashes | budget reservation hashes | budget spent strings
# ARGV: bucket, n_tpm, n_budget, token correction, reserve, cost, budget_ttl_s, budget limits...
_SETTLE = """
local bk, nt, nb = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local delta, reserve, cost, bttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
for j = 1, nt do
  if delta ~= 0 and redis.call('HEXISTS', KEYS[j], bk) == 1 then
    redis.call('HINCRBY', KEYS[j], bk, delta)
    redis.call('HINCRBY', KEYS[j], '__t', delta)
  end
end
local over = {}
for k = 1, nb do
  local h, s = KEYS[nt + k], KEYS[nt + nb + k]
  if reserve ~= 0 and redis.call('HEXISTS', h, bk) == 1 then
    redis.call('HINCRBY', h, bk, -reserve)
    redis.call('HINCRBY', h, '__t', -reserve)
  end
  local spent = redis.call('INCRBY', s, cost)
  redis.call('EXPIRE', s, bttl)
  if spent >= tonumber(ARGV[7 + k]) then table.insert(over, tostring(k)) end
end
return table.concat(over, ',')
"""

# KEYS: spent string; ARGV: value, ttl_s
_SEED = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""


class _Batcher:
    """Runs the calls of one script that arrive in the same event-loop turn as one pipeline: one round
    trip and one write for all of them instead of one each, the cost that dominates at high rates."""

    def __init__(self, redis: Any, script: Any) -> None:
        self.redis = redis
        self.script = script
        self._pending: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((keys, args, future))
        return future

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                keys, args, future = batch[0]
                results = [await self.script(keys=keys, args=args)]
            else:
                pipe = self.redis.pipeline(transaction=False)
                for keys, args, _ in batch:
                    await self.script(keys=keys, args=args, client=pipe)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            results = [exc] * len(batch)
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def drain(self) -> None:
        while self._pending or self._tasks:
            if self._pending:
                self._flush()
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _ms(value: Any) -> float | None:
    v = int(value)
    return None if v < 0 else v / 1000


class RedisGovernor(Governor):
    """Shared by every replica pointing at the same Redis: one round trip to admit, one to settle."""

    def __init__(self, redis: Any, *, prefix: str = "gp", budget_ttl_s: int = 40 * 86400) -> None:
        self.redis = redis
        self.prefix = prefix
        self.budget_ttl_s = budget_ttl_s
        self._admit = _Batcher(redis, redis.register_script(_ADMIT))
        self._settle = _Batcher(redis, redis.register_script(_SETTLE))
        self._seed = redis.register_script(_SEED)

    def _budget_keys(self, a: Admission) -> tuple[list[str], list[str]]:
        p = self.prefix
        return [f"{p}:b:{s}:h" for s, _, _ in a.budgets], [f"{p}:b:{s}:s" for s, _, _ in a.budgets]

    async def admit(self, a: Admission) -> Decision:
        p = self.prefix
        bh, bs = self._budget_keys(a)
        keys = [f"{p}:r:{s}" for s, _ in a.rpm] + [f"{p}:t:{s}" for s, _ in a.tpm] + bh + bs
        args: list[Any] = [
            int(BUCKET_S * 1000),
            a.request_id,
            len(a.rpm),
            len(a.tpm),
            len(a.budgets),
            a.tokens,
            a.reserve_micro,
            WINDOW_S,
            a.reservation_buckets,
            self.budget_ttl_s,
        ]
        args += [lim for _, lim in a.rpm] + [lim for _, lim in a.tpm]
        args += [lim for _, lim, _ in a.budgets] + [int(hard) for _, _, hard in a.budgets]
        out = await self._admit.call(keys, args)
        allowed, reason, index = int(out[0]), _text(out[1]), int(out[2])
        d = Decision(
            allowed=bool(allowed),
            limit_requests=_int(out[4]),
            remaining_requests=_int(out[5]),
            reset_requests_s=_ms(out[6]),
            limit_tokens=_int(out[7]),
            remaining_tokens=_int(out[8]),
            reset_tokens_s=_ms(out[9]),
        )
        if not allowed:
            d.reason = reason  # type: ignore[assignment]
            scopes = {
                "rpm": [s for s, _ in a.rpm],
                "tpm": [s for s, _ in a.tpm],
                "budget": [s for s, _, _ in a.budgets],
            }[reason]
            d.scope = scopes[index - 1]
            d.retry_after_s = _ms(out[3])
        else:
            a.bucket = int(out[11])
            d.budget_exceeded = [a.budgets[int(i) - 1][0] for i in _text(out[10]).split(",") if i]
        return d

    async def settle(self, a: Admission, tokens: int, cost_micro: int) -> list[str]:
        if not (a.tpm or a.budgets):
            return []
        bh, bs = self._budget_keys(a)
        keys = [f"{self.prefix}:t:{s}" for s, _ in a.tpm] + bh + bs
        args: list[Any] = [
            a.bucket,
            len(a.tpm),
            len(a.budgets),
            tokens - a.tokens,
            a.reserve_micro,
            cost_micro,
            self.budget_ttl_s,
        ]
        args += [lim for _, lim, _ in a.budgets]
        out = _text(await self._settle.call(keys, args))
        return [a.budgets[int(i) - 1][0] for i in out.split(",") if i]

    async def close(self) -> None:
        await self._admit.drain()
        await self._settle.drain()

    async def seed_spent(self, scope: str, spent_micro: int, ttl_s: float) -> None:
        await self._seed(keys=[f"{self.prefix}:b:{scope}:s"], args=[spent_micro, max(1, int(ttl_s))])


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _int(v: Any) -> int | None:
    i = int(v)
    return None if i < 0 else i
