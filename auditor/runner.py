"""Ad-hoc audit of log inputs: open, resume from checkpoint, audit, store in batches."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from typing import Any

from auditor.config import SourceConfig
from auditor.executor import Ahead, Done, Executor
from auditor.pipeline import Pipeline
from auditor.recorder import InputSummary, Recorder, RunSummary, dns_named
from auditor.sources.compression import ends_by
from auditor.sources.interface import SourceError
from auditor.sources.logfile import LogFile
from auditor.store import Checkpoint, CheckpointMoved, FindingStore

__all__ = ["InputSummary", "RunStopped", "RunSummary", "audit_logs", "catch_up", "dns_named"]


def audit_logs(
    paths: Sequence[str],
    *,
    pipeline: Pipeline,
    store: FindingStore,
    fmt: str | None,
    command: str,
    opener: Callable[[str], Any] | None = None,
    rescan: bool = False,
    tolerate: Collection[str] = (),
    progress: Callable[[int], None] | None = None,
    recorder: Recorder | None = None,
) -> RunSummary:
    """Audit each input once; inputs read before resume after their checkpoint. `opener` opens
    one input (default: a log file with the policies' prefilter). `rescan`: forget what earlier
    runs recorded for the inputs and audit them from the start. An input error in a path of
    `tolerate` (files found in a directory) is noted in `unread` and the run goes on. `progress`
    is told after each batch how many bytes of the inputs (as stored) were read so far. The run
    is recorded by `recorder` (default: a new one for `command`).

    The run's Executor decides what is read where: with several log files and several cores,
    files up to WHOLE_FILE_MAX on disk are read and audited by worker processes, a few files
    ahead; their findings are stored here, in the order of `paths`, exactly as if this process
    had read them (auditor.executor.Ahead)."""
    recorder = recorder or Recorder(store, command, geoip=pipeline.geoip, policies=pipeline.policies)
    summary = recorder.start()
    executor = Executor(pipeline)
    try:
        ahead = executor.ahead(paths) if opener is None else None
        _audit_all(paths, executor, recorder, fmt, opener, tolerate, progress, rescan, ahead)
    except SourceError as e:
        recorder.finish()
        raise RunStopped(str(e), summary) from None
    finally:
        executor.close()
    recorder.finish()
    return summary


def catch_up(paths: Sequence[str], *, executor: Executor, recorder: Recorder, fmt: str | None, stopping: Callable[[], bool]) -> None:
    """Audit `paths` as `logs` does, into the run of `recorder` (a follower's, catching up on
    generations rotated while it was stopped): each from its checkpoint, to its last line,
    compressed or not. Why an input could not be read goes to the run summary's `unread`.
    `stopping()` is asked after each batch stored; once it is true the rest is left for the next run."""
    pipeline = executor.pipeline
    for path in paths:
        if stopping():
            return
        source_config = pipeline.source(path)
        try:
            # Rotated away and settled: no writer will end its last line now.
            log = LogFile.open(path, pipeline.needles, fmt or source_config.format or None, source_config.field_map, finished=True)
        except SourceError as e:
            recorder.summary.unread.append(f"skipped {e}")
            continue
        _audit_here(log, path, source_config, executor, recorder, False, (path,), None, stopping)


class RunStopped(SourceError):
    """An input named on the command line could not be read: the run stopped there. What was read
    before it is stored; `summary` says what."""

    def __init__(self, message: str, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


def _audit_all(
    paths: Sequence[str],
    executor: Executor,
    recorder: Recorder,
    fmt: str | None,
    opener: Callable[[str], Any] | None,
    tolerate: Collection[str],
    progress: Callable[[int], None] | None,
    rescan: bool,
    ahead: Ahead | None,
) -> None:
    summary = recorder.summary
    pipeline = executor.pipeline
    for path in paths:
        source_config = pipeline.source(path)  # its format and field map, when the config gives them
        try:
            log = opener(path) if opener else LogFile.open(path, pipeline.needles, fmt or source_config.format or None, source_config.field_map)
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
                    summary.inputs.append(InputSummary.of_earlier_copy(log.name, log.kind, log.compression, recording.start))
                    summary.source_ids.append(recording.source_id)
                log.close()
                for done in ahead.ready():
                    _store_result(done, recorder, tolerate, progress)
                continue
            for done in ahead.drain():
                _store_result(done, recorder, tolerate, progress)
        _audit_here(log, path, source_config, executor, recorder, rescan, tolerate, progress)
    if ahead is not None:
        for done in ahead.drain():
            _store_result(done, recorder, tolerate, progress)


def _audit_here(
    log: Any,
    path: str,
    source_config: SourceConfig,
    executor: Executor,
    recorder: Recorder,
    rescan: bool,
    tolerate: Collection[str],
    progress: Callable[[int], None] | None,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Read, audit and store one input batch by batch (the executor may have workers read its
    ranges), until its end or until `stopping()`, asked after each batch stored."""
    summary = recorder.summary
    done = summary.bytes_read
    behind = False
    try:
        recording = recorder.open(log, rescan=rescan)
        summary.source_ids.append(recording.source_id)
        if not recording.resumed:
            summary.inputs.append(InputSummary.of_earlier_copy(log.name, log.kind, log.compression, recording.start))
            return

        # Taken before the reader is asked for a batch: what was written before that, it reads. The
        # time before the last batch was asked for is the one that holds for the end.
        asked = dt.datetime.now(dt.UTC)
        covered = asked
        for batch in executor.read(log, source_config):
            covered = asked
            recording.add(batch.tallies, batch.offset, batch.line, log.stats)
            if progress:
                progress(done + (log.consumed() or 0))
            if stopping():
                behind = not ends_by(path, batch.offset)
                break
            asked = dt.datetime.now(dt.UTC)
        else:
            if log.complete:
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
    summary.inputs.append(
        InputSummary.of(
            log.name,
            log.kind,
            log.compression,
            log.stats,
            log.unterminated,
            recording.start.line,
            recording.calls,
            behind=behind,
            source_id=recording.source_id,
        )
    )


def _taken_over(name: str, checkpoint: Checkpoint, moved: CheckpointMoved) -> str:
    return (
        f"stopped reading {name} after line {checkpoint.line}: another region-auditor process is auditing it into this "
        f"database at the same time (it got to line {moved.checkpoint.line}); nothing was counted twice"
    )


def _store_result(done: Done, recorder: Recorder, tolerate: Collection[str], progress: Callable[[int], None] | None) -> None:
    """Store what a worker read of one input, batch by batch, as `_audit_here` would have."""
    summary = recorder.summary
    summary.source_ids.append(done.checkpoint.source_id)
    if done.earlier_copy:
        summary.bytes_read += done.consumed
        summary.inputs.append(InputSummary.of_earlier_copy(done.name, done.format, done.compression, done.checkpoint))
        return
    recording = recorder.recording(done.checkpoint)
    for batch in done.batches:
        try:
            recording.add(batch.tallies, batch.offset, batch.line, done.stats)
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
    summary.inputs.append(
        InputSummary.of(
            done.name,
            done.format,
            done.compression,
            done.stats,
            done.unterminated,
            done.checkpoint.line,
            recording.calls,
            source_id=done.checkpoint.source_id,
        )
    )
