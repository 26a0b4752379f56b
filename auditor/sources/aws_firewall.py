"""AWS Network Firewall logs: one JSON object per line, as the firewall delivers them to S3
(gzip files under `AWSLogs/<account>/network-firewall/<alert|flow|tls>/<region>/...`), CloudWatch
Logs (exported to S3: `<ISO time> <record>` per line) or Firehose. A CloudWatch Logs subscription
record (`{"messageType":"DATA_MESSAGE",...,"logEvents":[...]}`) holds many events in one line: it
is counted as malformed with the `jq` command that unwraps it.

    {"firewall_name":"egress-fw","availability_zone":"ap-east-1a","event_timestamp":"1721034611","event":{...}}

Schema: "Contents of a firewall log" in the AWS Network Firewall developer guide
(https://docs.aws.amazon.com/network-firewall/latest/developerguide/firewall-logging-contents.html).
`event` is a Suricata EVE event for alert logs (`alert`) and flow logs (`netflow`); TLS log events
(from the TLS inspection engine, without `event_type`) carry `tls_error` or `revocation_check`
("Logging for TLS inspection", same guide).

Calls: `alert` events whose application metadata names the host, as a Suricata alert carries it
after its `alert` object: `tls.sni`, else `http.hostname` (else a CONNECT or absolute `http.url`),
read as the `suricata` format reads tls and http events. An alert the firewall blocked
(`alert.action` "blocked") never left: not counted. Neither are alerts without that metadata
(a rule that matched before the ClientHello), `netflow` events (no host) and TLS-log events.
Each alert is one call: log allowed TLS with one `alert` rule per flow (a rule per domain list
entry logs a flow once per matching rule).

Egress: the firewall's Region, from `availability_zone` (`ap-east-1a` -> `aws:ap-east-1`, placed
by the region table): internet-bound traffic a Network Firewall inspects leaves through its VPC's
NAT or internet gateway, which are in the same Region. A VPC that sends it on to another Region
(Transit Gateway peering) egresses there: audit that Region's firewall, or give this log's
`[[source]]` the `egress_ip` it leaves from (a source's `egress_ip` comes before an event's region).
"""

from __future__ import annotations

import re
from typing import Any

from auditor.events import ConnectionEvent
from auditor.sources import suricata
from auditor.sources.common import json_object, parse_iso_time, parse_json_time
from auditor.sources.interface import Ignored, Malformed

NAME = "aws-network-firewall"
_AZ = re.compile(r"([a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]+)[a-z]")
"""An Availability Zone name (`us-east-1b`, `us-gov-west-1a`) and its Region."""
BLOCKED = "aws-network-firewall: blocked by the firewall (the call never left)"
NO_HOST = "aws-network-firewall: alert without tls or http metadata names no host"
TLS_LOG = "aws-network-firewall: TLS log event (an inspection error or revocation check), not a call"


_EXPORTED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z (?=\{)")
"""CloudWatch Logs' export to S3 writes each log event as `<ISO time> <message>`."""
ENVELOPE = (
    f"{NAME}: a CloudWatch Logs subscription record (many log events in one line); unwrap it first: "
    "jq -c '.logEvents[].message | fromjson' FILE > alerts.json"
)


def _record_text(line: str) -> str:
    text = line.lstrip()
    m = _EXPORTED.match(text)
    return text[m.end() :] if m else text


def sniff(line: str) -> bool:
    """True when `line` looks like a Network Firewall log record (or a CloudWatch Logs subscription
    record of them)."""
    text = _record_text(line)
    return text.startswith("{") and (('"firewall_name"' in text and '"event"' in text) or ('"logEvents"' in text and "firewall_name" in text))


def region_of(zone: Any) -> str:
    """`ap-east-1a` -> `aws:ap-east-1`; "" for anything else."""
    m = _AZ.fullmatch(zone) if isinstance(zone, str) else None
    return f"aws:{m[1]}" if m else ""


def parse(line: str, location: str) -> ConnectionEvent:
    """One log record -> ConnectionEvent; Malformed or Ignored otherwise."""
    record = json_object(_record_text(line), NAME)
    if "logEvents" in record:
        raise Malformed(ENVELOPE)
    event = record.get("event")
    if not isinstance(event, dict):
        raise Malformed(f"{NAME}: no 'event' object")
    kind = event.get("event_type")
    if not isinstance(kind, str):
        if "tls_error" in event or "revocation_check" in event:
            raise Ignored(TLS_LOG)
        raise Malformed(f"{NAME}: no 'event_type'")
    stamp = event.get("timestamp")
    if isinstance(stamp, str):
        ts = parse_iso_time(stamp)
    elif "event_timestamp" in record:
        ts = parse_json_time(record["event_timestamp"])
    else:
        raise Malformed(f"{NAME}: no 'timestamp'")
    if kind != "alert":
        raise Ignored(f"{NAME}: {kind} event, not a call (calls are read from alert events)", ts)
    alert = event.get("alert")
    if isinstance(alert, dict) and alert.get("action") == "blocked":
        raise Ignored(BLOCKED, ts)
    for app in ("tls", "http"):
        if isinstance(event.get(app), dict):
            return suricata.call(event, app, ts, line, location, egress_region=region_of(record.get("availability_zone")))
    raise Ignored(NO_HOST, ts)
