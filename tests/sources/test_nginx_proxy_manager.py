"""Nginx Proxy Manager `proxy` and `standard` access-log records, as tables.

The formats are NPM's `log_format proxy` and `log_format standard` (see
auditor/sources/nginx_proxy_manager.py); `$time_local` is `15/Jul/2024:09:10:xx +0000`.
"""

from __future__ import annotations

import time

import pytest

from auditor.sources import nginx_proxy_manager as npm
from auditor.sources.interface import Ignored, Malformed
from tests.conftest import asset
from tests.sources.helpers import POLICIES, fields, line_no, read_all, utc

LOC = "proxy-host-1_access.log:2"
T = "[15/Jul/2024:09:10:11 +0000]"
OPENAI = "162.159.140.245"
TAIL = '[Length 1543] [Gzip -] [Sent-to 162.159.140.245:443] "OpenAI/Python 1.35.3" "-"'


def ev(server_name: str, orig_h: str, resp_h: str, resp_p: int, method: str, status: int, ts: str = "2024-07-15 09:10:11") -> dict[str, object]:
    return {"server_name": server_name, "orig_h": orig_h, "resp_h": resp_h, "resp_p": resp_p, "method": method, "status": status, "ts": utc(ts)}


def proxy(
    upstream: str = "200",
    status: str = "200",
    cache: str = "-",
    host: str = "api.openai.com",
    client: str = "10.20.1.5",
    sent_to: str = "162.159.140.245:443",
    scheme: str = "https",
    method: str = "POST",
    uri: str = "/v1/chat/completions",
) -> str:
    return (
        f'{T} {cache} {upstream} {status} - {method} {scheme} {host} "{uri}" [Client {client}] [Length 1543] [Gzip -] [Sent-to {sent_to}] '
        '"OpenAI/Python 1.35.3" "-"'
    )


def standard(status: str = "301", host: str = "api.openai.com", scheme: str = "http") -> str:
    return f'{T} {status} - GET {scheme} {host} "/v1/models" [Client 10.20.1.5] [Length 169] [Gzip -] "curl/8.5.0" "-"'


PARSED = [
    pytest.param(proxy(), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200), id="proxy-record"),
    pytest.param(proxy(cache="MISS", method="GET"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "GET", 200), id="cache-miss"),
    pytest.param(proxy(cache="EXPIRED"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200), id="cache-expired"),
    pytest.param(proxy(cache="BYPASS"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200), id="cache-bypass"),
    pytest.param(proxy(cache="REVALIDATED", upstream="304"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200), id="cache-revalidated-304"),
    pytest.param(
        proxy(cache="STALE", upstream="502", status="200"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200), id="cache-stale-after-502"
    ),
    pytest.param(proxy(upstream="502, 200"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200), id="retried-upstreams"),
    pytest.param(proxy(upstream="504, - : 200"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200), id="internal-redirect-and-no-answer"),
    pytest.param(proxy(upstream="403", status="403"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 403), id="upstream-403"),
    pytest.param(proxy(upstream="502", status="502"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 502), id="upstream-failed-502"),
    pytest.param(proxy(client="2001:db8:10::25"), ev("api.openai.com", "2001:db8:10::25", OPENAI, 443, "POST", 200), id="ipv6-client"),
    pytest.param(proxy(sent_to="api.openai.com"), ev("api.openai.com", "10.20.1.5", "", 0, "POST", 200), id="sent-to-name"),
    pytest.param(
        proxy(host="openai.corp.example", sent_to="API.OpenAI.com."),
        ev("api.openai.com", "10.20.1.5", "", 0, "POST", 200),
        id="relay-host-forwards-to-provider",
    ),
    pytest.param(proxy(sent_to="litellm"), ev("api.openai.com", "10.20.1.5", "", 0, "POST", 200), id="forwarded-to-a-container-that-passes-it-on"),
    pytest.param(
        proxy(host="openai.corp.example", sent_to="litellm"), ev("openai.corp.example", "10.20.1.5", "", 0, "POST", 200), id="relay-to-a-container"
    ),
    pytest.param(proxy(sent_to="openai-upstream:8443"), ev("api.openai.com", "10.20.1.5", "", 8443, "POST", 200), id="container-name-and-port"),
    pytest.param(
        proxy(sent_to="openai.internal.example:8443"), ev("openai.internal.example", "10.20.1.5", "", 8443, "POST", 200), id="dns-name-and-port"
    ),
    pytest.param(proxy(sent_to="162.159.140.245"), ev("api.openai.com", "10.20.1.5", OPENAI, 0, "POST", 200), id="sent-to-address-port-unknown"),
    pytest.param(proxy(sent_to="162.159.140.245:8443"), ev("api.openai.com", "10.20.1.5", OPENAI, 8443, "POST", 200), id="sent-to-address-port"),
    pytest.param(
        proxy(sent_to="[2606:4700::6812:1a2b]:443"), ev("api.openai.com", "10.20.1.5", "2606:4700::6812:1a2b", 443, "POST", 200), id="sent-to-ipv6"
    ),
    pytest.param(proxy(sent_to="-"), ev("api.openai.com", "10.20.1.5", "", 0, "POST", 200), id="sent-to-empty"),
    pytest.param(proxy(host="API.OpenAI.com."), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200), id="upper-case-fqdn-host"),
    pytest.param(proxy(method="-"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "", 200), id="no-method"),
    pytest.param(
        proxy(uri="/v1/files?purpose=\\x22fine-tune\\x22&after=\\x5C"),
        ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200),
        id="x22-escaped-quotes-in-uri",
    ),
    pytest.param(
        '[15/Jul/2024:11:10:11 +0200] - 200 200 - POST https api.openai.com "/v1/chat/completions" [Client 10.20.1.5] ' + TAIL,
        ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200),
        id="local-time-offset",
    ),
    pytest.param(
        proxy(host="api.openai.com.evil.example", sent_to="203.0.113.66:443"),
        ev("api.openai.com.evil.example", "10.20.1.5", "203.0.113.66", 443, "POST", 200),
        id="decoy",
    ),
]


@pytest.mark.parametrize("line, expected", PARSED)
def test_parse(line: str, expected: dict[str, object]) -> None:
    assert npm.sniff(line)
    event = npm.parse(line, LOC)
    assert fields(event) == expected
    assert (event.source, event.raw, event.proto) == (LOC, line, "tcp")


def test_combined_line_is_read_as_combined() -> None:
    line = '10.20.1.5 - - [15/Jul/2024:09:10:11 +0000] "GET http://api.openai.com/v1/models HTTP/1.1" 200 2210 "-" "curl/8.5.0"'
    assert not npm.sniff(line)
    assert fields(npm.parse(line, LOC)) == ev("api.openai.com", "10.20.1.5", "", 80, "GET", 200)


IGNORED = [
    pytest.param(proxy(upstream="-", status="403", cache="-"), npm.NO_UPSTREAM, id="access-list-403"),
    pytest.param(proxy(upstream="-", status="301", scheme="http"), npm.NO_UPSTREAM, id="forced-ssl-redirect"),
    pytest.param(proxy(upstream="-", status="444", host="_", sent_to="-"), npm.NO_UPSTREAM, id="default-server-444"),
    pytest.param(proxy(upstream="-", cache="HIT"), npm.NO_UPSTREAM, id="cache-hit"),
    pytest.param(proxy(host="-"), "request names no host", id="no-host"),
    pytest.param(proxy(host="_"), "request names no host", id="underscore-host"),
    pytest.param(standard(), npm.STANDARD, id="redirection-host-301"),
    pytest.param(standard(status="404", scheme="https"), npm.STANDARD, id="404-host"),
    pytest.param(standard(status="444", host="_"), npm.STANDARD, id="default-host-444"),
    pytest.param(
        '2022/01/24 16:33:06 [error] 334#334: *338 user "toto": password mismatch, client: 10.20.1.5, server: api.openai.com, request: "GET / HTTP/1.1", host: "api.openai.com"',
        npm.ERROR_LOG,
        id="error-log-line",
    ),
    pytest.param("2024/07/15 09:10:21 [warn] 1#1: *9 an upstream response is buffered to a temporary file", npm.ERROR_LOG, id="error-log-warn"),
    pytest.param(
        '10.20.1.5 - - [15/Jul/2024:09:10:11 +0000] "GET /v1/models HTTP/1.1" 404 552 "https://api.openai.com/" "curl/8.5.0"',
        "request names no host",
        id="combined-relative",
    ),
]


@pytest.mark.parametrize("line, reason", IGNORED)
def test_ignored(line: str, reason: str) -> None:
    with pytest.raises(Ignored) as info:
        npm.parse(line, LOC)
    assert reason in str(info.value)


MALFORMED = [
    pytest.param(f'{T} MISS 200 200 - POST https api.openai.com "/v1/chat/comp', npm.NOT_A_RECORD, id="cut-in-uri"),
    pytest.param(f"{T} MISS 404 404 - GET https", npm.NOT_A_RECORD, id="cut-after-scheme"),
    pytest.param(proxy()[:-1], npm.NOT_A_RECORD, id="cut-before-last-quote"),
    pytest.param(proxy() + " extra", npm.NOT_A_RECORD, id="trailing-field"),
    pytest.param(proxy(upstream="2OO"), npm.NOT_A_RECORD, id="bad-upstream-status"),
    pytest.param(proxy(scheme="ftp"), npm.NOT_A_RECORD, id="bad-scheme"),
    pytest.param(standard().replace(" [Gzip -]", ""), npm.NOT_A_RECORD, id="standard-without-gzip"),
    pytest.param(proxy().replace("[15/Jul/2024:09:10:11 +0000]", "[15/Jul/2024:09:10:11 UTC]"), "bad timestamp", id="bad-time"),
    pytest.param(proxy(host="api.openai.com:x"), "bad port", id="bad-host-port"),
    pytest.param(f'10.20.1.5 {T} TCP 200 6120 2210 30.021 "162.159.140.245:443" "api.openai.com"', npm.NOT_A_RECORD, id="nginx-stream-line"),
    pytest.param("\x16\x03\x01\x00\ufffd\x01\x00\x00 api.openai.com \ufffd", npm.NOT_A_RECORD, id="binary-junk"),
    pytest.param("", npm.NOT_A_RECORD, id="empty"),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        npm.parse(line, LOC)
    assert reason in str(info.value)


SNIFF = [
    pytest.param(proxy(), True, id="proxy"),
    pytest.param(proxy(upstream="-", cache="HIT"), True, id="proxy-no-upstream"),
    pytest.param(standard(), True, id="standard"),
    pytest.param(f'{T} MISS 200 200 - POST https api.openai.com "/v1/chat/comp', False, id="cut-short"),
    pytest.param('10.20.1.5 - - [15/Jul/2024:09:10:11 +0000] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"', False, id="combined"),
    pytest.param(
        'api.openai.com 10.20.1.5 - - [15/Jul/2024:09:10:11 +0000] "GET /v1/models HTTP/1.1" 200 5120 "-" "curl/8.5.0"', False, id="vhost-combined"
    ),
    pytest.param(
        '[2024-07-15T09:10:11.123Z] "POST /v1/chat/completions HTTP/1.1" 200 - 0 1820 412 410 "-" "curl/8.5.0" "id" "api.openai.com" "162.159.140.245:443"',
        False,
        id="envoy",
    ),
    pytest.param("2022/01/24 16:33:06 [error] 334#334: *338 user not found", False, id="error-log"),
    pytest.param("", False, id="empty"),
]


@pytest.mark.parametrize("line, expected", SNIFF)
def test_sniff(line: str, expected: bool) -> None:
    assert npm.sniff(line) is expected


@pytest.mark.parametrize(
    "line",
    [
        f"{T} - " + "200, " * 20_000 + "200 - GET https api.openai.com",
        f"{T} - 200 200 - GET https api.openai.com " + '"' + "\\x22" * 20_000,
        f'{T} - 200 200 - GET https api.openai.com "/" [Client 10.20.1.5] [Length 1] [Gzip -] [Sent-to ' + "[" * 20_000,
        "[" * 20_000 + " ] " * 5_000,
    ],
    ids=["long-upstream-list", "unclosed-escapes", "brackets-in-sent-to", "brackets"],
)
def test_damaged_long_lines_are_malformed_quickly(line: str) -> None:
    started = time.monotonic()
    assert not npm.sniff(line)
    with pytest.raises(Malformed):
        npm.parse(line, LOC)
    assert time.monotonic() - started < 1.0


# tests/data/logs/nginx-proxy-manager.log, line by line (see the README there).
SAMPLE_EVENTS = {
    1: ev("api.openai.com", "10.20.1.5", OPENAI, 0, "POST", 200, "2024-07-15 09:10:11"),
    2: ev("api.openai.com", "10.30.2.7", "", 0, "GET", 200, "2024-07-15 09:10:12"),
    5: ev("api.openai.com", "2001:db8:10::25", OPENAI, 0, "POST", 200, "2024-07-15 09:10:15"),
    6: ev("api.openai.com", "10.30.2.7", OPENAI, 0, "POST", 403, "2024-07-15 09:10:16"),
    8: ev("api.openai.com.evil.example", "10.20.1.5", "203.0.113.66", 0, "GET", 200, "2024-07-15 09:10:18"),
    12: ev("api.openai.com", "10.20.1.5", "", 80, "GET", 200, "2024-07-15 09:10:22"),
    14: ev("api.openai.com", "10.30.2.7", OPENAI, 0, "GET", 200, "2024-07-15 09:10:24"),
    15: ev("api.openai.com", "10.20.1.5", OPENAI, 0, "GET", 200, "2024-07-15 09:10:25"),
    16: ev("api.openai.com", "10.30.2.7", OPENAI, 0, "POST", 200, "2024-07-15 09:10:26"),
}


def test_sample_file() -> None:
    path = asset("logs/nginx-proxy-manager.log")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == "nginx-proxy-manager"
    assert {line_no(e): fields(e) for e in events} == SAMPLE_EVENTS
    stats = log.stats
    assert (stats.lines, stats.candidates, stats.events) == (16, 15, 9)  # line 3 (github.com) names no governed host
    assert dict(stats.ignored) == {npm.NO_UPSTREAM: 2, npm.STANDARD: 2, npm.ERROR_LOG: 1}  # lines 4, 7; 9, 10; 11
    assert stats.locations == {npm.NOT_A_RECORD: [f"{path}:13"]}
    assert {line_no(e) for e in events if POLICIES.for_host(e.server_name) is None} == {8}
