"""Format detection and --format across every log format: each sample is detected as its own format,
no other format claims its lines, and a forced format parses every candidate with itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.sources.interface import Malformed, SourceError
from auditor.sources.logfile import FORMATS, LogFile, detect_format
from tests.conftest import asset
from tests.sources.helpers import NEEDLES, read_all

SAMPLES = {
    "squid-access.log": "squid",
    "squid-common.log": "combined",
    "squid-combined.log": "combined",
    "nginx-access.log": "combined",
    "apache-vhost-access.log": "combined",
    "vercel-drain.ndjson": "vercel",
    "vercel-drain.json": "vercel",
    "haproxy-syslog.log": "haproxy",
    "haproxy-stdout.log": "haproxy",
    "nginx-stream.log": "nginx-stream",
    "nginx-proxy-manager.log": "nginx-proxy-manager",
    "envoy-access.log": "envoy",
    "envoy-istio.log": "envoy+cri",  # behind the kubelet's prefix
    "envoy-access.json": "envoy",
    "zeek-ssl.log": "zeek",
    "zeek-http.log": "zeek",
    "zeek-conn.log": "zeek",
    "zeek-ssl.json": "zeek",
    "suricata-eve.json": "suricata",
    "aws-network-firewall.log": "aws-network-firewall",
    "cloudflare-http_requests.ndjson": "cloudflare",
}


def test_every_sample_is_listed() -> None:
    on_disk = {p.name for p in asset("logs/README.md").parent.iterdir() if p.name != "README.md"}
    assert on_disk == set(SAMPLES) | {"gateway.json"}  # generic JSON is never detected (test_jsonmap.py)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_is_detected_as_its_format(name: str) -> None:
    fmt = detect_format(asset(f"logs/{name}").read_bytes()[: 1 << 16], name)
    assert fmt is not None and fmt.name == SAMPLES[name]


# The lines of the new samples another format's sniff also accepts: the lines of another format
# mixed in on purpose, and Istio lines behind a container-runtime prefix, which look like a
# combined record with a virtual host (detection still picks envoy by majority).
CLAIMED_BY_OTHERS = {
    "squid-common.log": {"squid": [10]},
    "haproxy-syslog.log": {"combined": [16]},
    "nginx-proxy-manager.log": {"combined": [12]},
    "envoy-access.log": {"combined": [11]},
    "envoy-istio.log": {"combined": [2, 6]},
    "envoy-access.json": {"suricata": [8]},
    "zeek-ssl.log": {"squid": [16]},
    "zeek-ssl.json": {"suricata": [7]},
    "suricata-eve.json": {"zeek": [17]},
    "aws-network-firewall.log": {"suricata": [15]},
    "cloudflare-http_requests.ndjson": {"vercel": [10]},
}


@pytest.mark.parametrize(
    "name", sorted(n for n in SAMPLES if n not in ("squid-access.log", "nginx-access.log", "apache-vhost-access.log") and "vercel" not in n)
)
def test_which_lines_other_formats_claim(name: str) -> None:
    own = SAMPLES[name]
    lines = asset(f"logs/{name}").read_bytes().decode("utf-8", "replace").split("\n")
    claimed = {}
    for other in FORMATS.values():
        hits = [i for i, line in enumerate(lines, 1) if other.sniff(line)]
        if other.name != own and hits:
            claimed[other.name] = hits
    assert claimed == CLAIMED_BY_OTHERS.get(name, {})


def test_format_choices_are_every_format() -> None:
    result = CliRunner().invoke(cli, ["logs", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name in FORMATS:
        assert name in text
    assert set(FORMATS) == {
        "squid",
        "combined",
        "vercel",
        "haproxy",
        "nginx-stream",
        "nginx-proxy-manager",
        "envoy",
        "zeek",
        "aws-network-firewall",
        "suricata",
        "cloudflare",
        "json",
    }


@pytest.mark.parametrize(
    "forced", ["squid", "haproxy", "envoy", "suricata", "cloudflare", "nginx-stream", "nginx-proxy-manager", "aws-network-firewall"]
)
def test_forced_format_parses_every_candidate_with_it(forced: str) -> None:
    path = asset("logs/zeek-ssl.json")
    log, events = read_all(path, forced)
    assert log.format is not None and log.format.name == forced
    suricata_line = 7 if forced == "suricata" else None  # the Suricata event mixed into the sample
    assert [int(e.source.rsplit(":", 1)[1]) for e in events] == ([suricata_line] if suricata_line else [])
    assert sum(log.stats.skipped.values()) + len(events) == log.stats.candidates == 6


def test_forced_format_reads_what_detection_would_call_another(tmp_path: Path) -> None:
    # A Zeek JSON file whose first lines happen to look like Suricata's is still Zeek when told so.
    lines = [json.dumps({"timestamp": "2024-07-15T09:10:11+0000", "event_type": "stats", "stats": {}})] * 5
    lines.append(
        json.dumps(
            {
                "ts": 1721034611.1,
                "uid": "C1",
                "id.orig_h": "10.20.1.5",
                "id.orig_p": 1,
                "id.resp_h": "162.159.140.245",
                "id.resp_p": 443,
                "server_name": "api.openai.com",
            }
        )
    )
    path = tmp_path / "ssl.json"
    path.write_text("\n".join(lines) + "\n")
    assert read_all(path)[0].format.name == "suricata"  # type: ignore[union-attr]
    _log, events = read_all(path, "zeek")
    assert [e.server_name for e in events] == ["api.openai.com"]


def test_cli_format_option_forces_it(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    ok = CliRunner().invoke(cli, ["logs", str(asset("logs/zeek-ssl.log")), "--format", "zeek", "--db", db])
    assert ok.exit_code in (0, 1), ok.output
    assert "(zeek): 30 lines, 4 calls to governed hosts" in ok.stderr  # lines 9, 12, 13 and 27; 14 and 15 are decoys
    wrong = CliRunner().invoke(cli, ["logs", str(asset("logs/zeek-ssl.log")), "--format", "haproxy", "--db", str(tmp_path / "g.db")])
    assert "(haproxy): 30 lines, 0 calls to governed hosts" in wrong.stderr
    assert "skipped 10 malformed: haproxy: no 'client:port [accept date]'" in wrong.stderr


def test_hash_lines_are_plain_lines_for_other_formats(tmp_path: Path) -> None:
    squid = "1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -"
    path = tmp_path / "access.log"
    path.write_text(f"{squid}\n#fields\tnot zeek\n# api.openai.com comment\n{squid}\n")
    log, events = read_all(path)
    assert [e.source.rsplit(":", 1)[1] for e in events] == ["1", "4"]
    assert (log.stats.lines, log.stats.candidates, sum(log.stats.skipped.values())) == (4, 3, 1)


def test_unrecognised_json_says_how_to_configure_it(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    path.write_text('{"when":"2024-07-15T09:10:11Z","host":"api.openai.com"}\n' * 3)
    with pytest.raises(SourceError) as info:
        LogFile.open(str(path), NEEDLES)
    assert "--format" in str(info.value) and 'format = "json"' in str(info.value)


@pytest.mark.parametrize("name", ["vercel", "envoy", "zeek", "suricata", "cloudflare"])
def test_a_number_too_long_for_python_is_malformed_not_a_crash(name: str) -> None:
    # json.loads raises a plain ValueError (no .msg) for integers over 4300 digits.
    line = '{"event_type":"tls","deploymentId":"d","source":"external","start_time":"x","ts":' + "9" * 5000 + "}"
    with pytest.raises(Malformed, match="not JSON"):
        FORMATS[name].parse(line, "x.json:1")


@pytest.mark.parametrize("name", ["vercel", "envoy", "zeek", "suricata", "aws-network-firewall", "cloudflare"])
def test_json_nested_too_deeply_for_python_is_malformed_not_a_crash(name: str) -> None:
    # json.loads raises RecursionError, not a ValueError, past about a thousand levels.
    line = '{"event_type":"tls","firewall_name":"fw","deploymentId":"d","start_time":"x","event":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(Malformed, match="nested too deeply"):
        FORMATS[name].parse(line, "x.json:1")


def test_json_nested_too_deeply_through_the_cli_is_a_counted_skip(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    deep = "[" * 100_000 + "]" * 100_000
    path.write_text(
        '{"timestamp":"2024-07-15T09:10:11Z","event_type":"tls","tls":{"sni":"api.openai.com"}}\n'
        '{"timestamp":"2024-07-15T09:10:12Z","event_type":"tls","tls":{"sni":"api.openai.com"},"x":' + deep + "}\n"
    )
    result = CliRunner().invoke(cli, ["logs", str(path), "--db", str(tmp_path / "f.db")])
    assert result.exit_code == 0, result.output  # one call, unattributed: no violation
    assert f"skipped 1 malformed: suricata: not JSON (arrays or objects nested too deeply) ({path}:2)" in result.stderr
    assert "1 call to governed hosts" in result.stderr


def test_json_nested_too_deeply_inside_a_json_array_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "drain.json"
    path.write_text('[{"deploymentId":"dpl_1","projectId":"prj_1","source":"external","x":' + "[" * 100_000 + "]" * 100_000 + "}]\n")
    log, events = read_all(path)
    assert events == [] and list(log.stats.skipped) == ["vercel: invalid JSON in the array; the rest of it was not read"]
    assert "nested too deeply" in log.stats.locations["vercel: invalid JSON in the array; the rest of it was not read"][0]


def test_a_number_too_long_inside_a_json_array_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "drain.json"
    path.write_text('[{"deploymentId":"dpl_1","projectId":"prj_1","source":"external","timestamp":' + "9" * 5000 + "}]\n")
    log, events = read_all(path)
    assert events == [] and list(log.stats.skipped) == ["vercel: invalid JSON in the array; the rest of it was not read"]


@pytest.mark.parametrize(
    "fmt, line",
    [
        # Found by fuzzing the parsers with damaged sample lines; each used to escape as an
        # OverflowError or ValueError instead of a counted malformed line.
        (
            "combined",
            '10.20.1.5 - - [15/Jul/2024:09:10999999999999999999999:11 +0000] "CONNECT api.openai.com:443 HTTP/1.1" 200 5120 "-" "curl/8.5.0"',
        ),
        ("nginx-stream", '10.20.1.5 [15/Jul/2024:09999999999999999999999:10:18 +0000] TCP 200 120 60 0.012 "192.0.2.53:443" "api.openai.com"'),
        (
            "squid",
            "1721005930.512    912 10.20.1.5 TCP_MISS/200 2210 POST https://api.openai.com[v1/chat/completions - HIER_DIRECT/162.159.140.245 application/json",
        ),
        ("combined", '10.20.1.5 - - [15/Jul/2024:09:10:13 +0000] "GET http://api.openai.com[x/ HTTP/1.1" 200 3380 "-" "curl/8.5.0"'),
    ],
)
def test_damaged_fields_are_malformed_lines(fmt: str, line: str) -> None:
    from auditor.sources.interface import Malformed
    from auditor.sources.logfile import FORMATS

    with pytest.raises(Malformed):
        FORMATS[fmt].parse(line, "t.log:1")


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_byte_order_mark_first_changes_nothing(tmp_path: Path, name: str) -> None:
    # A log saved by a Windows editor starts with EF BB BF: it made the first line malformed
    # (a Zeek file lost its #separator header, so every line).
    data = asset(f"logs/{name}").read_bytes()
    marked = tmp_path / name
    marked.write_bytes(b"\xef\xbb\xbf" + data)
    plain, plain_events = read_all(asset(f"logs/{name}"))
    log, events = read_all(marked)
    assert log.format is not None and log.format.name == SAMPLES[name]
    assert [(e.server_name, e.ts, e.orig_h) for e in events] == [(e.server_name, e.ts, e.orig_h) for e in plain_events]
    assert log.stats.skipped == plain.stats.skipped and log.stats.lines == plain.stats.lines
    assert (log.stats.events, log.stats.candidates) == (plain.stats.events, plain.stats.candidates)


def test_a_byte_order_mark_before_zeek_headers_survives_a_resume(tmp_path: Path) -> None:
    from tests.sources.helpers import run

    # The header resuming replays must include the first one: written with another separator.
    data = asset("logs/zeek-ssl.log").read_bytes().replace(b"\t", b"|").replace(b"#separator \\x09", b"#separator \\x7c")
    assert data.startswith(b"#separator \\x7c\n")
    unmarked_file = tmp_path / "plain.log"
    unmarked_file.write_bytes(data)
    marked = tmp_path / "ssl.log"
    marked.write_bytes(b"\xef\xbb\xbf" + data)
    lines = data.split(b"\n")
    cut = next(i for i, line in enumerate(lines) if not line.startswith(b"#")) + 1  # headers and one record
    offset = len(b"\n".join(lines[:cut])) + 1
    plain, unmarked = run(unmarked_file, resume=(offset, cut))
    log, rest = run(marked, resume=(3 + offset, cut))
    resumed = [e.server_name for b in rest for e in b.events]
    assert resumed and resumed == [e.server_name for b in unmarked for e in b.events]
    assert log.stats.skipped == plain.stats.skipped and sum(plain.stats.skipped.values()) == 4  # the sample's own bad lines
