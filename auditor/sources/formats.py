"""The log format registry: every known format, detection from an input's first lines, and
formats read inside a container runtime's wrapper (`squid+docker`).

Imports no reader: the command line and the configuration check format names without loading
the prefilter (Hyperscan).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from auditor.events import ConnectionEvent
from auditor.sources import (
    aws_firewall,
    cloudflare,
    combined,
    envoy,
    haproxy,
    jsonmap,
    nginx_proxy_manager,
    nginx_stream,
    squid,
    suricata,
    vercel,
    wrapped,
    zeek,
)
from auditor.sources.interface import Malformed, SourceError

BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark Windows editors put first: not part of the first line (its bytes
still count in offsets)."""


@dataclass(frozen=True)
class LogFormat:
    """A log format: a name, a cheap recogniser and a parser."""

    name: str
    """Format name for --format and summaries."""
    sniff: Callable[[str], bool]
    """True when a line looks like this format."""
    parse: Callable[[str, str], ConnectionEvent]
    """Line and location -> event; raises Malformed or Ignored."""
    reader: Callable[[Mapping[str, str] | None], LineReader] | None = None
    """For a format that needs state per input (Zeek TSV columns from `#fields`, the field map of
    generic JSON): makes the input's reader from its [[source]] field map; it parses instead of
    `parse`. It may raise ValueError (a sentence saying what to configure)."""
    detected: bool = True
    """False for a format chosen only by --format or configuration."""


class LineReader(Protocol):
    """Per-input parsing state (see LogFormat.reader)."""

    headers: bool
    """True when every line starting with `#` goes to `header()`, prefilter or not."""

    def header(self, line: str) -> None:
        """Take in a header line; may raise Ignored or Malformed to be counted."""

    def parse(self, line: str, location: str) -> ConnectionEvent:
        """Line and location -> event; raises Malformed or Ignored."""


FORMATS = {
    f.name: f
    for f in (
        LogFormat(squid.NAME, squid.sniff, squid.parse),
        LogFormat(combined.NAME, combined.sniff, combined.parse),
        LogFormat(vercel.NAME, vercel.sniff, vercel.parse),
        LogFormat(haproxy.NAME, haproxy.sniff, haproxy.parse),
        LogFormat(nginx_stream.NAME, nginx_stream.sniff, nginx_stream.parse),
        LogFormat(nginx_proxy_manager.NAME, nginx_proxy_manager.sniff, nginx_proxy_manager.parse),
        LogFormat(envoy.NAME, envoy.sniff, envoy.parse),
        LogFormat(zeek.NAME, zeek.sniff, zeek.parse, reader=zeek.Reader),
        LogFormat(aws_firewall.NAME, aws_firewall.sniff, aws_firewall.parse),  # before suricata: its events are EVE too
        LogFormat(suricata.NAME, suricata.sniff, suricata.parse),
        LogFormat(cloudflare.NAME, cloudflare.sniff, cloudflare.parse),
        LogFormat(jsonmap.NAME, jsonmap.sniff, jsonmap.parse, reader=jsonmap.Reader, detected=False),
    )
}
"""Known formats by name, in detection order."""


def first_lines(sample: bytes) -> list[str]:
    """The first lines of a sample (up to 64, not blank, the last only when it is complete)."""
    lines = [ln for ln in sample.removeprefix(BOM).split(b"\n")[:64] if ln.strip()]
    if len(lines) > 1 and not sample.endswith(b"\n"):
        lines = lines[:-1]  # the last one may be cut off by the sample size
    return [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines]


def detect_format(sample: bytes, name: str) -> LogFormat | None:
    """The format most of the first lines of `sample` match; None for an empty sample."""
    if vercel.sniff_sample(sample.removeprefix(BOM)):
        return FORMATS[vercel.NAME]
    texts = first_lines(sample)
    if not texts:
        return None
    kind = wrapped.common_kind(texts)
    if kind is not None:
        inner = _most_matched([_unwrapped(kind, t) for t in texts])
        if inner is not None:
            return _wrap(inner, kind)
    best = _most_matched(texts)
    if best is None:
        known = " or ".join(n for n, f in FORMATS.items() if f.detected)
        raise SourceError(
            f"{name}: not a recognised log format (looked for {known} records in its first lines); pass --format to force one, "
            'or for other JSON lines set format = "json" and a field map in its [[source]] config entry'
        )
    return best


def format_named(name: str, sample: bytes = b"") -> LogFormat | None:
    """The format of this name (`squid`, or `squid+docker` for squid lines in a wrapper), None for
    none. A plain name is read inside the wrapper most of the sample's first lines are in
    (`--format envoy` on a container's log is `envoy+cri`), except `json`: its field map may
    address the wrapper's own fields."""
    if name in FORMATS:
        kind = wrapped.common_kind(first_lines(sample)) if sample and name != jsonmap.NAME else None
        return _wrap(FORMATS[name], kind) if kind is not None else FORMATS[name]
    inner, _, kind = name.partition("+")
    return _wrap(FORMATS[inner], kind) if inner in FORMATS and kind in wrapped.KINDS else None


UNWRAP = {"docker": "jq -r .log FILE", "ecs": "jq -r .message FILE", "cri": "cut -d' ' -f4- FILE"}
"""How to take the lines out of each wrapper by hand."""


def refuse_wrapped_headers(name: str, kind: str, sample: bytes) -> None:
    """Zeek TSV inside a wrapper cannot be read: its header lines (`#fields`) are wrapped too, and
    only lines naming a governed host reach the parser."""
    for line in sample.split(b"\n")[:64]:
        if _unwrapped(kind, line.decode("utf-8", "replace")).startswith("#"):
            raise SourceError(
                f"{name}: Zeek TSV inside {kind} records cannot be read (its header lines are wrapped too); "
                f"take the lines out first: {UNWRAP[kind]} > ssl.log"
            )


def _most_matched(texts: list[str]) -> LogFormat | None:
    best, best_hits = None, 0
    for fmt in FORMATS.values():
        hits = sum(1 for t in texts if fmt.sniff(t))
        if hits > best_hits:
            best, best_hits = fmt, hits
    return best


def _unwrapped(kind: str, text: str) -> str:
    try:
        return wrapped.unwrap(kind, text)
    except Malformed:
        return ""


def _wrap(fmt: LogFormat, kind: str) -> LogFormat:
    """`fmt` for lines inside a `kind` wrapper (auditor.sources.wrapped)."""

    def parse(line: str, location: str) -> ConnectionEvent:
        return fmt.parse(wrapped.unwrap(kind, line), location)

    def sniff(line: str) -> bool:
        return wrapped.kind_of(line) == kind and fmt.sniff(_unwrapped(kind, line))

    make = fmt.reader
    reader = None if make is None else lambda fields: _WrappedReader(make(fields), kind)
    return LogFormat(f"{fmt.name}+{kind}", sniff, parse, reader, detected=False)


class _WrappedReader:
    """A format's reader (Zeek JSON, generic JSON's field map), given the lines inside a wrapper.
    Header lines cannot be read there: only lines naming a governed host reach the parser."""

    headers = False

    def __init__(self, inner: LineReader, kind: str) -> None:
        self._inner = inner
        self._kind = kind

    def header(self, line: str) -> None:
        """Never called (`headers` is False)."""

    def parse(self, line: str, location: str) -> ConnectionEvent:
        return self._inner.parse(wrapped.unwrap(self._kind, line), location)
