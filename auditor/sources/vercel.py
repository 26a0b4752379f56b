"""Vercel log drains: NDJSON (one object per line) or JSON arrays of log objects.

Schema: https://vercel.com/docs/drains/reference/logs (see shared/reference). A record is an
outbound call when it is an external rewrite (`source: "external"`) whose `destination` names a
host, or when its `message` carries a provider's "blocked region" error (the pipeline decides
which messages those are). The egress is the execution region: `executionRegion`, else
`proxy.lambdaRegion`, else `proxy.region` (`hkg1`), never the end user's `proxy.clientIp`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from auditor.events import ConnectionEvent
from auditor.sources.common import JSON_TOO_DEEP, json_value, url_host_port, without_surrogates
from auditor.sources.interface import Ignored, Malformed, SourceStats

NAME = "vercel"
_KEYS = ('"deploymentId"', '"projectId"')


def sniff(line: str) -> bool:
    """True when `line` is (or starts) a Vercel log object."""
    text = line.lstrip()
    return text[:1] in ("{", "[") and any(k in text for k in _KEYS) and '"source"' in text


def sniff_sample(sample: bytes) -> bool:
    """True when a stream starts like a JSON array of Vercel log objects (pretty or compact)."""
    head = sample.lstrip()
    return head[:1] == b"[" and (b'"deploymentId"' in head or b'"projectId"' in head)


def parse(line: str, location: str) -> ConnectionEvent:
    """One NDJSON line -> ConnectionEvent; Malformed or Ignored otherwise."""
    return parse_record(json_value(line, "vercel"), location, line)


def _region(record: dict[str, Any]) -> str:
    proxy = record.get("proxy")
    if not isinstance(proxy, dict):
        proxy = {}
    for value in (record.get("executionRegion"), proxy.get("lambdaRegion"), proxy.get("region")):
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return ""


def record_time(record: Any) -> dt.datetime:
    """When a decoded log object was written (its `timestamp`); Malformed when it does not say."""
    if not isinstance(record, dict):
        raise Malformed("vercel: log entry is not a JSON object")
    stamp = record.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not 0 < stamp < 1e14:
        raise Malformed("vercel: missing or bad 'timestamp' (milliseconds)")
    return dt.datetime.fromtimestamp(stamp / 1000, tz=dt.UTC)


def parse_record(record: Any, location: str, raw: str) -> ConnectionEvent:
    """One decoded log object -> ConnectionEvent."""
    ts = record_time(record)
    host, port = "", 0
    destination = record.get("destination")
    if record.get("source") == "external" and isinstance(destination, str) and destination:
        host, port = url_host_port(destination if "://" in destination else f"https://{destination}", 443)
    message = record.get("message")
    if not isinstance(message, str):
        message = ""
    if not host and not message:
        raise Ignored("no outbound call in this record", ts)
    region = _region(record)
    status = record.get("statusCode")
    return ConnectionEvent(
        ts=ts,
        orig_h="",
        server_name=host,
        source=location,
        resp_p=port,
        status=status if isinstance(status, int) and not isinstance(status, bool) else 0,
        egress_region=f"vercel:{region}" if region else "",
        project_id=str(record.get("projectId") or ""),
        project_name=str(record.get("projectName") or ""),
        message=message,
        raw=raw,
    )


Take = Callable[[object, str, str], None]
"""(decoded record, its JSON text, its location) -> None: what reading an array does with each entry."""


def read_array(data: bytes, name: str, skip: int, stats: SourceStats, take: Take) -> int:
    """The entries of a drain saved as JSON arrays (`[{...}, ...]`, one request body per line,
    another array may follow), in order: each entry whose JSON ends after the first `skip` bytes
    (the part audited before) is counted in `stats.lines` and handed to `take`. Invalid JSON, or
    text after the last array, is counted as malformed and ends the reading. The number of the
    last line read."""
    text = data.decode("utf-8", "replace")
    skip_chars = len(data[:skip].decode("utf-8", "replace"))
    decoder = json.JSONDecoder()
    pos, line = text.index("[") + 1, 1 + text.count("\n", 0, text.index("["))
    counted = pos
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos < len(text) and text[pos] == "]":
            # One drain request body per line: another array may follow.
            pos += 1
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos < len(text) and text[pos] == "[":
                pos += 1
                continue
            if pos < len(text):
                line += text.count("\n", counted, pos)
                stats.skip("vercel: text after the JSON array was not read", f"{name}:{line}")
            break
        if pos >= len(text):
            break
        line += text.count("\n", counted, pos)
        counted = pos
        location = f"{name}:{line}"
        try:
            record, end = decoder.raw_decode(text, pos)
            if "\\ud" in text[pos:end].lower():
                record = without_surrogates(record)
        except (ValueError, RecursionError) as e:
            why = JSON_TOO_DEEP if isinstance(e, RecursionError) else getattr(e, "msg", e)
            stats.skip("vercel: invalid JSON in the array; the rest of it was not read", f"{location} ({why})")
            break
        if end > skip_chars:
            stats.lines += 1
            take(record, text[pos:end], location)
        pos = end
    return line
