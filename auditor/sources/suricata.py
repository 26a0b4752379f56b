"""Suricata EVE JSON (`eve.json`): one event object per line.

Schema: Suricata's "EVE JSON Format" documentation (`doc/userguide/output/eve/eve-json-format.rst`)
and `etc/schema.json`. The common fields are `timestamp` (`2024-07-15T09:10:11.123456+0000`),
`event_type`, `src_ip`, `src_port`, `dest_ip`, `dest_port`, `proto`; for the transaction events
read here the source is the client.

- `tls`: `tls.sni`, the ClientHello's server name; a handshake without SNI is not counted. When
  Suricata watches clients talk to a proxy, a CONNECT tunnel gives an `http` event (the CONNECT)
  and a `tls` event for the session inside, marked `tls.from_proto: "http"`, on the same flow: the
  `http` event counts the call, the marked `tls` event does not.
- `http`: `http.hostname` (the Host header or the CONNECT target), else an absolute or CONNECT
  `http.url`; `http.http_method`, `http.status`. A CONNECT the proxy refused (a status other than
  2xx, such as the 407 before a retry with credentials) opened no tunnel: not counted.
- `quic`: `quic.sni`.
- `dns` events are look-ups, not calls: the connection that follows has its own tls/quic event.
- `alert`, `fileinfo`, `anomaly` and `flow` events repeat a transaction or a flow whose own event
  is read (counting them too would count calls twice); other types (`ssh`, `stats`, ...) are not
  calls. All of these are counted as "not counted" with their type.

An event may come after a prefix (`filetype: syslog` as a syslog daemon writes it to a file, the
eve-log `prefix: "@cee: "` option): what comes before the object is dropped when it ends like one
of those. (A container runtime's `<time> stdout F ` is taken off by LogFile's `cri` wrapper.)
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from auditor.events import ConnectionEvent
from auditor.sources.common import CONNECT_REFUSED, address, connect_refused, host_from_target, json_object, parse_iso_time, split_host_port
from auditor.sources.interface import Ignored, Malformed

NAME = "suricata"
_PREFIX = re.compile(r'[^{"]*?(?:: |- )(?:@cee: ?)?|@cee: ?')
"""`Jul 15 09:10:11 sensor1 suricata[1234]: `, `<134>1 2024-... sensor1 suricata 1234 - - `, `@cee: `, ..."""
TUNNELED = "suricata: TLS inside an HTTP CONNECT tunnel (from_proto http): the CONNECT's http event counts the call"


def without_prefix(line: str) -> str:
    """The event object of a line, after a syslog or @cee prefix if there is one."""
    if line.startswith("{"):
        return line
    start = line.find('{"', 0, 300)
    return line[start:] if start > 0 and _PREFIX.fullmatch(line, 0, start) else line


def sniff(line: str) -> bool:
    """True when `line` looks like an EVE JSON event."""
    text = without_prefix(line.lstrip())
    return text.startswith("{") and '"event_type"' in text and '"timestamp"' in text and '"firewall_name"' not in text  # AWS Network Firewall's


def eve_port(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 65536 else 0


def app_host(record: dict[str, Any], kind: str) -> tuple[str, int, str, int]:
    """(host, port, method, status) the event's `tls`, `quic` or `http` record names."""
    app = record.get(kind)
    if not isinstance(app, dict):
        raise Malformed(f"suricata: {kind} event without a '{kind}' object")
    if kind in ("tls", "quic"):
        sni = app.get("sni")
        if not isinstance(sni, str) or not sni:
            raise Ignored(f"{'TLS' if kind == 'tls' else 'QUIC'} handshake without SNI")
        host, _ = split_host_port(sni, 0)
        return host, 0, "", 0
    method = app["http_method"] if isinstance(app.get("http_method"), str) else ""
    status = app.get("status")
    status = status if isinstance(status, int) and not isinstance(status, bool) else 0
    url = app["url"] if isinstance(app.get("url"), str) else ""
    hostname = app.get("hostname")
    if isinstance(hostname, str) and hostname:
        host, port = split_host_port(hostname, 0)
        if not port and method == "CONNECT" and url:
            port = split_host_port(url, 0)[1]
        return host, eve_port(app.get("http_port")) or port, method, status
    host, port = host_from_target(method, url or "-")
    return host, port, method, status


def eve_ip(value: Any) -> str:
    """An address field, normalised (`fe80:0000:...` -> `fe80::...`); "" when absent."""
    return (address(value) or value) if isinstance(value, str) else ""


def parse(line: str, location: str) -> ConnectionEvent:
    """One EVE event -> ConnectionEvent; Malformed or Ignored otherwise."""
    record = json_object(without_prefix(line), "suricata", "event")
    kind = record.get("event_type")
    if not isinstance(kind, str):
        raise Malformed("suricata: no 'event_type'")
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        raise Malformed("suricata: no 'timestamp'")
    ts = parse_iso_time(stamp)
    if kind == "dns":
        raise Ignored("suricata dns event: a look-up, not a call", ts)
    if kind not in ("tls", "http", "quic"):
        raise Ignored(f"suricata {kind} event: not a call (calls are read from tls, http and quic events)", ts)
    return call(record, kind, ts, line, location)


def call(record: dict[str, Any], kind: str, ts: dt.datetime, line: str, location: str, egress_region: str = "") -> ConnectionEvent:
    """The call an EVE event's `kind` record (`tls`, `quic`, `http`) names; Ignored when it names
    no host."""
    app = record.get(kind)
    if isinstance(app, dict) and app.get("from_proto") == "http":
        raise Ignored(TUNNELED, ts)
    host, port, method, status = app_host(record, kind)
    if connect_refused(method, status):
        raise Ignored(CONNECT_REFUSED, ts)
    if not host:
        raise Ignored("request names no host", ts)
    proto = record.get("proto")
    return ConnectionEvent(
        ts=ts,
        orig_h=eve_ip(record.get("src_ip")),
        orig_p=eve_port(record.get("src_port")),
        server_name=host,
        source=location,
        resp_h=eve_ip(record.get("dest_ip")),
        resp_p=port or eve_port(record.get("dest_port")),
        proto=proto.lower() if isinstance(proto, str) else ("udp" if kind == "quic" else "tcp"),
        method=method,
        status=status,
        egress_region=egress_region,
        raw=line,
    )
