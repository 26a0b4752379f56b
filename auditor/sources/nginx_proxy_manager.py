"""Nginx Proxy Manager (NPM) access logs: its `proxy` and `standard` nginx log formats.

NPM defines both in `docker/rootfs/etc/nginx/conf.d/include/log-proxy.conf` of
NginxProxyManager/nginx-proxy-manager:

    log_format proxy '[$time_local] $upstream_cache_status $upstream_status $status - $request_method $scheme $host '
                     '"$request_uri" [Client $remote_addr] [Length $body_bytes_sent] [Gzip $gzip_ratio] '
                     '[Sent-to $server] "$http_user_agent" "$http_referer"';
    log_format standard '[$time_local] $status - $request_method $scheme $host "$request_uri" [Client $remote_addr] '
                        '[Length $body_bytes_sent] [Gzip $gzip_ratio] "$http_user_agent" "$http_referer"';
    [15/Jul/2024:09:10:11 +0000] - 200 200 - POST https api.openai.com "/v1/chat/completions" [Client 10.20.1.5] [Length 1543] [Gzip -] [Sent-to 162.159.140.245:443] "OpenAI/Python 1.35.3" "-"

Proxy hosts write `proxy` (`proxy-host-<id>_access.log`); redirection hosts, 404 hosts and NPM's
default servers write `standard` (`fallback_http_access.log` holds both).

The proxy host's forward host is `$server` (NPM's template: `set $server "<forward host>";` and
`proxy_pass $forward_scheme://$server:$port`), logged as `[Sent-to ...]`: the upstream NPM
itself called. When it is a DNS name of two labels or more, that name is the host of the call: a
proxy host `openai.corp.example` forwarding to `api.openai.com` is a call to api.openai.com from
the NPM machine. Otherwise (an address, which is then the responder; a container name such as
`openresty` or `litellm`, which passes the call on from the same machine; nothing) the host is
`$host`, lower case (`-` or `_` names no host). `$port` and `$forward_scheme` are not logged, so
the responder port is known only when `[Sent-to]` carries one. The client is `$remote_addr`.
nginx writes `"` and bytes outside 0x20-0x7E in variables as `\\xXX` (`escape=default`).

Not calls: a `proxy` record whose `$upstream_status` is `-` (no upstream was contacted: a cache
HIT, an access-list denial, a forced-SSL redirect, a 444), and every `standard` record (the host
answered it itself). `$upstream_status` may be a list (`502, 200`; internal redirects separated by
` : `). nginx error-log lines mixed into the file are not counted; a `combined` line (NPM's
fallback file can hold them) is read as the combined format.
"""  # noqa: E501 - the example is a real line, kept whole

from __future__ import annotations

import re

from auditor.events import ConnectionEvent
from auditor.sources import combined
from auditor.sources.common import address, address_port, is_hostname, parse_clf_time, split_host_port
from auditor.sources.interface import Ignored, Malformed

NAME = "nginx-proxy-manager"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_REQUEST = (
    r"(?P<status>[0-9]{3}) - (?P<method>\S+) (?P<scheme>https?) (?P<host>\S+) "
    + _QUOTED
    + r" \[Client (?P<client>[^\]\s]*)\] \[Length (?:[0-9]+|-)\] \[Gzip (?:[0-9.]+|-)\] "
)
_UPSTREAM_STATUS = r"(?:[0-9]{3}|-)(?:(?:, | : )(?:[0-9]{3}|-))*"
_PROXY = re.compile(
    r"^\[(?P<time>[^\]]+)\] (?P<cache>[A-Z]+|-) (?P<upstream>"
    + _UPSTREAM_STATUS
    + ") "
    + _REQUEST
    + r"\[Sent-to (?P<server>(?:\[[^\]]*\])?[^\]]*)\] "
    + _QUOTED
    + " "
    + _QUOTED
    + "$"
)
_STANDARD = re.compile(r"^\[(?P<time>[^\]]+)\] " + _REQUEST + _QUOTED + " " + _QUOTED + "$")
_ERROR_LOG = re.compile(
    r"^[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} \[(?:debug|info|notice|warn|error|crit|alert|emerg)\] [0-9]+#[0-9]+: "
)
NOT_A_RECORD = "nginx-proxy-manager: not a proxy or standard record"
NO_UPSTREAM = "nginx-proxy-manager: answered by the proxy itself (no upstream)"
STANDARD = "nginx-proxy-manager: 'standard' record of a redirection, 404 or default host, answered by the proxy itself"
ERROR_LOG = "nginx error log line, not an access record"


def sniff(line: str) -> bool:
    """True when `line` looks like an NPM `proxy` or `standard` record."""
    return _PROXY.match(line) is not None or _STANDARD.match(line) is not None


def parse(line: str, location: str) -> ConnectionEvent:
    """One record -> ConnectionEvent; Malformed or Ignored otherwise."""
    m = _PROXY.match(line)
    proxied = m is not None
    if m is None:
        m = _STANDARD.match(line)
    if m is None:
        if _ERROR_LOG.match(line):
            raise Ignored(ERROR_LOG)
        if combined.sniff(line):
            return combined.parse(line, location)
        raise Malformed(NOT_A_RECORD)
    ts = parse_clf_time(m["time"])
    if not proxied:
        raise Ignored(STANDARD, ts)
    if m["upstream"] == "-":
        raise Ignored(NO_UPSTREAM, ts)
    resp_h, resp_p = address_port(m["server"])
    forward, port = ("", 0) if resp_h else split_host_port(m["server"].strip(), 0)
    if is_hostname(forward):
        host, resp_p = forward, port
    else:
        host, resp_p = split_host_port(m["host"], 0)[0], resp_p or port
    if not host or host in ("-", "_"):
        raise Ignored("request names no host", ts)
    return ConnectionEvent(
        ts=ts,
        orig_h=address(m["client"]),
        server_name=host,
        source=location,
        resp_h=resp_h,
        resp_p=resp_p,
        method="" if m["method"] == "-" else m["method"],
        status=int(m["status"]),
        raw=line,
    )
