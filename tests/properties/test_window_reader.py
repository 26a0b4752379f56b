"""The window reader (LogFile.batches) against a reference that splits the input on newlines.

Inputs: governed Squid lines, other Squid lines and filler lines whose lengths sit around the read
window (WINDOW), the long-line limit (MAX_LINE) and twice the window, some of them naming a governed
host; both sizes, the sample read at open and the chunk of long-line reads (at most the window,
as shipped) are made small and drawn at random; the input is a settled plain file, gzip, bz2 or xz, or stdin (a stream that gives
short reads, plain or gzip, and a real pipe written in random pieces), with or without a newline
after its last line. Whatever the input, the reader finds exactly the (line number, host) events
the reference finds, counts exactly its lines, and counts exactly the long lines naming a governed
host as malformed, at their line numbers.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

import auditor.sources.logfile as logfile
from auditor.sources.logfile import LogFile
from tests.properties import budget
from tests.sources.helpers import NEEDLES, line_no

LONG = "line longer than 1 MiB"
TMP = Path(tempfile.mkdtemp(prefix="ra-window-"))
HOSTS = ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "pypi.org")
"""The first three are governed."""
KINDS = ("plain", "gzip", "bz2", "xz", "stdin", "stdin-gzip", "pipe")
COMPRESS = {
    "plain": lambda b: b,
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "stdin": lambda b: b,
    "stdin-gzip": gzip.compress,
    "pipe": lambda b: b,
}


def squid(i: int, host: str) -> bytes:
    return (
        f"{1721005923 + i}.{i % 1000:03d} {i % 900:6d} 10.20.1.{i % 250 + 1} TCP_TUNNEL/200 {1000 + i} CONNECT {host}:443 "
        f"- HIER_DIRECT/162.159.140.245 -"
    ).encode()


@dataclass
class Case:
    window: int
    max_line: int
    chunk: int
    sample: int
    kind: str
    lines: list[bytes]
    terminated: bool
    pieces: list[int]
    """Sizes of the reads a short-read stdin gives, and of the writes into a pipe (cycled)."""
    batch_lines: int = 200_000

    @property
    def data(self) -> bytes:
        return b"\n".join(self.lines) + (b"\n" if self.terminated else b"")

    @property
    def waits(self) -> bool:
        """True when a last line without its newline is left for later (a compressed input)."""
        return self.kind not in ("plain", "stdin", "pipe")


@st.composite
def cases(draw: st.DrawFn) -> Case:
    window = draw(st.integers(16, 700))
    # At least the longest needle (48 bytes), as shipped: the bytes of a long line kept across its
    # reads to find a needle split between two of them assume it.
    max_line = draw(st.integers(max(map(len, NEEDLES)), 700))
    sizes = [window, max_line, 2 * window]

    def filler(spec: tuple[int, int, int, bool, int]) -> bytes:
        base, delta, fill, needle, at = spec
        size = max(0, (sizes[base] if base < 3 else 3) + delta)
        line = bytes([fill]) * size
        if needle:  # written over the filler: the length stays where it was drawn (or the name's own)
            name = NEEDLES[at % 3]
            at = at % max(1, size - len(name) + 1)
            line = line[:at] + name + line[at + len(name) :]
        return line

    line = st.one_of(
        st.tuples(st.integers(0, 10_000), st.sampled_from(HOSTS)).map(lambda t: squid(*t)),
        st.tuples(st.integers(0, 3), st.integers(-3, 3), st.sampled_from(b"x #\t\r{\xff"), st.booleans(), st.integers(0, 1 << 16)).map(filler),
    )
    return Case(
        window=window,
        max_line=max_line,
        chunk=draw(st.integers(1, window)),  # as shipped: a long line's reads (CHUNK) fit the window
        sample=draw(st.integers(1, 300)),
        kind=draw(st.sampled_from(KINDS)),
        lines=draw(st.lists(line, max_size=25)),
        terminated=draw(st.booleans()),
        pieces=draw(st.lists(st.integers(1, 2000), min_size=1, max_size=8)),
        batch_lines=draw(st.sampled_from([1, 2, 5, 200_000])),
    )


def reference(case: Case) -> tuple[set[tuple[int, str]], list[int], int]:
    """What splitting on newlines gives: the events (line number, host), the line numbers of long
    lines naming a governed host, and the number of lines read."""
    pieces = case.data.split(b"\n")
    # A finished plain input's last line counts; a compressed one's waits for the file it was copied from.
    lines = pieces[:-1] + ([pieces[-1]] if pieces[-1] and not case.waits else [])
    events, long = set(), []
    for n, line in enumerate(lines, 1):
        governed = any(needle in line.lower() for needle in NEEDLES)
        if len(line) > case.max_line:
            if governed:
                long.append(n)
        elif governed and line.startswith(b"17") and b" CONNECT " in line:
            events.add((n, line.split(b" CONNECT ")[1].split(b":")[0].decode()))
    return events, long, len(lines)


class ShortReads(io.RawIOBase):
    """A raw stream that gives at most the next of `pieces` bytes per read; the first read gives
    at least 8 (what compression is told from; shorter first reads: test_stdin_first_read)."""

    def __init__(self, data: bytes, pieces: list[int], first: int = 8) -> None:
        self._data, self._pos, self._pieces, self._i = data, 0, [max(first, pieces[0]), *pieces[1:]], 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        size = min(len(buffer), self._pieces[self._i % len(self._pieces)], len(self._data) - self._pos)
        self._i += 1
        buffer[:size] = self._data[self._pos : self._pos + size]
        self._pos += size
        return size


def read(case: Case) -> tuple[LogFile, list]:
    log, batches = read_batches(case)
    return log, [e for batch in batches for e in batch.events]


def read_batches(case: Case) -> tuple[LogFile, list]:
    data = COMPRESS[case.kind](case.data)
    writer = None
    if case.kind in ("stdin", "stdin-gzip"):
        stdin = io.TextIOWrapper(io.BufferedReader(ShortReads(data, case.pieces)))
        path = "-"
    elif case.kind == "pipe":
        r, w = os.pipe()
        stdin = io.TextIOWrapper(open(r, "rb"))  # noqa: SIM115

        def write() -> None:
            pos, i = 0, 0
            try:
                with open(w, "wb", buffering=0) as out:
                    while pos < len(data):
                        step = case.pieces[i % len(case.pieces)]
                        out.write(data[pos : pos + step])
                        pos, i = pos + step, i + 1
            except BrokenPipeError:
                pass

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        path = "-"
    else:
        stdin = sys.stdin
        file = TMP / f"window-{case.kind}"
        file.write_bytes(data)
        old = time.time() - 3600
        os.utime(file, (old, old))
        path = str(file)
    with (
        mock.patch.object(logfile, "WINDOW", case.window),
        mock.patch.object(logfile, "MAX_LINE", case.max_line),
        mock.patch.object(logfile, "CHUNK", case.chunk),
        mock.patch.object(logfile, "SAMPLE_BYTES", case.sample),
        mock.patch.object(logfile, "FINGERPRINT_BYTES", case.sample),
        mock.patch.object(logfile, "BATCH_LINES", case.batch_lines),
        mock.patch.object(sys, "stdin", stdin),
    ):
        log = LogFile.open(path, NEEDLES, "squid")
        try:
            batches = list(log.batches())
        finally:
            log.close()
            if path == "-":
                stdin.close()
    if writer is not None:
        writer.join(10)
    return log, batches


@settings(max_examples=budget(800))
@given(cases())
def test_window_reader_finds_what_splitting_on_newlines_finds(case: Case) -> None:
    want_events, want_long, want_lines = reference(case)

    log, batches = read_batches(case)

    events = [e for batch in batches for e in batch.events]
    assert {(line_no(e), e.server_name) for e in events} == want_events
    assert log.stats.lines == want_lines
    assert log.stats.skipped.get(LONG, 0) == len(want_long)
    name = "<stdin>" if case.kind in ("stdin", "stdin-gzip", "pipe") else str(TMP / f"window-{case.kind}")
    assert log.stats.locations.get(LONG, []) == [f"{name}:{n}" for n in want_long[:5]]


@settings(max_examples=budget(500))
@given(cases())
def test_checkpoints_are_line_boundaries_up_to_the_last_line_read(case: Case) -> None:
    """Each batch's checkpoint (offset, line) is a line boundary and the number of lines before it;
    the last one is after the last line read, so that a run resumed there reads nothing twice."""
    _, _, want_lines = reference(case)
    data = case.data
    read_to = len(data) if data.endswith(b"\n") or not case.waits else data.rfind(b"\n") + 1

    _log, batches = read_batches(case)

    for batch in batches:
        assert 0 < batch.offset <= read_to
        assert data[batch.offset - 1] == 0x0A or batch.offset == read_to
        assert batch.line == data[: batch.offset].count(b"\n") + (batch.offset == read_to and data[read_to - 1] != 0x0A)
    assert [(b.offset, b.line) for b in batches[-1:]] == ([(read_to, want_lines)] if want_lines else [])


def test_stdin_first_read_shorter_than_the_magic_still_tells_the_compression() -> None:
    """A pipe's first read may give fewer bytes than a compression magic (a writer that wrote one
    byte first): the input is still read as gzip, not as its compressed bytes."""
    data = gzip.compress(squid(1, "api.openai.com") + b"\n")
    stdin = io.TextIOWrapper(io.BufferedReader(ShortReads(data, [1], first=1)))
    with mock.patch.object(sys, "stdin", stdin):
        log = LogFile.open("-", NEEDLES, "squid")
        events = list(log.events())
    assert (log.compression, [(line_no(e), e.server_name) for e in events]) == ("gzip", [(1, "api.openai.com")])


def test_compressed_input_leaves_an_unfinished_long_last_line() -> None:
    """A compressed input ending inside a line leaves that line for the live file it was copied
    from, however long it is: not counted, the checkpoint before it (a long line was counted as a
    line and malformed, and the checkpoint put past its first bytes)."""
    head = squid(1, "api.openai.com") + b"\n"
    case = Case(
        window=256, max_line=200, chunk=16, sample=16, kind="gzip", lines=[head[:-1], b"api.openai.com" + b"x" * 300], terminated=False, pieces=[1]
    )
    log, events = read(case)
    assert ([(line_no(e), e.server_name) for e in events], log.stats.lines, dict(log.stats.skipped), log.unterminated) == (
        [(1, "api.openai.com")],
        1,
        {},
        True,
    )
