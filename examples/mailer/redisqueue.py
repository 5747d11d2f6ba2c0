"""The Redis queue backend (MAILER_REDIS_URL): the same contract as the SQLite queue, for mailers sharing one queue.

Layout under a key prefix: `msg:<id>` hash per message; per lane `due:<lane>` (zset by next_attempt_at),
`ready:<lane>` (due messages, zset by id = enqueue order) and `leases:<lane>` (zset by lease expiry);
`recent:<kind>:<email>` for the resend cooldown; `count:<state>:<lane>` for sent/failed totals.
Claims run as one Lua script, so several mailer processes can share the queue safely.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

from maildrill.examples.mailer.queue import Kind, Message, State, pid_alive

_CLAIM = """
local p, now, lease_until, owner, lanes = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
for lane = 0, 1 do
  -- A lease that ran out belongs to another process's worker that died or hung: due again.
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p..'leases:'..lane, '-inf', now)) do
    local h = p..'msg:'..id
    if redis.call('HGET', h, 'lease_owner') ~= owner then
      redis.call('ZREM', p..'leases:'..lane, id)
      redis.call('HSET', h, 'state', 'queued', 'lease_owner', '')
      redis.call('ZADD', p..'ready:'..lane, tonumber(id), id)
    end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p..'due:'..lane, '-inf', now)) do
    redis.call('ZREM', p..'due:'..lane, id)
    redis.call('ZADD', p..'ready:'..lane, tonumber(id), id)
  end
end
local pick, pick_lane, best = nil, nil, nil
for lane = 0, 1 do
  local r = redis.call('ZRANGE', p..'ready:'..lane, 0, 0, 'WITHSCORES')
  if #r > 0 and (best == nil or tonumber(r[2]) < best) then
    pick, pick_lane, best = r[1], lane, tonumber(r[2])
    if lanes == '1' then break end
  end
end
if not pick then return nil end
redis.call('ZREM', p..'ready:'..pick_lane, pick)
redis.call('ZADD', p..'leases:'..pick_lane, lease_until, pick)
redis.call('HSET', p..'msg:'..pick, 'state', 'sending', 'lease_owner', owner, 'lease_until', lease_until)
return redis.call('HGETALL', p..'msg:'..pick)
"""

_ENQUEUE = """
local p, kind, lane, email, now, cooldown_ms, code, token = unpack(ARGV)
local recent = p..'recent:'..kind..':'..email
if tonumber(cooldown_ms) > 0 then
  local existing = redis.call('GET', recent)
  if existing then return {1, existing} end
end
local id = redis.call('INCR', p..'seq')
redis.call('HSET', p..'msg:'..id, 'id', id, 'kind', kind, 'lane', lane, 'email', email,
  'message_id', '<'..id..'.'..token..'@mailer.drill.test>', 'state', 'queued', 'attempts', 0,
  'next_attempt_at', now, 'vendor', '', 'primary_failures', 0, 'unknown_vendor', '', 'created_at', now,
  'code', code)
redis.call('ZADD', p..'ready:'..lane, id, id)
if tonumber(cooldown_ms) > 0 then redis.call('SET', recent, id, 'PX', cooldown_ms) end
return {0, tostring(id)}
"""


def connect(url: str) -> Any:
    """A redis-py client for `url`; a clear error when the optional `redis` package is missing."""
    try:
        import redis
    except ImportError:
        from maildrill.examples.mailer.config import ConfigError

        raise ConfigError(
            f"MAILER_REDIS_URL={url!r} needs the Python package 'redis' (pip install redis), "
            "or unset MAILER_REDIS_URL to use the SQLite queue"
        ) from None
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=10)


def _message(h: dict[str, str]) -> Message:
    return Message(
        int(h["id"]),
        Kind(h["kind"]),
        h["email"],
        h["message_id"],
        State(h["state"]),
        int(h["attempts"]),
        float(h["next_attempt_at"]),
        h["vendor"] or None,
        int(h["primary_failures"]),
        h["unknown_vendor"] or None,
        float(h["created_at"]),
        h["code"],
    )


class RedisQueue:
    """Same methods and meaning as `SqliteQueue`; times are wall-clock seconds."""

    def __init__(self, url: str, *, lanes: bool, prefix: str = "maildrill-mailer:") -> None:
        self.client = connect(url)
        self.lanes = lanes
        self.prefix = prefix
        self.path = url.split("@")[-1]  # shown in /healthz and the start line, without credentials
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._claim = self.client.register_script(_CLAIM)
        self._enqueue = self.client.register_script(_ENQUEUE)
        try:
            self.client.ping()
        except Exception as exc:  # redis-py's errors don't derive from OSError; the caller maps OSError to exit 3
            raise OSError(
                f"Redis at {self.path} not reachable ({exc}); start it, or unset MAILER_REDIS_URL "
                "to use the SQLite queue"
            ) from exc

    def close(self) -> None:
        self.client.close()

    def _key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def enqueue(self, kind: Kind, email: str, *, now: float, cooldown_s: float = 0.0) -> tuple[Message, bool]:
        coalesced, msg_id = self._enqueue(
            args=[
                self.prefix,
                kind.value,
                kind.lane,
                email,
                repr(now),
                int(cooldown_s * 1000),
                f"{secrets.randbelow(10**6):06d}",
                secrets.token_hex(6),
            ]
        )
        message = self.get(int(msg_id))
        assert message is not None
        return message, bool(coalesced)

    def claim(self, *, now: float, lease_s: float) -> Message | None:
        flat = self._claim(args=[self.prefix, repr(now), repr(now + lease_s), self.owner, "1" if self.lanes else "0"])
        return _message(dict(zip(flat[::2], flat[1::2], strict=True))) if flat else None

    def recover_orphans(self, *, now: float) -> int:
        host, count = socket.gethostname() + ":", 0
        for lane in (0, 1):
            for msg_id in self.client.zrange(self._key("leases", lane), 0, -1):
                owner = self.client.hget(self._key("msg", msg_id), "lease_owner") or ""
                if owner.startswith(host) and owner != self.owner and not pid_alive(int(owner.rsplit(":", 1)[1])):
                    with self.client.pipeline() as pipe:
                        pipe.zrem(self._key("leases", lane), msg_id)
                        pipe.hset(self._key("msg", msg_id), mapping={"state": State.QUEUED.value, "lease_owner": ""})
                        pipe.zadd(self._key("ready", lane), {msg_id: int(msg_id)})
                        pipe.execute()
                    count += 1
        return count

    def next_due(self) -> float | None:
        times = []
        for lane in (0, 1):
            if self.client.zcard(self._key("ready", lane)):
                return 0.0
            first = self.client.zrange(self._key("due", lane), 0, 0, withscores=True)
            times += [score for _, score in first]
        return min(times) if times else None

    def _settle(self, msg_id: int, fields: dict[str, Any], *, counted: bool, due_at: float | None) -> int:
        lane = int(self.client.hget(self._key("msg", msg_id), "lane") or 0)
        with self.client.pipeline() as pipe:
            pipe.zrem(self._key("leases", lane), msg_id)
            pipe.hset(self._key("msg", msg_id), mapping={**fields, "lease_owner": ""})
            pipe.hincrby(self._key("msg", msg_id), "attempts", int(counted))
            if due_at is not None:
                pipe.zadd(self._key("due", lane), {str(msg_id): due_at})
            else:
                pipe.incr(self._key("count", fields["state"], lane))
            pipe.execute()
        return lane

    def finish(self, msg_id: int, state: State, *, vendor: str | None, reply: str, counted: bool = True) -> None:
        self._settle(
            msg_id,
            {"state": state.value, "vendor": vendor or "", "last_reply": reply, "unknown_vendor": ""},
            counted=counted,
            due_at=None,
        )

    def in_doubt(self, msg_id: int, vendor: str) -> None:
        """Write-ahead before an attempt (see SqliteQueue.in_doubt)."""
        self.client.hset(self._key("msg", msg_id), "unknown_vendor", vendor)

    def defer(
        self,
        msg_id: int,
        *,
        next_at: float,
        vendor: str | None,
        reply: str,
        counted: bool = True,
        primary_failures: int | None = None,
        unknown_vendor: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "state": State.QUEUED.value,
            "next_attempt_at": repr(next_at),
            "unknown_vendor": unknown_vendor or "",
        }
        if vendor is not None:
            fields["vendor"] = vendor
        if reply:
            fields["last_reply"] = reply
        if primary_failures is not None:
            fields["primary_failures"] = primary_failures
        self._settle(msg_id, fields, counted=counted, due_at=next_at)

    def depths(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for lane in (0, 1):
            out[(State.QUEUED.value, lane)] = self.client.zcard(self._key("due", lane)) + self.client.zcard(
                self._key("ready", lane)
            )
            out[(State.SENDING.value, lane)] = self.client.zcard(self._key("leases", lane))
            for state in (State.SENT, State.FAILED):
                out[(state.value, lane)] = int(self.client.get(self._key("count", state.value, lane)) or 0)
        return out

    def get(self, msg_id: int) -> Message | None:
        h = self.client.hgetall(self._key("msg", msg_id))
        return _message(h) if h else None
