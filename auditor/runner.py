"""Ad-hoc audit of log inputs: open, resume from checkpoint, audit, store in batches."""

from __future__ import annotations

import collections
import datetime as dt
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditor.config import Config, SourceConfig
from auditor.events import ConnectionEvent, Tally
from auditor.pipeline import Auditor
from auditor.sources.interface import SourceError, SourceStats
from auditor.sources.logfile import LogFile, ends_by, usable_cores, worker_start
from auditor.store import TUNNEL_REPEATED, Checkpoint, CheckpointMoved, FindingStore, InputRead


@dataclass
class InputSummary:
    """What one input gave in one run."""

    name: str
    format: str
    compression: str
    resumed_at_line: int
    lines: int
    calls: int
    skipped: Counter[str]
    ignored: Counter[str]
    locations: dict[str, list[str]]
    unterminated: bool
    events: int = 0
    """Connection events read (governed or not)."""
    from_dns: int = 0
    """Connections a capture named from a DNS answer their client got."""
    behind: bool = False
    """Stopped (--follow) with complete lines left to read: they are read when it is read again."""
    earlier_copy: bool = False
    """Shorter than the input it starts like, which was audited further: nothing new in it."""
    source_id: int = 0
    """The input's row in the store (its checkpoint's), 0 when not known."""

    @classmethod
    def of_earlier_copy(cls, name: str, fmt: str, compression: str, checkpoint: Checkpoint) -> InputSummary:
        """The summary of an input that ends before the checkpoint it starts like."""
        return cls(name=name, format=fmt, compression=compression, resumed_at_line=checkpoint.line, lines=0, calls=0,
                   skipped=Counter(), ignored=Counter(), locations={}, unterminated=False, earlier_copy=True,
                   source_id=checkpoint.source_id)

    @classmethod
    def of(cls, name: str, fmt: str, compression: str, stats: SourceStats, unterminated: bool,
           resumed_at_line: int, calls: int, *, behind: bool = False, source_id: int = 0) -> InputSummary:
        """The summary of an input from what reading it counted."""
        return cls(
            name=name, format=fmt, compression=compression, resumed_at_line=resumed_at_line, lines=stats.lines,
            calls=calls, skipped=stats.skipped, ignored=stats.ignored, locations=stats.locations,
            unterminated=unterminated, events=stats.events, behind=behind, from_dns=stats.from_dns, source_id=source_id,
        )

    def describe(self) -> str:
        """One paragraph for stderr."""
        kind = self.format if self.compression == "plain" else f"{self.format}, {self.compression}"
        if self.earlier_copy:
            return (f"{self.name} ({kind}): nothing new: it starts like an input audited up to line {self.resumed_at_line} "
                    "and ends before that (an earlier, shorter copy of it)")
        text = f"{self.name} ({kind}): {self.lines} lines"
        if self.resumed_at_line:
            text += f" after line {self.resumed_at_line} (audited before)"
        text += f", {self.calls} {'call' if self.calls == 1 else 'calls'} to governed hosts"
        parts = [text]
        for reason, count in self.skipped.most_common():
            where = ", ".join(self.locations.get(reason, []))
            more = " ..." if count > len(self.locations.get(reason, [])) else ""
            parts.append(f"  skipped {count} malformed: {reason} ({where}{more})")
        for reason, count in self.ignored.most_common():
            parts.append(f"  not counted {count}: {reason}")
        if self.from_dns:
            parts.append(f"  {dns_named(self.from_dns)}")
        if self.behind:
            parts.append(f"  stopped before the end of the file (after line {self.resumed_at_line + self.lines}); "
                         "the rest is read when it is followed or audited again")
        elif self.unterminated and self.compression != "plain":
            parts.append("  the last line has no newline (copied while it was being written?): not counted; "
                         "it is counted from the file it was copied from, once complete")
        elif self.unterminated:
            parts.append("  the last line has no newline and the file changed just now; it is read once complete")
        return "\n".join(parts)


def dns_named(count: int) -> str:
    """How many connections took their name from DNS, as the summaries say it."""
    if count == 1:
        return "1 connection named from a DNS answer its client got (no SNI, or real ECH)"
    return f"{count} connections named from DNS answers their clients got (no SNI, or real ECH)"


@dataclass
class RunSummary:
    """What a run did, input by input."""

    run_id: int
    inputs: list[InputSummary] = field(default_factory=list)
    source_ids: list[int] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    """Why inputs that may be skipped (files found in a directory) were not read, or not to the end."""
    bytes_read: int = 0
    """Bytes of the inputs (as stored) read so far, for progress."""

    @property
    def skipped(self) -> int:
        return sum(sum(i.skipped.values()) for i in self.inputs)


def audit_logs(
    paths: Sequence[str], *, config: Config, auditor: Auditor, store: FindingStore, fmt: str | None, command: str,
    opener: Callable[[str], Any] | None = None, rescan: bool = False, tolerate: Collection[str] = (),
    progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Audit each input once; inputs read before resume after their checkpoint. `opener` opens
    one input (default: a log file with the policies' prefilter). `rescan`: forget what earlier
    runs recorded for the inputs and audit them from the start. An input error in a path of
    `tolerate` (files found in a directory) is noted in `unread` and the run goes on. `progress`
    is told after each batch how many bytes of the inputs (as stored) were read so far.

    With several log files and several cores, files up to WHOLE_FILE_MAX on disk are read and
    audited by worker processes, a few files ahead; their findings are stored here, in the order
    of `paths`, exactly as if this process had read them (see `_Ahead`)."""
    run_id = store.start_run(command, auditor.locator.description, auditor.policies.version_tag)
    summary = RunSummary(run_id)
    start = _Start(store, rescan)
    needles = auditor.policies.needles()
    ahead = _Ahead.start(auditor, needles) if opener is None and len(paths) > 1 else None
    try:
        _audit_all(paths, config, auditor, store, fmt, opener, tolerate, progress, summary, start, ahead, needles)
    except SourceError as e:
        finish(store, summary)
        raise RunStopped(str(e), summary) from None
    finally:
        if ahead is not None:
            ahead.close()
    finish(store, summary)
    return summary


def catch_up(paths: Sequence[str], *, config: Config, auditor: Auditor, store: FindingStore, fmt: str | None,
             summary: RunSummary, stopping: Callable[[], bool]) -> None:
    """Audit `paths` as `logs` does, into the run of `summary` (a follower's, catching up on
    generations rotated while it was stopped): each from its checkpoint, to its last line,
    compressed or not. Why an input could not be read goes to `summary.unread`. `stopping()` is
    asked after each batch stored; once it is true the rest is left for the next run."""
    start = _Start(store, rescan=False)
    needles = auditor.policies.needles()
    for path in paths:
        if stopping():
            return
        source_config = config.source(path)
        try:
            log = LogFile.open(path, needles, fmt or source_config.format or None, source_config.field_map)
        except SourceError as e:
            summary.unread.append(f"skipped {e}")
            continue
        log.finished = True  # rotated away and settled: no writer will end its last line now
        _audit_here(log, path, source_config, auditor, store, summary, start, (path,), None, stopping)


class RunStopped(SourceError):
    """An input named on the command line could not be read: the run stopped there. What was read
    before it is stored; `summary` says what."""

    def __init__(self, message: str, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


def finish(store: FindingStore, summary: RunSummary) -> None:
    """Record the run's totals, from what its inputs gave."""
    totals = Counter[str]()
    for item in summary.inputs:
        totals.update(lines=item.lines, events=item.events, findings=item.calls, skipped=sum(item.skipped.values()))
    store.finish_run(summary.run_id, lines=totals["lines"], events=totals["events"], findings=totals["findings"], skipped=totals["skipped"])
    store.record_reads(summary.run_id, [
        InputRead(source_id=item.source_id, name=item.name, format=item.format, compression=item.compression, lines=item.lines,
                  events=item.events, calls=item.calls, malformed=tuple(item.skipped.most_common()))
        for item in summary.inputs if item.source_id and not item.earlier_copy
    ])


def _audit_all(paths: Sequence[str], config: Config, auditor: Auditor, store: FindingStore, fmt: str | None,
               opener: Callable[[str], Any] | None, tolerate: Collection[str], progress: Callable[[int], None] | None,
               summary: RunSummary, start: _Start, ahead: _Ahead | None, needles: tuple[bytes, ...]) -> None:
    for path in paths:
        source_config = config.source(path)  # its format and field map, when the config gives them
        try:
            log = opener(path) if opener else LogFile.open(path, needles, fmt or source_config.format or None, source_config.field_map)
        except SourceError as e:
            if path not in tolerate:
                for done in ahead.drain() if ahead is not None else ():  # the inputs before it are stored first
                    _store_result(done, store, summary, tolerate, progress)
                raise
            summary.unread.append(f"skipped {e}")
            continue
        if ahead is not None:
            if ahead.takes(log):
                ahead.drain_related(log, lambda done: _store_result(done, store, summary, tolerate, progress))
                # A compressed input is resumed by its worker only: skipping to the checkpoint
                # means decompressing up to it, which is worth doing once.
                checkpoint, resumed = start(log, resume=log.compression == "plain")
                if resumed:
                    ahead.submit(path, log, checkpoint, source_config)
                else:
                    summary.inputs.append(InputSummary.of_earlier_copy(log.name, _format(log), log.compression, checkpoint))
                    summary.source_ids.append(checkpoint.source_id)
                log.close()
                for done in ahead.ready():
                    _store_result(done, store, summary, tolerate, progress)
                continue
            for done in ahead.drain():
                _store_result(done, store, summary, tolerate, progress)
        _audit_here(log, path, source_config, auditor, store, summary, start, tolerate, progress)
    if ahead is not None:
        for done in ahead.drain():
            _store_result(done, store, summary, tolerate, progress)


class _Start:
    """Where each input of a run starts: its checkpoint, or with `rescan` the top (what earlier runs
    recorded for it forgotten, but not what this run stored: a copy of an input read in this run
    resumes from its checkpoint)."""

    def __init__(self, store: FindingStore, rescan: bool) -> None:
        self.store = store
        self.rescan = rescan
        self.rescanned: set[int] = set()

    def __call__(self, log: Any, *, resume: bool = True) -> tuple[Checkpoint, bool]:
        """The checkpoint to read `log` from (with `resume`, `log` is moved there), and False when
        `log` ends before it: an earlier, shorter copy of an input audited further, nothing new in it."""
        if self.rescan:
            checkpoint = self.store.forget(log, keep=self.rescanned)
            self.rescanned.add(checkpoint.source_id)
        else:
            checkpoint = self.store.checkpoint(log)
        return checkpoint, not resume or log.resume(checkpoint.offset, checkpoint.line)


def _audit_here(log: Any, path: str, source_config: SourceConfig, auditor: Auditor, store: FindingStore, summary: RunSummary,
                start_at: _Start, tolerate: Collection[str], progress: Callable[[int], None] | None,
                stopping: Callable[[], bool] = lambda: False) -> None:
    """Read and audit one input in this process (its large-file pieces may still go to workers),
    until its end or until `stopping()`, asked after each batch stored."""
    done = summary.bytes_read
    calls = 0
    behind = False
    try:
        start, resumed = start_at(log)
        summary.source_ids.append(start.source_id)
        if not resumed:
            summary.inputs.append(InputSummary.of_earlier_copy(log.name, _format(log), log.compression, start))
            return
        checkpoint = start

        def audit(events: Sequence[ConnectionEvent], source: SourceConfig = source_config) -> list[Tally]:
            return auditor.tally(events, source)

        # Taken before the reader is asked for a batch: what was written before that, it reads. The
        # time before the last batch was asked for is the one that holds for the end.
        asked = dt.datetime.now(dt.UTC)
        covered = asked
        for batch in log.batches(audit):
            covered = asked
            tallies = batch.tallies if batch.tallies is not None else audit(batch.events)
            checkpoint, repeated = store.add_batch(summary.run_id, checkpoint, tallies, batch.offset, batch.line)
            calls += sum(t.calls for t in tallies) - repeated
            note_repeated(log.stats, repeated)
            if progress:
                progress(done + (log.consumed() or 0))
            if stopping():
                behind = not ends_by(path, batch.offset)
                break
            asked = dt.datetime.now(dt.UTC)
        else:
            if isinstance(log, LogFile) and path != "-" and not log.unterminated and not log.damaged:
                store.saw_end(checkpoint, covered)
    except CheckpointMoved as e:
        summary.unread.append(_taken_over(log.name, checkpoint, e))
        return
    except SourceError as e:
        if path not in tolerate:
            raise
        summary.unread.append(f"stopped reading {e}")
        return
    finally:
        summary.bytes_read += log.consumed() or 0
        log.close()
    fmt = log.format.name if log.format else "empty"
    summary.inputs.append(InputSummary.of(log.name, fmt, log.compression, log.stats, log.unterminated, start.line, calls, behind=behind,
                                          source_id=start.source_id))


def note_repeated(stats: SourceStats, repeated: int) -> None:
    """Count the calls the store left out as counted already (FindingStore.add_batch)."""
    if repeated:
        stats.ignored[TUNNEL_REPEATED] += repeated


def _taken_over(name: str, checkpoint: Checkpoint, moved: CheckpointMoved) -> str:
    return (f"stopped reading {name} after line {checkpoint.line}: another region-auditor process is auditing it into this "
            f"database at the same time (it got to line {moved.checkpoint.line}); nothing was counted twice")


def _format(log: Any) -> str:
    return log.format.name if log.format else "empty"


def _store_result(done: _Done, store: FindingStore, summary: RunSummary, tolerate: Collection[str],
                  progress: Callable[[int], None] | None) -> None:
    """Store what a worker read of one input, batch by batch, as `_audit_here` would have."""
    summary.source_ids.append(done.checkpoint.source_id)
    if done.earlier_copy:
        summary.bytes_read += done.consumed
        summary.inputs.append(InputSummary.of_earlier_copy(done.name, done.format, done.compression, done.checkpoint))
        return
    calls = 0
    checkpoint = done.checkpoint
    for tallies, offset, line in done.batches:
        try:
            checkpoint, repeated = store.add_batch(summary.run_id, checkpoint, tallies, offset, line)
        except CheckpointMoved as e:
            summary.bytes_read += done.consumed
            summary.unread.append(_taken_over(done.name, checkpoint, e))
            return
        calls += sum(t.calls for t in tallies) - repeated
        note_repeated(done.stats, repeated)
    summary.bytes_read += done.consumed
    if progress:
        progress(summary.bytes_read)
    if done.error:
        if done.path not in tolerate:
            raise SourceError(done.error)
        summary.unread.append(f"stopped reading {done.error}")
        return
    summary.inputs.append(InputSummary.of(done.name, done.format, done.compression, done.stats, done.unterminated,
                                          done.checkpoint.line, calls, source_id=done.checkpoint.source_id))


WHOLE_FILE_MAX = 64 << 20
"""Inputs up to this many bytes on disk may be read whole by a worker process (larger plain
files are read here, in pieces by workers; larger compressed ones here)."""


@dataclass(frozen=True)
class _Done:
    """What a worker read of one input: its batches of findings, grouped, with their checkpoints."""

    path: str
    name: str
    format: str
    compression: str
    checkpoint: Checkpoint
    batches: tuple[tuple[tuple[Tally, ...], int, int], ...]
    stats: SourceStats
    unterminated: bool
    consumed: int
    error: str = ""
    earlier_copy: bool = False


_worker_state: tuple[Auditor, tuple[bytes, ...]] | None = None
"""The auditor and needles the forked workers of `_Ahead` inherit."""


def _read_whole(job: tuple[str, str, str | None, Any, Checkpoint, SourceConfig]) -> _Done:
    """In a worker process: open one input, resume at its checkpoint, read and audit all of it."""
    from auditor.sources import logfile

    logfile.PARALLEL_MIN = 1 << 62  # a worker reads its file alone: no pool inside a pool
    auditor, needles = _worker_state  # type: ignore[misc]
    path, _name, fmt, fields, checkpoint, source = job
    batches: list[tuple[tuple[Tally, ...], int, int]] = []
    error = ""
    try:
        log = LogFile.open(path, needles, fmt, fields)
    except SourceError as e:  # gone or changed since it was looked at
        return _Done(path, path, fmt or "empty", "plain", checkpoint, (), SourceStats(), False, 0, str(e))
    try:
        if not log.resume(checkpoint.offset, checkpoint.line):
            return _Done(path, log.name, _format(log), log.compression, checkpoint, (), log.stats, False, log.consumed() or 0, earlier_copy=True)
        batches.extend((tuple(auditor.tally(batch.events, source)), batch.offset, batch.line) for batch in log.batches())
    except SourceError as e:
        error = str(e)
    finally:
        consumed = log.consumed() or 0
        log.close()
    return _Done(path, log.name, log.format.name if log.format else "empty", log.compression, checkpoint, tuple(batches),
                 log.stats, log.unterminated, consumed, error)


class _Ahead:
    """Worker processes reading whole inputs a few files ahead of the store.

    Order and dedupe are kept: results are stored in the order of the paths, and an input whose
    content starts like one still in flight (a copy, a rotated name) waits until that one is
    stored, so that it sees its checkpoint."""

    def __init__(self, pool: Any, workers: int) -> None:
        self.pool = pool
        self.window = 2 * workers
        self.flight: collections.deque[tuple[bytes, Any]] = collections.deque()

    @classmethod
    def start(cls, auditor: Auditor, needles: tuple[bytes, ...]) -> _Ahead | None:
        global _worker_state  # noqa: PLW0603 - the parent's copy, inherited by the forked workers
        workers = min(usable_cores(), 8)
        if workers < 2:
            return None
        _worker_state = (auditor, needles)  # inherited by the forked workers
        try:
            pool = multiprocessing.get_context("fork").Pool(workers, initializer=worker_start)
        except OSError:
            return None
        finally:
            _worker_state = None
        return cls(pool, workers)

    def takes(self, log: LogFile) -> bool:
        """True for an input a worker can read whole: see LogFile.reopenable, and not too large."""
        return log.reopenable and _size(log.name) <= WHOLE_FILE_MAX

    def drain_related(self, log: LogFile, store: Callable[[_Done], None]) -> None:
        """Store what is in flight up to the last input whose content starts like `log`'s."""
        prefix = log.prefix
        related = [i for i, (other, _) in enumerate(self.flight) if other.startswith(prefix) or prefix.startswith(other)]
        for _ in range(related[-1] + 1 if related else 0):
            store(self.flight.popleft()[1].get())

    def submit(self, path: str, log: LogFile, checkpoint: Checkpoint, source: SourceConfig) -> None:
        fmt = log.format.name if log.format else None
        job = (path, log.name, fmt, log.fields, checkpoint, source)
        self.flight.append((log.prefix, self.pool.apply_async(_read_whole, (job,))))

    def ready(self) -> Iterator[_Done]:
        """Results to store now: the oldest ones while more than `window` are in flight."""
        while len(self.flight) > self.window:
            yield self.flight.popleft()[1].get()

    def drain(self) -> Iterator[_Done]:
        while self.flight:
            yield self.flight.popleft()[1].get()

    def close(self) -> None:
        self.pool.terminate()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return WHOLE_FILE_MAX + 1
