"""Rate limits and budgets, decided in one atomic step per request.

Limits are sliding-window logs: a request (or its tokens) counts for exactly ``window`` seconds after
it was admitted, so no trailing window ever holds more than the limit — across any number of gateway
replicas when they share Redis, where one Lua script checks and records every scope atomically.
Budgets reserve the request's largest possible cost before the call and settle the actual cost after;
a reservation expires with the request deadline if its gateway dies. The in-process governor
implements the same semantics for a single gateway.
"""

from __future__ import annotations

import abc
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

WINDOW_S = 60.0


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

    @property
    def empty(self) -> bool:
        return not (self.rpm or self.tpm or self.budgets)


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


class _Log:
    """Entries ``[expires_at, amount, id]`` in expiry order, with their running total."""

    __slots__ = ("by_id", "entries", "total")

    def __init__(self) -> None:
        self.entries: deque[list[Any]] = deque()
        self.by_id: dict[str, list[Any]] = {}
        self.total = 0

    def prune(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= now:
            expired = entries.popleft()
            self.total -= expired[1]
            self.by_id.pop(expired[2], None)

    def add(self, expires_at: float, amount: int, rid: str) -> None:
        entry = [expires_at, amount, rid]
        self.entries.append(entry)
        self.by_id[rid] = entry
        self.total += amount

    def set_amount(self, rid: str, amount: int) -> None:
        entry = self.by_id.get(rid)
        if entry is not None:
            self.total += amount - entry[1]
            entry[1] = amount

    def wait_for(self, need: int, now: float) -> float:
        """Seconds until ``need`` units have expired."""
        freed = 0
        for expires_at, amount, _ in self.entries:
            freed += amount
            if freed >= need:
                return max(0.0, float(expires_at) - now)
        return WINDOW_S

    def reset_in(self, now: float) -> float:
        return max(0.0, self.entries[0][0] - now) if self.entries else 0.0


class MemoryGovernor(Governor):
    """One gateway process: exact, no I/O. State is lost on restart except budgets, re-seeded from the log."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._spent: dict[str, int] = {}

    def _log(self, scope: str) -> _Log:
        log = self._logs.get(scope)
        if log is None:
            log = self._logs[scope] = _Log()
        return log

    async def admit(self, a: Admission) -> Decision:
        now = self._clock()
        d = Decision(allowed=True)
        for scope, limit in a.rpm:
            log = self._log("r:" + scope)
            log.prune(now)
            remaining = limit - log.total - 1
            if remaining < 0:
                return Decision(
                    False,
                    "rpm",
                    scope,
                    log.wait_for(-remaining, now),
                    limit_requests=limit,
                    remaining_requests=0,
                    reset_requests_s=log.reset_in(now),
                )
            if d.remaining_requests is None or remaining < d.remaining_requests:
                d.limit_requests, d.remaining_requests, d.reset_requests_s = limit, remaining, log.reset_in(now)
        for scope, limit in a.tpm:
            log = self._log("t:" + scope)
            log.prune(now)
            remaining = limit - log.total - a.tokens
            if remaining < 0:
                retry = None if a.tokens > limit else log.wait_for(-remaining, now)
                return Decision(
                    False,
                    "tpm",
                    scope,
                    retry,
                    limit_tokens=limit,
                    remaining_tokens=max(0, limit - log.total),
                    reset_tokens_s=log.reset_in(now),
                )
            if d.remaining_tokens is None or remaining < d.remaining_tokens:
                d.limit_tokens, d.remaining_tokens, d.reset_tokens_s = limit, remaining, log.reset_in(now)
        for scope, limit, hard in a.budgets:
            log = self._log("b:" + scope)
            log.prune(now)
            spent = self._spent.get(scope, 0)
            if hard and spent + log.total + a.reserve_micro > limit:
                return Decision(False, "budget", scope, None)
            if spent >= limit:
                d.budget_exceeded.append(scope)
        expires = now + WINDOW_S
        for scope, _ in a.rpm:
            self._logs["r:" + scope].add(expires, 1, a.request_id)
        for scope, _ in a.tpm:
            self._logs["t:" + scope].add(expires, a.tokens, a.request_id)
        for scope, _, _ in a.budgets:
            self._logs["b:" + scope].add(now + a.reservation_ttl_s, a.reserve_micro, a.request_id)
        return d

    async def settle(self, a: Admission, tokens: int, cost_micro: int) -> list[str]:
        for scope, _ in a.tpm:
            self._log("t:" + scope).set_amount(a.request_id, tokens)
        over = []
        for scope, limit, _ in a.budgets:
            self._log("b:" + scope).set_amount(a.request_id, 0)
            spent = self._spent[scope] = self._spent.get(scope, 0) + cost_micro
            if spent >= limit:
                over.append(scope)
        return over

    async def seed_spent(self, scope: str, spent_micro: int, ttl_s: float) -> None:
        self._spent.setdefault(scope, spent_micro)


# KEYS: rpm zsets | tpm zsets | tpm hashes | budget zsets | budget hashes | budget spent strings
# ARGV: id, window_ms, n_rpm, n_tpm, n_budget, tokens, reserve, reservation_ttl_ms, budget_ttl_s,
#       rpm limits..., tpm limits..., budget limits..., budget hard flags...
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, win = ARGV[1], tonumber(ARGV[2])
local nr, nt, nb = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tokens, reserve, rttl, bttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local a = 10

local function prune(z, h)
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #expired == 0 then return end
  if h then
    local freed = 0
    for i = 1, #expired, 500 do
      local part = {unpack(expired, i, math.min(i + 499, #expired))}
      for _, v in ipairs(redis.call('HMGET', h, unpack(part))) do freed = freed + (tonumber(v) or 0) end
      redis.call('HDEL', h, unpack(part))
    end
    redis.call('HINCRBY', h, '__sum', -freed)
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
end

local function reset_in(z)
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if #first == 0 then return 0 end
  return math.max(0, tonumber(first[2]) - now)
end

local function wait_for(z, h, need)
  local entries = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
  local freed = 0
  for i = 1, #entries, 2 do
    freed = freed + (h and (tonumber(redis.call('HGET', h, entries[i])) or 0) or 1)
    if freed >= need then return math.max(0, tonumber(entries[i + 1]) - now) end
  end
  return win
end

local rl, rr, rs, tl, tr, ts = -1, -1, -1, -1, -1, -1
for i = 1, nr do
  local z, lim = KEYS[i], tonumber(ARGV[a + i - 1])
  prune(z, nil)
  local rem = lim - redis.call('ZCARD', z) - 1
  if rem < 0 then return {0, 'rpm', i, wait_for(z, nil, -rem), lim, 0, reset_in(z), -1, -1, -1, ''} end
  if rr < 0 or rem < rr then rl, rr, rs = lim, rem, reset_in(z) end
end
for j = 1, nt do
  local z, h, lim = KEYS[nr + j], KEYS[nr + nt + j], tonumber(ARGV[a + nr + j - 1])
  prune(z, h)
  local sum = tonumber(redis.call('HGET', h, '__sum') or '0')
  local rem = lim - sum - tokens
  if rem < 0 then
    local retry = -1
    if tokens <= lim then retry = wait_for(z, h, -rem) end
    return {0, 'tpm', j, retry, rl, rr, rs, lim, math.max(0, lim - sum), reset_in(z), ''}
  end
  if tr < 0 or rem < tr then tl, tr, ts = lim, rem, reset_in(z) end
end
local over = {}
for b = 1, nb do
  local z, h, s = KEYS[nr + 2 * nt + b], KEYS[nr + 2 * nt + nb + b], KEYS[nr + 2 * nt + 2 * nb + b]
  local lim, hard = tonumber(ARGV[a + nr + nt + b - 1]), ARGV[a + nr + nt + nb + b - 1] == '1'
  prune(z, h)
  local spent = tonumber(redis.call('GET', s) or '0')
  local reserved = tonumber(redis.call('HGET', h, '__sum') or '0')
  if hard and spent + reserved + reserve > lim then return {0, 'budget', b, -1, rl, rr, rs, tl, tr, ts, ''} end
  if spent >= lim then table.insert(over, tostring(b)) end
end
for i = 1, nr do
  redis.call('ZADD', KEYS[i], now + win, id)
  redis.call('PEXPIRE', KEYS[i], win + 1000)
end
for j = 1, nt do
  local z, h = KEYS[nr + j], KEYS[nr + nt + j]
  redis.call('ZADD', z, now + win, id)
  redis.call('HSET', h, id, tokens)
  redis.call('HINCRBY', h, '__sum', tokens)
  redis.call('PEXPIRE', z, win + 1000)
  redis.call('PEXPIRE', h, win + 1000)
end
for b = 1, nb do
  local z, h = KEYS[nr + 2 * nt + b], KEYS[nr + 2 * nt + nb + b]
  redis.call('ZADD', z, now + rttl, id)
  redis.call('HSET', h, id, reserve)
  redis.call('HINCRBY', h, '__sum', reserve)
  redis.call('EXPIRE', z, bttl)
  redis.call('EXPIRE', h, bttl)
end
return {1, '', 0, 0, rl, rr, rs, tl, tr, ts, table.concat(over, ',')}
"""

# KEYS: tpm hashes | budget hashes | budget spent strings
# ARGV: id, n_tpm, n_budget, tokens, cost, budget_ttl_s, budget limits...
_SETTLE = """
local id, nt, nb = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, cost, bttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
for j = 1, nt do
  local h = KEYS[j]
  local old = redis.call('HGET', h, id)
  if old then
    redis.call('HSET', h, id, tokens)
    redis.call('HINCRBY', h, '__sum', tokens - tonumber(old))
  end
end
local over = {}
for b = 1, nb do
  local h, s = KEYS[nt + b], KEYS[nt + nb + b]
  local old = redis.call('HGET', h, id)
  if old then
    redis.call('HDEL', h, id)
    redis.call('HINCRBY', h, '__sum', -tonumber(old))
  end
  local spent = redis.call('INCRBY', s, cost)
  redis.call('EXPIRE', s, bttl)
  if spent >= tonumber(ARGV[6 + b]) then table.insert(over, tostring(b)) end
end
return table.concat(over, ',')
"""

# KEYS: spent string; ARGV: value, ttl_s
_SEED = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""


def _ms(value: Any) -> float | None:
    v = int(value)
    return None if v < 0 else v / 1000


class RedisGovernor(Governor):
    """Shared by every replica pointing at the same Redis: one round trip to admit, one to settle."""

    def __init__(self, redis: Any, *, prefix: str = "gp", budget_ttl_s: int = 40 * 86400) -> None:
        self.redis = redis
        self.prefix = prefix
        self.budget_ttl_s = budget_ttl_s
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)
        self._seed = redis.register_script(_SEED)

    def _budget_keys(self, a: Admission) -> tuple[list[str], list[str], list[str]]:
        p = self.prefix
        return (
            [f"{p}:b:{s}:r" for s, _, _ in a.budgets],
            [f"{p}:b:{s}:h" for s, _, _ in a.budgets],
            [f"{p}:b:{s}:s" for s, _, _ in a.budgets],
        )

    async def admit(self, a: Admission) -> Decision:
        p = self.prefix
        bz, bh, bs = self._budget_keys(a)
        keys = (
            [f"{p}:r:{s}" for s, _ in a.rpm]
            + [f"{p}:t:{s}:z" for s, _ in a.tpm]
            + [f"{p}:t:{s}:h" for s, _ in a.tpm]
            + bz
            + bh
            + bs
        )
        args: list[Any] = [
            a.request_id,
            int(WINDOW_S * 1000),
            len(a.rpm),
            len(a.tpm),
            len(a.budgets),
            a.tokens,
            a.reserve_micro,
            int(a.reservation_ttl_s * 1000),
            self.budget_ttl_s,
        ]
        args += [lim for _, lim in a.rpm] + [lim for _, lim in a.tpm]
        args += [lim for _, lim, _ in a.budgets] + [int(hard) for _, _, hard in a.budgets]
        out = await self._admit(keys=keys, args=args)
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
            d.budget_exceeded = [a.budgets[int(i) - 1][0] for i in _text(out[10]).split(",") if i]
        return d

    async def settle(self, a: Admission, tokens: int, cost_micro: int) -> list[str]:
        if not (a.tpm or a.budgets):
            return []
        p = self.prefix
        _, bh, bs = self._budget_keys(a)
        keys = [f"{p}:t:{s}:h" for s, _ in a.tpm] + bh + bs
        args: list[Any] = [a.request_id, len(a.tpm), len(a.budgets), tokens, cost_micro, self.budget_ttl_s]
        args += [lim for _, lim, _ in a.budgets]
        out = _text(await self._settle(keys=keys, args=args))
        return [a.budgets[int(i) - 1][0] for i in out.split(",") if i]

    async def seed_spent(self, scope: str, spent_micro: int, ttl_s: float) -> None:
        await self._seed(keys=[f"{self.prefix}:b:{scope}:s"], args=[spent_micro, max(1, int(ttl_s))])


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _int(v: Any) -> int | None:
    i = int(v)
    return None if i < 0 else i
