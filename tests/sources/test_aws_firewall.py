"""AWS Network Firewall log records (alert events naming a host are calls; blocked alerts, flow and
TLS-log events are not), as tables, and the firewall's Region as the egress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.sources import aws_firewall as nfw
from auditor.sources.interface import Ignored, Malformed
from tests.conftest import asset
from tests.sources.helpers import POLICIES, fields, line_no, read_all, utc

LOC = "network-firewall_alert.log:3"
OPENAI = "162.159.140.245"
TLS = {"sni": "api.openai.com", "version": "TLS 1.3"}


def record(zone: Any = "ap-east-1a", **event: Any) -> str:
    """A record shaped as the firewall writes it: its fields, then the EVE event."""
    inner: dict[str, Any] = {
        "tx_id": 0,
        "app_proto": "tls",
        "src_ip": "10.20.1.5",
        "src_port": 51012,
        "event_type": "alert",
        "alert": {"severity": 3, "signature_id": 100001, "rev": 1, "signature": "egress TLS SNI", "action": "allowed", "category": ""},
        "flow_id": 1183848181573893,
        "dest_ip": OPENAI,
        "proto": "TCP",
        "tls": TLS,
        "dest_port": 443,
        "timestamp": "2024-07-15T09:10:11.345678+0000",
    }
    inner.update(event)
    outer = {
        "firewall_name": "egress-fw",
        "availability_zone": zone,
        "event_timestamp": "1721034611",
        "event": {k: v for k, v in inner.items() if v is not None},
    }
    return json.dumps(outer, separators=(",", ":"))


def ev(
    server_name: str = "api.openai.com",
    orig_h: str = "10.20.1.5",
    resp_h: str = OPENAI,
    resp_p: int = 443,
    method: str = "",
    status: int = 0,
    ts: str = "2024-07-15 09:10:11.345678",
) -> dict[str, object]:
    return {"server_name": server_name, "orig_h": orig_h, "resp_h": resp_h, "resp_p": resp_p, "method": method, "status": status, "ts": utc(ts)}


HTTP = {
    "hostname": "api.openai.com",
    "url": "/v1/models",
    "http_user_agent": "curl/8.5.0",
    "http_method": "GET",
    "protocol": "HTTP/1.1",
    "status": 401,
    "length": 0,
}
PARSED = [
    pytest.param(record(), ev(), "aws:ap-east-1", id="allowed-tls"),
    pytest.param(record("us-east-1b"), ev(), "aws:us-east-1", id="us-east-1"),
    pytest.param(record("us-gov-west-1a"), ev(), "aws:us-gov-west-1", id="govcloud"),
    pytest.param(record("cn-northwest-1c"), ev(), "aws:cn-northwest-1", id="china"),
    pytest.param(record("ape1-az1"), ev(), "", id="zone-id-names-no-region"),
    pytest.param(record(None), ev(), "", id="no-zone"),
    pytest.param(record(tls={"sni": "API.OpenAI.com.", "version": "UNDETERMINED"}), ev(), "aws:ap-east-1", id="sni-upper-case-fqdn"),
    pytest.param(record(tls_inspected=True), ev(), "aws:ap-east-1", id="tls-inspected"),
    pytest.param(record(timestamp=None), ev(ts="2024-07-15 09:10:11"), "aws:ap-east-1", id="event-timestamp-when-the-event-has-none"),
    pytest.param(record(app_proto="http", tls=None, http=HTTP, dest_port=80), ev(resp_p=80, method="GET", status=401), "aws:ap-east-1", id="http"),
    pytest.param(
        record(app_proto="http", tls=None, http={"url": "http://api.openai.com/v1/models", "http_method": "GET"}, dest_port=80),
        ev(resp_p=80, method="GET"),
        "aws:ap-east-1",
        id="http-absolute-url",
    ),
    pytest.param(
        record(src_ip="2600:1f14:aaa:bb00::25", dest_ip="2606:4700:0000:0000:0000:0000:6812:1a2b"),
        ev(orig_h="2600:1f14:aaa:bb00::25", resp_h="2606:4700::6812:1a2b"),
        "aws:ap-east-1",
        id="ipv6",
    ),
    pytest.param(
        record(alert={"action": "allowed"}, tls={"sni": "api.openai.com.evil.example"}, dest_ip="203.0.113.66"),
        ev("api.openai.com.evil.example", resp_h="203.0.113.66"),
        "aws:ap-east-1",
        id="decoy",
    ),
]


def test_a_record_exported_from_cloudwatch_logs_to_s3() -> None:
    # CloudWatch Logs' export task writes `<ISO time> <message>` per line: it was "not JSON".
    line = "2024-07-15T09:10:11.123Z " + record()
    assert nfw.sniff(line)
    event = nfw.parse(line, LOC)
    assert (fields(event), event.egress_region, event.raw) == (ev(), "aws:ap-east-1", line)


def test_a_cloudwatch_subscription_record_says_how_to_unwrap_it() -> None:
    import json

    envelope = json.dumps(
        {
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": "/aws/network-firewall/alert",
            "logStream": "egress-fw_alert_ap-east-1a_0",
            "subscriptionFilters": ["to-firehose"],
            "logEvents": [{"id": "378987", "timestamp": 1721034611123, "message": record()}],
        }
    )
    assert nfw.sniff(envelope)
    with pytest.raises(Malformed) as info:
        nfw.parse(envelope, LOC)
    assert str(info.value) == nfw.ENVELOPE
    assert "jq -c '.logEvents[].message | fromjson'" in nfw.ENVELOPE


@pytest.mark.parametrize("line, expected, region", PARSED)
def test_parse(line: str, expected: dict[str, object], region: str) -> None:
    assert nfw.sniff(line)
    event = nfw.parse(line, LOC)
    assert fields(event) == expected
    assert (event.egress_region, event.source, event.raw, event.proto) == (region, LOC, line, "tcp")


TLS_ERROR = (
    '{"firewall_name":"egress-fw","availability_zone":"us-east-1d","event_timestamp":1719943304,"event":{"timestamp":"2024-07-02T18:01:44.412778Z",'
    '"src_ip":"10.0.2.53","src_port":"59844","dest_ip":"10.0.1.27","dest_port":"443","sni":"-","tls_error":{"error_message":"Server name is not found in client hello."}}}'
)
REVOCATION = (
    '{"firewall_name":"egress-fw","availability_zone":"us-east-1d","event_timestamp":1719943305,"event":{"timestamp":"2024-07-02T18:01:45.101010Z",'
    '"src_ip":"10.0.2.53","src_port":"59845","dest_ip":"162.159.140.245","dest_port":"443","sni":"api.openai.com",'
    '"revocation_check":{"leaf_cert_fpr":"0a1b","status":"REVOKED","action":"DROP"}}}'
)
IGNORED = [
    pytest.param(record(alert={"action": "blocked", "signature_id": 2, "signature": "deny"}), nfw.BLOCKED, id="blocked"),
    pytest.param(record(tls=None, app_proto=None), nfw.NO_HOST, id="alert-without-metadata"),
    pytest.param(record(tls={"version": "UNDETERMINED"}), "TLS handshake without SNI", id="tls-without-sni"),
    pytest.param(record(event_type="netflow", alert=None, tls=None, netflow={"pkts": 14, "bytes": 2862}), "netflow event, not a call", id="netflow"),
    pytest.param(TLS_ERROR, nfw.TLS_LOG, id="tls-log-error"),
    pytest.param(REVOCATION, nfw.TLS_LOG, id="tls-log-revocation-check"),
]


@pytest.mark.parametrize("line, reason", IGNORED)
def test_ignored(line: str, reason: str) -> None:
    with pytest.raises(Ignored) as info:
        nfw.parse(line, LOC)
    assert reason in str(info.value)


MALFORMED = [
    pytest.param(record()[:-40], "not JSON", id="cut-short"),
    pytest.param('["egress-fw"]', "is not a JSON object", id="array"),
    pytest.param('{"firewall_name":"egress-fw","availability_zone":"ap-east-1a","event":"alert"}', "no 'event' object", id="event-not-an-object"),
    pytest.param(record(event_type=None), "no 'event_type'", id="no-event-type"),
    pytest.param(record(timestamp="15/Jul/2024"), "bad timestamp", id="bad-timestamp"),
    pytest.param(record(tls={"sni": "api.openai.com:x"}), "bad port", id="bad-sni"),
    pytest.param(
        '{"timestamp":"2024-07-15T09:10:25.123456+0000","event_type":"tls","src_ip":"10.20.1.5","tls":{"sni":"api.openai.com"}}',
        "no 'event' object",
        id="plain-suricata-line",
    ),
    pytest.param("\x16\x03\x01\x00\ufffd api.openai.com", "not JSON", id="binary-junk"),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        nfw.parse(line, LOC)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "line, expected",
    [
        pytest.param(record(), True, id="alert"),
        pytest.param(TLS_ERROR, True, id="tls-log"),
        pytest.param('{"timestamp":"2024-07-15T09:10:11Z","event_type":"tls","tls":{"sni":"api.openai.com"}}', False, id="suricata"),
        pytest.param('{"firewall_name":"egress-fw"}', False, id="no-event"),
        pytest.param("", False, id="empty"),
    ],
)
def test_sniff(line: str, expected: bool) -> None:
    assert nfw.sniff(line) is expected


# tests/data/logs/aws-network-firewall.log, line by line (see the README there).
SAMPLE_EVENTS = {
    1: (ev(), "aws:ap-east-1"),
    2: (ev(orig_h="10.30.2.7", ts="2024-07-15 09:10:12.002941"), "aws:us-east-1"),
    5: (ev(resp_p=80, method="GET", ts="2024-07-15 09:10:15.771030"), "aws:ap-east-1"),
    10: (ev("api.openai.com.evil.example", resp_h="203.0.113.66", ts="2024-07-15 09:10:20.000200"), "aws:ap-east-1"),
    12: (ev(orig_h="10.40.3.9", ts="2024-07-15 09:10:22.300300"), "aws:eu-central-1"),
    13: (ev(orig_h="2600:1f14:aaa:bb00::25", resp_h="2606:4700::6812:1a2b", ts="2024-07-15 09:10:23.400400"), "aws:us-gov-west-1"),
    14: (ev(ts="2024-07-15 09:10:24.500500"), ""),
}


def test_sample_file() -> None:
    path = asset("logs/aws-network-firewall.log")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == "aws-network-firewall"
    assert {line_no(e): (fields(e), e.egress_region) for e in events} == SAMPLE_EVENTS
    stats = log.stats
    # Lines 4, 6, 7, 9 and 11 name no governed host (the needle search skips them); 15 is Suricata's own.
    assert (stats.lines, stats.candidates, stats.events) == (15, 10, 7)
    assert dict(stats.ignored) == {nfw.BLOCKED: 1, nfw.TLS_LOG: 1}  # lines 3, 8
    assert stats.locations == {"aws-network-firewall: no 'event' object": [f"{path}:15"]}
    assert {line_no(e) for e in events if POLICIES.for_host(e.server_name) is None} == {10}


def test_the_firewall_region_is_the_egress(tmp_path: Path) -> None:
    """Without any configuration, a call through a firewall in ap-east-1 is a call from Hong Kong."""
    result = CliRunner().invoke(cli, ["logs", str(asset("logs/aws-network-firewall.log")), "--db", str(tmp_path / "f.db"), "--json"])
    assert result.exit_code == 1, result.output  # violations found
    rows = {(r["egress_ip"], r["country"], r["verdict"], r["basis"]): r["calls"] for r in json.loads(result.stdout)}
    assert rows == {
        ("aws:ap-east-1", "HK", "violation", "cloud:aws:ap-east-1"): 2,  # lines 1 and 5
        ("aws:us-east-1", "US", "allowed", "cloud:aws:us-east-1"): 1,
        ("aws:eu-central-1", "DE", "allowed", "cloud:aws:eu-central-1"): 1,
        ("aws:us-gov-west-1", "US", "allowed", "cloud:aws:us-gov-west-1"): 1,
        ("", "", "unknown", "no-egress"): 1,  # line 14: an Availability Zone id, not a name
    }
