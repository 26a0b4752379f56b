"""HAProxy httplog, httpslog and tcplog records, with each syslog header they come with, as tables.

Accept dates below are 15/Jul/2024:09:10:xx; HAProxy writes them in its host's local time.
"""

from __future__ import annotations

import pytest

from auditor.redact import redact
from auditor.sources import haproxy
from auditor.sources.interface import Ignored, Malformed
from tests.conftest import asset
from tests.sources.helpers import POLICIES, assert_redacted, fields, line_no, outcome, read_all, utc

LOC = "haproxy.log:4"
SYSLOG = "Jul 15 09:10:11 gw1 haproxy[2211]: "
HTTP = '10.20.1.5:51012 [15/Jul/2024:09:10:11.123] egress-in egress/openai 0/0/1/140/141 200 2210 - - ---- 3/3/1/1/0 0/0 {api.openai.com} "POST /v1/chat/completions HTTP/1.1"'
TCP = "10.20.1.5:51014 [15/Jul/2024:09:10:16.002] sni-pass sni/direct 0/1/30021 5120 -- 2/2/1/1/0 0/0"
NO_SNI = haproxy.NO_SNI


def ev(server_name: str, orig_h: str, resp_p: int, method: str, status: int, ts: str) -> dict[str, object]:
    return {"server_name": server_name, "orig_h": orig_h, "resp_h": "", "resp_p": resp_p, "method": method, "status": status, "ts": utc(ts)}


CALL = ev("api.openai.com", "10.20.1.5", 0, "POST", 200, "2024-07-15 09:10:11.123")
PARSED = [
    # --- syslog headers ---
    pytest.param(SYSLOG + HTTP, CALL, id="rsyslog-traditional-no-pri"),
    pytest.param("<134>" + SYSLOG + HTTP, CALL, id="rfc3164-with-pri"),
    pytest.param("<134>Jul 15 09:10:11 haproxy[8]: " + HTTP, CALL, id="rfc3164-local-no-hostname"),
    pytest.param(HTTP, CALL, id="raw-no-header"),
    # `log ... format short` / `format priority` (src/log.c): <PRI> right before the client; it was
    # read as part of the client address, and every row became "unknown".
    pytest.param("<6>" + HTTP, CALL, id="format-short"),
    pytest.param("<134>" + HTTP, CALL, id="format-priority"),
    # A container runtime's prefix is the node's clock: its offset is not HAProxy's.
    pytest.param("2024-07-15T11:10:11.290123456+02:00 stdout F " + HTTP, CALL, id="cri-prefix-with-offset"),
    pytest.param(
        "Jul  5 09:10:11 gw1 haproxy[2211]: " + HTTP.replace("15/Jul", "05/Jul"),
        ev("api.openai.com", "10.20.1.5", 0, "POST", 200, "2024-07-05 09:10:11.123"),
        id="space-padded-day",
    ),
    pytest.param("2024-07-15T09:10:11.123456+00:00 gw1 haproxy[2211]: " + HTTP, CALL, id="rsyslog-high-precision-utc"),
    pytest.param(
        "2024-07-15T17:10:11.123456+08:00 gw1 haproxy[2211]: " + HTTP.replace("09:10:11.123", "17:10:11.123"),
        CALL,
        id="rfc3339-offset-applies-to-accept-date",
    ),
    pytest.param(
        "<134>1 2024-07-15T11:10:11.200+02:00 gw1 haproxy 2211 - - " + HTTP.replace("09:10:11.123", "11:10:11.123"),
        CALL,
        id="rfc5424-offset",
    ),
    pytest.param("<134>1 2024-07-15T09:10:11.200Z gw1 haproxy 2211 - - " + HTTP, CALL, id="rfc5424-utc"),
    pytest.param("Jul 15 09:10:11 gw1 hapee-lb[3098]: " + HTTP, CALL, id="enterprise-tag"),
    # --- how an http record names its host ---
    pytest.param(
        SYSLOG
        + '10.20.1.6:40022 [15/Jul/2024:09:10:12.004] fwd-in fwd/direct 0/0/2/3/30021 200 5120 - - ---- 2/2/1/1/0 0/0 "CONNECT api.openai.com:443 HTTP/1.1"',
        ev("api.openai.com", "10.20.1.6", 443, "CONNECT", 200, "2024-07-15 09:10:12.004"),
        id="connect-target",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.6:40023 [15/Jul/2024:09:10:13.250] fwd-in fwd/direct 0/0/2/90/92 401 377 - - ---- 2/2/1/1/0 0/0 "GET http://api.openai.com/v1/models HTTP/1.1"',
        ev("api.openai.com", "10.20.1.6", 80, "GET", 401, "2024-07-15 09:10:13.250"),
        id="absolute-url",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.6:40023 [15/Jul/2024:09:10:13.250] fwd-in fwd/direct 0/0/2/90/92 200 377 - - ---- 2/2/1/1/0 0/0 {intranet.corp.example} "GET http://api.openai.com/v1/models HTTP/1.1"',
        ev("api.openai.com", "10.20.1.6", 80, "GET", 200, "2024-07-15 09:10:13.250"),
        id="absolute-url-beats-captured-host",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:51012 [15/Jul/2024:09:10:11.123] egress-in egress/openai 0/0/1/140/141 200 2210 - - ---- 3/3/1/1/0 0/0 {api.openai.com:443|OpenAI/Python 1.35.3} {application/json|} "POST /v1/chat/completions HTTP/1.1"',
        ev("api.openai.com", "10.20.1.5", 443, "POST", 200, "2024-07-15 09:10:11.123"),
        id="captured-host-with-port-and-response-captures",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:51012 [15/Jul/2024:09:10:11.123] egress-in egress/openai 0/0/1/140/141 200 2210 - - ---- 3/3/1/1/0 0/0 {10.9.8.7|API.OpenAI.com} "POST /v1/chat/completions HTTP/1.1"',
        ev("api.openai.com", "10.20.1.5", 0, "POST", 200, "2024-07-15 09:10:11.123"),
        id="first-capture-that-is-a-host-name",
    ),
    pytest.param(
        SYSLOG
        + '10.30.2.7:52100 [15/Jul/2024:09:10:14.500] tls-term~ egress/openai 0/0/1/88/90 200 1523 - - ---- 4/4/1/1/0 0/0 "POST /v1/embeddings HTTP/2.0" 0/0/0/0/0 api.openai.com/TLSv1.3/TLS_AES_256_GCM_SHA384',
        ev("api.openai.com", "10.30.2.7", 0, "POST", 200, "2024-07-15 09:10:14.500"),
        id="httpslog-sni",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:22222 [15/Jul/2024:02:22:22.222] www-https~ myapp/node2 api.openai.com 0/0/0/18/18 200 200 - - ---- 222/222/2/0/0 0/0 "OPTIONS /api/v2/app/ HTTP/1.1"',
        ev("api.openai.com", "10.20.1.5", 0, "OPTIONS", 200, "2024-07-15 02:22:22.222"),
        id="host-before-the-timers",
    ),
    pytest.param(
        SYSLOG
        + '-:47481 [15/Jul/2024:09:10:11.123] egress-in egress/openai 0/0/3/32/35 200 142 - - ---- 1/1/0/0/0 0/0 {api.openai.com} "GET /v1/models HTTP/1.1"',
        ev("api.openai.com", "", 0, "GET", 200, "2024-07-15 09:10:11.123"),
        id="client-dash",
    ),
    pytest.param(
        SYSLOG
        + 'unix:1 [15/Jul/2024:09:10:11.123] egress-in egress/openai 0/0/3/32/35 200 142 - - ---- 1/1/0/0/0 0/0 {api.openai.com} "GET /v1/models HTTP/1.1"',
        ev("api.openai.com", "", 0, "GET", 200, "2024-07-15 09:10:11.123"),
        id="unix-socket-client",
    ),
    pytest.param(
        SYSLOG
        + '2001:db8:10::25:51999 [15/Jul/2024:09:10:20.020] egress-in egress/openai 0/0/1/140/141 200 2210 - - ---- 3/3/1/1/0 0/0 {eu.api.openai.com} "GET /v1/models HTTP/1.1"',
        ev("eu.api.openai.com", "2001:db8:10::25", 0, "GET", 200, "2024-07-15 09:10:20.020"),
        id="ipv6-client",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:51017 [15/Jul/2024:09:10:21.400] egress-in egress/openai 0/0/1/-1/3001 -1 0 - - CD-- 3/3/1/1/0 0/0 {api.openai.com} "POST /v1/chat/completions HTTP/1.1"',
        ev("api.openai.com", "10.20.1.5", 0, "POST", 0, "2024-07-15 09:10:21.400"),
        id="aborted-status-minus-one",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:51017 [15/Jul/2024:09:10:21.400] egress-in egress/openai 0/0/1/12/+13 200 +2210 - - ---- 3/3/1/1/0 0/0 {api.openai.com} "POST /v1/chat/completions HTTP/1.1"',
        ev("api.openai.com", "10.20.1.5", 0, "POST", 200, "2024-07-15 09:10:21.400"),
        id="logasap-plus-signs",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:51021 [15/Jul/2024:09:10:28.003] egress-in egress/openai 0/0/1/60/61 200 901 - - ---- 3/3/1/1/0 0/0 {api.openai.com|curl/8.5.0 #22q#22} "GET /v1/models?q=#22x#22 HTTP/1.1"',
        ev("api.openai.com", "10.20.1.5", 0, "GET", 200, "2024-07-15 09:10:28.003"),
        id="hash-encoded-quotes",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:51016 [15/Jul/2024:09:10:19.010] egress-in egress/evil 0/0/1/30/31 200 612 - - ---- 3/3/1/1/0 0/0 {api.openai.com.evil.example} "GET / HTTP/1.1"',
        ev("api.openai.com.evil.example", "10.20.1.5", 0, "GET", 200, "2024-07-15 09:10:19.010"),
        id="decoy-host",
    ),
    # --- tcplog with an appended SNI ---
    pytest.param(SYSLOG + TCP + " api.openai.com", ev("api.openai.com", "10.20.1.5", 0, "", 0, "2024-07-15 09:10:16.002"), id="tcplog-bare-sni"),
    pytest.param("<6>" + TCP + " api.openai.com", ev("api.openai.com", "10.20.1.5", 0, "", 0, "2024-07-15 09:10:16.002"), id="tcplog-format-short"),
    pytest.param(
        SYSLOG + TCP + " {api.openai.com}", ev("api.openai.com", "10.20.1.5", 0, "", 0, "2024-07-15 09:10:16.002"), id="tcplog-sni-in-braces"
    ),
    pytest.param(SYSLOG + TCP + ' "api.openai.com"', ev("api.openai.com", "10.20.1.5", 0, "", 0, "2024-07-15 09:10:16.002"), id="tcplog-quoted-sni"),
    pytest.param(
        SYSLOG + TCP + " dst:api.openai.com", ev("api.openai.com", "10.20.1.5", 0, "", 0, "2024-07-15 09:10:16.002"), id="tcplog-key-value-sni"
    ),
    pytest.param(
        SYSLOG + TCP + " sni=API.OPENAI.COM.",
        ev("api.openai.com", "10.20.1.5", 0, "", 0, "2024-07-15 09:10:16.002"),
        id="tcplog-key-equals-upper-case-fqdn",
    ),
    pytest.param(
        SYSLOG + TCP + " api.openai.com:8443", ev("api.openai.com", "10.20.1.5", 8443, "", 0, "2024-07-15 09:10:16.002"), id="tcplog-host-and-port"
    ),
]


@pytest.mark.parametrize("line, expected", PARSED)
def test_parse(line: str, expected: dict[str, object]) -> None:
    assert haproxy.sniff(line)
    event = haproxy.parse(line, LOC)
    assert fields(event) == expected
    assert (event.source, event.raw, event.egress_h, event.egress_region) == (LOC, line, "", "")


def test_client_port() -> None:
    assert haproxy.parse(SYSLOG + HTTP, LOC).orig_p == 51012
    assert haproxy.parse(SYSLOG + TCP + " api.openai.com", LOC).orig_p == 51014


IGNORED = [
    pytest.param(SYSLOG + TCP, NO_SNI, id="tcplog-without-sni"),
    pytest.param(SYSLOG + TCP.replace("sni/direct", "openai/api.openai.com"), NO_SNI, id="tcplog-server-named-like-the-host"),
    pytest.param(SYSLOG + TCP + " -", NO_SNI, id="tcplog-sni-empty"),
    pytest.param(SYSLOG + TCP + " 10.9.8.7", NO_SNI, id="tcplog-appended-address"),
    pytest.param(
        SYSLOG
        + '10.20.3.8:40100 [15/Jul/2024:09:10:17.100] fwd-in fwd/<NOSRV> 0/-1/-1/-1/0 403 192 - - PR-- 1/1/0/0/0 0/0 "CONNECT api.openai.com:443 HTTP/1.1"',
        "denied by the proxy",
        id="nosrv-403",
    ),
    pytest.param(
        SYSLOG
        + '10.20.3.8:40100 [15/Jul/2024:09:10:17.100] fwd-in fwd/<NOSRV> 0/-1/-1/-1/0 503 192 - - SC-- 1/1/0/0/0 0/0 "CONNECT api.openai.com:443 HTTP/1.1"',
        "not forwarded by the proxy (server <NOSRV>)",
        id="nosrv-503",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:51012 [15/Jul/2024:09:10:11.123] egress-in egress/<CACHE> 0/0/0/0/0 200 2210 - - ---- 3/3/1/1/0 0/0 {api.openai.com} "GET /v1/models HTTP/1.1"',
        "not forwarded by the proxy (server <CACHE>)",
        id="cache-hit",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:51015 [15/Jul/2024:09:10:18.300] egress-in web/intranet 0/0/1/12/13 200 3380 - - ---- 3/3/1/1/0 0/0 "GET /v1/models HTTP/1.1"',
        "request names no host",
        id="relative-target-no-captures",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:51015 [15/Jul/2024:09:10:18.300] egress-in web/intranet 0/0/1/12/13 200 3380 - - ---- 3/3/1/1/0 0/0 {|https://api.openai.com/} "GET / HTTP/1.1"',
        "request names no host",
        id="referer-capture-is-not-a-host",
    ),
    pytest.param(
        SYSLOG
        + '10.20.1.5:51015 [15/Jul/2024:09:10:18.300] egress-in egress/<NOSRV> -1/-1/-1/-1/0 400 187 - - CR-- 3/3/1/1/0 0/0 {api.openai.com} "<BADREQ>"',
        "not forwarded by the proxy (server <NOSRV>)",
        id="badreq",
    ),
    pytest.param(
        "192.168.1.4:50033 [28/Feb/2025:02:43:10.123] frontend/backend: SSL handshake failure (api.openai.com)",
        "connection error",
        id="ssl-handshake-failure",
    ),
]


@pytest.mark.parametrize("line, reason", IGNORED)
def test_ignored(line: str, reason: str) -> None:
    with pytest.raises(Ignored) as info:
        haproxy.parse(line, LOC)
    assert reason in str(info.value)


NO_ACCEPT = "haproxy: no 'client:port [accept date]'"
NEITHER = "haproxy: fields after the accept date are neither httplog nor tcplog"
MALFORMED = [
    pytest.param(
        SYSLOG + "Server openai/api.openai.com is DOWN, reason: Layer4 timeout, check duration: 2001ms.", NO_ACCEPT, id="server-state-message"
    ),
    pytest.param(
        '10.20.1.5 - - [15/Jul/2024:09:10:25 +0000] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"', NO_ACCEPT, id="combined-line"
    ),
    pytest.param(
        SYSLOG + "10.20.1.5:51020 [15/Jul/2024:09:10:26.001] egress-in egress/openai 0/0/1/1 200 22 - - ---- 3/3/1/1/0 0/0 {api.openai.c",
        NEITHER,
        id="truncated",
    ),
    pytest.param("\x00\x00\x00\x00\ufffd\ufffdapi.openai.com\ufffd(\x1b[0m", NO_ACCEPT, id="binary-junk"),
    pytest.param("", NO_ACCEPT, id="empty"),
    pytest.param(SYSLOG + HTTP.replace("15/Jul/2024", "15/Jux/2024"), "haproxy: bad accept date", id="bad-month-name"),
    pytest.param(SYSLOG + HTTP.replace("15/Jul/2024", "32/Jul/2024"), "haproxy: bad accept date", id="bad-day"),
    pytest.param(
        SYSLOG + HTTP.replace('"POST /v1/chat/completions HTTP/1.1"', '"CONNECT api.openai.com:99999 HTTP/1.1"'), "bad port", id="bad-connect-port"
    ),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        haproxy.parse(line, LOC)
    assert reason in str(info.value)


SNIFF = [
    pytest.param(SYSLOG + HTTP, True, id="http"),
    pytest.param(SYSLOG + TCP, True, id="tcp"),
    pytest.param("192.168.1.4:50033 [28/Feb/2025:02:43:10.123] frontend/backend: SSL handshake failure", True, id="connection-error"),
    pytest.param(SYSLOG + "Proxy egress-in started.", False, id="startup-message"),
    pytest.param('10.20.1.5 - - [15/Jul/2024:09:10:25 +0000] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"', False, id="combined"),
    pytest.param(
        "1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -", False, id="squid"
    ),
    pytest.param('10.20.1.5 [15/Jul/2024:09:10:11 +0000] TCP 200 6120 2210 30.021 "162.159.140.245:443" "api.openai.com"', False, id="nginx-stream"),
    pytest.param("", False, id="empty"),
]


@pytest.mark.parametrize("line, expected", SNIFF)
def test_sniff(line: str, expected: bool) -> None:
    assert haproxy.sniff(line) is expected


def test_captured_authorization_is_redacted() -> None:
    secret = "sk-proj-Xk3v9QaZ8mT2LwR7pN4cY1uB6eHdJfGs"
    line = SYSLOG + HTTP.replace("{api.openai.com}", "{api.openai.com|Bearer " + secret + "}")
    raw = haproxy.parse(line, LOC).raw
    assert_redacted(raw, [secret, "Xk3v9QaZ8mT2"], ["{api.openai.com|Bearer sk-[REDACTED]}", '"POST /v1/chat/completions HTTP/1.1"'])


# tests/data/logs/haproxy-syslog.log and haproxy-stdout.log, line by line (see the README there).
SYSLOG_EVENTS = {
    2: ev("api.openai.com", "10.20.1.5", 0, "POST", 200, "2024-07-15 09:10:11.123"),
    3: ev("api.openai.com", "10.20.1.6", 443, "CONNECT", 200, "2024-07-15 09:10:12.004"),
    4: ev("api.openai.com", "10.20.1.6", 80, "GET", 401, "2024-07-15 09:10:13.250"),
    5: ev("api.openai.com", "10.30.2.7", 0, "POST", 200, "2024-07-15 09:10:14.500"),
    7: ev("api.openai.com", "10.20.1.5", 0, "", 0, "2024-07-15 09:10:16.002"),
    9: ev("intranet.corp.example", "10.20.1.5", 0, "GET", 200, "2024-07-15 09:10:18.300"),
    10: ev("api.openai.com.evil.example", "10.20.1.5", 0, "GET", 200, "2024-07-15 09:10:19.010"),
    11: ev("eu.api.openai.com", "2001:db8:10::25", 0, "GET", 200, "2024-07-15 09:10:20.020"),
    12: ev("api.openai.com", "10.20.1.5", 0, "POST", 0, "2024-07-15 09:10:21.400"),
    15: ev("api.openai.com", "10.20.1.5", 0, "POST", 403, "2024-07-15 09:10:24.200"),
    19: ev("api.openai.com", "10.20.1.5", 0, "GET", 200, "2024-07-15 09:10:28.003"),
    20: ev("api.openai.com", "10.30.2.7", 0, "POST", 200, "2024-07-15 09:10:29.777"),
}
STDOUT_EVENTS = {
    1: ev("api.openai.com", "10.20.1.5", 0, "POST", 200, "2024-07-15 09:10:11.123"),
    2: ev("api.openai.com", "10.30.2.7", 0, "", 0, "2024-07-15 09:10:12.004"),
}


def test_syslog_sample_file() -> None:
    path = asset("logs/haproxy-syslog.log")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == "haproxy"
    assert {line_no(e): fields(e) for e in events} == SYSLOG_EVENTS
    assert [line_no(e) for e in events] == sorted(SYSLOG_EVENTS)
    stats = log.stats
    assert (stats.candidates, stats.events) == (18, 12)
    assert dict(stats.ignored) == {NO_SNI: 1, "denied by the proxy": 1}  # lines 6, 8
    assert stats.locations == {NO_ACCEPT: [f"{path}:14", f"{path}:16", f"{path}:18"], NEITHER: [f"{path}:17"]}
    governed = {line_no(e) for e in events if POLICIES.for_host(e.server_name) is not None}
    assert governed == set(SYSLOG_EVENTS) - {9, 10}
    lines = path.read_bytes().split(b"\n")
    assert all(e.raw == lines[line_no(e) - 1].decode() for e in events)
    assert "sk-proj-" in events[-1].raw and "sk-proj-" not in redact(events[-1].raw)


def test_stdout_sample_file() -> None:
    log, events = read_all(asset("logs/haproxy-stdout.log"))
    assert log.format is not None and log.format.name == "haproxy"
    assert {line_no(e): fields(e) for e in events} == STDOUT_EVENTS
    assert (log.stats.candidates, dict(log.stats.ignored), dict(log.stats.skipped)) == (2, {}, {})


def test_outcome_of_a_tcp_line_without_sni_says_how_to_log_it() -> None:
    kind, reason = outcome(haproxy.parse, SYSLOG + TCP)
    assert kind == "ignored" and "%[req.ssl_sni]" in reason
