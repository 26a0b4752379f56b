"""Envoy access logs: the default text format, Istio's, JSON, and the Kubernetes container-log prefix."""

from __future__ import annotations

import json

import pytest

from auditor.redact import redact
from auditor.sources import envoy
from auditor.sources.interface import Ignored, Malformed
from tests.conftest import asset
from tests.sources.helpers import POLICIES, assert_redacted, fields, line_no, read_all, utc

LOC = "envoy.log:9"
OPENAI = "162.159.140.245"
NOT_TEXT = "envoy: not '[START_TIME] \"METHOD PATH PROTOCOL\" CODE FLAGS ...'"
FEWER = "envoy: fewer than the five quoted fields of the default format"
RID = '"4f2c1a9e-1b7d-4c1e-9a51-0c6e2f3d4b5a"'


def ev(server_name: str, orig_h: str, resp_h: str, resp_p: int, method: str, status: int, ts: str = "2024-07-15 09:10:11.123") -> dict[str, object]:
    return {"server_name": server_name, "orig_h": orig_h, "resp_h": resp_h, "resp_p": resp_p, "method": method, "status": status, "ts": utc(ts)}


def default(
    request: str = "POST /v1/chat/completions HTTP/1.1",
    code: str = "200",
    flags: str = "-",
    xff: str = "10.20.1.5",
    authority: str = "api.openai.com",
    upstream: str = "162.159.140.245:443",
) -> str:
    return f'[2024-07-15T09:10:11.123Z] "{request}" {code} {flags} 812 2210 141 140 "{xff}" "OpenAI/Python 1.35.3" {RID} "{authority}" "{upstream}"'


ISTIO_TCP = (
    '[2024-07-15T09:10:11.123Z] "- - -" 0 - - - "-" 2210 6120 30021 - "-" "-" "-" "-" "162.159.140.245:443" '
    "outbound|443||api.openai.com 10.44.0.17:40122 10.44.0.17:443 10.44.1.23:51012 api.openai.com -"
)
ISTIO_HTTP = (
    '[2024-07-15T09:10:11.123Z] "POST /v1/chat/completions HTTP/1.1" 200 - via_upstream - "-" 812 2210 141 140 "10.44.1.23" "OpenAI/Python 1.35.3" '
    f'{RID} "api.openai.com" "162.159.140.245:443" outbound|443||api.openai.com 10.44.0.17:40124 10.44.0.17:8080 10.44.1.23:51013 - default'
)
CALL = ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200)

PARSED = [
    pytest.param(default(), CALL, id="default"),
    pytest.param(
        default(request="CONNECT - HTTP/1.1", xff="-", authority="api.openai.com:443"),
        ev("api.openai.com", "", OPENAI, 443, "CONNECT", 200),
        id="connect",
    ),
    pytest.param(
        default(xff="10.30.2.7, 198.51.100.20", authority="eu.api.openai.com"),
        ev("eu.api.openai.com", "10.30.2.7", OPENAI, 443, "POST", 200),
        id="xff-list-first-wins",
    ),
    pytest.param(
        default(xff="2001:db8:10::25", upstream="[2606:4700::6812:1a2b]:443"),
        ev("api.openai.com", "2001:db8:10::25", "2606:4700::6812:1a2b", 443, "POST", 200),
        id="ipv6",
    ),
    pytest.param(default(xff="[2001:db8:10::25]"), ev("api.openai.com", "2001:db8:10::25", OPENAI, 443, "POST", 200), id="bracketed-ipv6-xff"),
    pytest.param(default(upstream="tcp://162.159.140.245:443"), CALL, id="upstream-with-scheme"),
    pytest.param(default(upstream="-"), ev("api.openai.com", "10.20.1.5", "", 0, "POST", 200), id="no-upstream"),
    pytest.param(
        default(code="503", flags="UF,URX"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 503), id="upstream-failure-is-an-attempt"
    ),
    pytest.param(default(code="403"), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 403), id="provider-403"),
    pytest.param(
        default(authority="API.OpenAI.com:8443"), ev("api.openai.com", "10.20.1.5", OPENAI, 8443, "POST", 200), id="authority-port-and-case"
    ),
    pytest.param(
        default(authority="api.openai.com.evil.example", upstream="203.0.113.66:443"),
        ev("api.openai.com.evil.example", "10.20.1.5", "203.0.113.66", 443, "POST", 200),
        id="decoy",
    ),
    pytest.param(ISTIO_TCP, ev("api.openai.com", "10.44.1.23", OPENAI, 443, "", 0), id="istio-tls-passthrough-named-by-sni"),
    pytest.param(ISTIO_HTTP, ev("api.openai.com", "10.44.1.23", OPENAI, 443, "POST", 200), id="istio-http"),
]


@pytest.mark.parametrize("line, expected", PARSED)
def test_parse_text(line: str, expected: dict[str, object]) -> None:
    assert envoy.sniff(line)
    event = envoy.parse(line, LOC)
    assert fields(event) == expected
    assert (event.source, event.raw) == (LOC, line)


def js(**record: object) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


ISTIO_JSON = {
    "start_time": "2024-07-15T09:10:11.123Z",
    "method": "POST",
    "path": "/v1/chat/completions",
    "protocol": "HTTP/1.1",
    "response_code": 200,
    "response_flags": "-",
    "x_forwarded_for": "10.20.1.5",
    "authority": "api.openai.com",
    "upstream_host": "162.159.140.245:443",
    "upstream_cluster": "outbound|443||api.openai.com",
    "downstream_remote_address": "10.44.1.23:51012",
    "requested_server_name": None,
}
PARSED_JSON = [
    pytest.param(js(**ISTIO_JSON), CALL, id="istio-keys"),
    pytest.param(
        js(**ISTIO_JSON | {"x_forwarded_for": None}), ev("api.openai.com", "10.44.1.23", OPENAI, 443, "POST", 200), id="no-xff-downstream-wins"
    ),
    pytest.param(
        js(
            **ISTIO_JSON | {"authority": None, "method": None, "response_code": 0, "requested_server_name": "api.openai.com", "x_forwarded_for": None}
        ),
        ev("api.openai.com", "10.44.1.23", OPENAI, 443, "", 0),
        id="tls-passthrough-sni",
    ),
    pytest.param(
        js(
            **{
                ":authority": "api.openai.com",
                "start_time": "2024-07-15T09:10:11.123Z",
                "method": "GET",
                "response_code": 200,
                "response_flags": "-",
                "x-forwarded-for": "10.30.2.7",
                "downstream_remote_address": "10.42.0.9:59292",
                "upstream_host": "162.159.140.245:443",
            }
        ),
        ev("api.openai.com", "10.30.2.7", OPENAI, 443, "GET", 200),
        id="envoy-gateway-keys",
    ),
    pytest.param(js(**ISTIO_JSON | {"response_code": "403"}), ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 403), id="code-as-string"),
]


@pytest.mark.parametrize("line, expected", PARSED_JSON)
def test_parse_json(line: str, expected: dict[str, object]) -> None:
    assert envoy.sniff(line)
    assert fields(envoy.parse(line, LOC)) == expected


IGNORED = [
    pytest.param(default(code="404", flags="NR", upstream="-"), "not forwarded by the proxy (response flag NR)", id="no-route"),
    pytest.param(default(code="503", flags="UH", upstream="-"), "not forwarded by the proxy (response flag UH)", id="no-healthy-upstream"),
    pytest.param(default(code="403", flags="UAEX", upstream="-"), "(response flag UAEX)", id="ext-authz-denied"),
    pytest.param(default(code="429", flags="RL", upstream="-"), "(response flag RL)", id="rate-limited"),
    pytest.param(default(code="503", flags="DF,UH", upstream="-"), "(response flag DF)", id="dns-failure"),
    pytest.param(
        '[2024-07-15T09:10:19.000Z] "- - -" 0 - 517 5120 30021 - "-" "-" "-" "-" "162.159.140.245:443"',
        "request names no host",
        id="tcp-proxy-default-format",
    ),
    pytest.param(
        '[2024-07-15T09:10:13.500Z] "- - -" 0 UH - - "-" 0 0 0 - "-" "-" "-" "-" "-" BlackHoleCluster - 162.159.140.245:443 10.44.1.24:51014 api.openai.com -',
        "(response flag UH)",
        id="istio-blackhole",
    ),
    pytest.param(js(**ISTIO_JSON | {"response_flags": "NR"}), "(response flag NR)", id="json-no-route"),
    pytest.param(js(**ISTIO_JSON | {"authority": "-"}), "request names no host", id="json-no-authority"),
]


@pytest.mark.parametrize("line, reason", IGNORED)
def test_ignored(line: str, reason: str) -> None:
    with pytest.raises(Ignored) as info:
        envoy.parse(line, LOC)
    assert reason in str(info.value)


MALFORMED = [
    pytest.param(
        '10.20.1.5 - - [15/Jul/2024:09:10:21 +0000] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"', NOT_TEXT, id="combined-line"
    ),
    pytest.param(default()[:-25], FEWER, id="truncated"),
    pytest.param(default().replace("2024-07-15T09:10:11.123Z", "2024-07-15T25:10:11.123Z"), "bad timestamp", id="bad-time"),
    pytest.param(default(authority="api.openai.com:0"), "bad port", id="bad-port"),
    pytest.param("\x00\x00\ufffd( [2024-07-15T09:10:23.000Z] api.openai.com \ufffd", NOT_TEXT, id="binary-junk"),
    pytest.param(
        '{"start_time":"2024-07-15T09:10:17.000Z","authority":"api.openai.com","upstream_host":"162.1', "envoy: not JSON", id="truncated-json"
    ),
    pytest.param(
        js(timestamp="2024-07-15T09:10:18.000000+0000", event_type="tls", tls={"sni": "api.openai.com"}), "envoy: no 'start_time'", id="other-json"
    ),
    pytest.param("[1, 2]", NOT_TEXT, id="json-array"),
    pytest.param("", NOT_TEXT, id="empty"),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        envoy.parse(line, LOC)
    assert reason in str(info.value)


SNIFF = [
    pytest.param(default(), True, id="default"),
    pytest.param(ISTIO_TCP, True, id="istio"),
    pytest.param(js(**ISTIO_JSON), True, id="json"),
    pytest.param(js(upstream_host="x", start_time="y"), False, id="json-one-key"),
    pytest.param(js(timestamp="2024", event_type="tls", src_ip="10.0.0.1"), False, id="suricata"),
    pytest.param('10.20.1.5 - - [15/Jul/2024:09:10:21 +0000] "GET / HTTP/1.1" 200 5 "-" "-"', False, id="combined"),
    pytest.param("", False, id="empty"),
]


@pytest.mark.parametrize("line, expected", SNIFF)
def test_sniff(line: str, expected: bool) -> None:
    assert envoy.sniff(line) is expected


def test_logged_authorization_header_is_redacted() -> None:
    secret = "sk-proj-Xk3v9QaZ8mT2LwR7pN4cY1uB6eHdJfGs"
    basic = js(**ISTIO_JSON | {"authorization": "Basic YWxpY2U6czNjcmV0LXBhc3M="})
    assert_redacted(envoy.parse(basic, LOC).raw, ["YWxpY2U6czNjcmV0LXBhc3M"], ['"authorization":"[REDACTED]"', '"authority":"api.openai.com"'])
    bearer = js(**ISTIO_JSON | {"authorization": f"Bearer {secret}"})
    assert_redacted(envoy.parse(bearer, LOC).raw, [secret], ['"authorization":"[REDACTED]"'])


# tests/data/logs/envoy-access.log, envoy-istio.log and envoy-access.json, line by line.
SAMPLES = {
    # name: (events by line, candidates, ignored, malformed lines by reason)
    "envoy-access.log": (
        {
            1: ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200),
            2: ev("api.openai.com", "", OPENAI, 443, "CONNECT", 200, "2024-07-15 09:10:12.004"),
            5: ev("eu.api.openai.com", "10.30.2.7", OPENAI, 443, "GET", 200, "2024-07-15 09:10:15.020"),
            6: ev("api.openai.com", "2001:db8:10::25", "2606:4700::6812:1a2b", 443, "GET", 200, "2024-07-15 09:10:16.020"),
            7: ev("api.openai.com.evil.example", "10.20.1.5", "203.0.113.66", 443, "GET", 200, "2024-07-15 09:10:17"),
            8: ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 503, "2024-07-15 09:10:18"),
            10: ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 403, "2024-07-15 09:10:20"),
            14: ev("api.openai.com", "", OPENAI, 443, "GET", 200, "2024-07-15 09:10:24"),
        },
        13,
        {"not forwarded by the proxy (response flag UH)": 1, "not forwarded by the proxy (response flag NR)": 1},
        {NOT_TEXT: [11, 13], FEWER: [12]},
    ),
    "envoy-istio.log": (
        {
            1: ev("api.openai.com", "10.44.1.23", OPENAI, 443, "", 0),
            2: ev("api.openai.com", "10.44.1.23", OPENAI, 443, "POST", 200, "2024-07-15 09:10:12.004"),
            4: ev("api.openai.com", "10.44.1.23", OPENAI, 443, "GET", 503, "2024-07-15 09:10:14"),
            5: ev("api.openai.com.evil.example", "10.44.1.23", "203.0.113.66", 443, "", 0, "2024-07-15 09:10:15"),
            6: ev("api.openai.com", "10.44.1.23", OPENAI, 443, "POST", 200, "2024-07-15 09:10:16"),  # a `P` part and its `F` part, joined
        },
        6,
        {"not forwarded by the proxy (response flag UH)": 1},
        {},
    ),
    "envoy-access.json": (
        {
            1: ev("api.openai.com", "10.20.1.5", OPENAI, 443, "POST", 200),
            2: ev("api.openai.com", "10.44.1.23", OPENAI, 443, "", 0, "2024-07-15 09:10:12.004"),
            3: ev("api.openai.com", "10.30.2.7", OPENAI, 443, "GET", 200, "2024-07-15 09:10:13.250"),
            4: ev("api.openai.com", "10.44.1.23", OPENAI, 443, "POST", 200, "2024-07-15 09:10:14.500"),
            6: ev("api.openai.com.evil.example", "10.44.1.23", "203.0.113.66", 443, "GET", 200, "2024-07-15 09:10:16"),
        },
        9,
        {"not forwarded by the proxy (response flag NR)": 1},
        {"envoy: not JSON (Unterminated string starting at)": [7], "envoy: no 'start_time'": [8], NOT_TEXT: [9]},
    ),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_file(name: str) -> None:
    expected, candidates, ignored, malformed = SAMPLES[name]
    path = asset(f"logs/{name}")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == ("envoy+cri" if name == "envoy-istio.log" else "envoy")  # the kubelet's prefix
    assert {line_no(e): fields(e) for e in events} == expected
    assert (log.stats.candidates, dict(log.stats.ignored)) == (candidates, ignored)
    assert log.stats.locations == {reason: [f"{path}:{n}" for n in lines] for reason, lines in malformed.items()}
    assert all(POLICIES.for_host(e.server_name) is None for e in events if "evil" in e.server_name)


def test_json_sample_raw_redacts_clean() -> None:
    _, events = read_all(asset("logs/envoy-access.json"))
    raw = next(e.raw for e in events if line_no(e) == 4)
    assert "sk-proj-" in raw and "sk-proj-" not in redact(raw) and '"authorization":"[REDACTED]"' in redact(raw)
