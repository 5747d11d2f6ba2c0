"""The durable message queue: one SQLite (WAL) row per message, claimed by workers under an expiring lease."""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


class State(StrEnum):
    QUEUED = "queued"  # waiting for next_attempt_at
    SENDING = "sending"  # claimed by a worker until lease_until
    SENT = "sent"  # a vendor accepted it (or its status API says it did)
    FAILED = "failed"  # bounced (5xx) or out of attempts


class Kind(StrEnum):
    OTP = "otp"
    PASSWORD_RESET = "password-reset"
    NEWSLETTER = "newsletter"

    @property
    def lane(self) -> int:
        """0 = transactional (ahead with --lanes), 1 = bulk."""
        return 1 if self is Kind.NEWSLETTER else 0


LANE_NAMES = {0: "transactional", 1: "bulk"}


@dataclass(frozen=True)
class Message:
    id: int
    kind: Kind
    email: str
    message_id: str
    state: State
    attempts: int
    next_attempt_at: float
    vendor: str | None
    primary_failures: int
    unknown_vendor: str | None
    created_at: float
    code: str

    @property
    def lane(self) -> int:
        return self.kind.lane


class MessageQueue(Protocol):
    """What the workers and the API need from a queue backend (SQLite here, Redis in `redisqueue`)."""

    path: Any
    owner: str

    def enqueue(self, kind: Kind, email: str, *, now: float, cooldown_s: float = 0.0) -> tuple[Message, bool]: ...
    def claim(self, *, now: float, lease_s: float) -> Message | None: ...
    def recover_orphans(self, *, now: float) -> int: ...
    def next_due(self) -> float | None: ...
    def finish(self, msg_id: int, state: State, *, vendor: str | None, reply: str, counted: bool = True) -> None: ...
    def in_doubt(self, msg_id: int, vendor: str) -> None: ...
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
    ) -> None: ...
    def depths(self) -> dict[tuple[str, int], int]: ...
    def get(self, msg_id: int) -> Message | None: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    lane INTEGER NOT NULL,
    email TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL,
    lease_owner TEXT,
    vendor TEXT,
    primary_failures INTEGER NOT NULL DEFAULT 0,
    unknown_vendor TEXT,
    created_at REAL NOT NULL,
    code TEXT NOT NULL,
    last_reply TEXT
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS messages_resend ON messages (email, kind, created_at);
"""
_COLUMNS = (
    "id, kind, email, message_id, state, attempts, next_attempt_at, vendor, primary_failures, "
    "unknown_vendor, created_at, code"
)


def _message(row: tuple[Any, ...]) -> Message:
    return Message(row[0], Kind(row[1]), row[2], row[3], State(row[4]), *row[5:])


class SqliteQueue:
    """Thread-safe (one connection behind a lock); several processes may share the file (BEGIN IMMEDIATE).

    Times are wall-clock seconds (`time.time()`) because they must survive a restart."""

    def __init__(self, path: Path, *, lanes: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lanes = lanes
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (only an OS crash may lose the last commits).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enqueue(self, kind: Kind, email: str, *, now: float, cooldown_s: float = 0.0) -> tuple[Message, bool]:
        """Store a new message (returns it, False), or the recent one it coalesces with (returns it, True)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if cooldown_s > 0:
                    row = self._db.execute(
                        f"SELECT {_COLUMNS} FROM messages WHERE email = ? AND kind = ? AND created_at >= ? "
                        "ORDER BY id DESC LIMIT 1",
                        (email, kind.value, now - cooldown_s),
                    ).fetchone()
                    if row:
                        self._db.execute("COMMIT")
                        return _message(row), True
                # The id is only known after the insert; the Message-ID embeds it, so insert a placeholder first.
                placeholder = "pending-" + secrets.token_hex(8)
                code = f"{secrets.randbelow(10**6):06d}"
                cur = self._db.execute(
                    "INSERT INTO messages (kind, lane, email, message_id, state, next_attempt_at, created_at, code) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (kind.value, kind.lane, email, placeholder, State.QUEUED.value, now, now, code),
                )
                msg_id = int(cur.lastrowid or 0)
                message_id = f"<{msg_id}.{secrets.token_hex(6)}@mailer.drill.test>"
                self._db.execute("UPDATE messages SET message_id = ? WHERE id = ?", (message_id, msg_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Message(msg_id, kind, email, message_id, State.QUEUED, 0, now, None, 0, None, now, code), False

    def claim(self, *, now: float, lease_s: float) -> Message | None:
        """Take the most urgent due message (lane first with --lanes, then FIFO) under a lease."""
        order = "lane, id" if self.lanes else "id"
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # A lease that ran out belongs to another process's worker that died or hung: the message is due
                # again. This process's own leases are never taken back: its worker is still on that attempt.
                self._db.execute(
                    "UPDATE messages SET state = ?, lease_owner = NULL "
                    "WHERE state = ? AND lease_until < ? AND lease_owner != ?",
                    (State.QUEUED.value, State.SENDING.value, now, self.owner),
                )
                row = self._db.execute(
                    f"SELECT {_COLUMNS} FROM messages WHERE state = ? AND next_attempt_at <= ? "
                    f"ORDER BY {order} LIMIT 1",
                    (State.QUEUED.value, now),
                ).fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE messages SET state = ?, lease_until = ?, lease_owner = ? WHERE id = ?",
                        (State.SENDING.value, now + lease_s, self.owner, row[0]),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return None if row is None else _message(row)

    def recover_orphans(self, *, now: float) -> int:
        """Re-queue messages leased by a process of this host that no longer exists (a kill -9); returns how many."""
        host = socket.gethostname() + ":"
        with self._lock:
            owners = [
                o
                for (o,) in self._db.execute(
                    "SELECT DISTINCT lease_owner FROM messages WHERE state = ? AND lease_owner LIKE ?",
                    (State.SENDING.value, host + "%"),
                )
            ]
            dead = [o for o in owners if o != self.owner and not pid_alive(int(o.rsplit(":", 1)[1]))]
            count = 0
            for owner in dead:
                cur = self._db.execute(
                    "UPDATE messages SET state = ?, lease_owner = NULL, next_attempt_at = ? "
                    "WHERE state = ? AND lease_owner = ?",
                    (State.QUEUED.value, now, State.SENDING.value, owner),
                )
                count += cur.rowcount
        return count

    def next_due(self) -> float | None:
        with self._lock:
            (due,) = self._db.execute(
                "SELECT MIN(next_attempt_at) FROM messages WHERE state = ?", (State.QUEUED.value,)
            ).fetchone()
        return due

    def finish(self, msg_id: int, state: State, *, vendor: str | None, reply: str, counted: bool = True) -> None:
        """Mark sent or failed; `counted` adds the attempt that decided it."""
        with self._lock:
            self._db.execute(
                "UPDATE messages SET state = ?, vendor = ?, last_reply = ?, attempts = attempts + ?, "
                "lease_owner = NULL, unknown_vendor = NULL WHERE id = ?",
                (state.value, vendor, reply, int(counted), msg_id),
            )

    def in_doubt(self, msg_id: int, vendor: str) -> None:
        """Write-ahead before an attempt: until it settles, whether `vendor` accepted the message is unknown.
        A crash mid-attempt leaves the mark for whoever reclaims the message (settling clears or keeps it)."""
        with self._lock:
            self._db.execute("UPDATE messages SET unknown_vendor = ? WHERE id = ?", (vendor, msg_id))

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
        """Back to the queue until `next_at`; `counted` False for a pause that made no attempt."""
        with self._lock:
            self._db.execute(
                "UPDATE messages SET state = ?, next_attempt_at = ?, vendor = COALESCE(?, vendor), "
                "last_reply = COALESCE(?, last_reply), attempts = attempts + ?, lease_owner = NULL, "
                "primary_failures = COALESCE(?, primary_failures), unknown_vendor = ? WHERE id = ?",
                (
                    State.QUEUED.value,
                    next_at,
                    vendor,
                    reply or None,
                    int(counted),
                    primary_failures,
                    unknown_vendor,
                    msg_id,
                ),
            )

    def depths(self) -> dict[tuple[str, int], int]:
        """Message counts by (state, lane)."""
        with self._lock:
            rows = self._db.execute("SELECT state, lane, COUNT(*) FROM messages GROUP BY state, lane").fetchall()
        return {(state, lane): n for state, lane, n in rows}

    def get(self, msg_id: int) -> Message | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (msg_id,)).fetchone()
        return None if row is None else _message(row)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) still answers kill(0); it sends nothing any more.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
