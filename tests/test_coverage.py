"""When the records read were written, and the report's coverage built from it: which days of the
period had no input at all, which had records but no governed call.

Readers date a few records of what they read (auditor.spans, SourceStats.spans): the first and last
record of each stretch of about a MiB of a log, of each read of a pcap, of DATE_PACKETS pcapng
packets, of ARRAY_STRETCH entries of a JSON array. The tests shrink those stretches to see holes
between records inside one small file, and check the stretches against the records' own times."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from auditor.cli import cli
from auditor.sources import logfile, pcap
from auditor.sources.pcap import PcapFile
from auditor.spans import MAX_SPANS, Span, add_span
from tests.sources.helpers import run, run_in_ranges
from tests.test_report import DEMO_CONFIG, validate

UTC = dt.UTC
GOVERNED, OTHER = "api.openai.com", "www.example.com"
BETA = "10.30.2.7"
"""A client of beta-labs (examples/auditor.toml), leaving through Singapore: allowed."""


def at(day: int, hour: int = 10, month: int = 7) -> dt.datetime:
    return dt.datetime(2024, month, day, hour, tzinfo=UTC)


def squid(when: dt.datetime, host: str = GOVERNED, client: str = BETA) -> str:
    """A Squid native access.log line, as Squid writes it."""
    return f"{when.timestamp():.3f}  24625 {client} TCP_TUNNEL/200 38381 CONNECT {host}:443 - HIER_DIRECT/162.159.140.245 -\n"


def write_log(path: Path, records: list[tuple[dt.datetime, str]]) -> Path:
    path.write_text("".join(squid(when, host) for when, host in records))
    return path


def days_of(spans: list[Span] | tuple[Span, ...]) -> set[dt.date]:
    out = set()
    for first, last in spans:
        day = first.date()
        while day <= last.date():
            out.add(day)
            day += dt.timedelta(days=1)
    return out


# auditor.spans -------------------------------------------------------------------------------------


def test_spans_join_on_shared_and_next_days_only() -> None:
    spans: list[Span] = []
    add_span(spans, at(5, 9), at(5, 11))
    add_span(spans, at(1, 23), at(1, 8))  # given backwards
    add_span(spans, at(6, 1), at(6, 2))  # the day after the first: joined
    add_span(spans, at(3, 12), at(3, 12))
    assert spans == [(at(1, 8), at(1, 23)), (at(3, 12), at(3, 12)), (at(5, 9), at(6, 2))]
    add_span(spans, at(2, 0), at(4, 0))  # bridges all three
    assert spans == [(at(1, 8), at(6, 2))]


def test_spans_past_the_limit_join_the_closest() -> None:
    spans: list[Span] = []
    for k in range(MAX_SPANS):
        add_span(spans, at(1) + dt.timedelta(days=3 * k), at(1) + dt.timedelta(days=3 * k))
    last = at(1) + dt.timedelta(days=3 * MAX_SPANS - 1)  # two days after the last: apart, and the closest pair
    add_span(spans, last, last)
    assert len(spans) == MAX_SPANS
    assert spans[-1] == (at(1) + dt.timedelta(days=3 * (MAX_SPANS - 1)), last)
    assert spans[-2] == (at(1) + dt.timedelta(days=3 * (MAX_SPANS - 2)),) * 2


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 3), st.integers(0, 23)), max_size=40))
def test_spans_keep_exactly_the_days_given(stretches: list[tuple[int, int, int]]) -> None:
    spans: list[Span] = []
    given_days: set[dt.date] = set()
    for start, length, hour in stretches:
        first = at(1, hour) + dt.timedelta(days=start)
        last = first + dt.timedelta(days=length)
        add_span(spans, first, last)
        given_days |= days_of([(first, last)])
    assert spans == sorted(spans)
    assert all((b[0].date() - a[1].date()).days > 1 for a, b in itertools.pairwise(spans))
    assert days_of(spans) == given_days
    if stretches:
        assert spans[0][0] == min(at(1, h) + dt.timedelta(days=s) for s, _, h in stretches)


# Readers --------------------------------------------------------------------------------------------


def holey(path: Path) -> Path:
    """A day of calls and other traffic, four days without a record, then two more days."""
    records = [(at(1, h), GOVERNED if h % 3 == 0 else OTHER) for h in range(8, 20)]
    records += [(at(6, h), OTHER) for h in range(0, 24, 2)] + [(at(7, 5), OTHER), (at(7, 6), GOVERNED)]
    return write_log(path, records)


def test_a_log_is_dated_by_its_first_and_last_records_whatever_the_prefilter_passes(tmp_path: Path) -> None:
    log, batches = run(holey(tmp_path / "access.log"))
    assert sum(len(b.events) for b in batches) == 5
    # Read as one stretch (the file is far under SPAN_BYTES): the hole inside is not seen, the ends are exact.
    assert log.stats.spans == [(at(1, 8), at(7, 6))]


def test_stretches_of_a_log_show_a_hole_between_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logfile, "SPAN_BYTES", 300)  # about three lines a stretch
    path = holey(tmp_path / "access.log")
    log, _ = run(path)
    assert days_of(log.stats.spans) == {dt.date(2024, 7, 1), dt.date(2024, 7, 6), dt.date(2024, 7, 7)}
    assert (log.stats.spans[0][0], log.stats.spans[-1][1]) == (at(1, 8), at(7, 6))
    # Read in ranges by other processes (the executor's pieces), the stretches are the same.
    pieces, _ = run_in_ranges(path, 700)
    assert pieces.stats.spans == log.stats.spans


def test_records_without_a_time_are_passed_over_and_not_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stretch is dated by the nearest records that give a time: not by a broken first or last line,
    which is counted as malformed once (when it names a governed host), not again by the dating."""
    path = tmp_path / "access.log"
    path.write_text("garbage at the top\n" + squid(at(2, 9), OTHER) + squid(at(3, 9)) + "1721639039.776 not squid api.openai.com\n")
    log, _ = run(path, "squid")
    assert log.stats.spans == [(at(2, 9), at(3, 9))]
    assert sum(log.stats.skipped.values()) == 1 and log.stats.lines == 4


def test_zeek_headers_are_not_records(tmp_path: Path) -> None:
    """Zeek's ASCII writer starts with eight header lines: the first record after them is dated,
    though it is no call (a look-up or a TLS session to another host gives its time too)."""
    fields = "ts uid id.orig_h id.orig_p id.resp_h id.resp_p server_name".split()
    head = "".join(
        f"{h}\n"
        for h in (
            "#separator \\x09",
            "#set_separator\t,",
            "#empty_field\t(empty)",
            "#unset_field\t-",
            "#path\tssl",
            "#open\t2024-07-01-00-00-00",
            "#fields\t" + "\t".join(fields),
            "#types\t" + "\t".join("string" for _ in fields),
        )
    )
    rows = [f"{at(d).timestamp():.6f}\tC{d}\t{BETA}\t5000{d}\t162.159.140.245\t443\t{host}\n" for d, host in ((2, OTHER), (3, "-"), (4, GOVERNED))]
    path = tmp_path / "ssl.log"
    path.write_text(head + "".join(rows) + "#close\t2024-07-05-00-00-00\n")
    log, batches = run(path)
    assert [e.server_name for b in batches for e in b.events] == [GOVERNED]
    assert log.stats.spans == [(at(2), at(4))]


def test_records_that_are_not_calls_date_their_input(tmp_path: Path) -> None:
    """Requests the proxy denied are no calls, but they were written when they say: a stretch
    starting with more of them than DATE_TRIES is dated from its first."""
    denied = "".join(
        f"{at(1, h).timestamp():.3f}  24625 {BETA} TCP_DENIED/403 3900 CONNECT {GOVERNED}:443 - HIER_NONE/- text/html\n" for h in range(12)
    )
    path = tmp_path / "access.log"
    path.write_text(denied + squid(at(3, 9)))
    log, batches = run(path)
    assert log.stats.ignored["denied by the proxy"] == 12 and sum(len(b.events) for b in batches) == 1
    assert log.stats.spans == [(at(1, 0), at(3, 9))]


def test_a_batch_carries_the_times_of_its_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch is dated when it is handed on (the store keeps the times with its checkpoint):
    a file that ends right after a batch loses none of them."""
    monkeypatch.setattr(logfile, "BATCH_LINES", 2)
    monkeypatch.setattr(logfile, "WINDOW", 240)  # two lines a read
    path = write_log(tmp_path / "access.log", [(at(1, 9), OTHER), (at(2, 9), OTHER), (at(5, 9), OTHER), (at(6, 9), OTHER)])
    log = logfile.LogFile.open(str(path), (GOVERNED.encode(),))
    seen = [list(log.stats.spans) for _ in log.batches()]  # as each batch is handed on
    log.close()
    assert seen == [[(at(1, 9), at(2, 9))], [(at(1, 9), at(2, 9)), (at(5, 9), at(6, 9))]]


def test_a_vercel_array_is_dated_by_its_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logfile, "ARRAY_STRETCH", 2)
    entries = [
        {"id": str(i), "source": "lambda", "host": "x.vercel.app", "timestamp": int(when.timestamp() * 1000), "message": "GET /", "projectId": "prj"}
        for i, when in enumerate((at(1, 1), at(1, 2), at(9, 3), at(9, 4), at(10, 5)))
    ]
    path = tmp_path / "drain.json"
    path.write_text(json.dumps(entries))
    log, _ = run(path)
    assert log.stats.lines == 5
    assert log.stats.spans == [(at(1, 1), at(1, 2)), (at(9, 3), at(10, 5))]


def write_capture(path: Path, times: list[dt.datetime], ng: bool) -> Path:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapNgWriter, PcapWriter

    writer = PcapNgWriter(str(path)) if ng else PcapWriter(str(path), sync=True)
    for i, when in enumerate(times):
        packet = (
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=BETA, dst="162.159.140.245") / TCP(sport=40000 + i, dport=443, flags="S")
        )
        packet.time = when.timestamp()
        writer.write(packet)
    writer.close()
    return path


@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
def test_captures_are_dated_by_their_packets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ng: bool) -> None:
    times = [at(1, 1), at(1, 2), at(1, 3), at(1, 4), at(8, 1), at(9, 3)]
    path = write_capture(tmp_path / "c.pcap", times, ng)
    capture = PcapFile.open(str(path))
    list(capture.batches())
    capture.close()
    assert capture.stats.spans == [(at(1, 1), at(9, 3))]  # one stretch: its first and last packet
    # Stretches of a packet or two (a small read window, or DATE_PACKETS = 2) show the days between.
    monkeypatch.setattr(pcap, "CHUNK", 100)
    monkeypatch.setattr(pcap, "DATE_PACKETS", 2)
    capture = PcapFile.open(str(path))
    list(capture.batches())
    capture.close()
    assert capture.stats.lines == 6
    assert capture.stats.spans == [(at(1, 1), at(1, 4)), (at(8, 1), at(9, 3))]


# The store and the report ---------------------------------------------------------------------------


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def audit(db: str, *paths: Path, rescan: bool = False) -> None:
    result = invoke("logs", *map(str, paths), "--config", str(DEMO_CONFIG), "--db", db, *(["--rescan"] if rescan else []))
    assert result.exit_code == 0, result.output


def report(db: str, *args: str) -> dict[str, Any]:
    result = invoke("report", "--db", db, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    validate(document)
    return document


def gaps(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(g["first"], g["last"], g["cause"]) for g in document["coverage"]["days_without_calls"]]


@pytest.fixture
def two_logs(tmp_path: Path) -> tuple[Path, Path]:
    """July 1 (a call) and 2 (other traffic only), then nothing, then July 5 (other traffic) and 6 (a call)."""
    first = write_log(tmp_path / "june-july.log", [(at(1, 9), GOVERNED), (at(2, 11), OTHER)])
    second = write_log(tmp_path / "july.log", [(at(5, 9), OTHER), (at(6, 10), GOVERNED)])
    return first, second


def test_report_tells_days_without_input_from_days_without_calls(db_target: str, two_logs: tuple[Path, Path]) -> None:
    audit(db_target, *two_logs)
    document = report(db_target)
    assert (document["coverage"]["period_first"], document["coverage"]["period_last"]) == ("2024-07-01", "2024-07-06")
    assert gaps(document) == [
        ("2024-07-02", "2024-07-02", "no_calls"),
        ("2024-07-03", "2024-07-04", "no_input"),
        ("2024-07-05", "2024-07-05", "no_calls"),
    ]
    inputs = {Path(i["name"]).name: i for i in document["coverage"]["inputs"]}
    assert (inputs["june-july.log"]["first_record"], inputs["june-july.log"]["last_record"]) == ("2024-07-01T09:00:00Z", "2024-07-02T11:00:00Z")
    assert (inputs["june-july.log"]["first_call"], inputs["june-july.log"]["last_call"]) == ("2024-07-01T09:00:00Z", "2024-07-01T09:00:00Z")
    # A wider period: the days before and after every input have no input.
    wide = report(db_target, "--since", "2024-06-29", "--until", "2024-07-08")
    assert gaps(wide)[0] == ("2024-06-29", "2024-06-30", "no_input") and gaps(wide)[-1] == ("2024-07-07", "2024-07-08", "no_input")
    # An org with no calls: the inputs' days are days without its calls, the others still no input.
    other = report(db_target, "--org", "acme-research")
    assert gaps(other) == [
        ("2024-07-01", "2024-07-02", "no_calls"),
        ("2024-07-03", "2024-07-04", "no_input"),
        ("2024-07-05", "2024-07-06", "no_calls"),
    ]
    # The text formats say the same.
    markdown = invoke("report", "--db", db_target).stdout
    assert "- Days no audited input has records of (nothing was audited): 2024-07-03 to 2024-07-04" in markdown
    assert "- Days with records but no governed call: 2024-07-02, 2024-07-05" in markdown
    assert "| 2024-07-05 09:00:00 to 2024-07-06 10:00:00 |" in markdown
    html = invoke("report", "--db", db_target, "--format", "html").stdout
    assert '<li data-cause="no_input">Days no audited input has records of (nothing was audited): 2024-07-03 to 2024-07-04</li>' in html


def test_record_times_are_stored_with_each_batch_and_survive_a_kill(tmp_path: Path) -> None:
    """A follower killed with -9 keeps the record times of every batch it stored (the run never
    finished: they are not kept for its end), and a later run adds its own."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log = write_log(tmp_path / "access.log", [(at(1, 9), GOVERNED), (at(1, 10), OTHER)])
    db = tmp_path / "f.db"
    follower = subprocess.Popen(
        [sys.executable, "-m", "auditor", "logs", "--follow", str(log), "--config", str(DEMO_CONFIG), "--db", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def spans() -> list[tuple[str, str]]:
            try:
                with sqlite3.connect(db, timeout=10) as conn:
                    return conn.execute("SELECT first_record, last_record FROM input_spans ORDER BY first_record").fetchall()
            except sqlite3.OperationalError:
                return []

        deadline = time.monotonic() + 30
        while not spans() and time.monotonic() < deadline:
            time.sleep(0.1)
        with log.open("a") as f:
            f.write(squid(at(4, 8), OTHER))
        while len(spans()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.kill(follower.pid, signal.SIGKILL)
        follower.wait()
    assert [(a[:10], b[:10]) for a, b in spans()] == [("2024-07-01", "2024-07-01"), ("2024-07-04", "2024-07-04")]
    with log.open("a") as f:
        f.write(squid(at(6, 8)))
    audit(str(db), log)
    assert gaps(report(str(db))) == [
        ("2024-07-02", "2024-07-03", "no_input"),
        ("2024-07-04", "2024-07-04", "no_calls"),
        ("2024-07-05", "2024-07-05", "no_input"),
    ]


def test_rescan_replaces_an_inputs_record_times(tmp_path: Path, two_logs: tuple[Path, Path]) -> None:
    db = str(tmp_path / "f.db")
    audit(db, *two_logs)
    audit(db, two_logs[0], rescan=True)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT s.name, count(*) FROM input_spans p JOIN sources s ON s.id = p.source_id GROUP BY s.name ORDER BY s.name"
        ).fetchall()
    assert sorted((Path(name).name, n) for name, n in rows) == [
        ("july.log", 1),
        ("june-july.log", 1),
    ]  # the first run's row of the rescanned input is gone


def test_a_database_without_record_times_says_not_recorded(tmp_path: Path, two_logs: tuple[Path, Path]) -> None:
    """A database written before record times were recorded: its days without calls may be days
    without input or not: the report says it cannot tell. Read-only, it may lack the table itself."""
    db = tmp_path / "f.db"
    audit(str(db), *two_logs)
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE input_spans")
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    for target in (read_only, str(db)):  # read-only (the table stays missing), then writable (made again, empty)
        document = report(target)
        assert gaps(document) == [("2024-07-02", "2024-07-05", "not_recorded")]
        assert {(i["first_record"], i["last_record"]) for i in document["coverage"]["inputs"]} == {(None, None)}
    assert "not recorded" in invoke("report", "--db", str(db)).stdout
    # Audited again by this version, a new input is dated; the old ones still are not.
    later = write_log(tmp_path / "later.log", [(at(20), OTHER)])
    audit(str(db), later)
    assert gaps(report(str(db)))[-1] == ("2024-07-20", "2024-07-20", "no_calls")


def test_record_times_are_kept_on_postgresql(pg_url: str, two_logs: tuple[Path, Path]) -> None:
    audit(pg_url, *two_logs)
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT first_record, last_record FROM input_spans ORDER BY first_record")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [
        (at(1, 9).replace(tzinfo=None), at(2, 11).replace(tzinfo=None)),
        (at(5, 9).replace(tzinfo=None), at(6, 10).replace(tzinfo=None)),
    ]


@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
def test_a_damaged_capture_is_dated_up_to_the_damage(tmp_path: Path, ng: bool) -> None:
    path = write_capture(tmp_path / "c.pcap", [at(1, 1), at(1, 2), at(3, 1), at(3, 2)], ng)
    with path.open("ab") as f:  # a record (block) header claiming 2 GiB: the rest cannot be read
        f.write(struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 0x7FFFFFFF) if not ng else struct.pack("<II", 6, 0x7FFFFFF0))
    capture = PcapFile.open(str(path))
    list(capture.batches())
    capture.close()
    assert capture.stats.skipped and capture.stats.lines == 4
    assert capture.stats.spans == [(at(1, 1), at(3, 2))]


def test_many_runs_of_one_input_keep_every_stretch(tmp_path: Path, two_logs: tuple[Path, Path]) -> None:
    """The store keeps every run's stretches apart (a reader's bound on how many it holds is not
    the store's): days between them stay days without input."""
    db = tmp_path / "f.db"
    audit(str(db), two_logs[0])
    with sqlite3.connect(db) as conn:
        source_id, run_id = conn.execute("SELECT source_id, run_id FROM input_spans").fetchone()
        base = dt.datetime(2023, 1, 1, 12)
        conn.executemany(
            "INSERT INTO input_spans (run_id, source_id, read_no, first_record, last_record) VALUES (?, ?, ?, ?, ?)",
            [(run_id, source_id, 100 + k, str(base + dt.timedelta(days=3 * k)), str(base + dt.timedelta(days=3 * k))) for k in range(300)],
        )
    document = report(str(db), "--since", "2023-01-01", "--until", "2023-12-31")
    assert sum(g["days"] for g in document["coverage"]["days_without_calls"] if g["cause"] == "no_input") == 365 - 122
    assert len(gaps(document)) == 2 * 122 - 1 + 1


def test_record_times_of_early_years_are_written_in_full() -> None:
    from auditor.report.model import InputCoverage, records_range

    item = InputCoverage("x", ("combined",), "plain", dt.datetime(1, 1, 1), dt.datetime(999, 12, 31, 23, 59, 59, 5), None, None, 2, 0, (), True)
    assert records_range(item) == "0001-01-01 00:00:00 to 0999-12-31 23:59:59"
