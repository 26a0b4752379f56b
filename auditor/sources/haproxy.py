"""HAProxy access logs: `option httplog`, `option httpslog` and `option tcplog`, as HAProxy sends them
to syslog and as syslog daemons write them to files.

    %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r
    10.20.1.5:51012 [15/Jul/2024:09:10:11.123] egress-in egress/openai 0/0/1/140/141 200 2210 - - ---- 3/3/1/1/0 0/0 {api.openai.com} {} "POST /v1/chat/completions HTTP/1.1"

    %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq
    10.20.1.5:51013 [15/Jul/2024:09:10:12.004] tls-in tls/openai 0/1/30021 5120 -- 2/2/1/1/0 0/0

(`default_http_log_format`, `default_https_log_format` and `default_tcp_log_format` in HAProxy's
`src/log.c`; configuration manual section 8.2.) The line may start with a syslog header: RFC 3164
(`<134>Jul 15 09:10:11 host haproxy[123]: `, or without `<PRI>` as rsyslog writes it to a file),
RFC 3339 (`2024-07-15T09:10:11.123456+00:00 host haproxy[123]: `, rsyslog's high-precision file
format), RFC 5424 (`<134>1 2024-07-15T09:10:11Z host haproxy 123 - - `), or none (`log stdout
format raw`).

The host of an HTTP call is, first found: the request line's target (`CONNECT host:port` or an
absolute URL); the first captured request header (`{...}`, `capture request header`) that is a
host name, so capture `Host` to audit an HAProxy that clients reach by name; a host name logged
between `backend/server` and the timers (a common custom layout); the SNI of `option httpslog`
(`%[ssl_fc_sni]/%sslv/%sslc` after the request). `tcplog` records only addresses: a TCP line is a
call only when the log-format appends the client's SNI (`%[req.ssl_sni]` for TLS passed through,
`%[ssl_fc_sni]` for TLS terminated, bare, quoted, in braces or as `key:value`); otherwise it is
not counted, and says why. Requests HAProxy answered itself (server `<NOSRV>`, `<CACHE>`, ...)
are not calls.

HAProxy writes its accept date in local time without a zone: it is read as UTC unless an RFC 3339
or RFC 5424 syslog header gives the offset of the host's clock (a container runtime's log prefix,
`2024-07-15T11:10:11.29+02:00 stdout F `, is the node's clock: it gives none).
"""  # noqa: E501 - the examples are real lines, kept whole

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import unquote

from auditor.events import ConnectionEvent
from auditor.sources.common import address, host_from_target, is_hostname, small_int, split_host_port
from auditor.sources.interface import Ignored, Malformed

NAME = "haproxy"

_ACCEPT = re.compile(
    r"(?:^(?:<[0-9]{1,3}>)?|(?<= ))(?P<client>\S*?):(?P<cport>[0-9]{1,5}|-)? "
    r"\[(?P<date>[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?)\] (?P<rest>.*)$"
)
"""`client:port [accept date] ...`, wherever the syslog header ends (`log ... format short` and
`format priority` put `<PRI>` right before the client)."""
_HTTP = re.compile(
    r"^(?P<frontend>\S+) (?P<backend>[^\s/]+)/(?P<server>\S+) (?:(?P<vhost>\S+) )?"
    r"(?P<timers>-?[0-9]+/-?[0-9]+/-?[0-9]+/-?[0-9]+/\+?-?[0-9]+) (?P<status>-?[0-9]+) (?P<bytes>\+?[0-9]+) "
    r"\S+ \S+ (?P<term>\S{4}) \S+ [0-9]+/[0-9]+(?P<captures>(?: \{[^}]*\})*) \"(?P<request>[^\"]*)\"(?P<tail>.*)$"
)
_TCP = re.compile(
    r"^(?P<frontend>\S+) (?P<backend>[^\s/]+)/(?P<server>\S+) (?P<timers>-?[0-9]+/-?[0-9]+/\+?-?[0-9]+) "
    r"(?P<bytes>\+?[0-9]+) (?P<term>\S{2}) [0-9]+/[0-9]+/[0-9]+/[0-9]+/\+?[0-9]+ [0-9]+/[0-9]+(?P<tail>.*)$"
)
_CONNECTION_ERROR = re.compile(r"^\S+/\S+: ")
"""`frontend/bind: SSL handshake failure`: a connection that never became a request."""
_RFC3339 = re.compile(r"^(?:<[0-9]{1,3}>)?(?:1 )?(?P<ts>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:?[0-9]{2})) ")
_SYSLOG_3164 = re.compile(r"^(?:<[0-9]{1,3}>)?[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} ")
_KEYED = re.compile(r"^[A-Za-z_-]+[:=](?P<value>.+)$")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
NO_SNI = "haproxy tcplog names no host; append %[req.ssl_sni] (or %[ssl_fc_sni]) to its log-format"


def sniff(line: str) -> bool:
    """True when `line` looks like an HAProxy http/https/tcp log record (with or without syslog header)."""
    m = _ACCEPT.search(line)
    if m is None:
        return False
    rest = m["rest"]
    return _HTTP.match(rest) is not None or _TCP.match(rest) is not None or _CONNECTION_ERROR.match(rest) is not None


def _offset(line: str, start: int) -> dt.timezone:
    """The UTC offset an RFC 3339 syslog header in front of the record gives, else UTC."""
    m = _RFC3339.match(line[:start])
    if m is None or m["ts"].endswith("Z") or line.startswith(("stdout ", "stderr "), m.end()):
        return dt.UTC  # a container runtime's prefix is the node's clock, not HAProxy's
    zone = m["ts"][-6:] if m["ts"][-3] == ":" else m["ts"][-5:]
    digits = zone[1:].replace(":", "")
    delta = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    if delta >= dt.timedelta(hours=24):
        raise Malformed(f"haproxy: bad UTC offset {zone!r} in the syslog header")
    return dt.timezone(-delta if zone[0] == "-" else delta)


def _accept_time(text: str, zone: dt.timezone) -> dt.datetime:
    """`06/Feb/2009:12:14:14.655` in the zone of HAProxy's host -> aware UTC datetime."""
    try:
        day, month, rest = text.split("/", 2)
        year, hh, mm, ss = rest.split(":", 3)
        whole, _, millis = ss.partition(".")
        local = dt.datetime(int(year), _MONTHS[month], int(day), int(hh), int(mm), int(whole), int(millis or 0) * 1000, tzinfo=zone)
        return local.astimezone(dt.UTC)  # year 1 east of UTC, 9999 west: out of range
    except (ValueError, KeyError, OverflowError):
        raise Malformed(f"haproxy: bad accept date {text[:40]!r}") from None


def _decode(value: str) -> str:
    """HAProxy writes unsafe bytes in captures and the request line as `#XX`."""
    return unquote(value.replace("%", "%25").replace("#", "%")) if "#" in value else value


def _host_name(value: str) -> tuple[str, int] | None:
    """(host, port) when `value` is a host name with an optional port, else None."""
    value = value.strip().strip('"{}')
    keyed = _KEYED.match(value)
    if keyed is not None and not is_hostname(value.partition(":")[0]):
        value = keyed["value"]
    try:
        host, port = split_host_port(value, 0)
    except Malformed:
        return None
    return (host, port) if is_hostname(host) else None


def _from_captures(captures: str) -> tuple[str, int] | None:
    """The first host name among the captured request headers (the first `{...}` group)."""
    groups = re.findall(r"\{([^}]*)\}", captures)
    if not groups:
        return None
    for value in groups[0].split("|"):
        found = _host_name(_decode(value))
        if found is not None:
            return found
    return None


def _from_tail(tail: str) -> tuple[str, int] | None:
    """The SNI after the standard fields: httpslog's `sni/version/cipher`, or an appended host name."""
    for token in tail.split():
        if token.count("/") == 2 and not token.startswith("/"):
            token = token.split("/", 1)[0]
        found = _host_name(_decode(token))
        if found is not None:
            return found
    return None


def _client(m: re.Match[str]) -> tuple[str, int]:
    """(address, port) of the client; "" for `-` or a unix socket (`unix:1`)."""
    port = m["cport"]
    return address(m["client"].strip("[]")), (int(port) if port and port != "-" else 0)


def _not_forwarded(server: str, status: int) -> None:
    if server.startswith("<") and server.endswith(">"):
        raise Ignored("denied by the proxy" if status in (401, 403, 407) else f"not forwarded by the proxy (server {server})")


def parse(line: str, location: str) -> ConnectionEvent:
    """One record -> ConnectionEvent; Malformed or Ignored otherwise."""
    m = _ACCEPT.search(line)
    if m is None:
        raise Malformed("haproxy: no 'client:port [accept date]'")
    zone = _offset(line, m.start())
    ts = _accept_time(m["date"], zone)
    orig_h, orig_p = _client(m)
    rest = m["rest"]
    http = _HTTP.match(rest)
    if http is not None:
        status = small_int(http["status"], 3) or 0  # -1 (no response) is 0
        _not_forwarded(http["server"], status)
        request = _decode(http["request"]).split(" ")
        method = request[0] if len(request) == 3 and request[2].startswith("HTTP/") else ""
        target = request[1] if method else ""
        found: tuple[str, int] | None = None
        if method and (method == "CONNECT" or "://" in target):
            found = host_from_target(method, target)
        found = found or _from_captures(http["captures"]) or (_host_name(http["vhost"]) if http["vhost"] else None) or _from_tail(http["tail"])
        if not found or not found[0]:
            raise Ignored("request names no host", ts)
        host, port = found
        return ConnectionEvent(
            ts=ts,
            orig_h=orig_h,
            orig_p=orig_p,
            server_name=host,
            source=location,
            resp_p=port,
            method=method,
            status=status,
            raw=line,
        )
    tcp = _TCP.match(rest)
    if tcp is not None:
        _not_forwarded(tcp["server"], 0)
        found = _from_tail(tcp["tail"])
        if not found:
            raise Ignored(NO_SNI, ts)
        host, port = found
        return ConnectionEvent(ts=ts, orig_h=orig_h, orig_p=orig_p, server_name=host, source=location, resp_p=port, raw=line)
    if _CONNECTION_ERROR.match(rest):
        raise Ignored("haproxy: connection error, no request", ts)
    raise Malformed("haproxy: fields after the accept date are neither httplog nor tcplog")
