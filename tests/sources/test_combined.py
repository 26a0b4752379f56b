"""nginx/Apache combined, common and virtual-host-first access logs, as the servers write them.

nginx (`escape=default`) writes `"`, `\\` and bytes outside 0x20-0x7E as `\\xXX` (upper-case hex);
Apache writes `"` and `\\` as `\\"` and `\\\\`, other non-printables as `\\xhh` (lower case).
"""

from __future__ import annotations

import pytest

from auditor.redact import redact
from auditor.sources import combined
from auditor.sources.interface import Ignored, Malformed
from tests.conftest import asset
from tests.sources.helpers import POLICIES, assert_redacted, fields, line_no, outcome, read_all, utc

LOC = "access.log:3"
T = "[15/Jul/2024:09:10:11 +0000]"
TLS_HELLO = r"\x16\x03\x01\x00\xF1\x01\x00\x00\xED\x03\x03\x8A\x91\x98\x9F\xA6\xAD\xB4\xBB\xC2\x00\x00\x13\x00\x11\x00\x00\x0Eapi.openai.com\x00\x17\x00\x00\xFF\x01\x00\x01\x00"


def ev(server_name: str, orig_h: str, resp_p: int, method: str, status: int, ts: str) -> dict[str, object]:
    return {"server_name": server_name, "orig_h": orig_h, "resp_h": "", "resp_p": resp_p, "method": method, "status": status, "ts": utc(ts)}


PARSED = [
    pytest.param(
        f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"',
        ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
        id="nginx-connect",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "POST http://api.openai.com/v1/chat/completions HTTP/1.1" 200 1820 "-" "OpenAI/Python 1.35.3"',
        ev("api.openai.com", "10.20.1.5", 80, "POST", 200, "2024-07-15 09:10:11"),
        id="absolute-http-url",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "GET https://api.openai.com/v1/models HTTP/1.1" 200 912 "-" "curl/8.5.0"',
        ev("api.openai.com", "10.20.1.5", 443, "GET", 200, "2024-07-15 09:10:11"),
        id="absolute-https-url",
    ),
    pytest.param(
        '10.20.1.5 - - [15/Jul/2024:02:10:30 -0700] "POST http://api.openai.com:8080/v1/embeddings HTTP/1.1" 502 157 "-" "node-fetch"',
        ev("api.openai.com", "10.20.1.5", 8080, "POST", 502, "2024-07-15 09:10:30"),
        id="explicit-port-and-negative-offset",
    ),
    pytest.param(
        '2001:db8:10::25 - - [15/Jul/2024:11:10:22 +0200] "CONNECT api.openai.com:443 HTTP/1.1" 200 8123 "-" "curl/8.5.0"',
        ev("api.openai.com", "2001:db8:10::25", 443, "CONNECT", 200, "2024-07-15 09:10:22"),
        id="ipv6-client-plus-0200",
    ),
    pytest.param(
        '10.20.1.5 - - [15/Jul/2024:14:40:11 +0530] "CONNECT api.openai.com:443 HTTP/1.1" 200 8123 "-" "curl/8.5.0"',
        ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
        id="half-hour-offset",
    ),
    pytest.param(
        '10.20.1.5 - - [01/Jan/2025:00:30:00 +0100] "CONNECT api.openai.com:443 HTTP/1.1" 200 8123 "-" "curl/8.5.0"',
        ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 200, "2024-12-31 23:30:00"),
        id="offset-crosses-new-year",
    ),
    pytest.param(
        f'10.30.2.7 - alice {T} "CONNECT eu.api.openai.com:443 HTTP/1.1" 200 6120 "-" "curl/8.5.0"',
        ev("eu.api.openai.com", "10.30.2.7", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
        id="remote-user",
    ),
    pytest.param(
        f'10.20.3.8 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 4410 "-" "python-requests/2.32.3 \\x22quoted\\x22 \\x5Cpath"',
        ev("api.openai.com", "10.20.3.8", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
        id="nginx-x22-escaped-quotes",
    ),
    pytest.param(
        f'10.20.3.8 - - {T} "CONNECT API.OPENAI.COM:443 HTTP/1.1" 200 3120 "-" "Go-http-client/1.1"',
        ev("api.openai.com", "10.20.3.8", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
        id="upper-case-host",
    ),
    pytest.param(
        f'10.20.3.8 - - {T} "CONNECT api.openai.com.:443 HTTP/1.1" 200 3120 "-" "curl/8.5.0"',
        ev("api.openai.com", "10.20.3.8", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
        id="fqdn-trailing-dot",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 499 0 "-" "curl/8.5.0"',
        ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 499, "2024-07-15 09:10:11"),
        id="client-closed-499",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 -',
        ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
        id="apache-common-dash-bytes",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "GET https://svc:pw0rd@api.openai.com/v1/models HTTP/1.1" 200 17 "-" "curl/8.5.0"',
        ev("api.openai.com", "10.20.1.5", 443, "GET", 200, "2024-07-15 09:10:11"),
        id="url-userinfo",
    ),
    pytest.param(
        f'api.openai.com:443 10.20.1.5 - - {T} "POST /v1/chat/completions HTTP/1.1" 200 1820 "-" "OpenAI/Python 1.35.3"',
        ev("api.openai.com", "10.20.1.5", 443, "POST", 200, "2024-07-15 09:10:11"),
        id="apache-vhost-combined",
    ),
    pytest.param(
        f'api.openai.com:443 10.20.3.8 - - {T} "POST /v1/embeddings HTTP/1.1" 200 880 "-" "Mozilla/5.0 \\"quoted\\" agent \\\\ backslash"',
        ev("api.openai.com", "10.20.3.8", 443, "POST", 200, "2024-07-15 09:10:11"),
        id="apache-backslash-escapes",
    ),
    pytest.param(
        f'api.openai.com 10.20.1.5 - - {T} "POST /v1/chat/completions HTTP/2.0" 200 1820 "-" "OpenAI/Python 1.35.3"',
        ev("api.openai.com", "10.20.1.5", 0, "POST", 200, "2024-07-15 09:10:11"),
        id="nginx-host-first-no-port",
    ),
    pytest.param(
        f'API.OpenAI.com:443 10.20.1.5 - - {T} "GET /v1/models HTTP/1.1" 200 5120 "-" "curl/8.5.0"',
        ev("api.openai.com", "10.20.1.5", 443, "GET", 200, "2024-07-15 09:10:11"),
        id="vhost-upper-case",
    ),
    pytest.param(
        f'api.openai.com:443 2001:db8:10::25 - bob {T} "GET /v1/models HTTP/1.1" 200 5120 "-" "curl/8.5.0"',
        ev("api.openai.com", "2001:db8:10::25", 443, "GET", 200, "2024-07-15 09:10:11"),
        id="vhost-ipv6-client-and-user",
    ),
    pytest.param(
        f'api.openai.com.evil.example:443 10.20.1.5 - - {T} "GET / HTTP/1.1" 200 612 "-" "curl/8.5.0"',
        ev("api.openai.com.evil.example", "10.20.1.5", 443, "GET", 200, "2024-07-15 09:10:11"),
        id="vhost-decoy-suffix",
    ),
    pytest.param(
        f'10.30.2.7 - - {T} "GET http://notapi.openai.community/ HTTP/1.1" 200 612 "-" "Wget/1.21.4"',
        ev("notapi.openai.community", "10.30.2.7", 80, "GET", 200, "2024-07-15 09:10:11"),
        id="url-decoy-prefix",
    ),
]


@pytest.mark.parametrize("line, expected", PARSED)
def test_parse(line: str, expected: dict[str, object]) -> None:
    assert combined.sniff(line)
    event = combined.parse(line, LOC)
    assert fields(event) == expected
    assert event.source == LOC
    assert event.raw == line


IGNORED = [
    pytest.param(
        f'10.20.1.5 - - {T} "GET /docs/index.html HTTP/1.1" 200 5123 "https://api.openai.com/" "Mozilla/5.0"',
        "request names no host",
        id="relative-target-referer-decoy",
    ),
    pytest.param(f'10.20.1.5 - - {T} "OPTIONS * HTTP/1.1" 200 0 "-" "curl/8.5.0"', "request names no host", id="asterisk-target"),
    pytest.param(
        f'198.51.100.23 - - {T} "{TLS_HELLO}" 400 157 "-" "-"', "request line is not METHOD TARGET PROTOCOL", id="tls-on-http-port-with-sni"
    ),
    pytest.param(f'198.51.100.23 - - {T} "" 400 0 "-" "-"', "request line is not METHOD TARGET PROTOCOL", id="empty-request"),
    pytest.param(f'198.51.100.23 - - {T} "-" 400 0 "-" "-"', "request line is not METHOD TARGET PROTOCOL", id="dash-request"),
    pytest.param(
        f'10.20.1.5 - - {T} "GET http://api.openai.com/" 200 10 "-" "-"', "request line is not METHOD TARGET PROTOCOL", id="http09-two-parts"
    ),
    pytest.param(f'_ 10.20.1.5 - - {T} "GET / HTTP/1.1" 444 0 "-" "-"', "request names no host", id="nginx-host-underscore"),
    pytest.param(f'- 10.20.1.5 - - {T} "GET / HTTP/1.1" 400 0 "-" "-"', "request names no host", id="vhost-dash"),
]


@pytest.mark.parametrize("line, reason", IGNORED)
def test_ignored(line: str, reason: str) -> None:
    with pytest.raises(Ignored) as info:
        combined.parse(line, LOC)
    assert reason in str(info.value)


NOT_A_RECORD = "combined: not a combined/common log record"
MALFORMED = [
    pytest.param(
        '2024/07/15 09:10:25 [error] 2314#2314: *118 upstream timed out (110: Connection timed out) while connecting to upstream, client: 10.20.1.5, server: , request: "CONNECT api.openai.com:443 HTTP/1.1", host: "api.openai.com:443"',
        NOT_A_RECORD,
        id="nginx-error-log",
    ),
    pytest.param(
        "[Mon Jul 15 09:10:21.123456 2024] [proxy:error] [pid 2314:tid 140031] (111)Connection refused: AH00957: https: attempt to connect to 162.159.140.245:443 (api.openai.com:443) failed",
        NOT_A_RECORD,
        id="apache-error-log",
    ),
    pytest.param('10.20.1.5 - - [15/Jul/2024:09:10:26 +0000] "CONNECT api.openai.com:443 HT', NOT_A_RECORD, id="truncated-in-request"),
    pytest.param("api.openai.com:443 10.20.1.5 - - [15/Jul/2024:09:1", NOT_A_RECORD, id="truncated-in-time"),
    pytest.param(
        "1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -",
        NOT_A_RECORD,
        id="squid-line",
    ),
    pytest.param("\x00\x00\x00\x00\ufffd\ufffd\x1b[31m\x07binary api.openai.com", NOT_A_RECORD, id="binary-junk"),
    pytest.param("", NOT_A_RECORD, id="empty"),
    pytest.param(f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 20 5120 "-" "-"', NOT_A_RECORD, id="two-digit-status"),
    pytest.param(
        '10.20.1.5 - - [15/Jly/2024:09:10:11 +0000] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "-"', "bad timestamp", id="bad-month"
    ),
    pytest.param('10.20.1.5 - - [32/Jul/2024:09:10:11 +0000] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "-"', "bad timestamp", id="bad-day"),
    pytest.param('10.20.1.5 - - [15/Jul/2024:09:10:11 UTC] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "-"', "bad timestamp", id="zone-name"),
    pytest.param(
        '10.20.1.5 - - [15/Jul/2024:09:10:11 +2500] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "-"', "bad timestamp", id="zone-out-of-range"
    ),
    pytest.param('10.20.1.5 - - [15/Jul/2024:09:10:11] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "-"', "bad timestamp", id="zone-missing"),
    pytest.param(f'10.20.1.5 - - {T} "CONNECT api.openai.com:0 HTTP/1.1" 200 5120 "-" "-"', "bad port", id="port-zero"),
    pytest.param(f'10.20.1.5 - - {T} "GET http:///v1/models HTTP/1.1" 400 0 "-" "-"', "URL without a host", id="url-without-host"),
    pytest.param(f'api.openai.com:https 10.20.1.5 - - {T} "GET / HTTP/1.1" 200 0 "-" "-"', "bad port", id="vhost-bad-port"),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        combined.parse(line, LOC)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "line, port",
    [
        (f'proxy.corp.example:3128 10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"', 443),
        (
            f'proxy.corp.example:3128 10.20.1.5 - - {T} "POST http://api.openai.com/v1/chat/completions HTTP/1.1" 200 1820 "-" "OpenAI/Python 1.35.3"',
            80,
        ),
    ],
    ids=["connect", "absolute-url"],
)
def test_apache_forward_proxy_vhost_does_not_hide_the_target(line: str, port: int) -> None:
    event = combined.parse(line, LOC)
    assert (event.server_name, event.resp_p) == ("api.openai.com", port)


def test_remote_user_with_a_space() -> None:
    line = f'10.20.1.5 - john doe {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"'
    event = combined.parse(line, LOC)
    assert (event.server_name, event.orig_h) == ("api.openai.com", "10.20.1.5")


def test_tls_bytes_with_spaces_are_not_a_request() -> None:
    # nginx escapes bytes < 0x20 and > 0x7E but not 0x20 itself, which a ClientHello's random often holds.
    line = (
        f'198.51.100.23 - - {T} "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xFC\\x03\\x03\\x8A %\\x91\\x0E api.openai.com\\x00\\x17" 400 157 "-" "-"'
    )
    assert outcome(combined.parse, line) == ("ignored", "request line is not METHOD TARGET PROTOCOL")


REDACTION = [
    pytest.param(
        f'10.20.1.5 - - {T} "GET http://user:hunter2@api.openai.com/v1/models?api_key=sk-live0123456789abcdef HTTP/1.1" 401 220 "-" "curl/8.5.0"',
        ["hunter2", "user:", "sk-live0123456789abcdef", "0123456789abcdef"],
        ['"GET http://[REDACTED]@api.openai.com/v1/models?api_key=[REDACTED] HTTP/1.1" 401'],
        id="userinfo-and-api-key",
    ),
    pytest.param(
        f'api.openai.com:443 10.20.1.5 - - {T} "GET /v1/models?key=sk-proj-AbCdEf0123456789XyZ HTTP/1.1" 200 5120 "-" "curl/8.5.0"',
        ["AbCdEf0123456789XyZ"],
        ["/v1/models?key=[REDACTED] HTTP/1.1"],
        id="vhost-query-key",
    ),
]


@pytest.mark.parametrize("line, secrets, kept", REDACTION)
def test_raw_keeps_the_line_and_redact_removes_its_secrets(line: str, secrets: list[str], kept: list[str]) -> None:
    raw = combined.parse(line, LOC).raw
    assert raw == line  # events.py: raw is the record as read; the store redacts what it keeps
    assert_redacted(raw, secrets, kept)


SNIFF = [
    pytest.param(f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"', True, id="nginx-combined"),
    pytest.param(f'10.20.1.5 - - {T} "GET / HTTP/1.0" 200 -', True, id="common"),
    pytest.param(f'api.openai.com:443 10.20.1.5 - - {T} "GET / HTTP/1.1" 200 1 "-" "-"', True, id="vhost-combined"),
    pytest.param(f'198.51.100.23 - - {T} "{TLS_HELLO}" 400 157 "-" "-"', True, id="tls-bytes"),
    pytest.param("2024/07/15 09:10:25 [error] 2314#2314: *118 upstream timed out", False, id="nginx-error-log"),
    pytest.param(
        "1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -", False, id="squid"
    ),
    pytest.param("", False, id="empty"),
]


@pytest.mark.parametrize("line, expected", SNIFF)
def test_sniff(line: str, expected: bool) -> None:
    assert combined.sniff(line) is expected


# tests/data/logs/nginx-access.log and apache-vhost-access.log, line by line (see the README there).
NGINX_EVENTS = {
    1: ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
    2: ev("api.openai.com", "10.20.1.5", 80, "POST", 200, "2024-07-15 09:10:12"),
    8: ev("api.openai.com.evil.example", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:18"),
    9: ev("notapi.openai.community", "10.30.2.7", 80, "GET", 200, "2024-07-15 09:10:19"),
    10: ev("api.openai.com", "10.20.3.8", 443, "CONNECT", 200, "2024-07-15 09:10:20"),
    11: ev("api.openai.com", "10.20.3.8", 443, "CONNECT", 200, "2024-07-15 09:10:21"),
    12: ev("api.openai.com", "2001:db8:10::25", 443, "CONNECT", 200, "2024-07-15 09:10:22"),
    13: ev("eu.api.openai.com", "10.30.2.7", 443, "CONNECT", 200, "2024-07-15 09:10:23"),
    14: ev("api.openai.com", "10.20.1.5", 80, "GET", 401, "2024-07-15 09:10:24"),
    18: ev("api.openai.com", "10.30.2.7", 443, "CONNECT", 200, "2024-07-15 09:10:28"),
    19: ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 499, "2024-07-15 09:10:29"),
    20: ev("api.openai.com", "10.20.1.5", 8080, "POST", 502, "2024-07-15 09:10:30"),
}
APACHE_EVENTS = {
    1: ev("api.openai.com", "10.20.1.5", 443, "POST", 200, "2024-07-15 09:10:11"),
    2: ev("eu.api.openai.com", "10.30.2.7", 443, "GET", 200, "2024-07-15 09:10:12"),
    4: ev("api.openai.com.evil.example", "10.20.1.5", 443, "GET", 200, "2024-07-15 09:10:14"),
    5: ev("notapi.openai.community", "10.30.2.7", 443, "GET", 200, "2024-07-15 09:10:15"),
    6: ev("api.openai.com", "10.20.3.8", 443, "POST", 200, "2024-07-15 09:10:16"),
    7: ev("intranet.corp.example", "10.20.1.5", 443, "GET", 200, "2024-07-15 09:10:17"),
    9: ev("api.openai.com", "2001:db8:10::25", 443, "POST", 200, "2024-07-15 09:10:19"),
    10: ev("api.openai.com", "10.30.2.7", 443, "GET", 200, "2024-07-15 09:10:20"),
    12: ev("api.openai.com", "10.20.1.5", 443, "GET", 200, "2024-07-15 09:10:22"),
    13: ev("api.openai.com", "10.20.3.8", 443, "GET", 200, "2024-07-15 09:10:23"),
    16: ev("api.openai.com", "10.20.1.5", 80, "GET", 301, "2024-07-15 09:10:25"),
}
SAMPLES = {
    # name: (events by line, candidates, ignored, malformed lines, ungoverned event lines)
    "nginx-access.log": (NGINX_EVENTS, 16, {"request line is not METHOD TARGET PROTOCOL": 1, "request names no host": 1}, [15, 16], {8, 9}),
    "apache-vhost-access.log": (APACHE_EVENTS, 13, {}, [11, 14], {4, 5, 7}),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_file(name: str) -> None:
    expected, candidates, ignored, malformed, ungoverned = SAMPLES[name]
    path = asset(f"logs/{name}")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == "combined"
    assert {line_no(e): fields(e) for e in events} == expected
    assert [line_no(e) for e in events] == sorted(expected)
    assert all(e.source == f"{path}:{line_no(e)}" for e in events)
    # stats.lines is pinned in test_logfile.py (small finished inputs count a phantom last line).
    assert (log.stats.candidates, log.stats.events) == (candidates, len(expected))
    assert dict(log.stats.ignored) == ignored
    assert dict(log.stats.skipped) == {NOT_A_RECORD: len(malformed)}
    assert log.stats.locations == {NOT_A_RECORD: [f"{path}:{n}" for n in malformed]}
    governed = {line_no(e) for e in events if POLICIES.for_host(e.server_name) is not None}
    assert governed == set(expected) - ungoverned
    assert all(POLICIES.for_host(e.server_name) is None for e in events if line_no(e) in ungoverned)


def test_sample_files_raw_is_the_line_and_redacts_clean() -> None:
    for name, secrets in (("nginx-access.log", ["hunter2", "sk-live0123456789abcdef"]), ("apache-vhost-access.log", ["sk-proj-AbCdEf0123456789XyZ"])):
        path = asset(f"logs/{name}")
        lines = path.read_bytes().split(b"\n")
        _, events = read_all(path)
        for event in events:
            assert event.raw == lines[line_no(event) - 1].decode("utf-8", "replace")
        assert any(s in e.raw for e in events for s in secrets)
        assert not any(s in redact(e.raw) for e in events for s in secrets)
    # nginx with escape=none let a raw Latin-1 byte through: replaced, and the record still parses.
    _, events = read_all(asset("logs/nginx-access.log"))
    assert "J\ufffdrg's client" in next(e.raw for e in events if line_no(e) == 18)


# --- Squid's `common` and `combined` emulations ---------------------------------------------------
# logformat common   %>a %[ui %[un [%tl] "%rm %ru HTTP/%rv" %>Hs %<st %Ss:%Sh
# logformat combined %>a %[ui %[un [%tl] "%rm %ru HTTP/%rv" %>Hs %<st "%{Referer}>h" "%{User-Agent}>h" %Ss:%Sh

SQUID_PARSED = [
    pytest.param(
        f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 29012 TCP_TUNNEL:HIER_DIRECT',
        ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
        id="common-tunnel",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "POST https://api.openai.com/v1/chat/completions HTTP/1.1" 200 2210 TCP_MISS:HIER_DIRECT',
        ev("api.openai.com", "10.20.1.5", 443, "POST", 200, "2024-07-15 09:10:11"),
        id="common-bumped",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "GET https://api.openai.com/v1/models HTTP/1.1" 503 4120 TCP_MISS:HIER_NONE',
        ev("api.openai.com", "10.20.1.5", 443, "GET", 503, "2024-07-15 09:10:11"),
        id="common-upstream-failed",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 29012 "-" "OpenAI/Python 1.35.3" TCP_TUNNEL:HIER_DIRECT',
        ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
        id="combined-tunnel",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "POST https://api.openai.com/v1/responses HTTP/1.1" 200 1873 "-" "OpenAI/Python 1.35.3" TCP_MISS_ABORTED:HIER_DIRECT',
        ev("api.openai.com", "10.20.1.5", 443, "POST", 200, "2024-07-15 09:10:11"),
        id="combined-aborted",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "GET http://intranet.corp.example/ HTTP/1.1" 200 3380 "https://api.openai.com/" "Mozilla/5.0" TCP_MISS:HIER_DIRECT',
        ev("intranet.corp.example", "10.20.1.5", 80, "GET", 200, "2024-07-15 09:10:11"),
        id="combined-referer-decoy",
    ),
    # FormatHttpdCommon.cc prints the status with %d: 0 when there was no reply.
    pytest.param(
        f'10.20.1.5 - - {T} "POST https://api.openai.com/v1/chat/completions HTTP/1.1" 0 0 TCP_MISS_ABORTED:HIER_DIRECT',
        ev("api.openai.com", "10.20.1.5", 443, "POST", 0, "2024-07-15 09:10:11"),
        id="common-aborted-status-0",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 29012 TCP_TUNNEL:HIER_DIRECT [Host: api.openai.com:443%0D%0A] [HTTP/1.1 200 OK%0D%0A]',
        ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
        id="common-log-mime-hdrs",
    ),
]


# HAProxy's `option httplog clf` (src/log.c clf_http_log_format): the host only in a captured header.
HAPROXY_CLF = (
    f'10.20.1.5 - - {T} "POST /v1/chat/completions HTTP/1.1" 200 2210 "" "" 51012 123 "egress-in" "egress" "openai" '
    '0 0 1 140 141 ---- 3 3 1 1 0 0 0 "" "" {headers}'
)


@pytest.mark.parametrize(
    "headers, host",
    [
        ('"api.openai.com" ""', "api.openai.com"),
        ('"10.20.1.5" "api.openai.com:443" "" ""', "api.openai.com"),  # X-Forwarded-For captured first
        ('"" ""', None),  # nothing captured: no host
    ],
)
def test_haproxy_clf_takes_the_host_from_its_captured_headers(headers: str, host: str | None) -> None:
    line = HAPROXY_CLF.format(headers=headers)
    assert combined.sniff(line)
    assert outcome(combined.parse, line) == (("event", host) if host else ("ignored", "request names no host"))


@pytest.mark.parametrize("line, expected", SQUID_PARSED)
def test_squid_emulation_parse(line: str, expected: dict[str, object]) -> None:
    assert combined.sniff(line)
    assert fields(combined.parse(line, LOC)) == expected


SQUID_IGNORED = [
    pytest.param(f'10.20.3.8 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 403 3936 TCP_DENIED:HIER_NONE', "denied by the proxy", id="common-denied"),
    pytest.param(
        f'10.20.3.8 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 407 4012 "-" "curl/8.5.0" TCP_DENIED:HIER_NONE',
        "denied by the proxy",
        id="combined-proxy-auth",
    ),
    pytest.param(
        f'10.20.3.8 - - {T} "GET https://api.openai.com/v1/models HTTP/1.1" 403 3600 TCP_DENIED_REPLY:HIER_DIRECT',
        "denied by the proxy",
        id="denied-reply",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "GET https://api.openai.com/v1/models HTTP/1.1" 403 3369 NONE_NONE:HIER_NONE',
        "denied by the proxy",
        id="squid5-bumped-denied",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 0 TAG_NONE:HIER_NONE',
        "not forwarded by the proxy (NONE result)",
        id="squid35-tag-none",
    ),
    pytest.param(
        f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 0 0 NONE_NONE:HIER_NONE',
        "not forwarded by the proxy (NONE result)",
        id="status-0-none",
    ),
    # log_mime_hdrs on: the headers follow the tags (FormatHttpdCommon.cc " [%s] [%s]"); the denied
    # request was counted as a call, a violation with a config.
    pytest.param(
        f'10.20.3.8 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 403 3936 TCP_DENIED:HIER_NONE [Host: api.openai.com:443%0D%0A] '
        "[HTTP/1.1 403 Forbidden%0D%0AServer: squid/6.6%0D%0A]",
        "denied by the proxy",
        id="common-denied-log-mime-hdrs",
    ),
    pytest.param(
        f'10.20.3.8 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 403 3936 "-" "curl/8.5.0" TCP_DENIED:HIER_NONE [Host: api.openai.com:443%0D%0A] '
        "[HTTP/1.1 403 Forbidden%0D%0A]",
        "denied by the proxy",
        id="combined-denied-log-mime-hdrs",
    ),
]


@pytest.mark.parametrize("line, reason", SQUID_IGNORED)
def test_squid_emulation_ignored(line: str, reason: str) -> None:
    assert outcome(combined.parse, line) == ("ignored", reason)


def test_a_trailing_word_that_is_not_a_squid_tag_changes_nothing() -> None:
    line = f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0" rt=0.003'
    assert outcome(combined.parse, line) == ("event", "api.openai.com")


SQUID_SAMPLES = {
    # name: (events by line, candidates, ignored, malformed lines)
    "squid-common.log": (
        {
            1: ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
            2: ev("api.openai.com", "10.20.1.5", 443, "POST", 200, "2024-07-15 09:10:12"),
            5: ev("eu.api.openai.com", "2001:db8:10::25", 443, "CONNECT", 200, "2024-07-15 09:10:15"),
            6: ev("api.openai.com.evil.example", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:16"),
            9: ev("api.openai.com", "10.20.1.5", 443, "GET", 503, "2024-07-15 09:10:19"),
            13: ev("api.openai.com", "10.30.2.7", 443, "GET", 200, "2024-07-15 09:10:23"),
            14: ev("notapi.openai.community", "10.30.2.7", 443, "CONNECT", 200, "2024-07-15 09:10:24"),
        },
        12,
        {"denied by the proxy": 2},  # lines 3, 8
        [10, 11, 12],
    ),
    "squid-combined.log": (
        {
            1: ev("api.openai.com", "10.20.1.5", 443, "CONNECT", 200, "2024-07-15 09:10:11"),
            3: ev("intranet.corp.example", "10.20.1.5", 80, "GET", 200, "2024-07-15 09:10:13"),
            4: ev("api.openai.com", "10.20.1.5", 443, "POST", 200, "2024-07-15 09:10:14"),
            5: ev("api.openai.com", "10.30.2.7", 443, "GET", 200, "2024-07-15 09:10:15"),
        },
        5,
        {"denied by the proxy": 1},  # line 2
        [],
    ),
}


@pytest.mark.parametrize("name", sorted(SQUID_SAMPLES))
def test_squid_emulation_sample_file(name: str) -> None:
    expected, candidates, ignored, malformed = SQUID_SAMPLES[name]
    path = asset(f"logs/{name}")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == "combined"
    assert {line_no(e): fields(e) for e in events} == expected
    assert (log.stats.candidates, dict(log.stats.ignored)) == (candidates, ignored)
    assert log.stats.locations == ({NOT_A_RECORD: [f"{path}:{n}" for n in malformed]} if malformed else {})
    # Squid logs the URL's raw bytes: replaced, and the record still counts.
    if name == "squid-common.log":
        assert "r\ufffdsum\ufffd.pdf" in next(e.raw for e in events if line_no(e) == 13)
