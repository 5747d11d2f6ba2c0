"""Child processes of a drill: own process group, die with the harness, recorded for the watchdog, ended by PID.

Every child starts in its own session (so a terminal's Ctrl-C reaches only maildrill, which then
stops children in order) with ``PR_SET_PDEATHSIG = SIGKILL`` (so a ``kill -9`` of maildrill takes
them down with it). Each is also listed in ``<run>/pids.jsonl`` with its start time, which the
watchdog (maildrill.harness.run.watchdog) uses to end its whole process group if maildrill vanished.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None if gone.
    With the PID it identifies a process even after the PID is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int, start_time: int | None = None) -> bool:
    """True while the process exists and is not a zombie (and, given start_time, is the same process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid` (read from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(d.name))
    return out


def resolve_command(command: Sequence[str]) -> list[str]:
    """`python`/`python3` as the program means the interpreter maildrill runs in (its venv)."""
    cmd = list(command)
    if cmd and cmd[0] in ("python", "python3"):
        cmd[0] = sys.executable
    return cmd


class Child:
    """One started process (leader of its own process group)."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, logs: list[IO[bytes]]) -> None:
        self.name = name
        self.proc = proc
        self.pid = proc.pid
        self.start_time = proc_start_time(proc.pid)
        self._logs = logs
        self.stopping = False

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def wait(self) -> int:
        return await self.proc.wait()

    def signal_group(self, sig: int) -> None:
        # the group is ours (start_new_session); signal it only while its leader is the process we started
        if self.proc.returncode is None and alive(self.pid, self.start_time):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
        elif self.start_time is not None:
            # leader gone: end any of its group still around (e.g. a worker of the SUT)
            for pid in group_members(self.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)

    async def stop(self, grace_s: float) -> int | None:
        """SIGTERM to the group, SIGKILL after `grace_s`; returns the exit code."""
        self.stopping = True
        if self.proc.returncode is None:
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                self.signal_group(signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 5.0)
        # stragglers of the group (children the leader left behind)
        if group_members(self.pid):
            self.signal_group(signal.SIGKILL)
        self.close_logs()
        return self.proc.returncode

    def close_logs(self) -> None:
        for f in self._logs:
            with contextlib.suppress(OSError):
                f.close()
        self._logs = []


class Children:
    """Starts children and keeps the list the watchdog reads (``pids.jsonl``)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.pids_file = run_dir / "pids.jsonl"
        self.started: list[Child] = []

    async def spawn(self, name: str, command: Sequence[str], *, env: Mapping[str, str], cwd: str | Path,
                    stdout: Path, stderr: Path) -> Child:
        stdout.parent.mkdir(parents=True, exist_ok=True)
        out = open(stdout, "ab")  # noqa: SIM115 - closed by Child.stop
        err = open(stderr, "ab")  # noqa: SIM115
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err, env=dict(env), cwd=str(cwd),
                start_new_session=True, preexec_fn=_die_with_parent)
        except BaseException:
            out.close()
            err.close()
            raise
        child = Child(name, proc, [out, err])
        self.started.append(child)
        with open(self.pids_file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "pid": child.pid, "start_time": child.start_time}) + "\n")
        return child

    async def stop_all(self, grace_s: float) -> None:
        await asyncio.gather(*(c.stop(grace_s) for c in reversed(self.started)), return_exceptions=True)
