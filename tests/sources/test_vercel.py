"""Vercel log drains: the record parser, LogFile over NDJSON and JSON arrays, and the pipeline.

The sample files (tests/data/logs/vercel-drain.ndjson and .json, described in the README there)
follow https://vercel.com/docs/drains/reference/logs. Expectations are written from how each line
was composed (which line is what), never from a first run of the reader.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

import auditor.sources.logfile as logfile_mod
import auditor.sources.vercel as vercel
from auditor.attribution import Attributor
from auditor.config import SourceConfig, parse_config
from auditor.events import ConnectionEvent, Finding
from auditor.pipeline import Auditor
from auditor.sources.interface import Ignored, Malformed, SourceError
from auditor.sources.logfile import LogFile
from geoip.chain import ChainLocator
from rules.policy import Outcome, load_policies
from tests.conftest import asset
from tests.sources.helpers import NEEDLES, UTC, events_of, line_no, run, utc

NDJSON = asset("logs/vercel-drain.ndjson")
ARRAY = asset("logs/vercel-drain.json")

BODY = (
    '{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported",'
    '"param":null,"type":"request_forbidden"}}'
)
NOT_JSON = "vercel: not JSON (Expecting ',' delimiter)"
NOT_OBJECT = "vercel: log entry is not a JSON object"
BAD_TS = "vercel: missing or bad 'timestamp' (milliseconds)"
NO_CALL = "no outbound call in this record"
BAD_ARRAY = "vercel: invalid JSON in the array; the rest of it was not read"
CHAT = ("prj_chat", "chat-web")
OTHER_ID = ("prj_2VfJcX8mQ1dWn4", "chat-web")
OTHER_APP = ("prj_Z0otherteam", "other-app")


def at(seconds: int) -> dt.datetime:
    """Timestamp of the sample line composed with index `seconds` (2024-07-15 01:12:03.412 UTC + n s)."""
    return utc("2024-07-15 01:12:03.412") + dt.timedelta(seconds=seconds)


# --- the NDJSON sample, line by line ------------------------------------------------------------
# line -> (server_name, resp_p, egress_region, (projectId, projectName), status)
EVENTS: dict[int, tuple[str, int, str, tuple[str, str], int]] = {
    2: ("", 0, "vercel:hkg1", CHAT, 500),  # lambda, executionRegion hkg1, 403 body in the message
    3: ("api.openai.com", 443, "vercel:sfo1", CHAT, 200),  # external rewrite, only proxy.region
    4: ("", 0, "vercel:iad1", CHAT, 200),  # edge, message names the host (no error)
    6: ("api.openai.com.evil.example", 443, "vercel:hkg1", CHAT, 200),  # decoy destination
    7: ("", 0, "vercel:hkg1", CHAT, 500),  # proxy.lambdaRegion hkg1 beats proxy.region fra1
    8: ("", 0, "vercel:sfo1", CHAT, 200),  # executionRegion sfo1 beats lambdaRegion hkg1 and region iad1
    14: ("", 0, "vercel:hkg1", CHAT, 500),  # non-ASCII message with the 403 body
    15: ("api.openai.com", 443, "", CHAT, 200),  # external, no region anywhere
    16: ("api.openai.com", 443, "vercel:xyz9", CHAT, 200),  # external, unknown region code
    21: ("api.openai.com", 8443, "vercel:hkg1", OTHER_ID, 200),  # https://API.OpenAI.com:8443, executionRegion HKG1
    22: ("api.openai.com", 443, "vercel:hkg1", OTHER_APP, 200),  # external, only proxy.region
    23: ("", 0, "vercel:hkg1", CHAT, 500),  # 300 KB message ending in the 403 body
}
SKIPPED = {NOT_JSON: [10], BAD_TS: [11, 12, 13], NOT_OBJECT: [20]}  # truncated; ts "…", missing, true; a JSON string
IGNORED_LINES = [9, 17]  # firewall record naming the host only in its path; redirect (not an outbound call)
NOT_CANDIDATES = [1, 5, 18, 19]  # build; static; SDK-style "403 Country, region…" without the code; `42`
TOTAL_LINES = 23


def sample_lines() -> list[str]:
    return NDJSON.read_text(encoding="utf-8").split("\n")[:-1]


def record_of(line: int) -> dict[str, Any]:
    return json.loads(sample_lines()[line - 1])


def summary(event: ConnectionEvent) -> tuple:
    return (event.server_name, event.resp_p, event.egress_region, (event.project_id, event.project_name), event.status)


def content(event: ConnectionEvent) -> dict[str, Any]:
    """Every field but where it was read (`source`) and how it was spelled (`raw`)."""
    return {k: v for k, v in vars(event).items() if k not in ("source", "raw")}


def test_the_sample_lines_are_what_the_tables_say() -> None:
    lines = sample_lines()
    assert len(lines) == TOTAL_LINES
    classified = sorted([*EVENTS, *IGNORED_LINES, *NOT_CANDIDATES, *(n for ns in SKIPPED.values() for n in ns)])
    assert classified == list(range(1, TOTAL_LINES + 1))
    assert {json.loads(lines[n - 1]).get("source") for n in range(1, TOTAL_LINES + 1) if n not in (10, 19, 20)} == {
        "build",
        "lambda",
        "edge",
        "external",
        "static",
        "firewall",
        "redirect",
    }
    assert 300_000 < len(lines[22].encode()) < logfile_mod.MAX_LINE
    assert BODY.replace('"', '\\"') in lines[1]  # the 403 body as an app logs it: escaped inside the message


@pytest.mark.parametrize("line", sorted(EVENTS))
def test_parse_sample_line(line: int) -> None:
    text = sample_lines()[line - 1]
    event = vercel.parse(text, f"d.ndjson:{line}")
    record = json.loads(text)
    assert summary(event) == EVENTS[line]
    assert event.ts == at(line) and event.ts.tzinfo is not None and event.ts.utcoffset() == dt.timedelta(0)
    assert (event.source, event.raw, event.orig_h, event.egress_h) == (f"d.ndjson:{line}", text, "", "")
    if len(record.get("message", "")) < 4000:
        assert event.message == record.get("message", "")
    if "proxy" in record:  # the end user's address is never taken for either end of the call
        assert record["proxy"]["clientIp"] not in (event.orig_h, event.egress_h, event.resp_h)


def test_non_ascii_message_is_kept_exactly() -> None:
    event = vercel.parse(sample_lines()[13], "d.ndjson:14")
    assert event.message == f"调用 OpenAI 失败（香港）— 403 {BODY} ✗"


@pytest.mark.parametrize(("line", "reason"), [(n, r) for r, ns in SKIPPED.items() for n in ns])
def test_parse_sample_malformed(line: int, reason: str) -> None:
    with pytest.raises(Malformed) as e:
        vercel.parse(sample_lines()[line - 1], "d.ndjson:1")
    assert str(e.value) == reason


@pytest.mark.parametrize("line", IGNORED_LINES)
def test_parse_sample_ignored(line: int) -> None:
    with pytest.raises(Ignored, match=NO_CALL):
        vercel.parse(sample_lines()[line - 1], "d.ndjson:1")


# --- parse_record tables ------------------------------------------------------------------------

TS = 1721005923412


def record(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "1721005923412000000000000001",
        "deploymentId": "dpl_233NRGRjVZX1caZrXWtz5g1TAksD",
        "source": "external",
        "host": "x.vercel.app",
        "timestamp": TS,
        "projectId": "prj_chat",
        "level": "info",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


@pytest.mark.parametrize(
    ("destination", "host", "port"),
    [
        ("https://api.openai.com/v1/chat/completions", "api.openai.com", 443),
        ("https://api.openai.com", "api.openai.com", 443),
        ("api.openai.com/v1/chat/completions", "api.openai.com", 443),
        ("https://API.OpenAI.COM/v1/models", "api.openai.com", 443),
        ("https://api.openai.com.:443/v1/models", "api.openai.com", 443),
        ("https://api.openai.com:8443/v1/models", "api.openai.com", 8443),
        ("https://user:secret@api.openai.com/v1/models", "api.openai.com", 443),
        ("https://[2001:db8::1]:8443/v1", "2001:db8::1", 8443),
        ("https://api.openai.com.evil.example/", "api.openai.com.evil.example", 443),
        ("https://evil.example/api.openai.com/v1", "evil.example", 443),
        ("http://api.openai.com/v1/models", "api.openai.com", 80),
    ],
)
def test_external_destination(destination: str, host: str, port: int) -> None:
    event = vercel.parse_record(record(destination=destination), "t:1", "{}")
    assert (event.server_name, event.resp_p) == (host, port)


@pytest.mark.parametrize(
    ("fields", "region"),
    [
        ({"executionRegion": "hkg1"}, "vercel:hkg1"),
        ({"executionRegion": "HKG1 "}, "vercel:hkg1"),
        ({"proxy": {"region": "hkg1"}}, "vercel:hkg1"),
        ({"proxy": {"region": "fra1", "lambdaRegion": "hkg1"}}, "vercel:hkg1"),
        ({"executionRegion": "sfo1", "proxy": {"region": "iad1", "lambdaRegion": "hkg1"}}, "vercel:sfo1"),
        ({"executionRegion": "", "proxy": {"region": "iad1", "lambdaRegion": "hkg1"}}, "vercel:hkg1"),
        ({"executionRegion": None, "proxy": {"region": "iad1", "lambdaRegion": None}}, "vercel:iad1"),
        ({"executionRegion": 7, "proxy": {"region": "iad1"}}, "vercel:iad1"),
        ({"proxy": "hkg1"}, ""),
        ({"proxy": {"clientIp": "203.0.113.9", "vercelId": "hkg1::abc123"}}, ""),
        ({}, ""),
    ],
)
def test_egress_region(fields: dict[str, Any], region: str) -> None:
    event = vercel.parse_record(record(destination="https://api.openai.com/v1", **fields), "t:1", "{}")
    assert event.egress_region == region
    assert event.egress_h == event.orig_h == ""  # never the end user's proxy.clientIp


@pytest.mark.parametrize(
    ("fields", "project", "status"),
    [
        ({"projectName": "chat-web", "statusCode": 200}, ("prj_chat", "chat-web"), 200),
        ({"projectId": DROP, "statusCode": -1}, ("", ""), -1),
        ({"projectId": None, "projectName": "chat-web", "statusCode": "500"}, ("", "chat-web"), 0),
        ({"statusCode": True}, ("prj_chat", ""), 0),
        ({"statusCode": DROP}, ("prj_chat", ""), 0),
    ],
)
def test_project_and_status(fields: dict[str, Any], project: tuple[str, str], status: int) -> None:
    event = vercel.parse_record(record(destination="https://api.openai.com/v1", **fields), "t:1", "{}")
    assert ((event.project_id, event.project_name), event.status) == (project, status)


@pytest.mark.parametrize("ms", [0, 1, 9, 99, 412, 500, 999])
@pytest.mark.parametrize("second", [1721005923, 1735689599, 1893456000])
def test_timestamp_keeps_milliseconds_in_utc(second: int, ms: int) -> None:
    for stamp in (second * 1000 + ms, float(second * 1000 + ms)):
        event = vercel.parse_record(record(destination="https://api.openai.com/v1", timestamp=stamp), "t:1", "{}")
        assert event.ts == dt.datetime.fromtimestamp(second, UTC).replace(microsecond=ms * 1000)
        assert event.ts.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"deploymentId":"dpl_1","source":"external","destination":"https://api.openai.com/v1"', NOT_JSON),
        ("[]", NOT_OBJECT),
        ('["https://api.openai.com/v1"]', NOT_OBJECT),
        ("42", NOT_OBJECT),
        ("null", NOT_OBJECT),
        ('"api.openai.com"', NOT_OBJECT),
        (json.dumps(record(destination="https://api.openai.com/v1", timestamp=str(TS))), BAD_TS),
        (json.dumps(record(destination="https://api.openai.com/v1", timestamp=DROP)), BAD_TS),
        (json.dumps(record(destination="https://api.openai.com/v1", timestamp=True)), BAD_TS),
        (json.dumps(record(destination="https://api.openai.com/v1", timestamp=False)), BAD_TS),
        (json.dumps(record(destination="https://api.openai.com/v1", timestamp=None)), BAD_TS),
        (json.dumps(record(destination="https://api.openai.com/v1", timestamp=0)), BAD_TS),
        (json.dumps(record(destination="https://api.openai.com/v1", timestamp=-5)), BAD_TS),
        (json.dumps(record(destination="https://api.openai.com/v1", timestamp=10**14)), BAD_TS),
        (json.dumps(record(destination="https://api.openai.com/v1")).replace(str(TS), "NaN"), BAD_TS),
        (json.dumps(record(destination="https://api.openai.com:99999/v1")), "bad port in 'api.openai.com:99999'"),
    ],
)
def test_malformed(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as e:
        vercel.parse(line, "t:1")
    assert str(e.value) == reason


@pytest.mark.parametrize(
    "fields",
    [
        {"source": "lambda"},
        {"source": "external", "destination": ""},
        {"source": "external", "destination": None},
        {"source": "redirect", "destination": "https://api.openai.com/v1/models"},
        {"source": "lambda", "destination": "https://api.openai.com/v1/models"},
        {"source": "lambda", "message": {"text": "api.openai.com"}},
        {"source": "lambda", "message": ""},
    ],
)
def test_ignored_without_destination_or_message(fields: dict[str, Any]) -> None:
    with pytest.raises(Ignored, match=NO_CALL):
        vercel.parse_record(record(**fields), "t:1", "{}")


def test_message_alone_is_an_event() -> None:
    event = vercel.parse_record(record(source="lambda", message=f"upstream said {BODY}"), "t:1", "raw")
    assert (event.server_name, event.resp_p, event.message, event.raw) == ("", 0, f"upstream said {BODY}", "raw")


# --- LogFile: NDJSON and JSON arrays, plain and gzip --------------------------------------------


def settle(path: Path) -> Path:
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def write(path: Path, text: str, gz: bool = False) -> Path:
    data = text.encode()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return settle(path)


def element_lines(text: str) -> list[int]:
    """Lines where the elements of an indent=2 array start (the opening brace, or the scalar)."""
    return [n for n, ln in enumerate(text.split("\n"), 1) if re.match(r"^  [^ \]}]", ln)]


def as_ndjson(items: list[Any]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items)


def as_compact(items: list[Any]) -> str:
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def as_pretty(items: list[Any]) -> str:
    return json.dumps(items, ensure_ascii=False, indent=2) + "\n"


FORMS = {"ndjson": as_ndjson, "compact": as_compact, "pretty": as_pretty}


def parseable_sample() -> list[tuple[int, Any]]:
    """(NDJSON line, decoded value) for every sample line that is JSON (all but the truncated one)."""
    return [(n, json.loads(t)) for n, t in enumerate(sample_lines(), 1) if n != 10]


def expected_lines(form: str, text: str, count: int) -> list[int]:
    """Where each of the `count` elements starts in `text`."""
    if form == "ndjson":
        return list(range(1, count + 1))
    if form == "compact":
        return [1] * count
    return element_lines(text)


def test_ndjson_sample_through_logfile() -> None:
    log, batches = run(NDJSON)
    assert (log.format.name, log.compression) == ("vercel", "plain")  # type: ignore[union-attr]
    events = events_of(batches)
    assert {line_no(e): summary(e) for e in events} == EVENTS
    assert [line_no(e) for e in events] == sorted(EVENTS)
    lines = sample_lines()
    assert all(e.source == f"{NDJSON}:{line_no(e)}" and e.raw == lines[line_no(e) - 1] for e in events)
    assert log.stats.lines == TOTAL_LINES
    assert log.stats.candidates == TOTAL_LINES - len(NOT_CANDIDATES)
    assert log.stats.events == len(EVENTS)
    assert dict(log.stats.skipped) == {r: len(ns) for r, ns in SKIPPED.items()}
    assert log.stats.locations == {r: [f"{NDJSON}:{n}" for n in ns] for r, ns in SKIPPED.items()}
    assert dict(log.stats.ignored) == {NO_CALL: len(IGNORED_LINES)}
    assert (batches[-1].offset, batches[-1].line) == (len(NDJSON.read_bytes()), TOTAL_LINES)


def test_shipped_json_array_sample() -> None:
    text = ARRAY.read_text(encoding="utf-8")
    items = json.loads(text)
    starts = element_lines(text)
    assert len(starts) == len(items) and 42 in items
    log, batches = run(ARRAY)
    assert log.format is not None and log.format.name == "vercel"
    events = events_of(batches)
    # the array holds the NDJSON sample's records minus the truncated line, the JSON string and the 300 KB one
    ndjson_lines = [n for n in range(1, TOTAL_LINES + 1) if n not in (10, 20, 23)]
    line_of = dict(zip(ndjson_lines, starts, strict=True))
    assert [(line_of[n], EVENTS[n]) for n in sorted(EVENTS) if n != 23] == [(line_no(e), summary(e)) for e in events]
    assert all(e.source == f"{ARRAY}:{line_no(e)}" for e in events)
    assert all(json.loads(e.raw) == items[starts.index(line_no(e))] for e in events)
    assert log.stats.lines == len(items)
    assert log.stats.candidates == len(items) - len(NOT_CANDIDATES)
    assert log.stats.locations == {BAD_TS: [f"{ARRAY}:{line_of[n]}" for n in (11, 12, 13)]}
    assert dict(log.stats.ignored) == {NO_CALL: 2}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_forms_give_the_same_events(tmp_path: Path, form: str, gz: bool) -> None:
    sample = parseable_sample()
    items = [v for _, v in sample]
    text = FORMS[form](items)
    path = write(tmp_path / f"drain.{form}", text, gz)
    log, batches = run(path)
    assert log.format is not None and log.format.name == "vercel"
    assert log.compression == ("gzip" if gz else "plain")
    starts = expected_lines(form, text, len(items))
    line_of = {n: starts[i] for i, (n, _) in enumerate(sample)}
    reference = {line_no(e): e for e in vercel_events(NDJSON)}
    events = events_of(batches)
    assert [content(e) for e in events] == [content(reference[n]) for n in sorted(EVENTS)]
    assert [e.source for e in events] == [f"{path}:{line_of[n]}" for n in sorted(EVENTS)]
    assert [json.loads(e.raw) for e in events] == [record_of(n) for n in sorted(EVENTS)]
    assert log.stats.lines == len(items)
    assert log.stats.candidates == len(items) - len(NOT_CANDIDATES)
    assert dict(log.stats.skipped) == {BAD_TS: 3, NOT_OBJECT: 1}
    assert log.stats.locations == {BAD_TS: [f"{path}:{line_of[n]}" for n in (11, 12, 13)], NOT_OBJECT: [f"{path}:{line_of[20]}"]}
    assert dict(log.stats.ignored) == {NO_CALL: 2}
    assert batches[-1].offset == len(text.encode())


def vercel_events(path: Path) -> list[ConnectionEvent]:
    _, batches = run(path)
    return events_of(batches)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_prefilter_counts_but_does_not_parse_records_without_a_needle(tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = [record(source="lambda", message=f"GET /api/items/{i} 200", executionRegion="hkg1") for i in range(30)]
    broken_but_unnamed = record(source="lambda", message="cache refresh", timestamp="soon")  # malformed, never parsed
    named = [
        record(destination="https://api.openai.com/v1/chat/completions", executionRegion="hkg1"),
        record(source="lambda", message=f"upstream: {BODY}", executionRegion="hkg1"),
        record(source="lambda", message="Gemini said: User location is not supported for the API use."),
    ]
    items = [*plain[:10], named[0], broken_but_unnamed, *plain[10:20], named[1], *plain[20:], named[2]]
    seen: list[Any] = []
    dating: list[Any] = []
    real = vercel.parse_record

    def spy(rec: Any, location: str, raw: str) -> ConnectionEvent:
        (seen if location else dating).append(rec)  # a line dated for the coverage is parsed without a location
        return real(rec, location, raw)

    monkeypatch.setattr(vercel, "parse_record", spy)
    log, batches = run(write(tmp_path / "drain", FORMS[form](items)))
    assert seen == named
    assert dating in ([], [items[0], items[-1]])  # NDJSON: the first and last line of the one stretch; arrays read the time alone
    assert [(a.date(), b.date()) for a, b in log.stats.spans] == [(dt.date(2024, 7, 15), dt.date(2024, 7, 15))]
    assert (log.stats.lines, log.stats.candidates, log.stats.events) == (len(items), 3, 3)
    assert not log.stats.skipped and not log.stats.ignored
    assert [e.server_name for e in events_of(batches)] == ["api.openai.com", "", ""]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("form", ["compact", "pretty"])
def test_array_with_a_syntax_error_midway(tmp_path: Path, form: str, gz: bool) -> None:
    good = [record(destination=f"https://api.openai.com/v1/{i}", executionRegion="hkg1", timestamp=TS + i) for i in range(3)]
    marker = {"BROKEN": True}
    text = FORMS[form]([*good[:2], marker, good[2]])
    text = text.replace('"BROKEN":true' if form == "compact" else '"BROKEN": true', '"message": "api.openai.com" "oops"')
    path = write(tmp_path / "drain.json", text, gz)
    log, batches = run(path)  # no exception
    events = events_of(batches)
    assert [(e.server_name, json.loads(e.raw)) for e in events] == [("api.openai.com", g) for g in good[:2]]
    where = 1 if form == "compact" else element_lines(text)[2]
    assert dict(log.stats.skipped) == {BAD_ARRAY: 1}
    assert log.stats.locations == {BAD_ARRAY: [f"{path}:{where} (Expecting ',' delimiter)"]}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_resume_after_a_full_pass_reads_nothing(tmp_path: Path, form: str, gz: bool) -> None:
    path = write(tmp_path / "drain", FORMS[form]([v for _, v in parseable_sample()]), gz)
    _, batches = run(path)
    assert events_of(batches)
    log, again = run(path, resume=(batches[-1].offset, batches[-1].line))
    assert events_of(again) == []
    assert log.stats.lines == 0 and log.stats.candidates == 0


NEW = [
    record(destination="https://api.openai.com/v1/audio/speech", executionRegion="hkg1", timestamp=TS + 60_000, message="第二批 ✓"),
    record(source="lambda", message=f"重试失败 {BODY}", proxy={"region": "hkg1"}, timestamp=TS + 61_000),
]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("form", ["compact", "pretty"])
def test_array_rewritten_with_more_records_resumes_with_only_the_new_ones(tmp_path: Path, form: str, gz: bool) -> None:
    old = [record_of(n) for n in (2, 14, 3, 5, 21)]  # non-ASCII (line 14) before the checkpoint
    path = write(tmp_path / "drain.json", FORMS[form](old), gz)
    _, batches = run(path)
    assert len(events_of(batches)) == 4
    checkpoint = (batches[-1].offset, batches[-1].line)
    text = FORMS[form]([*old, *NEW])
    assert write(tmp_path / "drain.json", text, gz) == path
    log, again = run(path, resume=checkpoint)
    events = events_of(again)
    assert [(e.server_name, e.ts) for e in events] == [("api.openai.com", at(60)), ("", at(61))]
    assert [e.message for e in events] == ["第二批 ✓", f"重试失败 {BODY}"]
    starts = expected_lines(form, text, len(old) + len(NEW))
    assert [e.source for e in events] == [f"{path}:{n}" for n in starts[len(old) :]]
    assert log.stats.lines == len(NEW)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("form", ["compact", "pretty"])
def test_array_over_max_document_is_a_clear_source_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str, gz: bool) -> None:
    monkeypatch.setattr(logfile_mod, "MAX_DOCUMENT", 1 << 20)
    items = [record_of(23)] * 5  # 5 x 316 KB
    path = write(tmp_path / "drain.json", FORMS[form](items), gz)
    log = LogFile.open(str(path), NEEDLES)
    try:
        with pytest.raises(SourceError) as e:
            list(log.batches())
    finally:
        log.close()
    assert str(e.value) == f"{path}: a JSON array larger than 1 MiB; split it or convert it to NDJSON"
    _, batches = run(write(tmp_path / "drain.ndjson", as_ndjson(items), gz))  # the same records as NDJSON are fine
    assert len(events_of(batches)) == 5


def test_array_bodies_appended_one_per_line_are_all_read_or_reported(tmp_path: Path) -> None:
    """A drain receiver that appends each POST body (a JSON array, per the docs) as one line."""
    first = [record(destination="https://api.openai.com/v1/a", executionRegion="hkg1")]
    second = [record(destination="https://api.openai.com/v1/b", executionRegion="hkg1", timestamp=TS + 1)]
    path = write(tmp_path / "drain.log", as_compact(first) + "\n" + as_compact(second) + "\n")
    try:
        log, batches = run(path)
    except SourceError:
        return
    assert len(events_of(batches)) == 2
    assert sum(log.stats.skipped.values()) == 0


def test_text_after_the_arrays_is_reported(tmp_path: Path) -> None:
    first = [record(destination="https://api.openai.com/v1/a", executionRegion="hkg1")]
    path = write(tmp_path / "drain.log", as_compact(first) + "\nnot json at all\n")
    log, batches = run(path)
    assert len(events_of(batches)) == 1
    assert log.stats.locations == {"vercel: text after the JSON array was not read": [f"{path}:2"]}


# --- end to end through the pipeline ------------------------------------------------------------


def findings(path: Path, projects: list[str]) -> dict[int, Finding]:
    config = parse_config({"org": [{"name": "chat-team", "vercel_projects": projects}]}, "t.toml")
    auditor = Auditor(load_policies(), ChainLocator([]), Attributor(config))
    log = LogFile.open(str(path), NEEDLES)
    try:
        found = list(auditor.audit(log.events(), SourceConfig(path=str(path))))
    finally:
        log.close()
    return {line_no(f.event): f for f in found}


# line -> (org with vercel_projects=["prj_chat"], egress region, location basis, country, outcome, rule suffix, host)
FINDINGS = {
    2: ("chat-team", "vercel:hkg1", "edge:vercel:hkg1", "HK", Outcome.VIOLATION, ":provider-blocked", "api.openai.com"),
    3: ("chat-team", "vercel:sfo1", "edge:vercel:sfo1", "US", Outcome.ALLOWED, ":listed:US", "api.openai.com"),
    7: ("chat-team", "vercel:hkg1", "edge:vercel:hkg1", "HK", Outcome.VIOLATION, ":provider-blocked", "api.openai.com"),
    14: ("chat-team", "vercel:hkg1", "edge:vercel:hkg1", "HK", Outcome.VIOLATION, ":provider-blocked", "api.openai.com"),
    15: ("chat-team", "", "no-egress", "", Outcome.UNKNOWN, ":no-location", "api.openai.com"),
    16: ("chat-team", "vercel:xyz9", "edge-region-unknown:vercel:xyz9", "", Outcome.UNKNOWN, ":no-location", "api.openai.com"),
    21: ("unattributed", "vercel:hkg1", "edge:vercel:hkg1", "HK", Outcome.VIOLATION, ":not-listed:HK", "api.openai.com"),
    22: ("unattributed", "vercel:hkg1", "edge:vercel:hkg1", "HK", Outcome.VIOLATION, ":not-listed:HK", "api.openai.com"),
}


def test_pipeline_findings_for_the_ndjson_sample() -> None:
    found = findings(NDJSON, ["prj_chat"])
    got = {
        n: (
            f.org,
            f.egress.region,
            f.location.basis,
            f.location.country_code,
            f.verdict.outcome,
            f.verdict.rule_id[f.verdict.rule_id.index(":") :],
            f.host,
        )
        for n, f in found.items()
        if n != 23
    }
    assert got == FINDINGS
    # lines 4 and 8 name api.openai.com in an ordinary message: not a call the record proves; line 6 is the decoy
    assert not {4, 6, 8} & set(found)
    assert all(f.egress.ip == "" and f.egress.basis == "event" for n, f in found.items() if n != 15)
    assert found[15].egress.basis == "none"
    assert found[2].verdict.rule_id.startswith("openai@") and found[2].verdict.provider == "openai"


def test_pipeline_org_by_project_name() -> None:
    found = findings(NDJSON, ["chat-web"])
    assert {n: f.org for n, f in found.items()} == {n: ("unattributed" if n == 22 else "chat-team") for n in found}
    assert found[21].org == "chat-team"  # projectId prj_2VfJcX8mQ1dWn4, projectName chat-web


def test_pipeline_same_findings_from_the_shipped_array() -> None:
    from_array = findings(ARRAY, ["prj_chat"])
    from_ndjson = findings(NDJSON, ["prj_chat"])
    key = lambda f: (f.event.ts, f.org, f.egress, f.location.basis, f.verdict, f.host)  # noqa: E731
    assert sorted(map(key, from_array.values())) == sorted(key(f) for n, f in from_ndjson.items() if n != 23)


def test_pipeline_blocked_error_at_the_end_of_a_300_kb_message() -> None:
    found = findings(NDJSON, ["prj_chat"])
    assert 23 in found
    assert found[23].verdict.rule_id.endswith(":provider-blocked") and found[23].host == "api.openai.com"
