"""Ad-hoc audit of log inputs: open, resume from checkpoint, audit, store in batches."""

from __future__ import annotations

import collections
import datetime as dt
import multiprocessing
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from auditor.config import Config, SourceConfig
from auditor.events import ConnectionEvent, Tally
from auditor.pipeline import Auditor
from auditor.sources.interface import SourceError, SourceStats
from auditor.sources.compression import ends_by
from auditor.sources.logfile import LogFile
from auditor.sources.parallel import usable_cores, worker_start
from auditor.recorder import InputSummary, Recorder, RunSummary, dns_named
from auditor.store import Checkpoint, CheckpointMoved, FindingStore

__all__ = ["InputSummary", "RunStopped", "RunSummary", "audit_logs", "catch_up", "dns_named"]


def audit_logs(
    paths: Sequence[str], *, config: Config, auditor: Auditor, store: FindingStore, fmt: str | None, command: str,
    opener: Callable[[str], Any] | None = None, rescan: bool = False, tolerate: Collection[str] = (),
    progress: Callable[[int], None] | None = None, recorder: Recorder | None = None,
) -> RunSummary:
    """Audit each input once; inputs read before resume after their checkpoint. `opener` opens
    one input (default: a log file with the policies' prefilter). `rescan`: forget what earlier
    runs recorded for the inputs and audit them from the start. An input error in a path of
    `tolerate` (files found in a directory) is noted in `unread` and the run goes on. `progress`
    is told after each batch how many bytes of the inputs (as stored) were read so far. The run
    is recorded by `recorder` (default: a new one for `command`).

    With several log files and several cores, files up to WHOLE_FILE_MAX on disk are read and
    audited by worker processes, a few files ahead; their findings are stored here, in the order
    of `paths`, exactly as if this process had read them (see `_Ahead`)."""
    recorder = recorder or Recorder(store, command, geoip=auditor.locator.description, policies=auditor.policies.version_tag)
    summary = recorder.start()
    needles = auditor.policies.needles()
    ahead = _Ahead.start(auditor, needles) if opener is None and len(paths) > 1 else None
    try:
        _audit_all(paths, config, auditor, recorder, fmt, opener, tolerate, progress, rescan, ahead, needles)
    except SourceError as e:
        recorder.finish()
        raise RunStopped(str(e), summary) from None
    finally:
        if ahead is not None:
            ahead.close()
    recorder.finish()
    return summary


def catch_up(paths: Sequence[str], *, config: Config, auditor: Auditor, recorder: Recorder, fmt: str | None,
             stopping: Callable[[], bool]) -> None:
    """Audit `paths` as `logs` does, into the run of `recorder` (a follower's, catching up on
    generations rotated while it was stopped): each from its checkpoint, to its last line,
    compressed or not. Why an input could not be read goes to the run summary's `unread`.
    `stopping()` is asked after each batch stored; once it is true the rest is left for the next run."""
    needles = auditor.policies.needles()
    for path in paths:
        if stopping():
            return
        source_config = config.source(path)
        try:
            log = LogFile.open(path, needles, fmt or source_config.format or None, source_config.field_map)
        except SourceError as e:
            recorder.summary.unread.append(f"skipped {e}")
            continue
        log.finished = True  # rotated away and settled: no writer will end its last line now
        _audit_here(log, path, source_config, auditor, recorder, False, (path,), None, stopping)


class RunStopped(SourceError):
    """An input named on the command line could not be read: the run stopped there. What was read
    before it is stored; `summary` says what."""

    def __init__(self, message: str, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


def _audit_all(paths: Sequence[str], config: Config, auditor: Auditor, recorder: Recorder, fmt: str | None,
               opener: Callable[[str], Any] | None, tolerate: Collection[str], progress: Callable[[int], None] | None,
               rescan: bool, ahead: _Ahead | None, needles: tuple[bytes, ...]) -> None:
    summary = recorder.summary
    for path in paths:
        source_config = config.source(path)  # its format and field map, when the config gives them
        try:
            log = opener(path) if opener else LogFile.open(path, needles, fmt or source_config.format or None, source_config.field_map)
        except SourceError as e:
            if path not in tolerate:
                for done in ahead.drain() if ahead is not None else ():  # the inputs before it are stored first
                    _store_result(done, recorder, tolerate, progress)
                raise
            summary.unread.append(f"skipped {e}")
            continue
        if ahead is not None:
            if ahead.takes(log):
                ahead.drain_related(log, lambda done: _store_result(done, recorder, tolerate, progress))
                # A compressed input is resumed by its worker only: skipping to the checkpoint
                # means decompressing up to it, which is worth doing once.
                recording = recorder.open(log, rescan=rescan, resume=log.compression == "plain")
                if recording.resumed:
                    ahead.submit(path, log, recording.start, source_config)
                else:
                    summary.inputs.append(InputSummary.of_earlier_copy(log.name, _format(log), log.compression, recording.start))
                    summary.source_ids.append(recording.source_id)
                log.close()
                for done in ahead.ready():
                    _store_result(done, recorder, tolerate, progress)
                continue
            for done in ahead.drain():
                _store_result(done, recorder, tolerate, progress)
        _audit_here(log, path, source_config, auditor, recorder, rescan, tolerate, progress)
    if ahead is not None:
        for done in ahead.drain():
            _store_result(done, recorder, tolerate, progress)


def _audit_here(log: Any, path: str, source_config: SourceConfig, auditor: Auditor, recorder: Recorder, rescan: bool,
                tolerate: Collection[str], progress: Callable[[int], None] | None,
                stopping: Callable[[], bool] = lambda: False) -> None:
    """Read and audit one input in this process (its large-file pieces may still go to workers),
    until its end or until `stopping()`, asked after each batch stored."""
    summary = recorder.summary
    done = summary.bytes_read
    behind = False
    try:
        recording = recorder.open(log, rescan=rescan)
        summary.source_ids.append(recording.source_id)
        if not recording.resumed:
            summary.inputs.append(InputSummary.of_earlier_copy(log.name, _format(log), log.compression, recording.start))
            return

        def audit(events: Sequence[ConnectionEvent], source: SourceConfig = source_config) -> list[Tally]:
            return auditor.tally(events, source)

        # Taken before the reader is asked for a batch: what was written before that, it reads. The
        # time before the last batch was asked for is the one that holds for the end.
        asked = dt.datetime.now(dt.timezone.utc)
        covered = asked
        for batch in log.batches(audit):
            covered = asked
            tallies = batch.tallies if batch.tallies is not None else audit(batch.events)
            recording.add(tallies, batch.offset, batch.line, log.stats)
            if progress:
                progress(done + (log.consumed() or 0))
            if stopping():
                behind = not ends_by(path, batch.offset)
                break
            asked = dt.datetime.now(dt.timezone.utc)
        else:
            if isinstance(log, LogFile) and path != "-" and not log.unterminated and not log.damaged:
                recording.saw_end(covered)
    except CheckpointMoved as e:
        summary.unread.append(_taken_over(log.name, recording.checkpoint, e))
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
    summary.inputs.append(InputSummary.of(log.name, fmt, log.compression, log.stats, log.unterminated, recording.start.line,
                                          recording.calls, behind=behind, source_id=recording.source_id))


def _taken_over(name: str, checkpoint: Checkpoint, moved: CheckpointMoved) -> str:
    return (f"stopped reading {name} after line {checkpoint.line}: another region-auditor process is auditing it into this "
            f"database at the same time (it got to line {moved.checkpoint.line}); nothing was counted twice")


def _format(log: Any) -> str:
    return log.format.name if log.format else "empty"


def _store_result(done: _Done, recorder: Recorder, tolerate: Collection[str], progress: Callable[[int], None] | None) -> None:
    """Store what a worker read of one input, batch by batch, as `_audit_here` would have."""
    summary = recorder.summary
    summary.source_ids.append(done.checkpoint.source_id)
    if done.earlier_copy:
        summary.bytes_read += done.consumed
        summary.inputs.append(InputSummary.of_earlier_copy(done.name, done.format, done.compression, done.checkpoint))
        return
    recording = recorder.recording(done.checkpoint)
    for tallies, offset, line in done.batches:
        try:
            recording.add(tallies, offset, line, done.stats)
        except CheckpointMoved as e:
            summary.bytes_read += done.consumed
            summary.unread.append(_taken_over(done.name, recording.checkpoint, e))
            return
    summary.bytes_read += done.consumed
    if progress:
        progress(summary.bytes_read)
    if done.error:
        if done.path not in tolerate:
            raise SourceError(done.error)
        summary.unread.append(f"stopped reading {done.error}")
        return
    summary.inputs.append(InputSummary.of(done.name, done.format, done.compression, done.stats, done.unterminated,
                                          done.checkpoint.line, recording.calls, source_id=done.checkpoint.source_id))


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
    from auditor.sources import parallel

    parallel.PARALLEL_MIN = 1 << 62  # a worker reads its file alone: no pool inside a pool
    auditor, needles = _worker_state  # type: ignore[misc]
    path, name, fmt, fields, checkpoint, source = job
    batches: list[tuple[tuple[Tally, ...], int, int]] = []
    error = ""
    try:
        log = LogFile.open(path, needles, fmt, fields)
    except SourceError as e:  # gone or changed since it was looked at
        return _Done(path, path, fmt or "empty", "plain", checkpoint, (), SourceStats(), False, 0, str(e))
    try:
        if not log.resume(checkpoint.offset, checkpoint.line):
            return _Done(path, log.name, _format(log), log.compression, checkpoint, (), log.stats, False, log.consumed() or 0, earlier_copy=True)
        for batch in log.batches():
            batches.append((tuple(auditor.tally(batch.events, source)), batch.offset, batch.line))
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
        global _worker_state
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
