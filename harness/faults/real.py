"""A real Toxiproxy started from `toxiproxy-server` on PATH, for one drill (`maildrill run --toxiproxy-server`)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
from collections.abc import Iterator

from maildrill.harness.errors import InfrastructureError, UsageError
from maildrill.harness.faults.adapter import find_toxiproxy

from maildrill.polling import poll_until


@contextlib.contextmanager
def toxiproxy_server(timeout_s: float = 20.0) -> Iterator[str]:
    """Start `toxiproxy-server` on 127.0.0.1 and a free port; yield its URL; stop it (by PID) afterwards."""
    binary = find_toxiproxy()
    if binary is None:
        raise UsageError("--toxiproxy-server: no toxiproxy-server on PATH; install Toxiproxy "
                         "(https://github.com/Shopify/toxiproxy/releases) or drop the flag to use the embedded proxy")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # its log goes to a file, read on failure: a pipe nobody reads would fill and stall it
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([binary, "-host", "127.0.0.1", "-port", str(port)], stdout=subprocess.DEVNULL,
                                stderr=log)
        try:
            def listening() -> bool:
                if proc.poll() is not None:
                    log.seek(0)
                    err = log.read().decode(errors="replace")[-300:]
                    raise InfrastructureError(f"toxiproxy-server exited with code {proc.returncode}: {err.strip()}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
                return False

            poll_until(listening, timeout_s, interval_s=0.05, error=lambda: InfrastructureError(
                f"toxiproxy-server did not listen on 127.0.0.1:{port} in {timeout_s:g} s"))
            yield f"http://127.0.0.1:{port}"
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
