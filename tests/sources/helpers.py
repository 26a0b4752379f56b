"""Shared helpers for the log-source tests: run a parser on one line, read a file through LogFile."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.events import ConnectionEvent
from auditor.redact import redact
from auditor.sources.interface import Batch, Ignored, Malformed
from auditor.sources.logfile import LogFile, rebased_event
from rules.policy import load_policies

UTC = dt.UTC
POLICIES = load_policies()
NEEDLES = POLICIES.needles()
FIELDS = ("server_name", "orig_h", "resp_h", "resp_p", "method", "status", "ts")


def utc(text: str) -> dt.datetime:
    """`2024-07-15 01:12:03.412` -> aware UTC datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def fields(event: ConnectionEvent) -> dict[str, Any]:
    """The fields the tables pin, as a dict (so a mismatch shows every field at once)."""
    return {name: getattr(event, name) for name in FIELDS}


def outcome(parse: Callable[[str, str], ConnectionEvent], line: str) -> tuple[str, str]:
    """("event", server_name) | ("malformed", reason) | ("ignored", reason) for one line."""
    try:
        event = parse(line, "t.log:1")
    except Malformed as e:
        return "malformed", str(e)
    except Ignored as e:
        return "ignored", str(e)
    return "event", event.server_name


def read_all(path: Path | str, fmt: str | None = None) -> tuple[LogFile, list[ConnectionEvent]]:
    """Open `path` with the shipped policies' needles and read every event."""
    log = LogFile.open(str(path), NEEDLES, fmt)
    try:
        events = list(log.events())
    finally:
        log.close()
    return log, events


def run(path: Path | str, fmt: str | None = None, *, resume: tuple[int, int] | None = None) -> tuple[LogFile, list[Batch]]:
    """Read `path` through LogFile (after resuming at a checkpoint when given): the reader and its batches."""
    log = LogFile.open(str(path), NEEDLES, fmt)
    try:
        if resume is not None:
            assert log.resume(*resume)
        batches = list(log.batches())
    finally:
        log.close()
    return log, batches


def events_of(batches: list[Batch]) -> list[ConnectionEvent]:
    """All events of some batches, in order."""
    return [e for b in batches for e in b.events]


def assert_redacted(raw: str, secrets: list[str], kept: list[str]) -> None:
    """What the store keeps of `raw` holds none of `secrets` and all of `kept`."""
    cleaned = redact(raw)
    for secret in secrets:
        assert secret not in cleaned
    for text in kept:
        assert text in cleaned


def line_no(event: ConnectionEvent) -> int:
    """The line number of an event's `file:line` source."""
    return int(event.source.rsplit(":", 1)[1])


def run_in_ranges(path: Path | str, size: int, fmt: str | None = None, *, resume: tuple[int, int] | None = None) -> tuple[LogFile, list[Batch]]:
    """Read `path` the way the executor's workers read a large file, in this process: each
    whole-line range of about `size` bytes (LogFile.ranges) by a reader of its own
    (LogFile.of_range), one batch per range with its events' locations moved to the file's lines,
    then what is left by `path`'s own reader."""
    log = LogFile.open(str(path), NEEDLES, fmt)
    try:
        if resume is not None:
            assert log.resume(*resume)
        batches = []
        end = log.range_end(1)
        for where in log.ranges(end, size) if end else ():
            part = LogFile.of_range(where)
            try:
                events = [e for b in part.batches() for e in b.events]
            finally:
                part.close()
            base = log.took(part.stats, where.stop)
            batches.append(Batch(tuple(rebased_event(e, log.name, base) for e in events), where.stop, base + part.stats.lines))
        batches.extend(log.batches())
    finally:
        log.close()
    return log, batches
