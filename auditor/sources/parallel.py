"""Reading one large plain file by several processes: pieces cut at line boundaries, each read,
parsed and audited by a worker process, handed on in order; and the worker processes themselves."""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import io
import multiprocessing
import os
import signal
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from auditor.events import ConnectionEvent, Tally
from auditor.sources.interface import MAX_LOCATIONS, Audit, Batch, SourceStats

if TYPE_CHECKING:
    from auditor.sources.logfile import LogFile

PARALLEL_MIN = 64 << 20
"""A plain file with at least this much left to read is read by one process per core."""
PARALLEL_PIECE = 16 << 20
"""Bytes of a file one worker reads at a time (then a batch is stored)."""


def usable_cores() -> int:
    """The cores this process may run on (`taskset`, cgroup cpusets), not all the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def worker_start() -> None:
    """First thing in a worker process: SIGTERM ends it, which is how Pool.terminate stops it (a
    handler inherited from the parent, the follower's, would only set a flag), and SIGINT is left
    to the parent (Ctrl-C reaches the whole process group). It dies with its parent (Linux)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_worker_audit: Audit | None = None
"""What the worker processes of LogFile._parallel_batches run on the events of their piece."""


def _scan_piece(
    job: tuple[str, str, int, int, tuple[bytes, ...], str, Mapping[str, str] | None],
) -> tuple[list[ConnectionEvent], list[Tally] | None, SourceStats]:
    """In a worker process: the events (or, given an audit, their tallies) and counts of bytes
    [start, stop) of a file (whole lines). Lines are numbered from the piece's start: the lines
    before it are not counted yet (see `_rebase`)."""
    from auditor.sources.logfile import LogFile

    path, name, start, stop, needles, fmt, fields = job
    piece = LogFile(name, _Piece(path, start, stop), "plain", needles, fmt, fields=fields)
    piece._offset = start
    events = [e for batch in piece.batches() for e in batch.events]
    if _worker_audit is not None:
        return [], _worker_audit(events), piece.stats
    return events, None, piece.stats


def _rebase(location: str, name: str, base: int) -> str:
    """`name:N...` -> `name:N+base...`: a location in a piece made a location in its file."""
    if not location.startswith(name + ":"):
        return location
    rest = location[len(name) + 1 :]
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{name}:{int(rest[:digits]) + base}{rest[digits:]}" if digits else location


def _rebase_event(event: ConnectionEvent, name: str, base: int) -> ConnectionEvent:
    return dataclasses.replace(event, source=_rebase(event.source, name, base))


def _rebase_tally(tally: Tally, name: str, base: int) -> Tally:
    """Only the samples carry locations: the rest of a tally is counts."""
    samples = tuple(dataclasses.replace(f, event=_rebase_event(f.event, name, base)) for f in tally.samples)
    return dataclasses.replace(tally, samples=samples)


class _Piece(io.RawIOBase):
    """Bytes [start, stop) of a file, read straight into the reader's buffer."""

    def __init__(self, path: str, start: int, stop: int) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._pos, self._stop = start, stop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with memoryview(buffer) as view:
            got = os.preadv(self._fd, [view[: max(0, min(len(view), self._stop - self._pos))]], self._pos)
        self._pos += got
        return got

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def parallel_end(log: LogFile) -> int:
    """Where reading by several processes stops (the last line boundary before the end of the
    file), or 0 when this input is read in this process only: not a plain file on disk, still
    being written, a format that keeps state across lines, one core, or too little left."""
    from auditor.sources.logfile import MAX_LINE  # not at the top: logfile imports this module

    if (log._path is None or log.growing or log.format is None or log._reader is not None
            or log._is_array() or usable_cores() < 2):
        return 0
    size = os.fstat(log._stream.fileno()).st_size
    if size - log._offset < PARALLEL_MIN:
        return 0
    with open(log._path, "rb") as f:
        f.seek(max(log._offset, size - MAX_LINE))
        tail = f.read()
    return size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0


def parallel_batches(log: LogFile, end: int, audit: Audit | None) -> Iterator[Batch]:
    """Bytes up to `end` (a line boundary) in pieces cut at line boundaries, scanned, parsed
    and audited by worker processes (one per core), handed on in order: one batch per piece,
    its checkpoint at the piece's end. A worker numbers its piece's lines from 1; the locations
    it hands on are moved by the lines of the pieces before it here (`_rebase`)."""
    from auditor.sources.logfile import MAX_LINE  # not at the top: logfile imports this module

    cuts = [log._offset]
    with open(log._path, "rb") as f:  # type: ignore[arg-type]
        while cuts[-1] + PARALLEL_PIECE < end:
            f.seek(cuts[-1] + PARALLEL_PIECE)
            if not f.readline(2 * MAX_LINE).endswith(b"\n") or not _past_parts(log, f):
                end = cuts[-1]  # no line boundary near: the rest is read in this process
                break
            cuts.append(min(end, f.tell()))
    if cuts[-1] != end:
        cuts.append(end)
    if len(cuts) < 2:
        return
    global _worker_audit
    context = multiprocessing.get_context("fork")
    workers = min(usable_cores(), len(cuts) - 1, 8)
    _worker_audit = audit  # the forked workers inherit it: closures need no pickling
    try:
        pool = context.Pool(workers, initializer=worker_start)
    except OSError:
        return  # no processes to be had (limits): this process reads it all
    finally:
        _worker_audit = None
    with pool:
        jobs = [(log._path, log.name, a, b, log.needles, log.format.name, log.fields)  # type: ignore[union-attr]
                for a, b in zip(cuts, cuts[1:])]
        # At most four pieces per worker in flight: memory stays flat however far the workers
        # get ahead of the store.
        window = 4 * workers
        pending = collections.deque(pool.apply_async(_scan_piece, (job,)) for job in jobs[:window])
        for i, stop in enumerate(cuts[1:]):
            events, tallies, stats = pending.popleft().get()
            if i + window < len(jobs):
                pending.append(pool.apply_async(_scan_piece, (jobs[i + window],)))
            base = log._line
            _merge(log, stats, base)
            log._line += stats.lines
            log._offset = stop
            yield Batch(tuple(_rebase_event(e, log.name, base) for e in events), stop, log._line,
                        None if tallies is None else tuple(_rebase_tally(t, log.name, base) for t in tallies))
    log._stream.seek(end)
    log._pending = b""


def _past_parts(log: LogFile, f: IO[bytes]) -> bool:
    """Move `f`, at a line boundary, on past the next record that ends a line: the parts of a
    line the runtime split stay in one piece. False when none does within MAX_LINE."""
    from auditor.sources.logfile import MAX_LINE  # not at the top: logfile imports this module

    if log._partial is None:
        return True
    taken = 0
    while taken <= MAX_LINE:
        record = f.readline(2 * MAX_LINE)
        if not record.endswith(b"\n"):
            return False
        if not log._partial(record, 0, len(record) - 1):
            return True
        taken += len(record)
    return False


def _merge(log: LogFile, stats: SourceStats, base: int) -> None:
    """Add the counts of a piece that starts after line `base` to this input's."""
    mine = log.stats
    mine.lines += stats.lines
    mine.candidates += stats.candidates
    mine.events += stats.events
    mine.ignored.update(stats.ignored)
    for reason, count in stats.skipped.items():
        mine.skipped[reason] += count
        where = mine.locations.setdefault(reason, [])
        where.extend(_rebase(w, log.name, base) for w in stats.locations.get(reason, [])[: MAX_LOCATIONS - len(where)])
