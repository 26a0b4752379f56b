"""Generic JSON lines read through a [[source]] field map: the map, the records, and end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.attribution import Attributor
from auditor.cli import cli
from auditor.config import parse_config
from auditor.pipeline import Auditor
from auditor.sources import jsonmap
from auditor.sources.interface import Ignored, Malformed, SourceError
from auditor.sources.logfile import LogFile
from geoip.chain import ChainLocator
from rules.policy import Outcome
from tests.conftest import asset
from tests.sources.helpers import NEEDLES, POLICIES, fields, line_no, utc

LOC = "gateway.json:2"
MAP = {
    "ts": "time",
    "orig_h": "client.ip",
    "orig_p": "client.port",
    "server_name": "request.host",
    "url": "request.url",
    "method": "request.method",
    "status": "response.code",
    "message": "response.body",
    "resp_h": "upstream.addr",
    "resp_p": "upstream.port",
}
BLOCKED = '{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported","param":null,"type":"request_forbidden"}}'


def js(**record: Any) -> str:
    return json.dumps(record, separators=(",", ":"))


def ev(server_name: str, orig_h: str, resp_h: str, resp_p: int, method: str, status: int, ts: str = "2024-07-15 09:10:11.123") -> dict[str, object]:
    return {"server_name": server_name, "orig_h": orig_h, "resp_h": resp_h, "resp_p": resp_p, "method": method, "status": status, "ts": utc(ts)}


BASE = {
    "time": "2024-07-15T09:10:11.123Z",
    "client": {"ip": "10.20.1.5", "port": 51012},
    "request": {"host": "api.openai.com", "method": "POST"},
    "response": {"code": 200},
    "upstream": {"addr": "162.159.140.245", "port": 443},
}
CALL = ev("api.openai.com", "10.20.1.5", "162.159.140.245", 443, "POST", 200)
PARSED = [
    pytest.param(MAP, js(**BASE), CALL, id="nested"),
    pytest.param(MAP, js(**BASE | {"time": 1721034611.123}), CALL, id="epoch-seconds"),
    pytest.param(MAP, js(**BASE | {"time": 1721034611123}), CALL, id="epoch-milliseconds"),
    pytest.param(MAP, js(**BASE | {"time": 1721034611123000}), CALL, id="epoch-microseconds"),
    pytest.param(MAP, js(**BASE | {"time": 1721034611123000000}), CALL, id="epoch-nanoseconds"),
    pytest.param(MAP, js(**BASE | {"time": "1721034611123"}), CALL, id="numeric-string"),
    pytest.param(MAP, js(**BASE | {"time": "2024-07-15T17:10:11.123+08:00"}), CALL, id="offset"),
    pytest.param(MAP, js(**BASE | {"time": "2024-07-15 09:10:11.123"}), CALL, id="naive-is-utc"),
    pytest.param(MAP, js(**BASE | {"response": {"code": "200"}, "client": {"ip": "10.20.1.5", "port": "51012"}}), CALL, id="numbers-as-strings"),
    pytest.param(
        MAP,
        js(**BASE | {"request": {"host": "API.OpenAI.com:8443", "method": "post"}, "upstream": {}}),
        ev("api.openai.com", "10.20.1.5", "", 8443, "POST", 200),
        id="host-port-case",
    ),
    pytest.param(
        MAP,
        js(**BASE | {"request": {"url": "https://eu.api.openai.com/v1/models", "method": "GET"}, "upstream": {}}),
        ev("eu.api.openai.com", "10.20.1.5", "", 443, "GET", 200),
        id="host-from-url",
    ),
    pytest.param(
        MAP,
        js(**BASE | {"request": {"url": "https://svc:pw@api.openai.com:8443/v1/models", "method": "GET"}, "upstream": {}}),
        ev("api.openai.com", "10.20.1.5", "", 8443, "GET", 200),
        id="url-with-userinfo-and-port",
    ),
    pytest.param(
        {"ts": "ts", "orig_h": "id.orig_h", "resp_h": "id.resp_h", "resp_p": "id.resp_p", "server_name": "server_name"},
        js(ts=1721034611.123, **{"id.orig_h": "10.20.1.5", "id.resp_h": "162.159.140.245", "id.resp_p": 443}, server_name="api.openai.com"),
        ev("api.openai.com", "10.20.1.5", "162.159.140.245", 443, "", 0),
        id="keys-with-dots",
    ),
    pytest.param(
        {"ts": "a.b.c", "server_name": "a.b.host"},
        js(**{"a.b": {"c": 1721034611.123, "host": "api.openai.com"}}),
        ev("api.openai.com", "", "", 0, "", 0),
        id="dotted-key-then-nested",
    ),
]


@pytest.mark.parametrize("fields_map, line, expected", PARSED)
def test_parse(fields_map: dict[str, str], line: str, expected: dict[str, object]) -> None:
    event = jsonmap.Reader(fields_map).parse(line, LOC)
    assert fields(event) == expected
    assert (event.source, event.raw) == (LOC, line)


def test_every_mapped_field_reaches_the_event() -> None:
    full = {
        "ts": "t",
        "server_name": "h",
        "orig_h": "c",
        "orig_p": "cp",
        "resp_h": "s",
        "resp_p": "sp",
        "method": "m",
        "status": "st",
        "message": "b",
        "egress_h": "e",
        "egress_region": "r",
        "project_id": "pid",
        "project_name": "pn",
    }
    assert set(full) | {"url"} == set(jsonmap.FIELDS)
    line = js(
        t=1721034611,
        h="api.openai.com",
        c="10.20.1.5",
        cp=1,
        s="162.159.140.245",
        sp=443,
        m="GET",
        st=403,
        b=BLOCKED,
        e="203.0.113.7",
        r="Cloudflare:HKG",
        pid="prj_1",
        pn="chat",
    )
    event = jsonmap.Reader(full).parse(line, LOC)
    assert (event.egress_h, event.egress_region, event.project_id, event.project_name, event.message, event.orig_p) == (
        "203.0.113.7",
        "cloudflare:hkg",
        "prj_1",
        "chat",
        BLOCKED,
        1,
    )


def test_a_body_logged_as_a_json_object_is_the_message_the_provider_sent() -> None:
    # A gateway that logs the response body parsed ({"body": {...}}, not a string): its blocked-region
    # code was lost (the object became "") and the call was not recorded as already refused.
    line = js(**BASE | {"response": {"code": 403, "body": json.loads(BLOCKED)}})
    event = jsonmap.Reader(MAP).parse(line, LOC)
    assert json.loads(event.message) == json.loads(BLOCKED)
    assert POLICIES.blocked_by(event.message) is not None
    assert POLICIES.blocked_by(jsonmap.Reader(MAP).parse(js(**BASE | {"response": {"code": 200, "body": {"ok": True}}}), LOC).message) is None


IGNORED = [
    pytest.param(js(**BASE | {"request": {"method": "GET"}}), id="no-host"),
    pytest.param(js(**BASE | {"request": {"host": None, "url": ""}}), id="null-host"),
]


@pytest.mark.parametrize("line", IGNORED)
def test_ignored(line: str) -> None:
    with pytest.raises(Ignored, match="request names no host"):
        jsonmap.Reader(MAP).parse(line, LOC)


def test_message_alone_is_an_event_for_the_pipeline_to_judge() -> None:
    event = jsonmap.Reader(MAP).parse(js(**BASE | {"request": {"method": "POST"}, "response": {"code": 403, "body": BLOCKED}}), LOC)
    assert (event.server_name, event.status, event.message) == ("", 403, BLOCKED)


MALFORMED = [
    pytest.param(js(**BASE)[:-20], "json: not JSON", id="truncated"),
    pytest.param(js(**{k: v for k, v in BASE.items() if k != "time"}), "json: no time at 'time'", id="no-time"),
    pytest.param(js(**BASE | {"time": "last tuesday"}), "bad timestamp", id="bad-time"),
    pytest.param(js(**BASE | {"time": True}), "bad timestamp", id="boolean-time"),
    pytest.param(js(**BASE | {"time": {"s": 1}}), "bad timestamp", id="object-time"),
    pytest.param(js(**BASE | {"request": {"host": "api.openai.com:0"}}), "bad port", id="bad-port"),
    pytest.param("[1, 2]", "json: record is not a JSON object", id="array"),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        jsonmap.Reader(MAP).parse(line, LOC)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "fields_map, says",
    [
        (None, "format json needs a field map"),
        ({}, "format json needs a field map"),
        ({"server_name": "host"}, "'fields' needs ts ="),
        ({"ts": "time"}, "'fields' needs server_name ="),
        ({"ts": "time", "server_name": "host", "hostname": "x"}, "unknown field 'hostname' in 'fields'"),
        ({"ts": "time", "server_name": "a..b"}, "'fields' entry 'server_name' must be a dotted path"),
        ({"ts": "time", "server_name": ""}, "'fields' entry 'server_name' must be a dotted path"),
    ],
)
def test_bad_maps_are_refused(fields_map: dict[str, str] | None, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as info:
        jsonmap.Reader(fields_map)
    assert says in str(info.value) and "[[source]]" in str(info.value)


def test_never_detected_and_plain_parse_says_why() -> None:
    assert jsonmap.sniff(js(**BASE)) is False
    with pytest.raises(Malformed, match="no field map"):
        jsonmap.parse(js(**BASE), LOC)


def test_forced_json_without_a_map_is_a_source_error() -> None:
    with pytest.raises(SourceError) as info:
        LogFile.open(str(asset("logs/gateway.json")), NEEDLES, "json")
    message = str(info.value)
    assert message.startswith(f"{asset('logs/gateway.json')}: format json needs a field map") and 'format = "json"' in message


# --- the sample file through the config, the pipeline and the CLI -----------------------------------
CONFIG = {"source": [{"path": "*/gateway.json", "format": "json", "fields": MAP}]}
SAMPLE_EVENTS = {
    1: CALL,
    2: ev("api.openai.com", "10.20.1.5", "162.159.140.245", 443, "POST", 403, "2024-07-15 09:10:12.004"),
    3: ev("eu.api.openai.com", "10.30.2.7", "162.159.140.245", 8443, "GET", 200, "2024-07-15 09:10:13.250"),
    4: ev("api.openai.com.evil.example", "10.20.1.5", "203.0.113.66", 443, "GET", 200, "2024-07-15 09:10:14.500"),
    6: ev("", "10.20.1.5", "", 0, "GET", 502, "2024-07-15 09:10:16"),
    9: ev("api.openai.com", "2001:db8:10::25", "2606:4700::6812:1a2b", 443, "GET", 200, "2024-07-15 09:10:19.123"),
}


def test_sample_file_through_its_source_entry() -> None:
    path = asset("logs/gateway.json")
    known = parse_config(CONFIG, "t.toml").source(str(path))
    assert known.format == "json" and known.field_map == MAP
    log = LogFile.open(str(path), NEEDLES, known.format, known.field_map)
    try:
        events = list(log.events())
    finally:
        log.close()
    assert log.format is not None and log.format.name == "json"
    assert {line_no(e): fields(e) for e in events} == SAMPLE_EVENTS
    assert log.stats.locations == {
        "json: no time at 'time'": [f"{path}:5"],
        "json: not JSON (Unterminated string starting at)": [f"{path}:7"],
        "bad timestamp 'not a time'": [f"{path}:8"],
    }
    auditor = Auditor(POLICIES, ChainLocator([]), Attributor(parse_config(CONFIG, "t.toml")))
    found = {line_no(f.event): f for f in auditor.audit(events, known)}
    assert sorted(found) == [1, 2, 3, 9]  # 4 is a decoy; 6 names no host and its message is no provider's error
    assert found[2].verdict.outcome == Outcome.VIOLATION and found[2].verdict.rule_id.endswith(":provider-blocked")
    assert not found[1].verdict.rule_id.endswith(":provider-blocked")


def test_cli_reads_the_format_and_map_from_the_config(tmp_path: Path) -> None:
    log = tmp_path / "gateway.json"
    log.write_bytes(asset("logs/gateway.json").read_bytes())
    config = tmp_path / "auditor.toml"
    fields_toml = ", ".join(f'{k} = "{v}"' for k, v in MAP.items())
    config.write_text(f'[[source]]\npath = "{log}"\nformat = "json"\nfields = {{ {fields_toml} }}\n')
    result = CliRunner().invoke(cli, ["logs", str(log), "--config", str(config), "--db", str(tmp_path / "f.db"), "--json"])
    assert result.exit_code == 1, result.output
    rows = json.loads(result.stdout)
    assert sum(r["calls"] for r in rows) == 4
    assert {r["verdict"] for r in rows} == {"violation", "unknown"}
    assert f"{log} (json): 9 lines, 4 calls to governed hosts" in result.stderr
    # Without the config the file is not recognised, and the error says how to configure it.
    plain = CliRunner().invoke(cli, ["logs", str(log), "--db", str(tmp_path / "g.db")])
    assert plain.exit_code == 3 and 'format = "json"' in plain.output
