"""The harness's one fault-proxy client: Toxiproxy's HTTP API through toxiproxy-python.

It drives the embedded proxy (`maildrill.harness.faults.embedded`) and a real Toxiproxy alike. toxiproxy-python
keeps the server's host and port on its `APIConsumer` *class* and sends requests without timeouts;
rather than fork it, every adapter gets its own `APIConsumer` subclass bound to its server, passes a
timeout on every call, and adds what the library lacks (toxic update via PATCH). Its response
validation and exceptions (`ProxyExists`, `NotFound`, `InvalidToxic`) and its `Proxy` model are used
as they are, then turned into maildrill errors that say what to do.

Every change the adapter makes is recorded (`proxy.created`, `proxy.toxic.added`, ...; docs/events.md)
on the run clock, so the analysis sees network faults next to the MTAs' replies.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from maildrill.fake_mta.recording import Recorder
from maildrill.harness.errors import InfrastructureError, ToxiproxyUnreachable, UsageError
from toxiproxy.api import APIConsumer, validate_response
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from toxiproxy.proxy import Proxy


@dataclass(frozen=True)
class ProxyInfo:
    name: str
    listen_host: str
    listen_port: int
    upstream: str
    enabled: bool

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"


def find_toxiproxy() -> str | None:
    """The path of a `toxiproxy-server` binary on PATH, or None."""
    return shutil.which("toxiproxy-server")


def _split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class ToxiproxyAdapter:
    """A synchronous client for one Toxiproxy-API server (call it from a thread in async code)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, recorder: Recorder | None = None) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise UsageError(f"Toxiproxy URL {url!r}: expected http://HOST:PORT (e.g. http://127.0.0.1:8474)")
        self.url = f"http://{parts.hostname}:{parts.port or 8474}"
        self.timeout_s = timeout_s
        self.recorder = recorder
        # this adapter's own binding of toxiproxy-python's class-level API consumer
        self.api: type[APIConsumer] = type("BoundAPIConsumer", (APIConsumer,),
                                           {"host": parts.hostname, "port": parts.port or 8474})

    # --- HTTP, with timeouts and errors that say what happened ---------------------------------
    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            if method == "patch":  # toxiproxy-python has no PATCH (toxic update)
                patched: requests.Response = validate_response(
                    requests.patch(self.url + path, timeout=self.timeout_s, **kwargs))
                return patched
            response: requests.Response = getattr(self.api, method)(path, timeout=self.timeout_s, **kwargs)
            return response
        except requests.ConnectionError as exc:
            raise ToxiproxyUnreachable(
                f"Toxiproxy at {self.url} is unreachable while trying to {what} ({_reason(exc)}); start it "
                f"(`toxiproxy-server -port {self.api.port}` or `maildrill proxy --port {self.api.port}`) or drop "
                f"--toxiproxy-url to use the embedded proxy") from None
        except requests.Timeout:
            raise ToxiproxyUnreachable(f"Toxiproxy at {self.url} did not answer within {self.timeout_s:g} s "
                                       f"while trying to {what}") from None
        except ProxyExists as exc:
            raise UsageError(f"cannot {what}: {_body(exc)} (409); delete it first "
                             f"(`toxiproxy-cli delete NAME`) or choose another name") from None
        except NotFound as exc:
            raise UsageError(f"cannot {what}: {_body(exc)} (404)") from None
        except InvalidToxic as exc:
            raise UsageError(f"cannot {what}: {_body(exc)} (400)") from None

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        resp = self._call(method, path, what, **kwargs)
        if resp.status_code >= 500:
            raise InfrastructureError(f"Toxiproxy at {self.url} failed to {what}: HTTP {resp.status_code} "
                                      f"{resp.text.strip()[:200]}")
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def _record(self, kind: str, **data: Any) -> None:
        if self.recorder is not None:
            self.recorder.record(kind, None, **data)

    # --- the API ----------------------------------------------------------------------------
    def version(self) -> str:
        resp = self._call("get", "/version", "read its version")
        text = resp.text.strip()
        try:
            data = json.loads(text)
        except ValueError:
            return text
        return str(data.get("version", text)) if isinstance(data, dict) else text

    def proxies(self) -> dict[str, ProxyInfo]:
        data = self._json("get", "/proxies", "list proxies") or {}
        return {name: _info(Proxy(**values)) for name, values in data.items()}

    def proxy(self, name: str) -> ProxyInfo:
        return _info(Proxy(**self._json("get", f"/proxies/{name}", f"read proxy {name!r}")))

    def create_proxy(self, name: str, *, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True) -> ProxyInfo:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        info = _info(Proxy(**self._json("post", "/proxies", f"create proxy {name!r}", json=body)))
        self._record("proxy.created", proxy=name, listen=info.listen, upstream=upstream, enabled=info.enabled)
        return info

    def delete_proxy(self, name: str) -> None:
        self._call("delete", f"/proxies/{name}", f"delete proxy {name!r}")
        self._record("proxy.deleted", proxy=name)

    def set_enabled(self, name: str, enabled: bool) -> ProxyInfo:
        what = f"{'enable' if enabled else 'disable'} proxy {name!r}"
        info = _info(Proxy(**self._json("post", f"/proxies/{name}", what, json={"enabled": enabled})))
        self._record("proxy.enabled" if enabled else "proxy.disabled", proxy=name)
        return info

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        return list(self._json("get", f"/proxies/{proxy}/toxics", f"list the toxics of proxy {proxy!r}") or [])

    @staticmethod
    def _whole(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        """Toxiproxy's attributes are Go integers and it refuses JSON 400.0: send whole floats as ints (a
        fraction goes as it is, for the server to refuse with its reason)."""
        return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in (attributes or {}).items()}

    def add_toxic(self, proxy: str, *, type: str, attributes: Mapping[str, Any] | None = None,
                  stream: str = "downstream", toxicity: float = 1.0, name: str | None = None) -> str:
        name = name or f"{type}_{stream}"
        body = {"name": name, "type": type, "stream": stream, "toxicity": toxicity,
                "attributes": self._whole(attributes)}
        got = self._json("post", f"/proxies/{proxy}/toxics", f"add toxic {name!r} to proxy {proxy!r}", json=body)
        self._record("proxy.toxic.added", proxy=proxy, toxic=name, type=type, stream=stream, toxicity=toxicity,
                     attributes=json.dumps((got or body).get("attributes", body["attributes"]), sort_keys=True))
        return str((got or {}).get("name", name))

    def update_toxic(self, proxy: str, toxic: str, *, attributes: Mapping[str, Any] | None = None,
                     toxicity: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = self._whole(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        # POST: every Toxiproxy 2.x takes it; PATCH only 2.6 and later
        got = self._json("post", f"/proxies/{proxy}/toxics/{toxic}", f"update toxic {toxic!r} of proxy {proxy!r}",
                         json=body) or {}
        self._record("proxy.toxic.updated", proxy=proxy, toxic=toxic, type=got.get("type"), stream=got.get("stream"),
                     toxicity=got.get("toxicity"), attributes=json.dumps(got.get("attributes", {}), sort_keys=True))
        return dict(got)

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        self._call("delete", f"/proxies/{proxy}/toxics/{toxic}", f"remove toxic {toxic!r} from proxy {proxy!r}")
        self._record("proxy.toxic.removed", proxy=proxy, toxic=toxic)

    def reset(self) -> None:
        self._call("post", "/reset", "reset every proxy")
        self._record("proxy.reset")


def _info(p: Proxy) -> ProxyInfo:
    host, port = _split_hostport(p.listen)
    return ProxyInfo(p.name, host, port, p.upstream, bool(p.enabled))


def _body(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else b""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip() or type(exc).__name__
    return str(data.get("error", text)) if isinstance(data, dict) else text


def _reason(exc: Exception) -> str:
    text = str(exc)
    return "connection refused" if "refused" in text.lower() else text[:120]
