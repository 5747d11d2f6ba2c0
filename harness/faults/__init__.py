"""Network faults between the SUT and the fake MTAs: one API (Toxiproxy's), two servers.

`ToxiproxyAdapter` (toxiproxy-python underneath) drives a real Toxiproxy or the embedded proxy
(`EmbeddedToxiproxy`, an asyncio proxy serving Toxiproxy's HTTP API) the same way.
"""

from __future__ import annotations

from typing import Any

from maildrill.harness.faults.adapter import ProxyInfo, ToxiproxyAdapter, find_toxiproxy

from maildrill.vocabulary import TOXIC_TYPES

__all__ = ["TOXIC_TYPES", "EmbeddedToxiproxy", "EmbeddedToxiproxyThread", "ProxyInfo", "ToxiproxyAdapter",
           "find_toxiproxy"]


def __getattr__(name: str) -> Any:  # the embedded server loads only when used
    if name in ("EmbeddedToxiproxy", "EmbeddedToxiproxyThread"):
        from maildrill.harness.faults import embedded

        return getattr(embedded, name)
    raise AttributeError(f"module 'maildrill.harness.faults' has no attribute {name!r}")
