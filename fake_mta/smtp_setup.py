"""Setting up aiosmtpd's SMTP protocol for a FakeMTA connection: the handler, the authenticator, a fast init."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any

from aiosmtpd import smtp as aiosmtpd_smtp
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# Every private aiosmtpd name fake_mta uses (attributes it sets or reads, methods it overrides or calls), so an
# aiosmtpd upgrade fails loudly with the names to revisit: a test compares this list with a scan of fake_mta
# and checks each name still exists in the installed aiosmtpd. Supported: aiosmtpd 1.4.x (pyproject pins it).
AIOSMTPD_PRIVATE_NAMES = (
    "_AuthMechAttr", "_auth_callback", "_auth_methods", "_auth_require_tls", "_auth_required", "_authenticator",
    "_call_handler_hook", "_cb_client_connected", "_decode_data", "_ehlo_hook_ver", "_enforce_call_limit",
    "_getaddr", "_handle_client", "_handle_hooks", "_handler_coroutine", "_original_transport", "_proxy_timeout",
    "_reader", "_reset_timeout", "_set_post_data_state", "_set_rset_state", "_smtp_methods", "_timeout_cb",
    "_timeout_duration", "_timeout_handle", "_tls_handshake_okay", "_tls_protocol", "_writer",
)

# aiosmtpd's __init__ introspects the instance (inspect.getmembers, dir) on every connection, a third
# of the per-connection cost; on the 1.4 series we set the same attributes from names found once.
AUTH_MECH: Any = getattr(aiosmtpd_smtp, "_AuthMechAttr", None)  # a private aiosmtpd class (None off 1.4)
SMTP_NAMES = tuple(sorted(n[5:] for n in dir(SMTP) if n.startswith("smtp_")))
FAST_INIT = AUTH_MECH is not None and aiosmtpd_smtp.__version__.startswith("1.4.")


class _NoHooks:
    """aiosmtpd handler without handle_* hooks: the protocol subclass makes every decision."""


NO_HOOKS = _NoHooks()


def fast_init(proto: SMTP, *, data_size_limit: int, hostname: str, tls_context: ssl.SSLContext | None,
              timeout_s: float, authenticator: Any, mechanisms: Sequence[str]) -> None:
    """What SMTP.__init__ sets for our options (aiosmtpd 1.4.x), minus its per-connection introspection."""
    loop = asyncio.get_running_loop()
    proto.__ident__ = aiosmtpd_smtp.__ident__
    proto.loop = loop
    asyncio.StreamReaderProtocol.__init__(
        proto, asyncio.StreamReader(loop=loop, limit=proto.line_length_limit),
        client_connected_cb=proto._cb_client_connected, loop=loop)
    proto.event_handler = NO_HOOKS
    proto.data_size_limit = data_size_limit
    proto.enable_SMTPUTF8 = False
    proto._decode_data = False
    proto.hostname = hostname
    proto.tls_context = tls_context
    proto.require_starttls = False
    proto._timeout_duration = timeout_s
    proto._timeout_handle = None
    proto._tls_handshake_okay = True
    proto._tls_protocol = None
    proto._original_transport = None
    proto.session = None
    proto.envelope = None
    proto.transport = None
    proto._handler_coroutine = None
    proto._auth_require_tls = False
    proto._proxy_timeout = None
    proto._authenticator = authenticator
    proto._auth_callback = None if authenticator else aiosmtpd_smtp.login_always_fail
    proto._auth_required = False
    proto._auth_methods = {m: AUTH_MECH(getattr(proto, f"auth_{m}"), True) for m in mechanisms}
    proto._handle_hooks = {}
    proto._ehlo_hook_ver = None
    proto._smtp_methods = {n: getattr(proto, f"smtp_{n}") for n in SMTP_NAMES}
    proto._enforce_call_limit = False


def make_authenticator(username: str, password: str) -> Any:
    user, secret = username.encode(), password.encode()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == user and data.password == secret
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    return authenticate
