"""SMTP replies as values: code, enhanced status code, text lines, and whether the server closes after it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from maildrill.fake_mta.config import ReplySpec

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?: |$)")


class _Fields(dict[str, str]):
    """format_map mapping that leaves unknown placeholders as they are (a reply text is user data)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply. `close`: the server closes the connection after sending it; every 421 does
    (RFC 5321 §3.8: "421 ... the SMTP server MUST close the connection" after replying)."""

    code: int
    enhanced: str | None = None
    text: tuple[str, ...] = ("",)
    close: bool = False
    _templated: bool = field(default=False, init=False, repr=False, compare=False)
    _wire: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.text:
            object.__setattr__(self, "text", ("",))
        if self.code == 421:
            object.__setattr__(self, "close", True)
        object.__setattr__(self, "_templated", any("{" in line for line in self.text))
        object.__setattr__(self, "_wire", self._render(self.text))  # precomputed: replies are sent a lot

    @classmethod
    def of(cls, code: int, enhanced: str | None, *lines: str, close: bool = False) -> Reply:
        return cls(code, enhanced, tuple(lines) or ("",), close)

    @classmethod
    def from_spec(cls, spec: ReplySpec) -> Reply:
        lines = (spec.text,) if isinstance(spec.text, str) else tuple(spec.text)
        return cls(spec.code, spec.enhanced, lines)

    def _render(self, lines: tuple[str, ...]) -> str:
        # RFC 5321 §4.2.1: every line but the last is "code-text", the last "code text"; RFC 2034 puts
        # the enhanced code at the start of each line's text.
        prefix = f"{self.enhanced} " if self.enhanced else ""
        out = []
        last = len(lines) - 1
        for i, line in enumerate(lines):
            sep = " " if i == last else "-"
            out.append(f"{self.code}{sep}{prefix}{line}".rstrip())
        return "\r\n".join(out)

    def wire(self, fields: Mapping[str, str] | None = None) -> str:
        """The reply as sent, without the final CRLF; placeholders like ``{rcpt}`` filled from `fields`."""
        if not self._templated or fields is None:
            return self._wire
        f = _Fields(fields)
        return self._render(tuple(_fill(line, f) for line in self.text))

    @property
    def is_positive(self) -> bool:
        return self.code < 400


def _fill(line: str, fields: _Fields) -> str:
    try:
        return line.format_map(fields)
    except (ValueError, IndexError, AttributeError):  # a stray brace in user text: send it as written
        return line


def parse_status(status: str) -> tuple[int, str | None, str]:
    """Split a wire reply ("250 2.1.0 Ok", or several lines joined by CRLF) into code, enhanced code and
    text (lines joined with ``\\n``, without codes). Unparseable input gets code 0."""
    lines = status.split("\r\n")
    try:
        code = int(status[:3])
    except ValueError:
        return 0, None, status
    enhanced: str | None = None
    texts = []
    for line in lines:
        rest = line[4:]
        m = _ENHANCED.match(rest)
        if m:
            enhanced = m.group(1)
            rest = rest[m.end():]
        texts.append(rest)
    return code, enhanced, "\n".join(texts)


OK = Reply(250, None, ("OK",))
START_DATA = Reply(354, None, ("End data with <CR><LF>.<CR><LF>",))
AUTH_REQUIRED = Reply(530, "5.7.0", ("Authentication required",))
BAD_SEQUENCE = Reply(503, "5.5.1", ("Error: bad sequence of commands (the greeting refused service; send QUIT)",))
TOO_MANY_ERRORS = Reply(421, "4.7.0", ("Error: too many errors",))
GREYLIST_POSTGREY = Reply(450, "4.2.0", (
    "<{rcpt}>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/{domain}.html",
))
GREYLIST_HARAKA = Reply(451, "4.7.1", ("Greylisted. Please come back later.",))
