"""Cloudflare Logpush, dataset `http_requests`: NDJSON, one request per line, with the fields the job
selected (`output_options.field_names`).

Fields: <https://developers.cloudflare.com/logs/reference/log-fields/zone/http_requests/> (see
shared/reference/vercel-and-edge-logs.md). A record is a call to `ClientRequestHost`; time
`EdgeStartTimestamp` (`unixnano`, `unix` or `rfc3339`, as the job's `timestamp_format` says), method
`ClientRequestMethod`, status `EdgeResponseStatus` (else `OriginResponseStatus`), server `OriginIP`.

Where the call left from depends on who made it. A Worker subrequest (`WorkerSubrequest: true`, or
`ClientRequestSource: "edgeWorkerFetch"`; Cloudflare logs each `fetch()` of a Worker as a record
of its own, <https://developers.cloudflare.com/logs/logpush/logpush-job/subrequests/>) left from
the Cloudflare data center that ran the Worker: its egress is that colo, `EdgeColoCode`, else the
`-XXX` suffix of a `RayID` that has one, located through the region table
(`cloudflare:hkg` -> HK); the end user's `ClientIP` is not the caller and is not used. Any other
record is a client's request that arrived at Cloudflare from `ClientIP`, which is the caller.
Not read: merged subrequests (`Subrequests` arrays, one line per visitor request), Smart
Placement and Argo (`SmartRouteColoID` is a number, not a colo code).
"""

from __future__ import annotations

from typing import Any

from auditor.events import ConnectionEvent
from auditor.sources.common import DEFAULT_PORTS, address, json_object, parse_json_time, split_host_port
from auditor.sources.interface import Ignored, Malformed

NAME = "cloudflare"
_KEYS = (
    '"ClientIP"',
    '"ClientRequestHost"',
    '"ClientRequestURI"',
    '"EdgeStartTimestamp"',
    '"EdgeResponseStatus"',
    '"RayID"',
    '"EdgeColoCode"',
    '"ClientRequestMethod"',
)


def sniff(line: str) -> bool:
    """True when `line` looks like a Logpush http_requests record (two of its usual fields)."""
    text = line.lstrip()
    return text.startswith("{") and sum(1 for key in _KEYS if key in text) >= 2


def _str(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    return value.strip() if isinstance(value, str) else ""


def _int(record: dict[str, Any], key: str) -> int:
    value = record.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def colo(record: dict[str, Any]) -> str:
    """The data center of a record: `EdgeColoCode`, else a `RayID`'s `-XXX` suffix; lower case."""
    code = _str(record, "EdgeColoCode")
    if not code:
        _, dash, suffix = _str(record, "RayID").rpartition("-")
        code = suffix if dash and suffix.isalpha() else ""
    return code.lower()


def parse(line: str, location: str) -> ConnectionEvent:
    """One record -> ConnectionEvent; Malformed or Ignored otherwise."""
    record = json_object(line, "cloudflare")
    stamp = record.get("EdgeStartTimestamp", record.get("EdgeEndTimestamp"))
    if stamp is None:
        raise Malformed("cloudflare: no 'EdgeStartTimestamp'")
    ts = parse_json_time(stamp)
    host, port = split_host_port(_str(record, "ClientRequestHost"), 0)
    if not host:
        raise Ignored("request names no host", ts)
    subrequest = record.get("WorkerSubrequest") is True or record.get("ClientRequestSource") in ("edgeWorkerFetch", 5)
    where = colo(record) if subrequest else ""
    return ConnectionEvent(
        ts=ts,
        orig_h="" if subrequest else address(_str(record, "ClientIP")),
        orig_p=0 if subrequest else _int(record, "ClientSrcPort"),
        server_name=host,
        source=location,
        resp_h=address(_str(record, "OriginIP")),
        resp_p=port or DEFAULT_PORTS.get(_str(record, "ClientRequestScheme").lower(), 0),
        method=_str(record, "ClientRequestMethod"),
        status=_int(record, "EdgeResponseStatus") or _int(record, "OriginResponseStatus"),
        egress_region=f"cloudflare:{where}" if where else "",
        raw=line,
    )
