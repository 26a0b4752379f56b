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

from auditor.sources import squid, wrapped
from auditor.sources.interface import Malformed
from tests.conftest import asset
from tests.sources.helpers import events_of, read_all, run, run_in_ranges


def docker(line: str) -> str:
    # json-file driver: the line with its newline, the stream, the time the runtime read it.
    return json.dumps({"log": line + "\n", "stream": "stdout", "time": "2024-07-15T09:10:30.123456789Z"}, separators=(",", ":"))


def ecs(line: str) -> str:
    # Filebeat output.file (filestream input): @timestamp, @metadata, the line in message.
    return json.dumps(
        {
            "@timestamp": "2024-07-15T09:10:30.123Z",
            "@metadata": {"beat": "filebeat", "type": "_doc", "version": "8.14.0"},
            "log": {"offset": 0, "file": {"path": "/var/log/proxy/access.log"}},
            "message": line,
            "input": {"type": "filestream"},
            "agent": {"type": "filebeat", "version": "8.14.0"},
            "ecs": {"version": "8.0.0"},
        },
        separators=(",", ":"),
    )


def cri(line: str) -> str:
    return "2024-07-15T09:10:30.123456789+02:00 stdout F " + line


WRAP = {"docker": docker, "ecs": ecs, "cri": cri}
SAMPLES = {
    "squid-access.log": "squid",
    "squid-common.log": "combined",
    "nginx-access.log": "combined",
    "apache-vhost-access.log": "combined",
    "haproxy-stdout.log": "haproxy",
    "nginx-stream.log": "nginx-stream",
    "envoy-access.log": "envoy",
    "zeek-ssl.json": "zeek",
    "suricata-eve.json": "suricata",
    "cloudflare-http_requests.ndjson": "cloudflare",
    "vercel-drain.ndjson": "vercel",
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
        (e.server_name, e.ts, e.orig_h, e.status, e.egress_region, e.message) for e in plain
    ]
    assert log.stats.events == plain_log.stats.events and sum(log.stats.skipped.values()) == sum(plain_log.stats.skipped.values())
    assert all(e.source.startswith(f"{path}:") for e in events)


def test_the_wrapped_format_is_named_for_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large wrapped file is read in ranges by worker processes, which find the format by name."""
    from auditor.sources import logfile

    lines = asset("logs/squid-access.log").read_text(encoding="utf-8", errors="replace").splitlines() * 30
    path = tmp_path / "docker.log"
    path.write_text("".join(docker(line) + "\n" for line in lines), encoding="utf-8")
    os.utime(path, (1721005923, 1721005923))  # settled: not being written, so it may be split
    _, one = run(path)
    log, many = run_in_ranges(path, 4096)
    assert len(many) > 2 and log.format is not None and log.format.name == "squid+docker"
    assert [(e.source, e.server_name) for e in events_of(many)] == [(e.source, e.server_name) for e in events_of(one)]
    assert logfile.format_named("squid+docker") is not None and logfile.format_named("squid+zip") is None


@pytest.mark.parametrize(
    "line, kind",
    [
        (docker("x"), "docker"),
        ('{"log":"x","stream":"stderr","kubernetes":{"pod_name":"squid-0"}}', "docker"),  # Fluent Bit
        (ecs("x"), "ecs"),
        (cri("x"), "cri"),
        ("2024-07-15T09:10:30Z stderr P x", "cri"),
        ('{"message":"x"}', None),  # no @timestamp: a Vercel-like record, not a wrapper
        ('{"@timestamp":"2024","message":{"a":1}}', None),
        ("[1, 2]", None),
        ("1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -", None),
    ],
)
def test_kind_of(line: str, kind: str | None) -> None:
    assert wrapped.kind_of(line) == kind


def test_a_line_outside_the_wrapper_is_malformed() -> None:
    # A plain line in a file whose first lines are wrapped (it said "docker: not JSON").
    with pytest.raises(Malformed, match=r"^a line outside the wrapper the file's first lines are in \(a Docker json-file record is a JSON object\)$"):
        wrapped.unwrap("docker", "1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/1.2.3.4 -")
    with pytest.raises(Malformed, match=r"^docker: not JSON"):
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
        assert str(info.value) == (
            f"{path}: Zeek TSV inside docker records cannot be read (its header lines are wrapped too); "
            "take the lines out first: jq -r .log FILE > ssl.log"
        )


# --- lines the runtime split (over 16 KiB) read as one line --------------------------------------
# Byte for byte as the runtimes write them: dockerd's json-file driver (moby
# daemon/logger/jsonfilelog: fields log, stream, time; Go's JSON escaping of <, > and & as \u003c,
# \u003e, \u0026; a part without the final \n continues in the next record, 16 KiB of text each)
# and containerd's / CRI-O's CRI files (`<RFC 3339 nano time> <stream> <P|F> <text>`, containerd
# in UTC with trailing zeros cut, CRI-O with the node's offset).
SPLIT = "1721034611.123 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 - "
LATE = (
    "1721034612.500    912 10.30.2.7 TCP_MISS/200 2210 GET http://example.org/?q=a&b=<x>"
    + "y" * 20_000
    + " - HIER_DIRECT/192.0.2.9 - https://api.openai.com/v1/models"
)
"""A line whose only governed name is in its last part (a POST to a governed URL would carry it
first; here an appended field names it)."""


def docker_record(text: str, time: str = "2024-07-15T09:10:30.123456789Z") -> str:
    escaped = json.dumps(text)[1:-1].replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'{{"log":"{escaped}","stream":"stdout","time":"{time}"}}'


def docker_parts(line: str, size: int = 16_384) -> list[str]:
    text = line + "\n"
    return [docker_record(text[i : i + size]) for i in range(0, len(text), size)]


def cri_parts(line: str, size: int = 16_384, time: str = "2024-07-15T09:10:30.12345678Z") -> list[str]:
    pieces = [line[i : i + size] for i in range(0, len(line), size)] or [""]
    return [f"{time} stdout {'P' if n < len(pieces) - 1 else 'F'} {p}" for n, p in enumerate(pieces)]


def crio_parts(line: str) -> list[str]:
    return cri_parts(line, time="2024-07-15T11:10:30.123456789+02:00")


SPLITTERS = {"docker": docker_parts, "containerd": cri_parts, "cri-o": crio_parts}
LONG = SPLIT + "[User-Agent: " + "x" * 40_000 + "\\r\\nHost: api.openai.com:443\\r\\n]"
SPLIT_CASES = [
    pytest.param([SPLIT, LONG, SPLIT], [1, 2, 5], id="three-parts-between-whole-lines"),
    pytest.param([LONG], [1], id="first-line"),
    pytest.param([SPLIT, LATE], [1, 2], id="host-in-the-last-part"),
    pytest.param([LATE, LONG], [1, 3], id="two-split-lines-in-a-row"),
    pytest.param([SPLIT + "z" * (16_384 - len(SPLIT))], [1], id="exactly-one-part"),
]


def split_log(path: Path, how: str, lines: list[str]) -> list[str]:
    records = [r for line in lines for r in SPLITTERS[how](line)]
    path.write_bytes("".join(r + "\n" for r in records).encode())
    return records


@pytest.mark.parametrize("how", sorted(SPLITTERS))
@pytest.mark.parametrize("lines, first_records", SPLIT_CASES)
def test_a_line_split_by_the_runtime_reads_as_one_line(tmp_path: Path, how: str, lines: list[str], first_records: list[int]) -> None:
    # It was read part by part: the first part a call when it parsed (the peer and type lost), a
    # later part naming a governed host malformed, a host only in a later part... malformed.
    path = tmp_path / "access.log"
    records = split_log(path, how, lines)
    log, events = read_all(path)
    assert log.format is not None and log.format.name == f"squid+{'docker' if how == 'docker' else 'cri'}"
    assert not log.stats.skipped
    assert log.stats.lines == len(records)
    plain = [squid.parse(line, "x") for line in lines]
    assert [(e.server_name, e.orig_h, e.resp_h, e.ts) for e in events] == [(p.server_name, p.orig_h, p.resp_h, p.ts) for p in plain]
    assert [e.source for e in events] == [f"{path}:{n}" for n in first_records]  # where its first part is


@pytest.mark.parametrize("how", sorted(SPLITTERS))
def test_split_lines_across_windows_batches_and_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    # The parts of a line stay together wherever the reading is cut: a window (WINDOW), a batch
    # and its checkpoint (BATCH_LINES), a worker's piece (PARALLEL_PIECE).
    from auditor.sources import logfile

    path = tmp_path / "access.log"
    lines = [LONG if i % 3 == 0 else LATE if i % 3 == 1 else SPLIT for i in range(40)]
    split_log(path, how, lines)
    os.utime(path, (1721005923, 1721005923))  # settled: it may be read in pieces
    expected = [(p.server_name, p.orig_h, p.resp_h) for p in (squid.parse(line, "x") for line in lines)]
    monkeypatch.setattr(logfile, "WINDOW", 50_000)
    monkeypatch.setattr(logfile, "BATCH_LINES", 3)
    log, batches = run(path)
    assert [(e.server_name, e.orig_h, e.resp_h) for b in batches for e in b.events] == expected and not log.stats.skipped
    data = path.read_bytes()
    assert all(
        data[b.offset - 1 : b.offset] == b"\n" and not log._partial(data, data.rfind(b"\n", 0, b.offset - 1) + 1, b.offset - 1)  # type: ignore[misc]
        for b in batches
    )  # every checkpoint after a line's last part
    resumed_log, resumed = run(path, resume=(batches[4].offset, batches[4].line))
    assert [e.server_name for b in resumed for e in b.events] == [x[0] for x in expected][-len([e for b in resumed for e in b.events]) :]
    assert not resumed_log.stats.skipped
    log, batches = run_in_ranges(path, 20_000)
    assert [(e.server_name, e.orig_h, e.resp_h) for b in batches for e in b.events] == expected and not log.stats.skipped


def test_the_parts_of_a_line_being_written_wait_for_its_last_part(tmp_path: Path) -> None:
    # A file being written whose last line has only its first parts yet (containerd writes each
    # part as it fills): left for the next run, which reads it whole, once.
    path = tmp_path / "access.log"
    records = cri_parts(SPLIT) + cri_parts(LONG)
    path.write_text("".join(r + "\n" for r in records[:-1]))
    log, first = run(path)
    assert [e.source for b in first for e in b.events] == [f"{path}:1"] and log.unterminated
    with path.open("a") as f:
        f.write(records[-1] + "\n")
    log, second = run(path, resume=(first[-1].offset, first[-1].line))
    assert [(e.source, e.resp_h) for b in second for e in b.events] == [(f"{path}:2", "162.159.140.245")] and not log.stats.skipped


def test_a_followed_file_keeps_the_first_parts_of_a_line_for_the_next_round(tmp_path: Path) -> None:
    # The follower reads what a file holds now, round after round, from one stream: parts read
    # at the end of one round were read as lines of their own.
    from auditor.follow import TailStream
    from auditor.sources.logfile import LogFile
    from tests.sources.helpers import POLICIES

    path = tmp_path / "access.log"
    records = docker_parts(SPLIT) + docker_parts(LONG)
    path.write_text("".join(r + "\n" for r in records[:-1]))
    fd = os.open(path, os.O_RDONLY)
    try:
        log = LogFile(str(path), TailStream(fd), "plain", POLICIES.needles(), None)
        log.following = True
        first = [e.source for b in log.batches() for e in b.events]
        with path.open("a") as f:
            f.write(records[-1] + "\n")
        second = [(e.source, e.resp_h) for b in log.batches() for e in b.events]
    finally:
        os.close(fd)
    assert first == [f"{path}:1"] and second == [(f"{path}:2", "162.159.140.245")] and not log.stats.skipped


def test_a_shipper_that_takes_the_newlines_off_is_read_record_by_record(tmp_path: Path) -> None:
    # Records whose `log` never ends with a newline are not parts: joined, every line would take
    # the next with it.
    path = tmp_path / "access.log"
    path.write_text("".join(docker_record(SPLIT) + "\n" for _ in range(3)))
    _, events = read_all(path)
    assert [e.source for e in events] == [f"{path}:{n}" for n in (1, 2, 3)]


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


@pytest.mark.parametrize("how", sorted(SPLITTERS))
@pytest.mark.parametrize("cut", [1, 7, 13])
def test_a_host_the_runtime_split_in_two_is_found(tmp_path: Path, how: str, cut: int) -> None:
    """Found by a hostile pass: a client pads what its proxy logs before the host (a User-Agent,
    a query) so that the runtime's 16 KiB split falls inside `api.openai.com`; neither record holds
    the name, so the search of each record alone missed the call (5 calls of 6, nothing malformed)."""
    head = "1721034612.500    912 10.30.2.7 TCP_MISS/200 2210 GET http://example.org/?q="
    before = " - HIER_DIRECT/192.0.2.9 - https://"  # the host in the appended field, as in LATE
    padded = head + "y" * (16_384 - cut - len(head) - len(before)) + before + "api.openai.com/v1/models"
    assert padded[16_384 - cut : 16_384 - cut + 14] == "api.openai.com"
    path = tmp_path / "access.log"
    split_log(path, how, [SPLIT, padded, SPLIT])
    log, events = read_all(path)
    assert not log.stats.skipped
    plain = [squid.parse(line, "x") for line in (SPLIT, padded, SPLIT)]  # the line read whole names its host so
    assert [(e.server_name, e.source) for e in events] == [(p.server_name, f"{path}:{n}") for p, n in zip(plain, (1, 2, 4), strict=True)]
