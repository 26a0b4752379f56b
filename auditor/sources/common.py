"""Helpers shared by the log parsers: hosts from request targets, timestamps."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

from auditor.sources.interface import Ignored, Malformed

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
CONNECT_REFUSED = "CONNECT answered with a status other than 2xx: the proxy opened no tunnel, not a call"
"""Why a network monitor's record of a refused CONNECT (407 before the retry with credentials,
403) is not counted; the monitor logs the accepted one, or the session in its tunnel, on its own."""


def connect_refused(method: str, status: int) -> bool:
    """True for a CONNECT the proxy answered with a known status other than 2xx."""
    return method == "CONNECT" and status != 0 and not 200 <= status < 300


def small_int(text: str, most: int = 5) -> int | None:
    """`text` as an integer when it is 1 to `most` ASCII digits, else None. Ports and statuses
    need five at most; int() refuses strings over 4300 digits (ValueError) and is slow far below."""
    return int(text) if 0 < len(text) <= most and text.isascii() and text.isdigit() else None


@functools.lru_cache(maxsize=65_536)
def split_host_port(text: str, default_port: int = 0) -> tuple[str, int]:
    """`api.openai.com:443` -> ("api.openai.com", 443); `[2001:db8::1]:443` and bare hosts too.
    Cached: the same few targets make most governed lines."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    port = default_port
    if port_text:
        port = small_int(port_text) or 0
        if not 0 < port < 65536:
            raise Malformed(f"bad port in {text[:60]!r}")
    return host.rstrip(".").lower(), port


def host_from_target(method: str, target: str) -> tuple[str, int]:
    """The host and port a request line's target names: `host:port` for CONNECT, else the
    authority of an absolute URL. A relative target (`/v1/chat`) names no host: Ignored."""
    if method == "CONNECT":
        return split_host_port(target, 443)
    if "://" in target:
        host, port = url_host_port(target)
        if not host:
            raise Malformed(f"URL without a host: {target[:60]!r}")
        return host, port
    if target.startswith(("/", "error:")) or target in ("*", "-"):
        raise Ignored("request names no host")
    # Squid logs intercepted TLS as `host:port` with method NONE or similar.
    return split_host_port(target, 0)


def url_host_port(url: str, default_port: int = 0) -> tuple[str, int]:
    """The host and port of a URL's authority (credentials left out; the scheme's port, else
    `default_port`, when none is given); ("", 0) without an authority. Malformed for a broken URL."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced `[` (a broken IPv6 literal)
        raise Malformed(f"bad URL {url[:60]!r}") from None
    if not parts.netloc:
        return "", 0
    return split_host_port(parts.netloc.rpartition("@")[2], DEFAULT_PORTS.get(parts.scheme.lower(), default_port))


_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def parse_clf_time(text: str) -> dt.datetime:
    """`15/Jul/2024:09:10:11 +0000` (Common Log Format) -> aware UTC datetime."""
    try:
        day, month, rest = text.split("/", 2)
        year, hh, mm, ss_zone = rest.split(":", 3)
        ss, zone = ss_zone.split(" ", 1)
        if len(zone) != 5 or zone[0] not in "+-" or not (zone[1:].isascii() and zone[1:].isdigit()):
            raise ValueError(zone)
        sign = -1 if zone[0] == "-" else 1
        offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
        local = dt.datetime(int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss), tzinfo=dt.timezone(offset))
        return local.astimezone(dt.UTC)  # year 1 east of UTC, 9999 west: out of range
    except (ValueError, KeyError, IndexError, OverflowError):
        raise Malformed(f"bad timestamp {text[:40]!r}") from None


def parse_epoch(text: str) -> dt.datetime:
    """`1721005923.412` -> aware UTC datetime."""
    try:
        value = float(text)
        if not 0 <= value < 1e11:
            raise ValueError(text)
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise Malformed(f"bad timestamp {text[:40]!r}") from None


def parse_iso_time(text: str) -> dt.datetime:
    """`2024-07-15T09:10:11.123Z`, `...+08:00` or `...-0400` (RFC 3339 / ISO 8601) -> aware UTC
    datetime; a time without an offset is taken as UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except (ValueError, TypeError, AttributeError):
        raise Malformed(f"bad timestamp {str(text)[:40]!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        raise Malformed(f"bad timestamp {str(text)[:40]!r}") from None


def parse_json_time(value: object) -> dt.datetime:
    """A JSON timestamp -> aware UTC datetime: a number of seconds, milliseconds, microseconds or
    nanoseconds since the epoch (told apart by magnitude), the same as a numeric string, or an
    RFC 3339 string."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 40:  # no timestamp is this long; int() refuses over 4300 digits
            raise Malformed(f"bad timestamp {text[:40]!r}...")
        if text and (text.replace(".", "", 1).isascii() and text.replace(".", "", 1).isdigit()):
            value = float(text) if "." in text else int(text)
        else:
            return parse_iso_time(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise Malformed(f"bad timestamp {str(value)[:40]!r}")
    for scale in (1, 1_000, 1_000_000, 1_000_000_000):
        if 0 < value < 1e11 * scale:  # not value / scale: a huge int overflows the division
            break
    else:
        raise Malformed(f"bad timestamp {str(value)[:40]!r}")  # json refuses ints str() would
    if isinstance(value, int):
        seconds, rest = divmod(value, scale)
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC) + dt.timedelta(microseconds=rest * 1_000_000 // scale)
    return dt.datetime.fromtimestamp(value / scale, tz=dt.UTC)


_HOSTNAME = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$")


def is_hostname(text: str) -> bool:
    """True when `text` is a DNS name of two labels or more (`api.openai.com`), not an address."""
    return len(text) <= 254 and _HOSTNAME.match(text) is not None


_LABELS = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?", re.ASCII | re.IGNORECASE)

NOT_A_HOST = "the server name is neither a DNS name nor an address"
"""The malformed reason for a record naming its server with anything else (control characters,
markup, spaces): it is never taken for a governed host, stored or printed."""


@functools.lru_cache(maxsize=65_536)
def is_host(text: str) -> bool:
    """True when `text` can name a server: a DNS name of letters, digits, `-` and `_` in labels of
    at most 63 (any number of labels, 253 octets at most), or an IP address without a zone id
    (`fe80::1%eth0` names an interface of this host, and Python takes any text after the `%`)."""
    return (len(text) <= 254 and _LABELS.fullmatch(text) is not None) or ("%" not in text and bool(address(text)))


@functools.lru_cache(maxsize=65_536)
def address(text: str) -> str:
    """`text` as a normalised IP address (`2001:db8::1`), or "" when it is not one. Cached: the
    same peers and clients recur on most lines."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def address_port(text: str) -> tuple[str, int]:
    """`192.0.2.1:443`, `[2001:db8::1]:443`, `tcp://192.0.2.1:443` -> (address, port); ("", 0)
    when `text` is not an address with an optional port."""
    text = text.strip().rpartition("://")[2]
    try:
        host, port = split_host_port(text, 0)
    except Malformed:
        return "", 0
    ip = address(host)
    return (ip, port) if ip else ("", 0)


JSON_TOO_DEEP = "arrays or objects nested too deeply"
"""Why JSON that Python's parser cannot descend into (thousands of `[`) is refused."""


def json_value(text: str, fmt: str) -> Any:
    """The JSON value of a line; Malformed `<fmt>: not JSON (...)` otherwise. Lone surrogates
    (`\\ud800`, which no UTF-8 can hold: the store and the terminal refuse them) become `?`."""
    try:
        value = json.loads(text)
        return without_surrogates(value) if "\\ud" in text or "\\uD" in text else value
    except ValueError as e:  # huge integers too (a ValueError past 4300 digits)
        raise Malformed(f"{fmt}: not JSON ({getattr(e, 'msg', e)})") from None
    except RecursionError:
        raise Malformed(f"{fmt}: not JSON ({JSON_TOO_DEEP})") from None


def without_surrogates(value: Any) -> Any:
    """`value` (decoded JSON) with each lone surrogate in its strings replaced by `?`. May raise
    RecursionError, as json.loads does, for values nested nearly as deep as it allows."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {without_surrogates(k): without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_surrogates(v) for v in value]
    return value


def json_object(text: str, fmt: str, what: str = "record") -> dict[str, Any]:
    """One JSON object from a line (see json_value); Malformed `<fmt>: <what> is not a JSON
    object` for another value."""
    record = json_value(text, fmt)
    if not isinstance(record, dict):
        raise Malformed(f"{fmt}: {what} is not a JSON object")
    return record
