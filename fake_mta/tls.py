"""A self-signed certificate for STARTTLS, made once per process with the `openssl` command."""

from __future__ import annotations

import atexit
import functools
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path


@functools.cache
def _cert_files() -> tuple[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("starttls needs the `openssl` command to make a self-signed certificate "
                           "(apt-get install openssl), or set starttls: false")
    # the directory lives as long as the process: the files are read again for each new context
    directory = Path(tempfile.mkdtemp(prefix="maildrill-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7", "-subj", "/CN=maildrill fake MTA",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return str(cert), str(key)


def server_context() -> ssl.SSLContext:
    """TLS server context with the process's self-signed certificate (clients must not verify it)."""
    cert, key = _cert_files()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx
