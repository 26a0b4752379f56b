"""Squid native access.log (the default `squid` logformat).

    %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt

    1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -

CONNECT lines carry `host:port`, other methods an absolute URL. With `log_mime_hdrs on` the
request and reply headers follow in brackets; they are kept (redacted) in the raw record only.
Intercepted TLS (`ssl_bump peek`/`splice`) is logged as a CONNECT to the server's address; a
format that appends `%ssl::>sni` names the server after the standard fields, and it is taken.
"""

from __future__ import annotations

import re

from auditor.events import ConnectionEvent
from auditor.sources.common import address, host_from_target, is_hostname, parse_epoch, small_int
from auditor.sources.interface import Ignored, Malformed

NAME = "squid"
_SNIFF = re.compile(r"^[0-9]{9,11}\.[0-9]{3}\s+-?[0-9]+\s+\S+\s+[A-Z_]+/[0-9]{3}\s+[0-9]+\s+\S+\s+\S+\s+\S+\s+\S+/\S+")
_NOT_FORWARDED = ("NONE", "TAG_NONE", "NONE_NONE")
"""Result tags of requests Squid did not forward: denied, failed, invalid, or the CONNECT of an
ssl-bumped tunnel whose requests are logged on lines of their own."""


def not_forwarded(result: str, status: str) -> str:
    """Why a request Squid logged with this result tag (`TCP_DENIED`, `NONE_NONE`) and status
    was not a call; "" when it was one. Also used for Squid's `common`/`combined` emulation."""
    if result.startswith("TCP_DENIED"):
        return "denied by the proxy"
    if result in _NOT_FORWARDED:
        return "denied by the proxy" if status in ("403", "407") else "not forwarded by the proxy (NONE result)"
    return ""


def sniff(line: str) -> bool:
    """True when `line` looks like a Squid native record."""
    return _SNIFF.match(line) is not None


def parse(line: str, location: str) -> ConnectionEvent:
    """One record -> ConnectionEvent; Malformed or Ignored otherwise."""
    fields = line.split(None, 10)
    if len(fields) < 10:
        raise Malformed(f"squid: {len(fields)} fields, expected 10")
    ts = parse_epoch(fields[0])
    result, _, status_text = fields[3].partition("/")
    status = small_int(status_text, 3)
    if status is None:
        raise Malformed("squid: result code without /status")
    reason = not_forwarded(result, status_text)
    if reason:
        raise Ignored(reason)
    method, target = fields[5], fields[6]
    host, port = host_from_target(method, target)
    if not host:
        raise Ignored("request names no host")
    if len(fields) == 11 and address(host):
        # An intercepted connection is logged by address (CONNECT 162.159.140.245:443); a format
        # that appends %ssl::>sni names the server after the standard fields.
        sni = fields[10].split(None, 1)[0].lower().rstrip(".")
        if is_hostname(sni):
            host = sni
    _, _, peer = fields[8].partition("/")
    return ConnectionEvent(
        ts=ts,
        orig_h=fields[2],
        server_name=host,
        source=location,
        resp_h=address(peer),
        resp_p=port,
        method=method,
        status=status,
        raw=line,
    )
