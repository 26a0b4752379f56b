"""Zeek logs: ssl.log, http.log and conn.log, as TSV (Zeek's ASCII writer) or JSON lines.

TSV files start with header lines (`#separator \\x09`, `#path ssl`, `#fields ts uid id.orig_h ...`,
`#types ...`) and the column order is the one of the latest `#fields` line, so a file is read
through a `Reader` that LogFile feeds every line starting with `#` (see
`base/frameworks/logging/writers/ascii.zeek` and the ASCII writer in Zeek's
`src/logging/writers/ascii/Ascii.cc`; unset fields are `-`, empty ones `(empty)`, unprintable bytes
`\\xHH`). JSON lines (`LogAscii::use_json=T`) name their fields (`"id.orig_h"`) and leave unset
ones out; their log is told by a `_path` key when a shipper adds one, else by their fields.

- ssl.log: `server_name`, the SNI of the ClientHello (TLS and, since Zeek 6, QUIC handshakes). A
  handshake without SNI is not counted, and says why.
- http.log: `host` (the Host header, or the `CONNECT` target), else an absolute or CONNECT `uri`;
  `method`, `status_code`. A CONNECT the proxy refused (a status other than 2xx, such as the 407
  before a retry with credentials) opened no tunnel: not counted. A TLS session inside an accepted
  CONNECT tunnel is logged in ssl.log too, with the same `uid` (conn.log's `service` says
  `http,ssl`): both records carry the uid and the client (`ConnectionEvent.tunnel`), and the store
  counts the call once, whichever record it gets first, in one file or two, in one run or two
  (FindingStore.add_batch). A TLS session to port 443 of a public address is paired only when
  that address took a CONNECT (a proxy listening on 443); any other there is a direct call
  (auditor.events.tunnel_record).
- conn.log names no server at all: its lines are read and counted, never calls; its `#path conn`
  header adds one "not counted" line to the summary that says to audit ssl.log and http.log.
- Other logs (quic.log, whose handshakes ssl.log already has, dns.log, ...) are not calls.

When a run resumes after a checkpoint, the header lines are taken again from the start of the
file (its first 64 KiB, the detection sample): a file whose `#fields` change further down (Zeek
files concatenated) is read with the last header found there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from auditor.events import ConnectionEvent
from auditor.sources.common import (
    CONNECT_REFUSED,
    address,
    connect_refused,
    host_from_target,
    json_object,
    parse_epoch,
    parse_iso_time,
    parse_json_time,
    small_int,
    split_host_port,
)
from auditor.sources.interface import Ignored, Malformed

NAME = "zeek"
HEADERS = ("#separator", "#set_separator", "#empty_field", "#unset_field", "#path", "#open", "#close", "#fields", "#types")
CONN_HINT = "zeek conn.log names no server (no SNI, no Host); audit ssl.log and http.log"
REDACTED = "[REDACTED]"
_ID_FIELDS = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")
_SCOPED = {name.replace(".", "_"): name for name in _ID_FIELDS}
"""`Log::default_scope_sep = "_"` (set for Elasticsearch and Kafka, where a dot means nesting)
writes `id_orig_h` for `id.orig_h`, in TSV and JSON alike."""
_ORIG_KEYS = ('"id.orig_h"', '"id_orig_h"', '"id":{"orig_h"', '"id": {"orig_h"')


def sniff(line: str) -> bool:
    """True when `line` is a Zeek header line, a TSV record (`ts<TAB>uid<TAB>...`) or a JSON record."""
    if line.startswith("#"):
        return line.split(None, 1)[0] in HEADERS
    if line.startswith("{"):
        return '"ts"' in line and any(key in line for key in _ORIG_KEYS)
    head = line.split("\t", 3)
    return len(head) == 4 and head[0].replace(".", "", 1).isdigit() and len(head[0]) >= 10 and head[1][:1] == "C"


def _unescape(text: str) -> str:
    """`\\x09` -> a tab (the #separator value); Malformed for a broken escape (`\\x`)."""
    try:
        return text.encode("ascii", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        raise Malformed(f"zeek: bad #separator {text[:20]!r}; the tab separator is kept") from None


def _port(text: str | None) -> int:
    port = small_int(text or "") or 0
    return port if port < 65536 else 0


def _kind(path: str, has: Callable[[str], bool]) -> str:
    """Which log a record belongs to: its #path/_path, else what its fields say."""
    for kind in ("ssl", "http", "conn"):
        if path == kind or path.startswith((kind + "_", kind + "-")):
            return kind
    if path:
        return path
    if has("conn_state"):
        return "conn"
    if has("client_initial_dcid"):
        return "quic"
    if has("server_name") or has("cipher") or has("ssl_history") or has("established") or has("resumed"):
        return "ssl"
    if has("trans_depth") or has("status_code") or has("user_agent"):
        return "http"
    return ""


def _event(kind: str, get: Callable[[str], str | None], ts: Any, location: str, raw: str) -> ConnectionEvent:
    """One record of a known log, its fields read through `get` (None when unset)."""
    if kind == "conn":
        raise Ignored(CONN_HINT, ts)
    if kind not in ("ssl", "http"):
        raise Ignored(f"zeek {kind or 'unknown'}.log records are not calls; audit ssl.log and http.log", ts)
    method, status, port = "", 0, _port(get("id.resp_p"))
    if kind == "ssl":
        name = get("server_name")
        if not name:
            raise Ignored("TLS handshake without SNI (zeek ssl.log server_name unset)", ts)
        host, _ = split_host_port(name, 0)
    else:
        method = get("method") or ""
        code = get("status_code") or ""
        status = small_int(code, 3) or 0
        if connect_refused(method, status):
            raise Ignored(CONNECT_REFUSED, ts)
        host_field, uri = get("host"), get("uri") or "-"
        if host_field:
            host, named_port = split_host_port(host_field, 0)
            if method == "CONNECT" and named_port:
                port = named_port
            elif "://" in uri:  # a request to a proxy: the URL names the server's port
                port = host_from_target(method, uri)[1] or port
        else:
            host, named_port = host_from_target(method, uri.split(" ")[0])
            port = named_port or port
    if not host:
        raise Ignored("request names no host", ts)
    resp_h = get("id.resp_h") or ""
    orig_h = address(get("id.orig_h") or "") or (get("id.orig_h") or "")
    uid = get("uid") or ""
    tunnelled = uid and (method == "CONNECT" or kind == "ssl")  # TLS perhaps in a CONNECT tunnel (the store tells, tunnel_record)
    return ConnectionEvent(
        ts=ts,
        orig_h=orig_h,
        orig_p=_port(get("id.orig_p")),
        server_name=host,
        source=location,
        resp_h=address(resp_h) or resp_h,
        resp_p=port,
        method=method,
        status=status,
        tunnel=f"{uid} {orig_h}" if tunnelled else "",  # the client too: uids repeat across sensors seeded alike (zeek -G)
        raw=raw,
    )


def _parse_json(line: str, location: str) -> ConnectionEvent:
    record = json_object(line, "zeek", "log entry")
    path = record["_path"] if isinstance(record.get("_path"), str) else ""
    if "ts" not in record and len(record) == 1:  # zeek-kafka's tag_json: {"ssl": {...}}
        ((path, inner),) = record.items()
        if isinstance(inner, dict):
            record = inner
    if "ts" not in record:
        raise Malformed("zeek: record without 'ts'")
    ts = parse_json_time(record["ts"])
    nested = record.get("id")
    if isinstance(nested, dict):  # a shipper that turned the dots into objects (Filebeat's expand_keys)
        record.update({f"id.{k}": v for k, v in nested.items()})
    for scoped, name in _SCOPED.items():
        if scoped in record:
            record.setdefault(name, record[scoped])

    def get(key: str) -> str | None:
        value = record.get(key)
        if value is None or isinstance(value, (dict, list)):
            return None
        if isinstance(value, bool):
            return "T" if value else "F"
        return str(value)

    return _event(_kind(path, lambda k: k in record), get, ts, location, line)


class Reader:
    """One Zeek input: the header state of its TSV part (JSON lines need none)."""

    headers = True
    """LogFile gives `header()` every line that starts with `#`."""

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self.separator = "\t"
        self.unset = "-"
        self.empty = "(empty)"
        self.path = ""
        self.fields: list[str] | None = None
        self._index: dict[str, int] = {}

    def header(self, line: str) -> None:
        """Take in one `#` line; `#path conn` raises Ignored with the conn.log hint (once per file)."""
        if line.startswith("#separator "):
            self.separator = _unescape(line[len("#separator ") :]) or "\t"
            return
        key, _, value = line.partition(self.separator)
        if key == "#fields":
            self.fields = value.split(self.separator)
            self._index = {_SCOPED.get(name, name): i for i, name in enumerate(self.fields)}
        elif key == "#unset_field":
            self.unset = value
        elif key == "#empty_field":
            self.empty = value
        elif key == "#path":
            self.path = value
            if value == "conn":
                raise Ignored(CONN_HINT)

    def parse(self, line: str, location: str) -> ConnectionEvent:
        """One record -> ConnectionEvent; Malformed or Ignored otherwise."""
        if line.startswith("{"):
            return _parse_json(line, location)
        if self.fields is None:
            raise Malformed("zeek: a TSV record before any #fields header")
        values = line.split(self.separator)
        if len(values) != len(self.fields):
            raise Malformed(f"zeek: {len(values)} fields, expected {len(self.fields)} (#fields)")
        index, unset, empty = self._index, self.unset, self.empty

        def get(key: str) -> str | None:
            i = index.get(key)
            if i is None or values[i] == unset or values[i] == empty:
                return None
            return values[i]

        if "ts" not in index:
            raise Malformed("zeek: #fields without 'ts'")
        text = values[index["ts"]]
        ts = parse_iso_time(text) if text[4:5] == "-" else parse_epoch(text)  # `zeek-cut -d`: 2024-07-15T09:10:11+0000
        raw = line
        if "password" in index and get("password"):
            values[index["password"]] = REDACTED
            raw = self.separator.join(values)
        return _event(_kind(self.path, index.__contains__), get, ts, location, raw)


def parse(line: str, location: str) -> ConnectionEvent:
    """A JSON record on its own; a TSV record needs the file's header (`Reader`)."""
    return Reader().parse(line, location)
