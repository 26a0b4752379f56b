"""Zeek ssl.log, http.log and conn.log, TSV (columns from `#fields`) and JSON, as tables, and how
LogFile feeds a Zeek file's header lines to its reader (prefilter, chunks, resume)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

import auditor.sources.logfile as logfile_mod
from auditor.redact import redact
from auditor.sources import zeek
from auditor.sources.common import CONNECT_REFUSED, NOT_A_HOST
from auditor.sources.interface import Ignored, Malformed
from auditor.sqlstore import SqlStore
from auditor.store import TUNNEL_REPEATED
from tests.conftest import asset
from tests.sources.helpers import POLICIES, events_of, fields, line_no, read_all, run, utc

LOC = "ssl.log:12"
OPENAI = "162.159.140.245"
SSL_FIELDS = (
    "ts uid id.orig_h id.orig_p id.resp_h id.resp_p version cipher curve server_name resumed last_alert next_protocol established ssl_history "
    "cert_chain_fps client_cert_chain_fps sni_matches_cert validation_status"
).split()
HTTP_FIELDS = (
    "ts uid id.orig_h id.orig_p id.resp_h id.resp_p trans_depth method host uri referrer version user_agent origin request_body_len "
    "response_body_len status_code status_msg info_code info_msg tags username password proxied orig_fuids orig_filenames "
    "orig_mime_types resp_fuids resp_filenames resp_mime_types"
).split()


def header(path: str, names: list[str], separator: str = "\t") -> list[str]:
    escaped = "\\x" + format(ord(separator), "02x")
    return [
        f"#separator {escaped}",
        f"#set_separator{separator},",
        f"#empty_field{separator}(empty)",
        f"#unset_field{separator}-",
        f"#path{separator}{path}",
        f"#open{separator}2024-07-15-09-00-00",
        f"#fields{separator}" + separator.join(names),
        f"#types{separator}" + separator.join("string" for _ in names),
    ]


def ssl_record(**values: str) -> dict[str, str]:
    base = dict.fromkeys(SSL_FIELDS, "-")
    base.update(
        {
            "ts": "1721034611.123456",
            "uid": "CHhAvVGS1DHFjwGM9",
            "id.orig_h": "10.20.1.5",
            "id.orig_p": "51012",
            "id.resp_h": OPENAI,
            "id.resp_p": "443",
            "version": "TLSv13",
            "server_name": "api.openai.com",
            "resumed": "F",
            "established": "T",
            "client_cert_chain_fps": "(empty)",
        }
    )
    base.update(values)
    return base


def http_record(**values: str) -> dict[str, str]:
    base = dict.fromkeys(HTTP_FIELDS, "-")
    base.update(
        {
            "ts": "1721034611.123456",
            "uid": "CHhAvVGS1DHFjwGM9",
            "id.orig_h": "10.20.1.5",
            "id.orig_p": "52522",
            "id.resp_h": "10.20.0.10",
            "id.resp_p": "3128",
            "trans_depth": "1",
            "method": "CONNECT",
            "host": "api.openai.com:443",
            "uri": "api.openai.com:443",
            "version": "1.1",
            "status_code": "200",
            "status_msg": "Connection Established",
            "tags": "(empty)",
        }
    )
    base.update(values)
    return base


def reader_for(path: str, names: list[str], separator: str = "\t") -> zeek.Reader:
    reader = zeek.Reader()
    for line in header(path, names, separator):
        try:
            reader.header(line)
        except Ignored:
            pass
    return reader


def tsv(record: dict[str, str], names: list[str], separator: str = "\t") -> str:
    return separator.join(record[n] for n in names)


def ev(
    server_name: str, orig_h: str, resp_h: str, resp_p: int, method: str = "", status: int = 0, ts: str = "2024-07-15 09:10:11.123456"
) -> dict[str, object]:
    return {"server_name": server_name, "orig_h": orig_h, "resp_h": resp_h, "resp_p": resp_p, "method": method, "status": status, "ts": utc(ts)}


CALL = ev("api.openai.com", "10.20.1.5", OPENAI, 443)
SSL_PARSED = [
    pytest.param({}, CALL, id="sni"),
    pytest.param({"established": "F", "version": "-", "cipher": "-"}, CALL, id="handshake-not-established"),
    pytest.param({"server_name": "API.OpenAI.com."}, CALL, id="upper-case-fqdn"),
    pytest.param(
        {"id.orig_h": "2001:db8:10::25", "id.resp_h": "2606:4700::6812:1a2b"},
        ev("api.openai.com", "2001:db8:10::25", "2606:4700::6812:1a2b", 443),
        id="ipv6",
    ),
    pytest.param(
        {"server_name": "api.openai.com\\x00.evil.example"}, ev("api.openai.com\\x00.evil.example", "10.20.1.5", OPENAI, 443), id="escaped-byte-decoy"
    ),
    pytest.param({"id.resp_p": "8443"}, ev("api.openai.com", "10.20.1.5", OPENAI, 8443), id="other-port"),
]


@pytest.mark.parametrize("values, expected", SSL_PARSED)
def test_ssl_tsv(values: dict[str, str], expected: dict[str, object]) -> None:
    line = tsv(ssl_record(**values), SSL_FIELDS)
    event = reader_for("ssl", SSL_FIELDS).parse(line, LOC)
    assert fields(event) == expected
    assert (event.orig_p, event.source, event.raw) == (int(ssl_record(**values)["id.orig_p"]), LOC, line)


def test_tsv_written_with_an_underscore_scope_separator() -> None:
    names = [n.replace(".", "_") for n in SSL_FIELDS]
    record = {n.replace(".", "_"): v for n, v in ssl_record().items()}
    assert fields(reader_for("ssl", names).parse(tsv(record, names), LOC)) == CALL


def test_tsv_with_iso_timestamps_from_zeek_cut_d() -> None:
    # `zeek-cut -c -d` keeps the header and writes ts as 2024-07-15T09:10:11+0000.
    line = tsv(ssl_record(ts="2024-07-15T09:10:11+0000"), SSL_FIELDS)
    assert fields(reader_for("ssl", SSL_FIELDS).parse(line, LOC)) == ev("api.openai.com", "10.20.1.5", OPENAI, 443, ts="2024-07-15 09:10:11")


def test_columns_come_from_the_fields_line() -> None:
    shuffled = SSL_FIELDS[::-1]
    line = tsv(ssl_record(), shuffled)
    assert fields(reader_for("ssl", shuffled).parse(line, LOC)) == CALL
    # Read with the default order, the same values are something else entirely.
    assert zeek.sniff(line) is False
    with pytest.raises(Malformed):
        reader_for("ssl", SSL_FIELDS).parse(line, LOC)


def test_separator_from_the_header() -> None:
    line = tsv(ssl_record(), SSL_FIELDS, "|")
    assert fields(reader_for("ssl", SSL_FIELDS, "|").parse(line, LOC)) == CALL


def test_unset_and_empty_markers_from_the_header() -> None:
    reader = reader_for("ssl", SSL_FIELDS)
    reader.header("#unset_field\tNONE")
    with pytest.raises(Ignored, match="without SNI"):
        reader.parse(tsv(ssl_record(server_name="NONE"), SSL_FIELDS), LOC)
    assert reader.parse(tsv(ssl_record(server_name="-"), SSL_FIELDS), LOC).server_name == "-"


HTTP_PARSED = [
    pytest.param({}, ev("api.openai.com", "10.20.1.5", "10.20.0.10", 443, "CONNECT", 200), id="connect"),
    pytest.param(
        {"method": "GET", "host": "api.openai.com", "uri": "http://api.openai.com/v1/models", "status_code": "401"},
        ev("api.openai.com", "10.20.1.5", "10.20.0.10", 80, "GET", 401),
        id="absolute-uri-to-a-proxy",
    ),
    pytest.param(
        {"method": "GET", "host": "API.OpenAI.com", "uri": "/v1/models", "id.resp_h": OPENAI, "id.resp_p": "80", "status_code": "301"},
        ev("api.openai.com", "10.20.1.5", OPENAI, 80, "GET", 301),
        id="direct-host-header",
    ),
    pytest.param(
        {"host": "-", "uri": "api.openai.com:443"}, ev("api.openai.com", "10.20.1.5", "10.20.0.10", 443, "CONNECT", 200), id="connect-without-host"
    ),
    pytest.param(
        {"host": "-", "uri": "api.openai.com:443 /"}, ev("api.openai.com", "10.20.1.5", "10.20.0.10", 443, "CONNECT", 200), id="connect-uri-with-junk"
    ),
    pytest.param({"status_code": "-"}, ev("api.openai.com", "10.20.1.5", "10.20.0.10", 443, "CONNECT", 0), id="no-reply"),
    pytest.param(
        {"status_code": "502", "method": "GET", "host": "api.openai.com", "uri": "http://api.openai.com/v1/models"},
        ev("api.openai.com", "10.20.1.5", "10.20.0.10", 80, "GET", 502),
        id="absolute-uri-the-proxy-failed",
    ),
]


@pytest.mark.parametrize("values, expected", HTTP_PARSED)
def test_http_tsv(values: dict[str, str], expected: dict[str, object]) -> None:
    event = reader_for("http", HTTP_FIELDS).parse(tsv(http_record(**values), HTTP_FIELDS), LOC)
    assert fields(event) == expected


def test_http_password_is_blanked_in_raw() -> None:
    line = tsv(http_record(username="svc", password="hunter2"), HTTP_FIELDS)
    raw = reader_for("http", HTTP_FIELDS).parse(line, LOC).raw
    assert "hunter2" not in raw and "\tsvc\t[REDACTED]\t" in raw
    assert raw.count("\t") == line.count("\t")


IGNORED = [
    pytest.param("ssl", SSL_FIELDS, ssl_record(server_name="-"), "TLS handshake without SNI", id="ssl-no-sni"),
    pytest.param(
        "http",
        HTTP_FIELDS,
        http_record(host="-", method="GET", uri="/v1/models", referrer="https://api.openai.com/"),
        "request names no host",
        id="http-relative",
    ),
    pytest.param("http", HTTP_FIELDS, http_record(status_code="403", status_msg="Forbidden"), CONNECT_REFUSED, id="connect-refused-403"),
    pytest.param(
        "http",
        HTTP_FIELDS,
        http_record(status_code="407", status_msg="Proxy Authentication Required"),
        CONNECT_REFUSED,
        id="connect-407-before-retry",
    ),
    pytest.param("quic", SSL_FIELDS, ssl_record(), "zeek quic.log records are not calls", id="quic-log"),
    pytest.param("dns", SSL_FIELDS, ssl_record(), "zeek dns.log records are not calls", id="dns-log"),
    pytest.param("conn", SSL_FIELDS, ssl_record(), zeek.CONN_HINT, id="conn-log"),
]


@pytest.mark.parametrize("path, names, record, reason", IGNORED)
def test_ignored(path: str, names: list[str], record: dict[str, str], reason: str) -> None:
    with pytest.raises(Ignored) as info:
        reader_for(path, names).parse(tsv(record, names), LOC)
    assert reason in str(info.value)


MALFORMED = [
    pytest.param(
        "1721034618.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -",
        "zeek: 1 fields, expected 19",
        id="squid-line",
    ),
    pytest.param("\t".join(tsv(ssl_record(), SSL_FIELDS).split("\t")[:11]), "zeek: 11 fields, expected 19", id="truncated"),
    pytest.param(tsv(ssl_record(ts="XXXXXXXXXX.XXXXXX"), SSL_FIELDS), "bad timestamp", id="btest-canonical-time"),
    pytest.param(tsv(ssl_record(server_name="api.openai.com:99999"), SSL_FIELDS), "bad port", id="bad-port-in-name"),
    pytest.param(
        '{"ts":1721034615.02,"uid":"C1","id.orig_h":"10.20.1.5","server_name":"api.openai.com","resu', "zeek: not JSON", id="truncated-json"
    ),
    pytest.param(
        '{"timestamp":"2024-07-15T09:10:17.000000+0000","event_type":"tls","tls":{"sni":"api.openai.com"}}',
        "zeek: record without 'ts'",
        id="other-json",
    ),
    pytest.param("[1]", "zeek: 1 fields, expected 19", id="json-array"),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        reader_for("ssl", SSL_FIELDS).parse(line, LOC)
    assert reason in str(info.value)


def test_tsv_record_before_any_fields_line_is_malformed() -> None:
    with pytest.raises(Malformed, match="before any #fields header"):
        zeek.Reader().parse(tsv(ssl_record(), SSL_FIELDS), LOC)
    with pytest.raises(Malformed, match="before any #fields header"):
        zeek.parse(tsv(ssl_record(), SSL_FIELDS), LOC)


def test_conn_path_header_is_the_hint() -> None:
    reader = zeek.Reader()
    with pytest.raises(Ignored, match=r"audit ssl.log and http.log"):
        reader.header("#path\tconn")
    reader.header("#path\tssl")  # no hint for others


def zj(**record: object) -> str:
    return json.dumps(record, separators=(",", ":"))


ID = {"id.orig_h": "10.20.1.5", "id.orig_p": 51012, "id.resp_h": OPENAI, "id.resp_p": 443}
JSON_PARSED = [
    pytest.param(zj(ts=1721034611.123456, uid="C1", **ID, server_name="api.openai.com", established=True), CALL, id="ssl"),
    pytest.param(zj(ts="2024-07-15T09:10:11.123456Z", uid="C1", **ID, server_name="api.openai.com"), CALL, id="iso8601-timestamps"),
    pytest.param(zj(_path="ssl", ts=1721034611.123456, uid="C1", **ID, server_name="api.openai.com"), CALL, id="shipper-path"),
    pytest.param(
        zj(
            ts=1721034611.123456,
            uid="C1",
            **ID | {"id.resp_h": "10.20.0.10", "id.resp_p": 3128},
            trans_depth=1,
            method="CONNECT",
            host="api.openai.com:443",
            uri="api.openai.com:443",
            status_code=200,
            tags=[],
        ),
        ev("api.openai.com", "10.20.1.5", "10.20.0.10", 443, "CONNECT", 200),
        id="http",
    ),
]


SCOPED = {k.replace(".", "_"): v for k, v in ID.items()}
JSON_PARSED += [
    # Log::default_scope_sep = "_" (rocknsm's kafka.bro, Elasticsearch pipelines): the client was lost without a word.
    pytest.param(zj(ts=1721034611.123456, uid="C1", **SCOPED, server_name="api.openai.com", established=True), CALL, id="scope-sep-underscore"),
    # A shipper that turned the dots into objects (Filebeat's expand_keys).
    pytest.param(zj(ts=1721034611.123456, uid="C1", id={k[3:]: v for k, v in ID.items()}, server_name="api.openai.com"), CALL, id="nested-id"),
    # zeek-kafka's tag_json = T: each record wrapped in an object named after its log.
    pytest.param(json.dumps({"ssl": {"ts": 1721034611.123456, "uid": "C1", **ID, "server_name": "api.openai.com"}}), CALL, id="kafka-tag-json"),
]


@pytest.mark.parametrize("line, expected", JSON_PARSED)
def test_json(line: str, expected: dict[str, object]) -> None:
    assert zeek.sniff(line)
    assert fields(zeek.parse(line, LOC)) == expected


@pytest.mark.parametrize(
    "line, reason",
    [
        pytest.param(zj(ts=1721034611.1, uid="C1", **ID, proto="tcp", service="ssl", conn_state="SF"), zeek.CONN_HINT, id="conn"),
        pytest.param(zj(ts=1721034611.1, uid="C1", **ID, resumed=False, established=False), "without SNI", id="ssl-no-sni"),
        pytest.param(zj(ts=1721034611.1, uid="C1", **ID, client_initial_dcid="5a37", server_name="api.openai.com"), "zeek quic.log", id="quic"),
        pytest.param(zj(_path="dns", ts=1721034611.1, uid="C1", **ID, query="api.openai.com"), "zeek dns.log", id="dns-by-path"),
    ],
)
def test_json_ignored(line: str, reason: str) -> None:
    with pytest.raises(Ignored, match=reason.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        zeek.parse(line, LOC)


SNIFF = [
    pytest.param("#separator \\x09", True, id="separator"),
    pytest.param("#fields\tts\tuid", True, id="fields"),
    pytest.param("#close\t2024-07-15-10-00-00", True, id="close"),
    pytest.param("# exported by a log shipper", False, id="comment"),
    pytest.param(tsv(ssl_record(), SSL_FIELDS), True, id="tsv-record"),
    pytest.param(zj(ts=1.0, uid="C1", **ID), True, id="json-record"),
    pytest.param('{"timestamp":"2024","event_type":"tls"}', False, id="suricata"),
    pytest.param("1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT a:443 - HIER_DIRECT/1.2.3.4 -", False, id="squid"),
    pytest.param("", False, id="empty"),
]


@pytest.mark.parametrize("line, expected", SNIFF)
def test_sniff(line: str, expected: bool) -> None:
    assert zeek.sniff(line) is expected


# --- the sample files, through LogFile ---------------------------------------------------------------
SSL_EVENTS = {
    9: ev("api.openai.com", "10.20.1.5", OPENAI, 443),
    12: ev("eu.api.openai.com", "10.30.2.7", OPENAI, 443, ts="2024-07-15 09:10:14.500123"),
    13: ev("api.openai.com", "2001:db8:10::25", "2606:4700::6812:1a2b", 443, ts="2024-07-15 09:10:15.020"),
    14: ev("api.openai.com.evil.example", "10.20.1.5", "203.0.113.66", 443, ts="2024-07-15 09:10:16"),
    27: ev("api.openai.com", "10.30.2.7", OPENAI, 443, ts="2024-07-15 10:10:11.500"),  # second header block, other column order
}
HTTP_EVENTS = {
    9: ev("api.openai.com", "10.20.1.5", "10.20.0.10", 443, "CONNECT", 200),
    10: ev("api.openai.com", "10.20.1.6", "10.20.0.10", 80, "GET", 401, "2024-07-15 09:10:12.004211"),
    11: ev("api.openai.com", "10.30.2.7", OPENAI, 80, "GET", 301, "2024-07-15 09:10:13.250"),
    12: ev("intranet.corp.example", "10.20.1.5", "192.0.2.80", 80, "GET", 200, "2024-07-15 09:10:14.500123"),
    13: ev("api.openai.com", "10.20.1.5", "10.20.0.10", 80, "GET", 200, "2024-07-15 09:10:15.020"),
    14: ev("api.openai.com.evil.example", "10.20.1.5", "10.20.0.10", 443, "CONNECT", 200, "2024-07-15 09:10:16"),
}
JSON_EVENTS = {
    1: ev("api.openai.com", "10.20.1.5", OPENAI, 443),
    3: ev("eu.api.openai.com", "10.30.2.7", OPENAI, 443, ts="2024-07-15 09:10:13.250"),
    4: ev("api.openai.com.evil.example", "10.20.1.5", "203.0.113.66", 443, ts="2024-07-15 09:10:14.500"),
    6: ev("api.openai.com", "2001:db8:10::25", "2606:4700::6812:1a2b", 443, ts="2024-07-15 09:10:16"),
}
SAMPLES = {
    # name: (events by line, lines, candidates, ignored, malformed lines by reason)
    "zeek-ssl.log": (
        SSL_EVENTS,
        30,
        10,
        {"TLS handshake without SNI (zeek ssl.log server_name unset)": 1},
        {
            "zeek: 1 fields, expected 19 (#fields)": [16],
            "zeek: 11 fields, expected 19 (#fields)": [17],
            "zeek: 1 fields, expected 21 (#fields)": [29],
            f"zeek: {NOT_A_HOST}": [15],
        },  # an SNI holding a NUL (Zeek writes \x00)
    ),
    "zeek-http.log": (
        HTTP_EVENTS,
        18,
        9,
        {"request names no host": 1, CONNECT_REFUSED: 1},
        {"zeek: 1 fields, expected 30 (#fields)": [16]},
    ),  # 15: a proxy's 403
    "zeek-conn.log": ({}, 12, 0, {zeek.CONN_HINT: 1}, {}),
    "zeek-ssl.json": (JSON_EVENTS, 7, 6, {}, {"zeek: not JSON (Unterminated string starting at)": [5], "zeek: record without 'ts'": [7]}),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_file(name: str) -> None:
    expected, lines, candidates, ignored, malformed = SAMPLES[name]
    path = asset(f"logs/{name}")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == "zeek"
    assert {line_no(e): fields(e) for e in events} == expected
    assert (log.stats.lines, log.stats.candidates, dict(log.stats.ignored)) == (lines, candidates, ignored)
    assert log.stats.locations == {reason: [f"{path}:{n}" for n in ns] for reason, ns in malformed.items()}
    assert all(POLICIES.for_host(e.server_name) is None for e in events if "evil" in e.server_name or "intranet" in e.server_name)


def test_sample_raw_is_the_line_except_the_password() -> None:
    path = asset("logs/zeek-http.log")
    lines = path.read_text().split("\n")
    _, events = read_all(path)
    for e in events:
        if line_no(e) == 13:
            assert "hunter2" in lines[12] and "hunter2" not in e.raw and e.raw == lines[12].replace("hunter2", "[REDACTED]")
        else:
            assert e.raw == lines[line_no(e) - 1]
    assert all(redact(e.raw) == e.raw for e in events)


@pytest.mark.parametrize("chunk", [7, 64, 113])
def test_header_lines_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    path = asset("logs/zeek-ssl.log")
    _, whole = read_all(path)
    monkeypatch.setattr(logfile_mod, "CHUNK", chunk)
    monkeypatch.setattr(logfile_mod, "WINDOW", chunk)
    log, events = read_all(path)
    assert [(e.source, fields(e)) for e in events] == [(e.source, fields(e)) for e in whole]
    assert log.stats.lines == 30


def big_ssl_log(tmp_path: Path) -> tuple[Path, list[str]]:
    """Two header blocks of different column orders, 120 records each, every third one a call."""
    lines: list[str] = []
    for block, names in enumerate((SSL_FIELDS, SSL_FIELDS[::-1])):
        lines += header("ssl", names)
        for i in range(120):
            name = "api.openai.com" if i % 3 == 0 else "github.com"
            lines.append(tsv(ssl_record(server_name=name, **{"id.orig_p": str(40000 + block * 1000 + i)}), names))
        lines.append("#close\t2024-07-15-10-00-00")
    path = tmp_path / "ssl.log"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


def test_resume_replays_the_header_before_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logfile_mod, "CHUNK", 512)
    monkeypatch.setattr(logfile_mod, "WINDOW", 512)
    monkeypatch.setattr(logfile_mod, "BATCH_LINES", 37)
    path, _lines = big_ssl_log(tmp_path)
    _, full = run(path)
    want = [(e.source, e.orig_p) for e in events_of(full)]
    assert len(want) == 80 and len(full) > 4
    for batch in full:
        log, rest = run(path, resume=(batch.offset, batch.line))
        assert [(e.source, e.orig_p) for e in events_of(rest)] == [w for w in want if int(w[0].rsplit(":", 1)[1]) > batch.line]
        assert dict(log.stats.skipped) == {}


def test_conn_hint_is_counted_once_and_not_again_after_resume(tmp_path: Path) -> None:
    path = asset("logs/zeek-conn.log")
    log, batches = run(path)
    assert dict(log.stats.ignored) == {zeek.CONN_HINT: 1}
    again, _ = run(path, resume=(batches[-1].offset, batches[-1].line))
    assert dict(again.stats.ignored) == {}


def test_forced_zeek_reads_json_lines() -> None:
    _log, events = read_all(asset("logs/zeek-ssl.json"), "zeek")
    assert [line_no(e) for e in events] == sorted(JSON_EVENTS)


# --- a CONNECT tunnel is in http.log and ssl.log: counted once ---------------------------------------
def proxied_logs(
    directory: Path, *, json_lines: bool = False, sni: str = "api.openai.com", port: str = "3128", proxy: str = "10.20.0.10"
) -> tuple[Path, Path]:
    """What Zeek writes for one call through a proxy at `proxy`, listening on `port` (a CONNECT and
    the TLS session in its tunnel, same uid, both to the proxy's port) next to one plain-HTTP request
    the proxy forwarded (in http.log only) and one TLS session straight to the provider (in ssl.log
    only)."""
    connect = http_record(**{"id.resp_h": proxy, "id.resp_p": port})
    plain = http_record(
        uid="CwjjYJ2WqgTbAqiHl6",
        method="POST",
        host="api.openai.com",
        uri="http://api.openai.com/v1/chat/completions",
        **{"id.orig_p": "52530", "id.resp_h": proxy, "id.resp_p": port, "status_code": "401", "status_msg": "Unauthorized"},
    )
    tunnelled = ssl_record(server_name=sni, **{"id.orig_p": "52522", "id.resp_h": proxy, "id.resp_p": port})
    direct = ssl_record(uid="CdirectTLS0000001", **{"id.orig_p": "52540"})
    http, ssl = directory / "http.log", directory / "ssl.log"
    if json_lines:

        def js(record: dict[str, str]) -> str:
            return json.dumps({k: v for k, v in record.items() if v not in ("-", "(empty)")})

        http.write_text(js(connect) + "\n" + js(plain) + "\n")
        ssl.write_text(js(tunnelled) + "\n" + js(direct) + "\n")
    else:
        http.write_text(
            "\n".join([*header("http", HTTP_FIELDS), tsv(connect, HTTP_FIELDS), tsv(plain, HTTP_FIELDS), "#close\t2024-07-15-10-00-00"]) + "\n"
        )
        ssl.write_text(
            "\n".join([*header("ssl", SSL_FIELDS), tsv(tunnelled, SSL_FIELDS), tsv(direct, SSL_FIELDS), "#close\t2024-07-15-10-00-00"]) + "\n"
        )
    return http, ssl


@pytest.mark.parametrize("json_lines", [False, True], ids=["tsv", "json"])
def test_the_records_of_a_tunnel_carry_its_uid(tmp_path: Path, json_lines: bool) -> None:
    http, ssl = proxied_logs(tmp_path, json_lines=json_lines)
    _, from_http = read_all(http)
    _, from_ssl = read_all(ssl)
    tunnel = "CHhAvVGS1DHFjwGM9 10.20.1.5"  # the uid and the client: uids repeat across sensors seeded alike
    assert [(e.method, e.tunnel) for e in from_http] == [("CONNECT", tunnel), ("POST", "")]  # a forwarded request is no tunnel
    assert [(e.resp_p, e.tunnel) for e in from_ssl] == [(3128, tunnel), (443, "CdirectTLS0000001 10.20.1.5")]  # the store tells which is in one


def audit(paths: list[Path], db: str, *more: str) -> tuple[int, str]:
    """`region-auditor logs PATHS --db DB`: the calls now in the database, and stderr."""
    from click.testing import CliRunner

    from auditor.cli import cli

    result = CliRunner().invoke(cli, ["logs", *map(str, paths), "--db", db, *more], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    total = CliRunner().invoke(cli, ["findings", "--db", db, "--json"], catch_exceptions=False)
    return sum(r["calls"] for r in json.loads(total.stdout)), result.stderr


PUBLIC_PROXY = "34.120.7.10"
"""A proxy reached at a public address: its TLS sessions to 443 look like direct calls until a
CONNECT names it."""


@pytest.mark.parametrize(
    "order, port, proxy",
    [
        ("directory", "3128", "10.20.0.10"),
        ("ssl-then-http", "3128", "10.20.0.10"),
        ("http-then-ssl", "3128", "10.20.0.10"),
        # A proxy listening on 443 (its proxied calls counted twice): inside the network, whatever the
        # order; at a public address, once a CONNECT named it (read first, its TLS sessions count
        # twice: docs/log-formats.md).
        ("directory", "443", "10.20.0.10"),
        ("ssl-then-http", "443", "10.20.0.10"),
        ("http-then-ssl", "443", "10.20.0.10"),
        ("directory", "443", PUBLIC_PROXY),
        ("http-then-ssl", "443", PUBLIC_PROXY),
    ],
)
def test_a_proxied_call_is_counted_once(tmp_path: Path, db_target: str, order: str, port: str, proxy: str) -> None:
    # Behind a proxy Zeek logs each call twice (same uid): a directory of its logs counted it twice.
    http, ssl = proxied_logs(tmp_path, port=port, proxy=proxy)
    if order == "directory":
        calls, stderr = audit([tmp_path], db_target)
    else:
        first, second = (ssl, http) if order == "ssl-then-http" else (http, ssl)
        audit([first], db_target)
        calls, stderr = audit([second], db_target)
    assert calls == 3  # the tunnel once, the plain POST, the direct TLS session
    assert f"not counted 1: {TUNNEL_REPEATED}" in stderr
    with SqlStore(db_target).engine.connect() as conn:  # the record left out is no evidence either
        assert conn.execute(sa.text("SELECT count(*) FROM evidence")).scalar() == 3
    assert audit([http, ssl], db_target)[0] == 3  # read again: nothing new
    assert audit([http], db_target, "--rescan")[0] == 3  # forgotten and read again: as it was counted
    assert audit([ssl], db_target, "--rescan")[0] == 3


def test_a_rescan_of_both_logs_after_the_pairs_expired_counts_each_call_once(tmp_path: Path) -> None:
    # What docs/log-formats.md tells to do once the pairs are older than TUNNEL_DAYS: rescan the
    # two logs together, and they pair anew (one of them alone counts its calls again).
    http, ssl = proxied_logs(tmp_path)
    db = str(tmp_path / "f.db")
    assert audit([tmp_path], db)[0] == 3
    with SqlStore(db).engine.begin() as conn:
        conn.execute(sa.text("UPDATE tunnels SET seen_at = :t"), {"t": dt.datetime(2000, 1, 1)})
    calls, stderr = audit([ssl, http], db, "--rescan")
    assert calls == 3 and f"not counted 1: {TUNNEL_REPEATED}" in stderr


def test_a_connect_whose_tls_names_no_governed_host_is_counted(tmp_path: Path) -> None:
    # The TLS session inside names another host (an ECH outer name) or none: only the CONNECT tells.
    proxied_logs(tmp_path, sni="cloudflare-ech.com")
    assert audit([tmp_path], str(tmp_path / "f.db"))[0] == 3


@pytest.mark.parametrize("order", ["connect-first", "tls-first"])
def test_one_file_with_both_logs_counts_a_tunnel_once_across_runs(tmp_path: Path, order: str) -> None:
    # A shipper's stream of all Zeek logs (`_path`): the two records of a tunnel in one file, and
    # an audit that stops between them.
    http, ssl = proxied_logs(tmp_path, json_lines=True)
    connect, plain = (json.dumps({"_path": "http", **json.loads(x)}) for x in http.read_text().splitlines())
    tls, direct = (json.dumps({"_path": "ssl", **json.loads(x)}) for x in ssl.read_text().splitlines())
    first, second = (connect, tls) if order == "connect-first" else (tls, connect)
    mixed = tmp_path / "zeek-stream.json"
    mixed.write_text("\n".join([plain, first, direct]) + "\n")
    db = str(tmp_path / "f.db")
    assert audit([mixed], db)[0] == 3
    with mixed.open("a") as f:
        f.write(second + "\n")
    calls, stderr = audit([mixed], db)
    assert calls == 3 and f"not counted 1: {TUNNEL_REPEATED}" in stderr


def test_a_proxy_on_443_is_learnt_within_a_batch_and_direct_sessions_are_not_kept(tmp_path: Path) -> None:
    # A shipper's stream with the TLS session first and its CONNECT after, in one batch: the
    # CONNECT names the proxy before the pairing. A TLS session to 443 of an address that took no
    # CONNECT is a direct call: counted, and no row kept for it.
    http, ssl = proxied_logs(tmp_path, json_lines=True, port="443", proxy=PUBLIC_PROXY)
    connect, plain = (json.dumps({"_path": "http", **json.loads(x)}) for x in http.read_text().splitlines())
    tls, direct = (json.dumps({"_path": "ssl", **json.loads(x)}) for x in ssl.read_text().splitlines())
    mixed = tmp_path / "zeek-stream.json"
    mixed.write_text("\n".join([tls, direct, plain, connect]) + "\n")
    db = str(tmp_path / "f.db")
    calls, stderr = audit([mixed], db)
    assert calls == 3 and f"not counted 1: {TUNNEL_REPEATED}" in stderr
    with SqlStore(db).engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT kind FROM tunnels")).scalars()) == ["connect", "tls"]
        assert list(conn.execute(sa.text("SELECT address FROM proxies")).scalars()) == [PUBLIC_PROXY]


def test_the_same_uid_from_another_client_is_another_call(tmp_path: Path) -> None:
    # Zeek run with a fixed seed (-G, ZEEK_SEED_FILE) or on replayed captures repeats uids.
    http, _ssl = proxied_logs(tmp_path)
    other = tmp_path / "other-sensor"
    other.mkdir()
    lines = http.read_text().replace("10.20.1.5", "10.30.2.7")
    (other / "http.log").write_text(lines)
    assert audit([tmp_path / "http.log", tmp_path / "ssl.log", other / "http.log"], str(tmp_path / "f.db"))[0] == 5


def test_a_hostile_uid_or_client_is_stored_within_bounds(tmp_path: Path, db_target: str) -> None:
    # A column of bounded width on PostgreSQL: a 5000-character uid stopped the run there.
    record = {k: v for k, v in http_record(uid="C" + "x" * 5000, **{"id.orig_h": "y" * 3000}).items() if v not in ("-", "(empty)")}
    log = tmp_path / "http.json"
    log.write_text(json.dumps(record) + "\n")
    assert audit([log], db_target)[0] == 1


@pytest.mark.parametrize(
    "block, expected",
    [
        (b"1721034611.1\tC1\t10.0.0.1\n#close\t2024\n", True),
        (b"1721034611.1\tC1\t10.0.0.1\r\n#fields\tts\n", True),
        (b"#fields\tts\n1721034611.1\tC1\n", False),  # the first line is looked at on its own
        (b"1721034611.1\tC1\thttp://a/#frag\t#x\n1721034612.1\tC2\t#\n", False),  # '#' inside records
        (b"1721034611.1\tC1\n" + b"#" * 3, True),
    ],
)
def test_a_header_line_is_found_inside_a_block(block: bytes, expected: bool) -> None:
    assert logfile_mod._hash_line(bytearray(block), len(block)) is expected


def test_a_group_whose_samples_are_all_left_out_still_stores_its_other_calls(tmp_path: Path, db_target: str) -> None:
    # Five tunnels counted from http.log, then an ssl.log with their five TLS sessions first and a
    # direct session after: the group kept only the five left-out samples, and storing no evidence
    # inserted a row of NULLs (exit 3, at every later run too).
    uids = [f"CtunnelSession{i:04d}" for i in range(5)]
    http, ssl = tmp_path / "http.log", tmp_path / "ssl.log"
    http.write_text(
        "\n".join(
            [*header("http", HTTP_FIELDS), *(tsv(http_record(uid=u, **{"id.orig_p": str(52000 + i)}), HTTP_FIELDS) for i, u in enumerate(uids))]
        )
        + "\n"
    )
    tunnelled = [
        tsv(ssl_record(uid=u, **{"id.orig_p": str(52000 + i), "id.resp_h": "10.20.0.10", "id.resp_p": "3128"}), SSL_FIELDS)
        for i, u in enumerate(uids)
    ]
    ssl.write_text("\n".join([*header("ssl", SSL_FIELDS), *tunnelled, tsv(ssl_record(uid="CdirectTLS0000001"), SSL_FIELDS)]) + "\n")
    calls, stderr = audit([http, ssl], db_target)
    assert calls == 6 and f"not counted 5: {TUNNEL_REPEATED}" in stderr
