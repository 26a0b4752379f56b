"""Envoy access logs: the default text format, Istio's default text format, and JSON (`json_format`).

Envoy's default format (`config/observability/access_log/usage` in the Envoy documentation):

    [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
    %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%
    "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"

Istio's default inserts `%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
"%UPSTREAM_TRANSPORT_FAILURE_REASON%"` after the flags and appends `%UPSTREAM_CLUSTER%
%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
%REQUESTED_SERVER_NAME% %ROUTE_NAME%`; then a TLS connection passed through (`"- - -"`, no
authority) is named by its SNI. JSON logs are read by the keys of Envoy's and Istio's documented
examples: `start_time`, `authority` (or `:authority`, else `requested_server_name`),
`x_forwarded_for`/`x-forwarded-for`, `downstream_remote_address`, `upstream_host`, `method`,
`response_code`, `response_flags`. (A Kubernetes container-runtime prefix, `<time> stdout F `, is
taken off by LogFile's `cri` wrapper, as for every format.)

The client is the first `X-Forwarded-For` address, else the downstream remote address. Requests
Envoy never sent upstream (response flags `NR` no route, `NC` no cluster, `UH` no healthy host,
`UAEX` external authorization denied, `RL`/`RLSE` rate limited, `IH` invalid headers, `FI` fault
injected, `DF` DNS failure, `OM`/`DO` overload) are not calls.
"""

from __future__ import annotations

import re
from typing import Any

from auditor.events import ConnectionEvent
from auditor.sources.common import address, address_port, json_object, parse_iso_time, small_int, split_host_port
from auditor.sources.interface import Ignored, Malformed

NAME = "envoy"
_TEXT = re.compile(r'^\[(?P<time>[0-9]{4}-[0-9]{2}-[0-9]{2}T[^\]]+)\] "(?P<request>[^"]*)" (?P<code>[0-9]{1,3}|-) (?P<flags>\S+) (?P<rest>.*)$')
_TOKEN = re.compile(r'"([^"]*)"|(\S+)')
_JSON_KEYS = (
    '"upstream_host"',
    '"response_flags"',
    '"downstream_remote_address"',
    '"upstream_cluster"',
    '"response_code_details"',
    '"requested_server_name"',
    '"upstream_local_address"',
    '"downstream_local_address"',
)
NOT_FORWARDED = frozenset({"NR", "NC", "UH", "UAEX", "RL", "RLSE", "IH", "FI", "DF", "OM", "DO"})
"""Response flags of requests Envoy answered itself, without an upstream connection."""


def sniff(line: str) -> bool:
    """True when `line` looks like an Envoy text record or an Envoy JSON access log object."""
    if line.startswith("{"):
        return sum(1 for key in _JSON_KEYS if key in line) >= 2
    return _TEXT.match(line) is not None


def _dash(value: str | None) -> str:
    return "" if value is None or value == "-" else value


def _client(forwarded: str, downstream: str) -> str:
    first = forwarded.split(",")[0].strip()
    if first:
        return address(first.strip("[]")) or address_port(first)[0]
    return address_port(downstream)[0]


def _not_forwarded(flags: str) -> None:
    hit = sorted(set(flags.split(",")) & NOT_FORWARDED)
    if hit:
        raise Ignored(f"not forwarded by the proxy (response flag {hit[0]})")


def _event(
    *,
    ts_text: str,
    method: str,
    code: str,
    flags: str,
    forwarded: str,
    downstream: str,
    authority: str,
    sni: str,
    upstream: str,
    location: str,
    raw: str,
) -> ConnectionEvent:
    ts = parse_iso_time(ts_text)
    _not_forwarded(flags)
    name = authority or sni
    if not name:
        raise Ignored("request names no host", ts)
    host, port = split_host_port(name, 0)
    if not host:
        raise Ignored("request names no host", ts)
    resp_h, resp_p = address_port(upstream)
    status = small_int(code, 3) or 0
    return ConnectionEvent(
        ts=ts,
        orig_h=_client(forwarded, downstream),
        server_name=host,
        source=location,
        resp_h=resp_h,
        resp_p=port or resp_p,
        method=method,
        status=status,
        raw=raw,
    )


def _parse_text(text: str, location: str) -> ConnectionEvent:
    m = _TEXT.match(text)
    if m is None:
        raise Malformed("envoy: not '[START_TIME] \"METHOD PATH PROTOCOL\" CODE FLAGS ...'")
    tokens = [(quoted, True) if bare == "" else (bare, False) for quoted, bare in _TOKEN.findall(m["rest"])]
    start = next((i for i in range(len(tokens) - 4) if all(q for _, q in tokens[i : i + 5])), -1)
    if start < 0:
        raise Malformed("envoy: fewer than the five quoted fields of the default format")
    forwarded, _agent, _request_id, authority, upstream = (_dash(v) for v, _ in tokens[start : start + 5])
    tail = [v for v, _ in tokens[start + 5 :]]
    downstream, sni = (tail[3], _dash(tail[4])) if len(tail) >= 5 else ("", "")
    request = m["request"].split(" ")
    return _event(
        ts_text=m["time"],
        method=_dash(request[0]),
        code=m["code"],
        flags=m["flags"],
        forwarded=forwarded,
        downstream=downstream,
        authority=authority,
        sni=sni,
        upstream=upstream,
        location=location,
        raw=text,
    )


def _text(record: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = record.get(key)
        if value is not None and value != "-" and value != "":
            return str(value)
    return ""


def _parse_json(text: str, location: str) -> ConnectionEvent:
    record = json_object(text, "envoy", "log entry")
    ts_text = _text(record, "start_time")
    if not ts_text:
        raise Malformed("envoy: no 'start_time'")
    return _event(
        ts_text=ts_text,
        method=_text(record, "method", ":method", "request_method"),
        code=_text(record, "response_code"),
        flags=_text(record, "response_flags"),
        forwarded=_text(record, "x_forwarded_for", "x-forwarded-for"),
        downstream=_text(record, "downstream_remote_address", "downstream_direct_remote_address"),
        authority=_text(record, "authority", ":authority", "host"),
        sni=_text(record, "requested_server_name"),
        upstream=_text(record, "upstream_host"),
        location=location,
        raw=text,
    )


def parse(line: str, location: str) -> ConnectionEvent:
    """One record -> ConnectionEvent; Malformed or Ignored otherwise."""
    if line.startswith("{"):
        return _parse_json(line, location)
    return _parse_text(line, location)
