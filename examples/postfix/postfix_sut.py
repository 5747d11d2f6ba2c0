"""A private Postfix instance as the system under test: configure, start, status and stop it in its own directory.

Everything lives under one directory (config, queue, data, log): the machine's own Postfix
(/etc/postfix, /var/spool/postfix) is never read for settings or touched. The instance listens on
127.0.0.1:<port> for submission and relays everything to `[relay_host]:relay_port` (maildrill's
fake MTA), with short retry timers so a drill sees Postfix's retry behaviour in seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Services of a relay-only Postfix. chroot is off ("n") because the private queue directory has no chroot jail.
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """Postfix is missing, misconfigured, or did not start/stop; the message says what to do."""


@dataclass(frozen=True)
class PostfixInstance:
    """One private Postfix under `base_dir`. Timers in seconds (Postfix's own units, not scaled)."""

    base_dir: Path
    listen_port: int
    relay_host: str = "127.0.0.1"
    relay_port: int = 2525
    listen_host: str = "127.0.0.1"
    minimal_backoff_s: int = 5
    maximal_backoff_s: int = 10
    queue_run_delay_s: int = 5

    @property
    def config_dir(self) -> Path:
        return self.base_dir / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.base_dir / "spool"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postfix.log"

    def main_cf(self) -> str:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.base_dir / "lib"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            # Loopback only: the instance must never accept or send mail off this machine.
            "inet_interfaces": self.listen_host,
            "inet_protocols": "ipv4",
            "myhostname": "sut.postfix.drill.test",
            "mydomain": "postfix.drill.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[{self.relay_host}]:{self.relay_port}",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "minimal_backoff_time": f"{self.minimal_backoff_s}s",
            "maximal_backoff_time": f"{self.maximal_backoff_s}s",
            "queue_run_delay": f"{self.queue_run_delay_s}s",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.base_dir),
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
        }
        return "".join(f"{k} = {v}\n" for k, v in settings.items())

    def configure(self, *, fresh: bool = False) -> None:
        """Write main.cf/master.cf and create the directories; `fresh` first deletes a previous queue."""
        require_postfix()
        if not self.relay_host.startswith("127."):
            raise PostfixError(
                f"relay host {self.relay_host!r}: the drill instance relays to loopback only "
                "(127.0.0.0/8); point it at maildrill's fake MTA"
            )
        if fresh and self.base_dir.exists():
            if self.master_pid():
                raise PostfixError(f"{self.base_dir}: an instance is running there; stop it before --fresh")
            shutil.rmtree(self.base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        os.chmod(self.base_dir, 0o755)
        self.config_dir.mkdir(exist_ok=True)
        self.queue_dir.mkdir(exist_ok=True)
        data_dir = self.base_dir / "lib"
        data_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data_dir, "postfix")
        (self.config_dir / "main.cf").write_text(self.main_cf())
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(listen=f"{self.listen_host}:{self.listen_port}"))

    def _check_reachable(self) -> None:
        """Postfix daemons drop to the `postfix` user, which must be able to traverse every parent directory."""
        for d in self.base_dir.parents:
            st = d.stat()
            if not st.st_mode & 0o001 and d.owner() != "postfix":
                raise PostfixError(
                    f"{d} (mode {st.st_mode & 0o777:o}) can't be traversed by the postfix user, so Postfix can't "
                    f"reach {self.base_dir}. Use an instance directory under a world-traversable path "
                    "(e.g. /tmp/maildrill-postfix or /var/tmp/...), or `chmod o+x` that directory."
                )

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["postfix", "-c", str(self.config_dir), *args], capture_output=True, text=True, timeout=60, check=False
        )
        if check and proc.returncode != 0:
            raise PostfixError(
                f"postfix -c {self.config_dir} {' '.join(args)} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()} — see {self.log_file}"
            )
        return proc

    def start(self, *, deadline_s: float = 30.0) -> int:
        """Start the master and wait until it accepts SMTP; returns the master's PID."""
        if pid := self.master_pid():
            return pid
        self._postfix("start")
        import socket

        end = time.monotonic() + deadline_s
        while True:
            try:
                with socket.create_connection((self.listen_host, self.listen_port), timeout=2) as sock:
                    if sock.recv(4).startswith(b"220"):
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                raise PostfixError(
                    f"Postfix did not accept SMTP on {self.listen_host}:{self.listen_port} within "
                    f"{deadline_s}s; see {self.log_file}"
                )
            time.sleep(0.05)  # poll interval while waiting for the listener (bounded by the deadline above)
        pid = self.master_pid()
        if pid is None:
            raise PostfixError(f"Postfix answered but {self.queue_dir}/pid/master.pid names no live process")
        return pid

    def master_pid(self) -> int | None:
        """The PID of this instance's master, if it runs (a zombie does not count)."""
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            return None
        return pid if stat.rsplit(")", 1)[1].split()[0] != "Z" and "(master)" in stat else None

    def stop(self, *, deadline_s: float = 30.0) -> None:
        """`postfix stop` for this instance, then make sure its master (only that PID) is gone."""
        pid = self.master_pid()
        if pid is None:
            return
        self._postfix("stop", check=False)
        end = time.monotonic() + deadline_s
        while self.master_pid() == pid:
            if time.monotonic() > end:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)  # poll interval while the master shuts down (bounded by the deadline above)

    def queue_ids(self) -> list[str]:
        """Queue IDs of messages still queued (`postqueue -j`)."""
        import json

        proc = subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-j"], capture_output=True, text=True, timeout=30, check=False
        )
        return [json.loads(line)["queue_id"] for line in proc.stdout.splitlines() if line.strip()]


SOCKET_PATH_ROOM = 60  # Postfix's unix sockets live at DIR/spool/private/<service>; sun_path holds 107 bytes


def default_dir(env: Mapping[str, str]) -> Path:
    """$MAILDRILL_RUN_DIR/postfix, unless that path leaves too little room for Postfix's socket paths."""
    base = Path(env.get("MAILDRILL_RUN_DIR", "reports/postfix-sut")).resolve() / "postfix"
    if len(str(base)) <= SOCKET_PATH_ROOM:
        return base
    import hashlib

    return Path("/tmp") / f"maildrill-postfix-{hashlib.sha1(str(base).encode()).hexdigest()[:10]}"


def run_in_foreground(inst: PostfixInstance) -> int:
    """Start the instance, wait for SIGTERM/SIGINT (or the master's death), stop it. Exit 0 on a signal."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    pid = inst.start()
    print(f"postfix: running pid={pid} listen={inst.listen_host}:{inst.listen_port} "
          f"relay=[{inst.relay_host}]:{inst.relay_port} dir={inst.base_dir} log={inst.log_file} (until SIGTERM)",
          flush=True)
    try:
        while True:
            if signal.sigtimedwait({signal.SIGTERM, signal.SIGINT}, 1.0) is not None:
                return 0
            if inst.master_pid() != pid:  # checked once a second while waiting for the signal
                print(f"postfix: the master (pid {pid}) exited on its own; see {inst.log_file}", file=sys.stderr)
                return 1
    finally:
        inst.stop()


def require_postfix() -> None:
    missing = [
        tool for tool in ("postfix", "postqueue") if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()
    ]
    if missing:
        raise PostfixError(
            f"{', '.join(missing)} not found: install Postfix (Debian/Ubuntu: apt-get install postfix; "
            "choose 'No configuration' — the drill writes its own private configuration)"
        )
    if os.geteuid() != 0:
        raise PostfixError(
            "a private Postfix instance must be started as root (Postfix's master needs it); run this command with sudo"
        )


def _default_port(text: str | None, what: str, fallback: int) -> int:
    if not text:
        return fallback
    if not text.isdigit():
        raise PostfixError(f"{what}={text!r}: not a TCP port")
    return int(text)


def main(argv: Sequence[str]) -> int:
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m maildrill.examples.postfix", description=__doc__)
    p.add_argument("action", choices=["start", "stop", "status", "configure", "run", "depth"],
                   help="run = start, stay in the foreground until SIGTERM/SIGINT, then stop (a drill's sut.command); "
                        "depth = print how many messages are queued (a drill's queue_depth probe)")
    p.add_argument(
        "--dir",
        type=Path,
        default=default_dir(env),
        help="instance directory (default $MAILDRILL_RUN_DIR/postfix, or /tmp/maildrill-postfix-<hash> when that "
        "path is too long for Postfix's unix sockets)",
    )
    p.add_argument("--port", help="submission port on 127.0.0.1 (default $MAILDRILL_SUT_PORT, else 2526)")
    p.add_argument("--relay-host", default=env.get("MAILDRILL_SMTP_HOST", "127.0.0.1"))
    p.add_argument("--relay-port", help="relay port (default $MAILDRILL_SMTP_PORT, else 2525)")
    p.add_argument("--min-backoff", type=int, default=5, help="minimal_backoff_time in seconds (default 5)")
    p.add_argument("--max-backoff", type=int, default=10, help="maximal_backoff_time in seconds (default 10)")
    p.add_argument("--queue-run-delay", type=int, default=5, help="queue_run_delay in seconds (default 5)")
    p.add_argument("--fresh", action="store_true", help="delete a previous queue in --dir first")
    args = p.parse_args(list(argv))
    try:
        inst = PostfixInstance(
            args.dir.resolve(),
            _default_port(args.port or env.get("MAILDRILL_SUT_PORT"), "--port", 2526),
            relay_host=args.relay_host,
            relay_port=_default_port(args.relay_port or env.get("MAILDRILL_SMTP_PORT"), "--relay-port", 2525),
            minimal_backoff_s=args.min_backoff,
            maximal_backoff_s=args.max_backoff,
            queue_run_delay_s=args.queue_run_delay,
        )
        if args.action in ("start", "configure", "run"):
            inst.configure(fresh=args.fresh)
        if args.action == "run":
            return run_in_foreground(inst)
        if args.action == "depth":
            print(len(inst.queue_ids()), flush=True)
        elif args.action == "start":
            pid = inst.start()
            print(
                f"postfix: running pid={pid} listen={inst.listen_host}:{inst.listen_port} "
                f"relay=[{inst.relay_host}]:{inst.relay_port} dir={inst.base_dir} log={inst.log_file}",
                flush=True,
            )
        elif args.action == "stop":
            inst.stop()
            print(f"postfix: stopped ({inst.base_dir})", flush=True)
        elif args.action == "status":
            pid = inst.master_pid()
            print(f"postfix: {'running pid=' + str(pid) if pid else 'not running'} dir={inst.base_dir}", flush=True)
            return 0 if pid else 1
        return 0
    except PostfixError as exc:
        print(f"postfix: {exc}", file=sys.stderr)
        return 2
