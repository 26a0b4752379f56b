"""Log lines inside a container runtime's or a log shipper's record: each sample file, wrapped the
way Docker's json-file driver, Filebeat's file output and the CRI log files write it, reads as the
file itself does.

Shapes: Docker's json-file driver (https://docs.docker.com/engine/logging/drivers/json-file/,
`{"log":"...\n","stream":"stdout","time":"..."}`); Filebeat's file output
(https://www.elastic.co/guide/en/beats/filebeat/current/file-output.html, one JSON event per line
with `@timestamp`, `@metadata` and the line in `message`); the CRI log format of kubelet
(kubernetes design-proposals-archive, node/kubelet-cri-logging.md: `<RFC 3339 nano time>
<stream> <P|F> <line>`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from auditor.sources import wrapped
from auditor.sources.interface import Malformed
from tests.conftest import asset
from tests.sources.helpers import events_of, read_all, run


def docker(line: str) -> str:
    # json-file driver: the line with its newline, the stream, the time the runtime read it.
    return json.dumps({"log": line + "\n", "stream": "stdout", "time": "2024-07-15T09:10:30.123456789Z"}, separators=(",", ":"))


def ecs(line: str) -> str:
    # Filebeat output.file (filestream input): @timestamp, @metadata, the line in message.
    return json.dumps({
        "@timestamp": "2024-07-15T09:10:30.123Z", "@metadata": {"beat": "filebeat", "type": "_doc", "version": "8.14.0"},
        "log": {"offset": 0, "file": {"path": "/var/log/proxy/access.log"}}, "message": line,
        "input": {"type": "filestream"}, "agent": {"type": "filebeat", "version": "8.14.0"}, "ecs": {"version": "8.0.0"},
    }, separators=(",", ":"))


def cri(line: str) -> str:
    return "2024-07-15T09:10:30.123456789+02:00 stdout F " + line


WRAP = {"docker": docker, "ecs": ecs, "cri": cri}
SAMPLES = {
    "squid-access.log": "squid", "squid-common.log": "combined", "nginx-access.log": "combined", "apache-vhost-access.log": "combined",
    "haproxy-stdout.log": "haproxy", "nginx-stream.log": "nginx-stream", "envoy-access.log": "envoy", "zeek-ssl.json": "zeek",
    "suricata-eve.json": "suricata", "cloudflare-http_requests.ndjson": "cloudflare", "vercel-drain.ndjson": "vercel",
}


@pytest.mark.parametrize("kind", sorted(WRAP))
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_wrapped_sample_reads_as_the_sample(tmp_path: Path, kind: str, name: str) -> None:
    lines = asset(f"logs/{name}").read_text(encoding="utf-8", errors="replace").splitlines()  # some carry bad bytes on purpose
    path = tmp_path / name
    path.write_text("".join(WRAP[kind](line) + "\n" for line in lines if line), encoding="utf-8")
    plain_log, plain = read_all(asset(f"logs/{name}"))
    log, events = read_all(path)
    inner = SAMPLES[name]
    assert log.format is not None
    assert log.format.name == f"{inner}+{kind}"
    assert events and [(e.server_name, e.ts, e.orig_h, e.status, e.egress_region, e.message) for e in events] == [
        (e.server_name, e.ts, e.orig_h, e.status, e.egress_region, e.message) for e in plain]
    assert log.stats.events == plain_log.stats.events and sum(log.stats.skipped.values()) == sum(plain_log.stats.skipped.values())
    assert all(e.source.startswith(f"{path}:") for e in events)


def test_the_wrapped_format_is_named_for_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large wrapped file is read in pieces by worker processes, which find the format by name."""
    from auditor.sources import logfile

    lines = asset("logs/squid-access.log").read_text(encoding="utf-8", errors="replace").splitlines() * 30
    path = tmp_path / "docker.log"
    path.write_text("".join(docker(line) + "\n" for line in lines), encoding="utf-8")
    os.utime(path, (1721005923, 1721005923))  # settled: not being written, so it may be split
    _, one = run(path)
    monkeypatch.setattr(logfile, "PARALLEL_MIN", 1)
    monkeypatch.setattr(logfile, "PARALLEL_PIECE", 4096)
    log, many = run(path)
    assert len(many) > 2 and log.format is not None and log.format.name == "squid+docker"
    assert [(e.source, e.server_name) for e in events_of(many)] == [(e.source, e.server_name) for e in events_of(one)]
    assert logfile.format_named("squid+docker") is not None and logfile.format_named("squid+zip") is None


@pytest.mark.parametrize("line, kind", [
    (docker("x"), "docker"),
    ('{"log":"x","stream":"stderr","kubernetes":{"pod_name":"squid-0"}}', "docker"),  # Fluent Bit
    (ecs("x"), "ecs"),
    (cri("x"), "cri"),
    ("2024-07-15T09:10:30Z stderr P x", "cri"),
    ('{"message":"x"}', None),  # no @timestamp: a Vercel-like record, not a wrapper
    ('{"@timestamp":"2024","message":{"a":1}}', None),
    ("[1, 2]", None),
    ("1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -", None),
])
def test_kind_of(line: str, kind: str | None) -> None:
    assert wrapped.kind_of(line) == kind


def test_a_line_outside_the_wrapper_is_malformed() -> None:
    # A plain line in a file whose first lines are wrapped (it said "docker: not JSON").
    with pytest.raises(Malformed, match=r"^a line outside the wrapper the file's first lines are in \(a Docker json-file record is a JSON object\)$"):
        wrapped.unwrap("docker", "1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/1.2.3.4 -")
    with pytest.raises(Malformed, match="^docker: not JSON"):
        wrapped.unwrap("docker", '{"log": "cut short')
    assert wrapped.unwrap("cri", "plain text") == "plain text"  # no prefix: the host's own line, read as it is
    with pytest.raises(Malformed, match="docker: no 'log' text"):
        wrapped.unwrap("docker", '{"stream":"stdout"}')
    assert wrapped.unwrap("docker", docker("a line\r")) == "a line"


def test_a_source_entry_forces_a_format_inside_a_wrapper(tmp_path: Path) -> None:
    """Generic JSON is never detected: JSON lines of an app in a container are read by naming both
    in the [[source]] entry (format = "json+docker" and the field map)."""
    from auditor.config import ConfigError, parse_config
    from auditor.sources.logfile import LogFile
    from tests.sources.helpers import NEEDLES
    from tests.sources.test_jsonmap import CONFIG

    plain = asset("logs/gateway.json")
    path = tmp_path / "gateway.json"
    path.write_text("".join(docker(line) + "\n" for line in plain.read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    entry = dict(CONFIG["source"][0], path=str(path), format="json+docker")
    source = parse_config({"source": [entry]}, "t.toml").source(str(path))
    log = LogFile.open(str(path), NEEDLES, source.format, source.field_map)
    found = list(log.events())
    log.close()
    unwrapped = LogFile.open(str(plain), NEEDLES, "json", source.field_map)
    want = list(unwrapped.events())
    unwrapped.close()
    assert log.format is not None and log.format.name == "json+docker"
    assert want and [(e.server_name, e.ts, e.orig_h) for e in found] == [(e.server_name, e.ts, e.orig_h) for e in want]
    with pytest.raises(ConfigError, match=r"format 'squid\+zip' is not a log format"):
        parse_config({"source": [dict(entry, format="squid+zip")]}, "t.toml")
    with pytest.raises(ConfigError, match='format = "json" needs a field map'):
        parse_config({"source": [{"path": "x", "format": "json+docker"}]}, "t.toml")


def test_zeek_tsv_inside_a_wrapper_is_refused_with_how_to_unwrap_it(tmp_path: Path) -> None:
    """Its header lines are wrapped too, and only lines naming a governed host reach the parser:
    every record was 'a TSV record before any #fields header'."""
    from auditor.sources.interface import SourceError
    from auditor.sources.logfile import LogFile
    from tests.sources.helpers import NEEDLES

    path = tmp_path / "ssl.log"
    path.write_text("".join(docker(line) + "\n" for line in asset("logs/zeek-ssl.log").read_text(encoding="utf-8", errors="replace").splitlines()))
    for fmt in (None, "zeek+docker"):
        with pytest.raises(SourceError) as info:
            LogFile.open(str(path), NEEDLES, fmt)
        assert str(info.value) == (f"{path}: Zeek TSV inside docker records cannot be read (its header lines are wrapped too); "
                                   "take the lines out first: jq -r .log FILE > ssl.log")


@pytest.mark.parametrize("kind", ["docker", "cri"])
def test_a_line_split_by_the_runtime_is_read_part_by_part(tmp_path: Path, kind: str) -> None:
    # Over 16 KiB, dockerd and containerd write a line in parts: Docker records without the final
    # newline, CRI `P` records before the `F` one. The first part holds the start of the line.
    line = ("1721034611.123 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 - "
            "[User-Agent: " + "x" * 17_000 + "\\r\\nHost: api.openai.com:443\\r\\n]")
    first, rest = line[:16_384], line[16_384:]
    if kind == "docker":
        parts = [json.dumps({"log": first, "stream": "stdout", "time": "2024-07-15T09:10:30.1Z"}), docker(rest)]
    else:
        parts = ["2024-07-15T09:10:30.1Z stdout P " + first, "2024-07-15T09:10:30.1Z stdout F " + rest]
    path = tmp_path / "access.log"
    path.write_text(docker(line) + "\n" + "\n".join(parts) + "\n" if kind == "docker" else cri(line) + "\n" + "\n".join(parts) + "\n")
    log, events = read_all(path)
    assert log.format is not None and log.format.name == f"squid+{kind}"
    assert [(e.server_name, e.orig_h) for e in events] == [("api.openai.com", "10.20.1.5")] * 2  # the whole line, then the first part
    assert [where for ws in log.stats.locations.values() for where in ws] == [f"{path}:3"]  # the part that names the host again


@pytest.mark.parametrize("kind", sorted(WRAP))
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_forced_format_is_read_inside_the_wrapper(tmp_path: Path, kind: str, name: str) -> None:
    # `--format envoy` on a container's log read nothing once Envoy stopped taking the prefix off
    # itself: a plain name is read inside the wrapper the first lines are in.
    inner = SAMPLES[name]
    lines = asset(f"logs/{name}").read_text(encoding="utf-8", errors="replace").splitlines()
    path = tmp_path / name
    path.write_text("".join(WRAP[kind](line) + "\n" for line in lines if line), encoding="utf-8")
    _, plain = read_all(asset(f"logs/{name}"), inner)
    log, events = read_all(path, inner)
    assert log.format is not None and log.format.name == f"{inner}+{kind}"
    assert [(e.server_name, e.ts, e.orig_h) for e in events] == [(e.server_name, e.ts, e.orig_h) for e in plain]


def test_a_forced_json_map_is_not_moved_inside_a_wrapper() -> None:
    from auditor.sources.logfile import format_named

    sample = (docker('{"ts": 1}') + "\n").encode() * 3
    assert format_named("json", sample).name == "json"  # its field map may address the record's own keys
    assert format_named("squid", sample).name == "squid+docker"
    assert format_named("squid+ecs", sample).name == "squid+ecs"  # named: as named


def test_lines_without_the_runtime_prefix_are_read_as_they_are(tmp_path: Path) -> None:
    # A container's log and the host's in one file: the lines without the prefix were malformed.
    lines = asset("logs/squid-access.log").read_text(encoding="utf-8", errors="replace").splitlines()
    path = tmp_path / "access.log"
    path.write_text("".join((cri(line) if i % 3 else line) + "\n" for i, line in enumerate(lines) if line), encoding="utf-8")
    plain_log, plain = read_all(asset("logs/squid-access.log"))
    log, events = read_all(path)
    assert log.format is not None and log.format.name == "squid+cri"
    assert [(e.server_name, e.ts, e.orig_h) for e in events] == [(e.server_name, e.ts, e.orig_h) for e in plain]
    assert log.stats.skipped == plain_log.stats.skipped


@pytest.mark.parametrize("kind", ["docker", "ecs"])
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_runtime_line_inside_a_shipper_record_reads_as_the_sample(tmp_path: Path, kind: str, name: str) -> None:
    # Filebeat's log input (or Fluent Bit without its cri parser) on /var/log/containers ships the
    # runtime's line as it is; it read nothing once Envoy and Suricata stopped taking the prefix off.
    lines = asset(f"logs/{name}").read_text(encoding="utf-8", errors="replace").splitlines()
    path = tmp_path / name
    path.write_text("".join(WRAP[kind](cri(line)) + "\n" for line in lines if line), encoding="utf-8")
    _, plain = read_all(asset(f"logs/{name}"))
    log, events = read_all(path)
    assert log.format is not None and log.format.name == f"{SAMPLES[name]}+{kind}"
    assert events and [(e.server_name, e.ts, e.orig_h) for e in events] == [(e.server_name, e.ts, e.orig_h) for e in plain]
