"""Vercel log drains: NDJSON (one object per line) or JSON arrays of log objects.

Schema: https://vercel.com/docs/drains/reference/logs (see shared/reference). A record is an
outbound call when it is an external rewrite (`source: "external"`) whose `destination` names a
host, or when its `message` carries a provider's "blocked region" error (the pipeline decides
which messages those are). The egress is the execution region: `executionRegion`, else
`proxy.lambdaRegion`, else `proxy.region` (`hkg1`), never the end user's `proxy.clientIp`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from auditor.events import ConnectionEvent
from auditor.sources.common import json_value, url_host_port
from auditor.sources.interface import Ignored, Malformed

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


def parse_record(record: Any, location: str, raw: str) -> ConnectionEvent:
    """One decoded log object -> ConnectionEvent."""
    if not isinstance(record, dict):
        raise Malformed("vercel: log entry is not a JSON object")
    stamp = record.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not 0 < stamp < 1e14:
        raise Malformed("vercel: missing or bad 'timestamp' (milliseconds)")
    ts = dt.datetime.fromtimestamp(stamp / 1000, tz=dt.UTC)
    host, port = "", 0
    destination = record.get("destination")
    if record.get("source") == "external" and isinstance(destination, str) and destination:
        host, port = url_host_port(destination if "://" in destination else f"https://{destination}", 443)
    message = record.get("message")
    if not isinstance(message, str):
        message = ""
    if not host and not message:
        raise Ignored("no outbound call in this record")
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
