"""nginx/Apache combined (and common) log format, optionally with a leading virtual host.

    $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
    10.20.1.5 - - [15/Jul/2024:09:10:11 +0000] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"

Apache's `vhost_combined` (`%v:%p %h ...`) and nginx formats that start with `$host` put the
virtual host first; then it names the host the call was for. Otherwise the host comes from the
request target: `CONNECT host:port` or an absolute URL (a forward proxy). A relative target names
no host, so such lines are not calls to a known host.

Squid's `common` and `combined` emulations (`logformat common %>a %[ui %[un [%tl] "%rm %ru
HTTP/%rv" %>Hs %<st %Ss:%Sh`, `combined` with the referer and user agent before `%Ss:%Sh`) are
this format with Squid's result tag at the end; requests Squid denied or did not forward
(`TCP_DENIED:HIER_NONE`, `NONE_NONE:HIER_NONE`) are not calls, as in Squid's native format.
HAProxy's `option httplog clf` is this format too (its extra fields follow the user agent).
"""

from __future__ import annotations

import re

from auditor.events import ConnectionEvent
from auditor.sources.common import host_from_target, is_hostname, parse_clf_time, split_host_port
from auditor.sources.interface import Ignored, Malformed
from auditor.sources.squid import not_forwarded

NAME = "combined"
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_TAGS = r" (?P<result>[A-Z][A-Z_]*):(?P<hierarchy>[A-Z][A-Z_]*)(?: \[.*\] \[.*\])?\s*$"
"""Squid's `%Ss:%Sh` (`TCP_TUNNEL:HIER_DIRECT`) ending its common/combined emulation, followed by
the request and reply headers in brackets with `log_mime_hdrs on`."""
_LINE = re.compile(
    r"^(?P<head>\S.*?) \[(?P<time>[^\]]+)\] "
    + _QUOTED.replace("(", "(?P<request>", 1)
    # Squid's emulation prints "no reply" as 0 (%d); only there (Envoy's TCP lines have a 0 too)
    + r" (?P<status>[0-9]{3}|0(?=.*"
    + re.sub(r"\?P<\w+>", "?:", _TAGS)
    + r")) (?P<bytes>[0-9]+|-)"
    + r'(?: "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*")?'
)
_METHOD = re.compile(r"^[A-Z][A-Z_-]{1,19}$")
_HAPROXY_CLF = re.compile(
    r' [0-9]+ [0-9]+ "[^"]*" "[^"]*" "[^"]*"(?: -?[0-9]+){5} \S{4}(?: [0-9]+){5} [0-9]+ [0-9]+ "[^"]*" "[^"]*"(?P<headers>(?: "[^"]*")*)\s*$'
)
"""What HAProxy's `option httplog clf` writes after the empty referer and user agent: `%cp %ms %ft %b
%s %TR %Tw %Tc %Tr %Ta %tsc %ac %fc %bc %sc %rc %sq %bq %CC %CS %hrl %hsl` (src/log.c), the captured
headers last, each quoted."""
_SQUID_TAGS = re.compile(_TAGS)


def _split_head(head: str) -> tuple[str, str]:
    """(vhost, client) from what precedes `[time]`: `client ident user` or `vhost client ident user`.

    The user may contain spaces (it is logged unescaped); the ident field is all but always `-`,
    which tells the two layouts apart.
    """
    parts = head.split(" ")
    if len(parts) >= 3 and parts[1] == "-":
        return "", parts[0]
    if len(parts) >= 4 and parts[2] == "-":
        return parts[0], parts[1]
    if len(parts) == 3:
        return "", parts[0]
    if len(parts) == 4:
        return parts[0], parts[1]
    raise Malformed("combined: cannot tell client, ident and user apart")


def _captured_host(headers: str) -> tuple[str, int] | None:
    """The first captured header that is a host name (capture `Host` to audit such a log)."""
    for value in re.findall(r'"([^"]*)"', headers):
        host, port = split_host_port(value.strip(), 0)
        if host and is_hostname(host):
            return host, port
    return None


def sniff(line: str) -> bool:
    """True when `line` looks like a combined/common record."""
    m = _LINE.match(line)
    return m is not None and 3 <= m["head"].count(" ") + 1 <= 6


def parse(line: str, location: str) -> ConnectionEvent:
    """One record -> ConnectionEvent; Malformed or Ignored otherwise."""
    m = _LINE.match(line)
    if m is None:
        raise Malformed("combined: not a combined/common log record")
    vhost, orig_h = _split_head(m["head"])
    ts = parse_clf_time(m["time"])
    tags = _SQUID_TAGS.search(line, m.end())
    if tags is not None:
        reason = not_forwarded(tags["result"], m["status"])
        if reason:
            raise Ignored(reason, ts)
    request = m["request"].split(" ")
    if len(request) == 3 and _METHOD.match(request[0]) and request[2].startswith("HTTP/"):
        method, target = request[0], request[1]
    else:
        method, target = "", ""
    if method and (method == "CONNECT" or "://" in target):
        # A forward proxy: the request names the host; a leading %v is the proxy's own name.
        host, port = host_from_target(method, target)
    elif vhost:
        host, port = split_host_port(vhost, 0)
    elif method and (clf := _HAPROXY_CLF.match(line, m.end())) is not None:
        host, port = _captured_host(clf["headers"]) or host_from_target(method, target)
    elif method:
        host, port = host_from_target(method, target)
    else:
        raise Ignored("request line is not METHOD TARGET PROTOCOL", ts)
    if not host or host in ("-", "_"):
        raise Ignored("request names no host", ts)
    return ConnectionEvent(
        ts=ts,
        orig_h=orig_h,
        server_name=host,
        source=location,
        resp_p=port,
        method=method,
        status=int(m["status"]),
        raw=line,
    )
