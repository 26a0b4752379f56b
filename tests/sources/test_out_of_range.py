"""Values past what Python's own conversions take: numbers over 4300 digits (int() refuses them),
dates that leave the calendar once moved to UTC, offsets of a day or more, lone surrogates from
JSON escapes (no UTF-8 can hold them). Each once escaped a parser as a traceback; each is now a
counted malformed line, or a value made safe, and the run goes on. Found by a hostile-input hunt
over every format and command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.sources import common
from auditor.sources.interface import Malformed
from auditor.sources.logfile import FORMATS
from tests.sources.helpers import read_all

HUGE = "9" * 5000
"""More digits than int() converts (sys.get_int_max_str_digits() is 4300)."""
BIG = "9" * 400
"""Fewer, but a number no float holds."""


@pytest.mark.parametrize(
    "fmt, line",
    [
        ("squid", f"1721005923.412 141516 10.20.1.5 TCP_TUNNEL/{HUGE} 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -"),
        ("squid", f"1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:{HUGE} - HIER_DIRECT/162.159.140.245 -"),
        ("combined", f'10.20.1.5 - - [15/Jul/2024:09:10:11 +0000] "CONNECT api.openai.com:{HUGE} HTTP/1.1" 200 5120 "-" "curl/8.5.0"'),
        ("combined", '10.20.1.5 - - [01/Jan/0001:00:00:00 +0100] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"'),
        ("combined", '10.20.1.5 - - [31/Dec/9999:23:59:59 -0100] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"'),
        (
            "haproxy",
            (
                "2024-07-15T09:10:11+24:00 gw2 haproxy[8]: 10.20.1.5:51012 [15/Jul/2024:09:10:11.123] egress-in egress/openai "
                '0/0/1/140/141 200 2210 - - ---- 3/3/1/1/0 0/0 {api.openai.com} "POST /v1/chat/completions HTTP/1.1"'
            ),
        ),
        (
            "haproxy",
            (
                "2024-07-15T09:10:11-05:00 gw2 haproxy[8]: 10.20.1.5:51012 [31/Dec/9999:23:59:59.999] egress-in egress/openai "
                '0/0/1/140/141 200 2210 - - ---- 3/3/1/1/0 0/0 {api.openai.com} "POST /v1/chat/completions HTTP/1.1"'
            ),
        ),
        (
            "haproxy",
            (
                "<134>Jul 15 09:10:11 gw2 haproxy[8]: 10.20.1.5:51012 [15/Jul/2024:09:10:11.123] egress-in egress/openai "
                f'0/0/1/140/141 200 2210 - - ---- 3/3/1/1/0 0/0 {{api.openai.com}} "CONNECT api.openai.com:{HUGE} HTTP/1.1"'
            ),
        ),
        (
            "envoy",
            '[0001-01-01T00:00:00+01:00] "POST /v1 HTTP/1.1" 200 - 812 2210 141 140 "10.20.1.5" "ua" "id" "api.openai.com" "162.159.140.245:443"',
        ),
        ("suricata", '{"timestamp": "0001-01-01T00:00:00+01:00", "event_type": "tls", "src_ip": "10.20.1.5", "tls": {"sni": "api.openai.com"}}'),
        (
            "suricata",
            f'{{"timestamp": "2024-07-15T09:10:11Z", "event_type": "tls", "src_ip": "10.20.1.5", "tls": {{"sni": "api.openai.com:{HUGE}"}}}}',
        ),
        (
            "aws-network-firewall",
            (
                f'{{"firewall_name":"fw","availability_zone":"ap-east-1a","event_timestamp":{BIG},'
                '"event":{"event_type":"alert","tls":{"sni":"api.openai.com"}}}'
            ),
        ),
        (
            "aws-network-firewall",
            (
                f'{{"firewall_name":"fw","availability_zone":"ap-east-1a","event_timestamp":"{HUGE}",'
                '"event":{"event_type":"alert","tls":{"sni":"api.openai.com"}}}'
            ),
        ),
        ("cloudflare", f'{{"ClientRequestHost":"api.openai.com","EdgeStartTimestamp":1{"0" * 400},"RayID":"x"}}'),
        ("zeek", f'{{"ts":{BIG},"id.orig_h":"10.20.1.5","server_name":"api.openai.com"}}'),
    ],
)
def test_a_value_out_of_range_is_a_malformed_line(fmt: str, line: str) -> None:
    with pytest.raises(Malformed) as info:
        FORMATS[fmt].parse(line, "t.log:1")
    assert str(info.value).startswith(("bad ", f"{fmt}: ", "squid: "))


@pytest.mark.parametrize(
    "fmt, line, status",
    [
        (
            "envoy",
            (
                f'{{"authority": "api.openai.com", "downstream_remote_address": "10.44.1.23:51012", "method": "POST", '
                f'"response_code": "{HUGE}", "start_time": "2024-07-15T09:10:11.123Z"}}'
            ),
            0,
        ),
        (
            "zeek",
            (f'{{"ts":1721034611.1,"id.orig_h":"10.20.1.5","id.orig_p":"{HUGE}","host":"api.openai.com","method":"POST","status_code":"{HUGE}"}}'),
            0,
        ),
    ],
)
def test_a_status_too_long_to_be_one_is_no_status(fmt: str, line: str, status: int) -> None:
    event = FORMATS[fmt].parse(line, "t.log:1")
    assert event.server_name == "api.openai.com" and event.status == status


def test_small_int_takes_only_short_ascii_digits() -> None:
    assert common.small_int("443") == 443 and common.small_int("00443") == 443
    assert common.small_int("443", 2) is None
    assert common.small_int(HUGE) is None and common.small_int("") is None
    assert common.small_int("４４３") is None and common.small_int("²") is None  # str.isdigit() says yes to both
    assert common.small_int("-1") is None


def test_lone_surrogates_from_json_escapes_become_question_marks() -> None:
    line = (
        '{"timestamp": "2024-07-15T09:10:11Z", "event_type": "tls", "src_ip": "10.20.1.5\\ud800", '
        '"tls": {"sni": "api.openai.com"}, "x\\udfff": ["\\uD834"]}'
    )
    record = common.json_object(line, "suricata")
    assert record["src_ip"] == "10.20.1.5?" and record["x?"] == ["?"]
    pair = common.json_object('{"a": "\\ud83d\\ude00"}', "x")  # a proper pair is one character, kept
    assert pair["a"] == "\U0001f600"


def test_surrogates_reach_neither_the_store_nor_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "drain.ndjson"
    path.write_text(
        json.dumps(
            {
                "id": "1",
                "deploymentId": "dpl_x",
                "source": "external",
                "host": "x.vercel.app",
                "timestamp": 1721005926412,
                "projectId": "prj_chat",
                "executionRegion": "hkg1\ud800",
                "destination": "https://api.openai.com/v1/chat",
                "statusCode": 200,
            }
        )
        + "\n"
    )
    assert "\\ud800" in path.read_text()  # json.dumps escapes it, as a log writer would
    result = CliRunner().invoke(cli, ["logs", str(path), "--db", str(tmp_path / "f.db"), "--json"])
    assert result.exit_code in (0, 1), result.output
    rows = json.loads(result.stdout)
    assert [(r["egress_ip"], r["basis"]) for r in rows] == [("vercel:hkg1?", "edge-region-unknown:vercel:hkg1?")]


def test_a_zeek_separator_with_a_broken_escape_is_reported_and_the_tab_kept(tmp_path: Path) -> None:
    path = tmp_path / "ssl.log"
    path.write_text(
        "#separator \\x\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tserver_name\n"
        "1721034611.123456\tCabc\t10.20.1.5\t51012\t162.159.140.245\t443\tapi.openai.com\n"
    )
    log, events = read_all(path, "zeek")
    assert [e.server_name for e in events] == ["api.openai.com"]
    assert dict(log.stats.skipped) == {"zeek: bad #separator '\\\\x'; the tab separator is kept": 1}
    assert log.stats.locations["zeek: bad #separator '\\\\x'; the tab separator is kept"] == [f"{path}:1"]


def test_an_unforeseen_bad_value_is_counted_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The parsers raise Malformed for every bad value they know of; for one they do not, the
    # reader counts the line with the exception's kind, and the run goes on.
    def parse(line: str, location: str):  # type: ignore[no-untyped-def]
        if "boom" in line:
            raise OverflowError("date value out of range")
        return squid_parse(line, location)

    squid_parse = FORMATS["squid"].parse
    monkeypatch.setitem(FORMATS, "squid", FORMATS["squid"].__class__("squid", FORMATS["squid"].sniff, parse))
    path = tmp_path / "access.log"
    good = "1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n"
    path.write_text(good + good.replace("HIER_DIRECT", "boom") + good)
    log, events = read_all(path, "squid")
    assert len(events) == 2
    reason = "squid: a value out of range (OverflowError)"
    assert dict(log.stats.skipped) == {reason: 1}
    assert log.stats.locations[reason] == [f"{path}:2 (date value out of range)"]


def test_a_file_name_that_is_not_utf8_is_refused_in_one_sentence(tmp_path: Path) -> None:
    raw = bytes(tmp_path) + b"/x\xff.log"
    with open(raw, "w") as f:
        f.write("1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n")
    name = raw.decode("utf-8", "surrogateescape")
    result = CliRunner().invoke(cli, ["logs", name, "--db", str(tmp_path / "f.db")])
    assert result.exit_code == 3 and "Traceback" not in result.output
    assert "x\\udcff.log: the file name is not valid UTF-8; rename the file" in result.stderr
    # Found in a directory, it is skipped with that note and the rest is read.
    other = tmp_path / "ok.log"
    with open(raw) as f:
        other.write_text(f.read())
    result = CliRunner().invoke(cli, ["logs", str(tmp_path), "--db", str(tmp_path / "g.db")])
    assert result.exit_code == 0, result.output
    assert "the file name is not valid UTF-8" in result.stderr and "1 call to governed hosts" in result.stderr
