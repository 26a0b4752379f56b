"""nginx stream (ngx_stream_ssl_preread_module) records with the SNI logged, as tables.

The layout read is the `basic` example of ngx_stream_log_module followed by quoted fields (see
auditor/sources/nginx_stream.py); `$time_local` is `15/Jul/2024:09:10:xx +0000`.
"""

from __future__ import annotations

import pytest

from auditor.sources import nginx_stream
from auditor.sources.interface import Ignored, Malformed
from tests.conftest import asset
from tests.sources.helpers import POLICIES, fields, line_no, read_all, utc

LOC = "stream.log:2"
T = "[15/Jul/2024:09:10:11 +0000]"
OPENAI = "162.159.140.245"
NOT_A_RECORD = "nginx-stream: not '$remote_addr [$time_local] $protocol $status ... $session_time'"


def ev(server_name: str, orig_h: str, resp_h: str, resp_p: int, status: int, ts: str = "2024-07-15 09:10:11") -> dict[str, object]:
    return {"server_name": server_name, "orig_h": orig_h, "resp_h": resp_h, "resp_p": resp_p, "method": "", "status": status, "ts": utc(ts)}


PARSED = [
    pytest.param(
        f'10.20.1.5 {T} TCP 200 6120 2210 30.021 "162.159.140.245:443" "api.openai.com"',
        ev("api.openai.com", "10.20.1.5", OPENAI, 443, 200),
        id="chosen-layout",
    ),
    pytest.param(
        f'10.20.1.5 {T} TCP 200 6120 2210 30.021 "162.159.140.245:443" "6120" "2210" "0.004" "api.openai.com"',
        ev("api.openai.com", "10.20.1.5", OPENAI, 443, 200),
        id="admin-guide-proxy-layout-plus-sni",
    ),
    pytest.param(
        f'10.20.1.5 {T} TCP 200 6120 2210 30.021 "api.openai.com" "162.159.140.245:443"',
        ev("api.openai.com", "10.20.1.5", OPENAI, 443, 200),
        id="sni-first",
    ),
    pytest.param(
        f"10.20.1.5 {T} TCP 200 6120 2210 30.021 162.159.140.245:443 api.openai.com",
        ev("api.openai.com", "10.20.1.5", OPENAI, 443, 200),
        id="unquoted",
    ),
    pytest.param(
        '10.20.1.5 [15/Jul/2024:09:10:11 +0000]TCP 200 6120 2210 30.021 "162.159.140.245:443" "api.openai.com"',
        ev("api.openai.com", "10.20.1.5", OPENAI, 443, 200),
        id="no-space-after-time",
    ),
    pytest.param(
        '10.30.2.7 [15/Jul/2024:11:10:11 +0200] TCP 200 9120 3311 12.004 "162.159.140.245:443" "eu.api.openai.com"',
        ev("eu.api.openai.com", "10.30.2.7", OPENAI, 443, 200),
        id="local-time-offset",
    ),
    pytest.param(
        f'10.20.1.5 {T} TCP 502 0 517 5.001 "162.159.140.245:443" "api.openai.com"',
        ev("api.openai.com", "10.20.1.5", OPENAI, 443, 502),
        id="upstream-failed-502",
    ),
    pytest.param(
        f'10.20.1.5 {T} TCP 200 0 517 5.001 "-" "API.OpenAI.com."', ev("api.openai.com", "10.20.1.5", "", 0, 200), id="no-upstream-upper-case-fqdn"
    ),
    pytest.param(
        f'2001:db8:10::25 {T} TCP 200 4410 1800 8.250 "[2606:4700::6812:1a2b]:443" "api.openai.com"',
        ev("api.openai.com", "2001:db8:10::25", "2606:4700::6812:1a2b", 443, 200),
        id="ipv6",
    ),
    pytest.param(
        f'10.20.1.5 {T} TCP 200 4410 1800 8.250 "10.0.0.9:443, 162.159.140.245:443" "api.openai.com"',
        ev("api.openai.com", "10.20.1.5", OPENAI, 443, 200),
        id="retried-upstreams-last-wins",
    ),
    pytest.param(
        f'unix: {T} TCP 200 4410 1800 8.250 "unix:/run/up.sock" "api.openai.com"',
        ev("api.openai.com", "", "", 0, 200),
        id="unix-socket-client-and-upstream",
    ),
    pytest.param(
        f'10.20.1.5 {T} TCP 200 4410 1800 8.250 "203.0.113.66:443" "api.openai.com.evil.example"',
        ev("api.openai.com.evil.example", "10.20.1.5", "203.0.113.66", 443, 200),
        id="decoy",
    ),
]


@pytest.mark.parametrize("line, expected", PARSED)
def test_parse(line: str, expected: dict[str, object]) -> None:
    assert nginx_stream.sniff(line)
    event = nginx_stream.parse(line, LOC)
    assert fields(event) == expected
    assert (event.source, event.raw, event.proto) == (LOC, line, "tcp")


def test_udp() -> None:
    event = nginx_stream.parse(f'10.20.1.5 {T} UDP 200 1350 1250 0.300 "162.159.140.245:443" "api.openai.com"', LOC)
    assert (event.proto, event.server_name) == ("udp", "api.openai.com")


IGNORED = [
    pytest.param(f'10.20.3.8 {T} TCP 403 0 0 0.000 "-" "api.openai.com"', "denied by the proxy", id="access-denied-403"),
    pytest.param(f'10.20.1.5 {T} TCP 200 6120 2210 30.021 "162.159.140.245:443" "-"', nginx_stream.NO_NAME, id="no-sni"),
    pytest.param(f"10.20.1.5 {T} TCP 200 6120 2210 30.021", nginx_stream.NO_NAME, id="basic-layout-only"),
    pytest.param(
        f'10.20.1.5 {T} TCP 200 0 517 0.100 "162.159.140.245:443" "api.openai.com\\xC3\\xA9.example"', nginx_stream.NO_NAME, id="escaped-bytes-in-sni"
    ),
    pytest.param(f'10.20.1.5 {T} TCP 200 0 517 0.100 "162.159.140.245:443" "1234" "0.004"', nginx_stream.NO_NAME, id="numbers-are-not-names"),
]


@pytest.mark.parametrize("line, reason", IGNORED)
def test_ignored(line: str, reason: str) -> None:
    with pytest.raises(Ignored) as info:
        nginx_stream.parse(line, LOC)
    assert reason in str(info.value)


MALFORMED = [
    pytest.param(
        '2024/07/15 09:10:21 [error] 1201#1201: *77 upstream timed out, client: 10.20.1.5, server: _, request: "CONNECT api.openai.com:443 HTTP/1.1"',
        NOT_A_RECORD,
        id="error-log-line",
    ),
    pytest.param(f'10.20.1.5 {T} TCP 200 6120 2210 30.021 "162.159.140.245:443" "api.openai.com', "closing quote", id="truncated-in-sni"),
    pytest.param(f"10.20.1.5 {T} TCP 200 61", NOT_A_RECORD, id="truncated-in-counters"),
    pytest.param("\x16\x03\x01\x00\ufffd\x01\x00\x00 api.openai.com \ufffd", NOT_A_RECORD, id="binary-junk"),
    pytest.param(f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"', NOT_A_RECORD, id="combined-line"),
    pytest.param('10.20.1.5 [15/Jul/2024:09:10:11 UTC] TCP 200 6120 2210 30.021 "-" "api.openai.com"', "bad timestamp", id="bad-time"),
    pytest.param("", NOT_A_RECORD, id="empty"),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        nginx_stream.parse(line, LOC)
    assert reason in str(info.value)


SNIFF = [
    pytest.param(f'10.20.1.5 {T} TCP 200 6120 2210 30.021 "162.159.140.245:443" "api.openai.com"', True, id="record"),
    pytest.param(f"10.20.1.5 {T} UDP 200 120 60 0.012", True, id="basic"),
    pytest.param(f'10.20.1.5 - - {T} "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"', False, id="combined"),
    pytest.param("2024/07/15 09:10:21 [error] 1201#1201: *77 upstream timed out", False, id="error-log"),
    pytest.param("", False, id="empty"),
]


@pytest.mark.parametrize("line, expected", SNIFF)
def test_sniff(line: str, expected: bool) -> None:
    assert nginx_stream.sniff(line) is expected


# tests/data/logs/nginx-stream.log, line by line (see the README there).
SAMPLE_EVENTS = {
    1: ev("api.openai.com", "10.20.1.5", OPENAI, 443, 200, "2024-07-15 09:10:11"),
    3: ev("eu.api.openai.com", "10.30.2.7", OPENAI, 443, 200, "2024-07-15 09:10:13"),
    5: ev("api.openai.com", "10.20.1.5", OPENAI, 443, 502, "2024-07-15 09:10:15"),
    6: ev("api.openai.com", "2001:db8:10::25", "2606:4700::6812:1a2b", 443, 200, "2024-07-15 09:10:16"),
    7: ev("api.openai.com.evil.example", "10.20.1.5", "203.0.113.66", 443, 200, "2024-07-15 09:10:17"),
    9: ev("api.openai.com", "10.20.1.5", OPENAI, 443, 200, "2024-07-15 09:10:19"),
}


def test_sample_file() -> None:
    path = asset("logs/nginx-stream.log")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == "nginx-stream"
    assert {line_no(e): fields(e) for e in events} == SAMPLE_EVENTS
    stats = log.stats
    assert (stats.candidates, stats.events) == (11, 6)
    assert dict(stats.ignored) == {"denied by the proxy": 1, nginx_stream.NO_NAME: 1}  # lines 4, 10
    assert stats.locations == {
        NOT_A_RECORD: [f"{path}:11", f"{path}:13"],
        "nginx-stream: a quoted field without its closing quote (line cut short?)": [f"{path}:12"],
    }
    assert {line_no(e) for e in events if POLICIES.for_host(e.server_name) is None} == {7}
