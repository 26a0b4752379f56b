"""nginx/Apache combined (and common) log format, optionally with a leading virtual host.

    $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
    10.20.1.5 - - [15/Jul/2024:09:10:11 +0000] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"

Apache's `vhost_combined` (`%v:%p %h ...`) and nginx formats that start with `$host` put the
virtual host first; then it names the host the call was for. Otherwise the host comes from the
request target: `CONNECT host:port` or an absolute URL (a forward proxy). A relative target names
no host, so such lines are not calls to a known host.
"""

from __future__ import annotations

import re

from auditor.events import ConnectionEvent
from auditor.sources.common import host_from_target, parse_clf_time, split_host_port
from auditor.sources.interface import Ignored, Malformed

NAME = "combined"
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_LINE = re.compile(
    r"^(?:(?P<vhost>\S+) )?(?P<orig_h>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    + _QUOTED.replace("(", "(?P<request>", 1)
    + r" (?P<status>\d{3}) (?P<bytes>\d+|-)"
    + r'(?: "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*")?'
)


def sniff(line: str) -> bool:
    """True when `line` looks like a combined/common record."""
    return _LINE.match(line) is not None


def parse(line: str, location: str) -> ConnectionEvent:
    """One record -> ConnectionEvent; Malformed or Ignored otherwise."""
    m = _LINE.match(line)
    if m is None:
        raise Malformed("combined: not a combined/common log record")
    ts = parse_clf_time(m["time"])
    request = m["request"].split(" ")
    method = request[0] if len(request) == 3 else ""
    vhost = m["vhost"]
    if vhost:
        host, port = split_host_port(vhost, 0)
    elif method:
        host, port = host_from_target(method, request[1])
    else:
        raise Ignored("request line is not METHOD TARGET PROTOCOL")
    if not host or host == "-" or host == "_":
        raise Ignored("request names no host")
    return ConnectionEvent(
        ts=ts,
        orig_h=m["orig_h"],
        server_name=host,
        source=location,
        resp_p=port,
        method=method,
        status=int(m["status"]),
        raw=line,
    )
