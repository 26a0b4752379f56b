"""Generic JSON lines, read through a field map given in the configuration (never auto-detected):

    [[source]]
    path = "/var/log/gateway/*.json"
    format = "json"
    fields = { ts = "time", orig_h = "client.ip", server_name = "request.host", status = "response.code" }

Each value is a dotted path into the object; a key that itself contains dots (`"id.orig_h"`) is
found too (the longest key that exists wins at each level). `ts` is required, and `server_name`
(a host, `host:port` allowed) or `url` (the host is taken from it); `ts` takes epoch seconds,
milliseconds, microseconds or nanoseconds (numbers or numeric strings) or RFC 3339 strings.
A record whose host field is missing is not a call, unless a mapped `message` carries a
provider's blocked-region error (as in Vercel drains).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from auditor.events import ConnectionEvent
from auditor.sources.common import address, json_object, parse_json_time, small_int, split_host_port, url_host_port
from auditor.sources.interface import Ignored, Malformed

NAME = "json"
FIELDS = {
    "ts": "time of the call",
    "server_name": "host called (host or host:port)",
    "url": "URL called, when no field holds the host alone",
    "orig_h": "client address",
    "orig_p": "client port",
    "resp_h": "server address",
    "resp_p": "server port",
    "method": "HTTP method",
    "status": "response status",
    "message": "response body or error text",
    "egress_h": "public address the call left from",
    "egress_region": "platform region the call left from (`vercel:hkg1`, `cloudflare:hkg`)",
    "project_id": "platform project id",
    "project_name": "platform project name",
}
"""The ConnectionEvent fields a map may fill, and what each holds."""
_INTS = ("orig_p", "resp_p", "status")


def check_map(fields: Mapping[str, Any]) -> str:
    """ "" when `fields` is a usable map, else what is wrong with it and what to write instead."""
    if not fields:
        return "format json needs a field map"
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        return f"unknown field {unknown[0]!r} in 'fields'; known: {', '.join(FIELDS)}"
    for key, path in fields.items():
        if not isinstance(path, str) or not path or any(not part for part in path.split(".")):
            return f"'fields' entry {key!r} must be a dotted path like \"request.host\""
    if "ts" not in fields:
        return "'fields' needs ts = \"<path to the time of the record>\""
    if "server_name" not in fields and "url" not in fields:
        return '\'fields\' needs server_name = "<path to the host called>" or url = "<path to the URL called>"'
    return ""


def sniff(line: str) -> bool:
    """Never: this format is chosen by configuration only."""
    return False


def _lookup(value: Any, parts: tuple[str, ...]) -> Any:
    """The value at `parts` below `value`; at each level the longest dotted key that exists first."""
    if not parts:
        return value
    if not isinstance(value, dict):
        return None
    for cut in range(len(parts), 0, -1):
        key = ".".join(parts[:cut])
        if key in value:
            found = _lookup(value[key], parts[cut:])
            if found is not None:
                return found
    return None


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).strip()


class Reader:
    """Records of one input, read through its field map."""

    headers = False
    """JSON lines have no header lines."""

    def __init__(self, fields: Mapping[str, str] | None) -> None:
        problem = check_map(fields or {})
        if problem:
            raise ValueError(
                f'{problem}; give it in the config\'s [[source]] entry for this file: format = "json", fields = {{ ts = "...", server_name = "..." }}'
            )
        self.paths = {key: tuple(path.split(".")) for key, path in (fields or {}).items()}

    def header(self, line: str) -> None:
        """Never called (`headers` is False)."""

    def parse(self, line: str, location: str) -> ConnectionEvent:
        """One JSON line -> ConnectionEvent; Malformed or Ignored otherwise."""
        record = json_object(line, "json")
        got = {key: _lookup(record, parts) for key, parts in self.paths.items()}
        if got["ts"] is None:
            raise Malformed(f"json: no time at {'.'.join(self.paths['ts'])!r}")
        ts = parse_json_time(got["ts"])
        ints: dict[str, int] = {}
        for key in _INTS:
            text = _scalar(got.get(key))
            ints[key] = small_int(text) or 0
        host, port = split_host_port(_scalar(got.get("server_name")), 0)
        url = _scalar(got.get("url"))
        if not host and url:
            host, port = url_host_port(url if "://" in url else f"//{url}")
        body = got.get("message")
        # A response body logged as JSON (an object) is searched as the text the provider sent.
        message = json.dumps(body, ensure_ascii=False) if isinstance(body, (dict, list)) else _scalar(body)
        if not host and not message:
            raise Ignored("request names no host", ts)
        return ConnectionEvent(
            ts=ts,
            orig_h=address(_scalar(got.get("orig_h"))) or _scalar(got.get("orig_h")),
            orig_p=ints["orig_p"] if ints["orig_p"] < 65536 else 0,
            server_name=host,
            source=location,
            resp_h=address(_scalar(got.get("resp_h"))) or _scalar(got.get("resp_h")),
            resp_p=ints["resp_p"] if 0 < ints["resp_p"] < 65536 else port,
            method=_scalar(got.get("method")).upper(),
            status=ints["status"],
            egress_h=address(_scalar(got.get("egress_h"))),
            egress_region=_scalar(got.get("egress_region")).lower(),
            project_id=_scalar(got.get("project_id")),
            project_name=_scalar(got.get("project_name")),
            message=message,
            raw=line,
        )


def parse(line: str, location: str) -> ConnectionEvent:
    """Without a field map there is nothing to read a record by."""
    raise Malformed('json: no field map; give format = "json" and fields in the config\'s [[source]] entry')
