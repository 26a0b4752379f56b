"""Cloudflare Logpush http_requests records: a Worker subrequest leaves from its colo, any other
request from its ClientIP; and through the pipeline, the colo is located through the region table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditor.attribution import Attributor
from auditor.config import Config, SourceConfig
from auditor.pipeline import Auditor
from auditor.redact import redact
from auditor.sources import cloudflare
from auditor.sources.interface import Ignored, Malformed
from auditor.sources.logfile import LogFile
from geoip.chain import ChainLocator
from rules.policy import Outcome
from tests.conftest import asset
from tests.sources.helpers import NEEDLES, POLICIES, assert_redacted, fields, line_no, read_all, utc

LOC = "http_requests.ndjson:5"
OPENAI = "162.159.140.245"
NS = 1721034611_123000000  # 2024-07-15 09:10:11.123 UTC in nanoseconds


def cf(**extra: Any) -> str:
    record: dict[str, Any] = {
        "ClientIP": "198.51.100.20",
        "ClientRequestHost": "api.openai.com",
        "ClientRequestMethod": "POST",
        "ClientRequestURI": "/v1/chat/completions",
        "ClientRequestScheme": "https",
        "ClientRequestSource": "edgeWorkerFetch",
        "EdgeColoCode": "HKG",
        "EdgeResponseStatus": 200,
        "EdgeStartTimestamp": NS,
        "OriginIP": OPENAI,
        "OriginResponseStatus": 200,
        "ParentRayID": "8a1b2c3d4e5f6a7b",
        "RayID": "8a1b2c3d4f0a1b2c",
        "WorkerSubrequest": True,
    }
    record.update(extra)
    return json.dumps({k: v for k, v in record.items() if v is not None}, separators=(",", ":"))


def ev(server_name: str, orig_h: str, resp_h: str, resp_p: int, method: str, status: int, ts: str = "2024-07-15 09:10:11.123") -> dict[str, object]:
    return {"server_name": server_name, "orig_h": orig_h, "resp_h": resp_h, "resp_p": resp_p, "method": method, "status": status, "ts": utc(ts)}


SUB = ev("api.openai.com", "", OPENAI, 443, "POST", 200)
PARSED = [
    pytest.param(cf(), SUB, "cloudflare:hkg", id="worker-subrequest"),
    pytest.param(cf(WorkerSubrequest=None), SUB, "cloudflare:hkg", id="client-request-source-only"),
    pytest.param(cf(ClientRequestSource=None), SUB, "cloudflare:hkg", id="worker-subrequest-flag-only"),
    pytest.param(cf(EdgeColoCode=None, RayID="8a1b2c3d4f0a1b2c-SIN"), SUB, "cloudflare:sin", id="colo-from-ray-id-suffix"),
    pytest.param(cf(EdgeColoCode=None), SUB, "", id="no-colo-field"),
    pytest.param(
        cf(EdgeStartTimestamp=NS // 1_000_000_000),
        ev("api.openai.com", "", OPENAI, 443, "POST", 200, "2024-07-15 09:10:11"),
        "cloudflare:hkg",
        id="unix-seconds",
    ),
    pytest.param(
        cf(EdgeStartTimestamp="2024-07-15T09:10:11Z"),
        ev("api.openai.com", "", OPENAI, 443, "POST", 200, "2024-07-15 09:10:11"),
        "cloudflare:hkg",
        id="rfc3339",
    ),
    pytest.param(cf(EdgeStartTimestamp=NS // 1_000_000), SUB, "cloudflare:hkg", id="unix-milliseconds"),
    pytest.param(
        cf(EdgeResponseStatus=403, OriginResponseStatus=403), ev("api.openai.com", "", OPENAI, 443, "POST", 403), "cloudflare:hkg", id="provider-403"
    ),
    pytest.param(
        cf(EdgeResponseStatus=None, OriginResponseStatus=502),
        ev("api.openai.com", "", OPENAI, 443, "POST", 502),
        "cloudflare:hkg",
        id="origin-status-fallback",
    ),
    pytest.param(
        cf(ClientRequestHost="API.OpenAI.com:8443"), ev("api.openai.com", "", OPENAI, 8443, "POST", 200), "cloudflare:hkg", id="host-with-port"
    ),
    pytest.param(
        cf(WorkerSubrequest=False, ClientRequestSource="eyeball", ClientSrcPort=53000, ClientIP="2001:db8:20::7", OriginIP=""),
        ev("api.openai.com", "2001:db8:20::7", "", 443, "POST", 200),
        "",
        id="visitor-request-leaves-from-its-client",
    ),
    pytest.param(
        cf(
            WorkerSubrequest=False,
            ClientRequestSource="eyeball",
            ClientRequestHost="api.openai.com.evil.example",
            ClientRequestScheme="http",
            OriginIP="203.0.113.66",
        ),
        ev("api.openai.com.evil.example", "198.51.100.20", "203.0.113.66", 80, "POST", 200),
        "",
        id="decoy-zone",
    ),
]


@pytest.mark.parametrize("line, expected, region", PARSED)
def test_parse(line: str, expected: dict[str, object], region: str) -> None:
    assert cloudflare.sniff(line)
    event = cloudflare.parse(line, LOC)
    assert fields(event) == expected
    assert (event.egress_region, event.egress_h, event.source, event.raw) == (region, "", LOC, line)


IGNORED = [
    pytest.param(cf(ClientRequestHost=""), "request names no host", id="empty-host"),
    pytest.param(cf(ClientRequestHost=None), "request names no host", id="no-host-field"),
]


@pytest.mark.parametrize("line, reason", IGNORED)
def test_ignored(line: str, reason: str) -> None:
    with pytest.raises(Ignored, match=reason):
        cloudflare.parse(line, LOC)


MALFORMED = [
    pytest.param(cf()[:-40], "cloudflare: not JSON", id="truncated"),
    pytest.param(cf(EdgeStartTimestamp=None), "cloudflare: no 'EdgeStartTimestamp'", id="no-timestamp"),
    pytest.param(cf(EdgeStartTimestamp=True), "bad timestamp", id="boolean-timestamp"),
    pytest.param(cf(EdgeStartTimestamp="yesterday"), "bad timestamp", id="text-timestamp"),
    pytest.param(cf(ClientRequestHost="api.openai.com:https"), "bad port", id="bad-port"),
    pytest.param('["api.openai.com"]', "cloudflare: record is not a JSON object", id="array"),
    pytest.param(
        '{"deploymentId":"dpl_1","source":"external","timestamp":1721034619000,"projectId":"prj_1","destination":"https://api.openai.com/v1/chat/completions"}',
        "cloudflare: no 'EdgeStartTimestamp'",
        id="vercel-record",
    ),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        cloudflare.parse(line, LOC)
    assert reason in str(info.value)


SNIFF = [
    pytest.param(cf(), True, id="record"),
    pytest.param('{"ClientIP":"198.51.100.20","RayID":"8a1b"}', True, id="two-fields"),
    pytest.param('{"ClientIP":"198.51.100.20"}', False, id="one-field"),
    pytest.param('{"timestamp":"2024","event_type":"tls"}', False, id="suricata"),
    pytest.param("", False, id="empty"),
]


@pytest.mark.parametrize("line, expected", SNIFF)
def test_sniff(line: str, expected: bool) -> None:
    assert cloudflare.sniff(line) is expected


def test_request_headers_and_cookies_are_redacted() -> None:
    secret = "sk-proj-Xk3v9QaZ8mT2LwR7pN4cY1uB6eHdJfGs"
    line = cf(RequestHeaders={"authorization": "Basic YWxpY2U6czNjcmV0", "x-api-key": secret}, Cookies={"__cf_bm": "Zm9vYmFy", "session": "c2VjcmV0"})
    assert_redacted(
        cloudflare.parse(line, LOC).raw,
        ["YWxpY2U6czNjcmV0", secret, "Zm9vYmFy", "c2VjcmV0"],
        ['"authorization":"[REDACTED]"', '"x-api-key":"[REDACTED]"', '"Cookies":"[REDACTED]"', '"ClientRequestHost":"api.openai.com"'],
    )


# tests/data/logs/cloudflare-http_requests.ndjson, line by line (see the README there).
SAMPLE_EVENTS = {
    2: (ev("api.openai.com", "", OPENAI, 443, "POST", 200, "2024-07-15 09:10:11.150"), "cloudflare:hkg"),
    3: (ev("api.openai.com", "", OPENAI, 443, "POST", 200, "2024-07-15 09:10:12.004"), "cloudflare:sjc"),
    4: (ev("api.openai.com", "", OPENAI, 443, "POST", 403, "2024-07-15 09:10:13.250"), "cloudflare:hkg"),
    5: (ev("api.openai.com", "", OPENAI, 443, "GET", 200, "2024-07-15 09:10:14.500"), ""),
    6: (ev("api.openai.com.evil.example", "198.51.100.23", "203.0.113.66", 443, "GET", 200, "2024-07-15 09:10:15.020"), ""),
    7: (ev("api.openai.com", "", OPENAI, 443, "POST", 200, "2024-07-15 09:10:16"), "cloudflare:fra"),
    11: (ev("api.openai.com", "2001:db8:20::7", "", 443, "GET", 200, "2024-07-15 09:10:20"), ""),
}


def test_sample_file() -> None:
    path = asset("logs/cloudflare-http_requests.ndjson")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == "cloudflare"
    assert {line_no(e): (fields(e), e.egress_region) for e in events} == SAMPLE_EVENTS
    stats = log.stats
    assert (stats.lines, stats.candidates, dict(stats.ignored)) == (11, 10, {})
    assert stats.locations == {
        "cloudflare: not JSON (Unterminated string starting at)": [f"{path}:8"],
        "cloudflare: not JSON (Expecting value)": [f"{path}:9"],
        "cloudflare: no 'EdgeStartTimestamp'": [f"{path}:10"],
    }
    raw = next(e.raw for e in events if line_no(e) == 7)
    assert "sk-proj-" in raw and "sk-proj-" not in redact(raw) and "Zm9vYmFyYmF6cXV4" not in redact(raw)


def test_pipeline_locates_the_colo() -> None:
    path = asset("logs/cloudflare-http_requests.ndjson")
    auditor = Auditor(POLICIES, ChainLocator([]), Attributor(Config()))
    log = LogFile.open(str(path), NEEDLES)
    try:
        found = {line_no(f.event): f for f in auditor.audit(log.events(), SourceConfig(path=str(path)))}
    finally:
        log.close()
    got = {n: (f.egress.label, f.egress.basis, f.location.basis, f.location.country_code, f.verdict.outcome) for n, f in found.items()}
    assert got == {
        2: ("cloudflare:hkg", "event", "edge:cloudflare:hkg", "HK", Outcome.VIOLATION),
        3: ("cloudflare:sjc", "event", "edge:cloudflare:sjc", "US", Outcome.ALLOWED),
        4: ("cloudflare:hkg", "event", "edge:cloudflare:hkg", "HK", Outcome.VIOLATION),
        5: ("", "none", "no-egress", "", Outcome.UNKNOWN),  # a subrequest without its colo: never the visitor's address
        7: ("cloudflare:fra", "event", "edge:cloudflare:fra", "DE", Outcome.ALLOWED),
        11: ("", "none", "no-egress", "", Outcome.UNKNOWN),  # a visitor's own request: its client (here a documentation address, not public)
    }
    assert found[11].event.orig_h == "2001:db8:20::7"
    # The 403 carries no body in this dataset: a violation by location, not proof the provider refused it.
    assert not found[4].verdict.rule_id.endswith(":provider-blocked")
