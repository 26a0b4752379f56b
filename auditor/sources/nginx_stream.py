"""nginx `stream` (TCP/UDP proxy) access logs that log the SNI read by ngx_stream_ssl_preread_module.

nginx has no default stream log format, so this one is read: the `basic` example of the
ngx_stream_log_module documentation, followed by quoted fields, one of which is
`$ssl_preread_server_name`:

    log_format sni '$remote_addr [$time_local] $protocol $status $bytes_sent $bytes_received '
                   '$session_time "$upstream_addr" "$ssl_preread_server_name"';
    10.20.1.5 [15/Jul/2024:09:10:11 +0000] TCP 200 5120 2210 30.021 "162.159.140.245:443" "api.openai.com"

The fields after `$session_time` may come in any order and number (the admin guide's `proxy` format
adds `"$upstream_bytes_sent" "$upstream_bytes_received" "$upstream_connect_time"`): the server
name is the last one that is a host name, the upstream the first `address:port` (the last of a
comma-separated list of tries). A line without a host name is not counted, and says why. Other
layouts (the time first, JSON) need the generic `json` format or a layout of this shape.
`$status` 403 is a connection nginx refused (access module): not a call.
"""

from __future__ import annotations

import re

from auditor.events import ConnectionEvent
from auditor.sources.common import address, address_port, is_hostname, parse_clf_time
from auditor.sources.interface import Ignored, Malformed

NAME = "nginx-stream"
_LINE = re.compile(
    r"^(?P<client>\S+) \[(?P<time>[^\]]+)\] ?(?P<proto>TCP|UDP) (?P<status>[0-9]{3}) (?P<sent>[0-9]+) (?P<received>[0-9]+) "
    r"(?P<session>[0-9]+\.[0-9]{3})(?P<rest>(?: .*)?)$"
)
_FIELD = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')
NO_NAME = 'nginx stream record names no server; log "$ssl_preread_server_name" in its log_format'


def sniff(line: str) -> bool:
    """True when `line` looks like an nginx stream record of the documented shape."""
    return _LINE.match(line) is not None


def parse(line: str, location: str) -> ConnectionEvent:
    """One record -> ConnectionEvent; Malformed or Ignored otherwise."""
    m = _LINE.match(line)
    if m is None:
        raise Malformed("nginx-stream: not '$remote_addr [$time_local] $protocol $status ... $session_time'")
    ts = parse_clf_time(m["time"])
    host, resp_h, resp_p = "", "", 0
    for quoted, bare in _FIELD.findall(m["rest"]):
        if bare.startswith('"'):
            raise Malformed("nginx-stream: a quoted field without its closing quote (line cut short?)")
        value = quoted or bare
        if not resp_h and ":" in value:
            resp_h, resp_p = address_port(value.split(",")[-1].strip())
        candidate = value.rstrip(".").lower()
        if is_hostname(candidate):
            host = candidate
    if m["status"] == "403":
        raise Ignored("denied by the proxy", ts)
    if not host:
        raise Ignored(NO_NAME, ts)
    return ConnectionEvent(
        ts=ts,
        orig_h=address(m["client"]),
        server_name=host,
        source=location,
        resp_h=resp_h,
        resp_p=resp_p,
        proto=m["proto"].lower(),
        status=int(m["status"]),
        raw=line,
    )
