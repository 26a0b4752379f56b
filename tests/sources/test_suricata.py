"""Suricata EVE JSON events (tls, http, quic are calls; dns, alert, fileinfo, flow, ... are not), as tables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditor.redact import redact
from auditor.sources import suricata
from auditor.sources.common import CONNECT_REFUSED
from auditor.sources.interface import Ignored, Malformed
from tests.conftest import asset
from tests.sources.helpers import POLICIES, assert_redacted, fields, line_no, read_all, utc

LOC = "eve.json:3"
OPENAI = "162.159.140.245"
NOT_A_CALL = "not a call (calls are read from tls, http and quic events)"


def eve(event_type: str, **extra: Any) -> str:
    record: dict[str, Any] = {
        "timestamp": "2024-07-15T09:10:11.123456+0000",
        "flow_id": 1137262880913374,
        "in_iface": "eth0",
        "event_type": event_type,
        "src_ip": "10.20.1.5",
        "src_port": 51012,
        "dest_ip": OPENAI,
        "dest_port": 443,
        "proto": "TCP",
    }
    record.update(extra)
    return json.dumps(record, separators=(",", ":"))


def ev(
    server_name: str, orig_h: str, resp_h: str, resp_p: int, method: str = "", status: int = 0, ts: str = "2024-07-15 09:10:11.123456"
) -> dict[str, object]:
    return {"server_name": server_name, "orig_h": orig_h, "resp_h": resp_h, "resp_p": resp_p, "method": method, "status": status, "ts": utc(ts)}


CALL = ev("api.openai.com", "10.20.1.5", OPENAI, 443)
PARSED = [
    pytest.param(eve("tls", tls={"sni": "api.openai.com", "version": "TLS 1.3"}), CALL, id="tls"),
    pytest.param(eve("tls", tls={"sni": "API.OpenAI.com.", "version": "TLS 1.2"}), CALL, id="tls-upper-case-fqdn"),
    pytest.param(eve("tls", timestamp="2024-07-15T17:10:11.123456+0800", tls={"sni": "api.openai.com"}), CALL, id="local-offset"),
    pytest.param(eve("tls", timestamp="2024-07-15T09:10:11.123456Z", tls={"sni": "api.openai.com"}), CALL, id="z-suffix"),
    pytest.param(
        eve(
            "tls", src_ip="2001:0db8:0010:0000:0000:0000:0000:0025", dest_ip="2606:4700:0000:0000:0000:0000:6812:1a2b", tls={"sni": "api.openai.com"}
        ),
        ev("api.openai.com", "2001:db8:10::25", "2606:4700::6812:1a2b", 443),
        id="expanded-ipv6-normalised",
    ),
    pytest.param(
        eve(
            "http",
            src_port=40022,
            dest_ip="10.20.0.10",
            dest_port=3128,
            http={"hostname": "api.openai.com", "url": "api.openai.com:443", "http_method": "CONNECT", "status": 200},
        ),
        ev("api.openai.com", "10.20.1.5", "10.20.0.10", 443, "CONNECT", 200),
        id="http-connect",
    ),
    pytest.param(
        eve(
            "http",
            dest_port=80,
            http={"hostname": "api.openai.com", "url": "/v1/models", "http_method": "GET", "protocol": "HTTP/1.1", "status": 401},
        ),
        ev("api.openai.com", "10.20.1.5", OPENAI, 80, "GET", 401),
        id="http-plain",
    ),
    pytest.param(
        eve("http", dest_port=8080, http={"hostname": "api.openai.com", "http_port": 8443, "url": "/v1/models", "http_method": "GET", "status": 200}),
        ev("api.openai.com", "10.20.1.5", OPENAI, 8443, "GET", 200),
        id="http-port-field",
    ),
    pytest.param(
        eve("http", dest_port=3128, http={"url": "http://api.openai.com/v1/models", "http_method": "GET", "status": 200}),
        ev("api.openai.com", "10.20.1.5", OPENAI, 80, "GET", 200),
        id="http-absolute-url-without-hostname",
    ),
    pytest.param(eve("quic", proto="UDP", quic={"version": "1", "sni": "api.openai.com"}), CALL, id="quic"),
    pytest.param(eve("tls", tls={"sni": "api.openai.com.evil.example"}), ev("api.openai.com.evil.example", "10.20.1.5", OPENAI, 443), id="decoy"),
    # Prefixes (they made the line "not JSON"): eve-log `filetype: syslog` written to a file by
    # rsyslog, eve-log `prefix: "@cee: "`, both, RFC 5424, a container runtime's.
    pytest.param("Jul 15 09:10:11 sensor1 suricata[1234]: " + eve("tls", tls={"sni": "api.openai.com"}), CALL, id="syslog-file"),
    pytest.param("@cee: " + eve("tls", tls={"sni": "api.openai.com"}), CALL, id="cee-prefix"),
    pytest.param(
        "2024-07-15T09:10:11.200+00:00 sensor1 suricata[1234]: @cee: " + eve("tls", tls={"sni": "api.openai.com"}), CALL, id="rfc3339-syslog-cee"
    ),
    pytest.param("<134>1 2024-07-15T09:10:11.2Z sensor1 suricata 1234 - - " + eve("tls", tls={"sni": "api.openai.com"}), CALL, id="rfc5424"),
]


@pytest.mark.parametrize("line, expected", PARSED)
def test_parse(line: str, expected: dict[str, object]) -> None:
    assert suricata.sniff(line)
    event = suricata.parse(line, LOC)
    assert fields(event) == expected
    assert (event.source, event.raw) == (LOC, line)


def test_protocol_and_client_port() -> None:
    quic = suricata.parse(eve("quic", proto="UDP", quic={"sni": "api.openai.com"}), LOC)
    assert (quic.proto, quic.orig_p) == ("udp", 51012)
    assert suricata.parse(eve("tls", tls={"sni": "api.openai.com"}), LOC).proto == "tcp"


IGNORED = [
    pytest.param(
        eve("dns", proto="UDP", dns={"type": "query", "rrname": "api.openai.com", "rrtype": "A"}),
        "suricata dns event: a look-up, not a call",
        id="dns-query",
    ),
    pytest.param(
        eve("dns", proto="UDP", dns={"type": "answer", "rrname": "api.openai.com", "answers": [{"rrname": "api.openai.com", "rdata": OPENAI}]}),
        "suricata dns event: a look-up, not a call",
        id="dns-answer",
    ),
    pytest.param(
        eve("alert", alert={"signature": "LOCAL OpenAI SNI"}, tls={"sni": "api.openai.com"}), f"suricata alert event: {NOT_A_CALL}", id="alert"
    ),
    pytest.param(eve("fileinfo", http={"hostname": "api.openai.com"}, fileinfo={"size": 3}), f"suricata fileinfo event: {NOT_A_CALL}", id="fileinfo"),
    pytest.param(
        eve("anomaly", anomaly={"event": "APPLAYER_DETECT_PROTOCOL_ONLY_ONE_DIRECTION"}, app_proto="tls"), "suricata anomaly event", id="anomaly"
    ),
    pytest.param(eve("tls", tls={"subject": "CN=api.openai.com", "version": "TLS 1.2"}), "TLS handshake without SNI", id="tls-without-sni"),
    pytest.param(eve("quic", quic={"version": "1"}), "QUIC handshake without SNI", id="quic-without-sni"),
    pytest.param(
        eve("http", http={"url": "/v1/models", "http_method": "GET", "http_refer": "https://api.openai.com/"}),
        "request names no host",
        id="http-relative",
    ),
    pytest.param(
        eve("tls", dest_ip="10.20.0.10", dest_port=3128, tls={"from_proto": "http", "sni": "api.openai.com"}),
        suricata.TUNNELED,
        id="tls-inside-a-connect-tunnel",
    ),
    pytest.param(
        eve(
            "http",
            dest_ip="10.20.0.10",
            dest_port=3128,
            http={"hostname": "api.openai.com", "url": "api.openai.com:443", "http_method": "CONNECT", "status": 407},
        ),
        CONNECT_REFUSED,
        id="connect-407-before-retry",
    ),
    pytest.param(
        eve(
            "http",
            dest_ip="10.20.0.10",
            dest_port=3128,
            http={"hostname": "api.openai.com", "url": "api.openai.com:443", "http_method": "CONNECT", "status": 403},
        ),
        CONNECT_REFUSED,
        id="connect-refused-403",
    ),
]


@pytest.mark.parametrize("line, reason", IGNORED)
def test_ignored(line: str, reason: str) -> None:
    with pytest.raises(Ignored) as info:
        suricata.parse(line, LOC)
    assert reason in str(info.value)


MALFORMED = [
    pytest.param(eve("tls", tls={"sni": "api.openai.com"})[:-30], "suricata: not JSON", id="truncated"),
    pytest.param('\x00\x00\ufffd{"event_type":"tls","tls":{"sni":"api.openai.com\ufffd("}}', "suricata: not JSON", id="binary-junk"),
    pytest.param(
        '{"ts":1721034625.0,"uid":"C1","id.orig_h":"10.20.1.5","server_name":"api.openai.com"}', "suricata: no 'event_type'", id="zeek-json"
    ),
    pytest.param(eve("tls", timestamp=1721034611, tls={"sni": "api.openai.com"}), "suricata: no 'timestamp'", id="numeric-timestamp"),
    pytest.param(eve("tls", timestamp="15/Jul/2024", tls={"sni": "api.openai.com"}), "bad timestamp", id="bad-timestamp"),
    pytest.param(eve("tls", tls="api.openai.com"), "suricata: tls event without a 'tls' object", id="tls-not-an-object"),
    pytest.param('["api.openai.com"]', "suricata: event is not a JSON object", id="array"),
    pytest.param(eve("http", http={"hostname": "api.openai.com:99999"}), "bad port", id="bad-port"),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        suricata.parse(line, LOC)
    assert reason in str(info.value)


SNIFF = [
    pytest.param(eve("tls"), True, id="tls"),
    pytest.param('{"timestamp":"2024-07-15T09:10:22.000000+0000","event_type":"stats","stats":{"uptime":5400}}', True, id="stats"),
    pytest.param('{"ts":1.0,"id.orig_h":"10.0.0.1"}', False, id="zeek"),
    pytest.param('{"start_time":"2024","upstream_host":"x","response_flags":"-"}', False, id="envoy"),
    pytest.param('{"deploymentId":"dpl_1","projectId":"prj_1","source":"lambda"}', False, id="vercel"),
    pytest.param('{"firewall_name":"fw","availability_zone":"ap-east-1a","event":' + eve("alert") + "}", False, id="aws-network-firewall"),
    pytest.param("", False, id="empty"),
    pytest.param('a log message {"event_type":"tls","timestamp":"2024"}', False, id="json-inside-free-text"),
]


@pytest.mark.parametrize("line, expected", SNIFF)
def test_sniff(line: str, expected: bool) -> None:
    assert suricata.sniff(line) is expected


def test_dumped_request_headers_are_redacted() -> None:
    secret = "sk-proj-Xk3v9QaZ8mT2LwR7pN4cY1uB6eHdJfGs"
    line = eve(
        "http",
        http={
            "hostname": "api.openai.com",
            "url": "/v1/chat/completions",
            "http_method": "POST",
            "status": 200,
            "request_headers": [
                {"name": "Host", "value": "api.openai.com"},
                {"name": "Authorization", "value": "Basic YWxpY2U6czNjcmV0"},
                {"name": "Cookie", "value": "__cf_bm=Zm9vYmFy"},
                {"name": "X-Api-Key", "value": secret},
            ],
        },
    )
    assert_redacted(
        suricata.parse(line, LOC).raw,
        ["YWxpY2U6czNjcmV0", "Zm9vYmFy", secret],
        ['{"name":"Authorization","value":"[REDACTED]"}', '{"name":"Cookie","value":"[REDACTED]"}', '{"name":"Host","value":"api.openai.com"}'],
    )


# tests/data/logs/suricata-eve.json, line by line (see the README there).
SAMPLE_EVENTS = {
    1: CALL,
    4: ev("api.openai.com", "10.20.1.6", "10.20.0.10", 443, "CONNECT", 200, "2024-07-15 09:10:12.004211"),
    5: ev("api.openai.com", "10.20.1.6", OPENAI, 80, "GET", 401, "2024-07-15 09:10:13.250"),
    6: ev("api.openai.com", "10.30.2.7", OPENAI, 443, ts="2024-07-15 09:10:14.500123"),
    11: ev("api.openai.com.evil.example", "10.20.1.5", "203.0.113.66", 443, ts="2024-07-15 09:10:19"),
    12: ev("api.openai.com", "2001:db8:10::25", "2606:4700::6812:1a2b", 443, ts="2024-07-15 09:10:20.020"),
    13: ev("api.openai.com", "10.20.1.6", "10.20.0.10", 3128, "POST", 403, "2024-07-15 09:10:21"),
}


def test_sample_file() -> None:
    path = asset("logs/suricata-eve.json")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == "suricata"
    assert {line_no(e): fields(e) for e in events} == SAMPLE_EVENTS
    assert next(e for e in events if line_no(e) == 6).proto == "udp"
    stats = log.stats
    assert (stats.lines, stats.candidates, stats.events) == (18, 16, 7)
    assert dict(stats.ignored) == {
        "suricata dns event: a look-up, not a call": 2,  # lines 2, 3
        f"suricata alert event: {NOT_A_CALL}": 1,  # line 7
        f"suricata fileinfo event: {NOT_A_CALL}": 1,  # line 8
        "TLS handshake without SNI": 1,  # line 10
        suricata.TUNNELED: 1,  # line 18, the session inside line 4's CONNECT tunnel
    }
    assert stats.locations == {
        "suricata: not JSON (Unterminated string starting at)": [f"{path}:15"],
        "suricata: not JSON (Expecting value)": [f"{path}:16"],
        "suricata: no 'event_type'": [f"{path}:17"],
    }
    assert {line_no(e) for e in events if POLICIES.for_host(e.server_name) is None} == {11}
    raw = next(e.raw for e in events if line_no(e) == 13)
    assert "sk-proj-" in raw and "sk-proj-" not in redact(raw) and "Zm9vYmFyYmF6" not in redact(raw)
