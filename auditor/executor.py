"""Where a run's work is done: in this process, or in worker processes (one pool per run).

Sources read; the executor decides what runs where. An input is read and audited here, batch by
batch, except:

- the whole-line byte ranges of a large plain file (PARALLEL_MIN or more left to read; see
  `LogFile.ranges`), which workers read and audit, handed on here in order (`Executor.read`);
- with several inputs, the files up to WHOLE_FILE_MAX on disk, which workers read whole a few
  files ahead of the store (`Ahead`), their results stored here in the order of the inputs.

Both share the run's one pool. How its workers start is chosen for safety (`start_method`): a
process with one thread (a command) forks them, which copies nothing another thread could be
holding, and they inherit the run's pipeline built; a process with threads (a daemon) has them
forked from a fork server (multiprocessing's `forkserver`), which is safe there, and each needs
the pipeline built from its Recipe (a pipeline put together by hand, with no recipe, then audits
in this process only). What the fork server costs is kept off the critical path as far as it
can be: `prestart` starts it before the pipeline is built and the store opened; it imports this
module and builds the pipeline once, while they are; the workers forked from it inherit it
built and warm (its cloud ranges loaded). With a fork server, small runs (less than AHEAD_MIN
of inputs, no file of PARALLEL_MIN) start no workers at all. Measured on the 5M-line bench log
(2 loaded cores, paired with the command before the executor): the fork server, even
prestarted, 0.87-1.15x its wall time (one more interpreter and pipeline build on two cores);
forking from the command, as before.
"""

from __future__ import annotations

import base64
import collections
import ctypes
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from auditor.config import SourceConfig
from auditor.events import Tally
from auditor.pipeline import Pipeline, Recipe
from auditor.sources.compression import compression_of
from auditor.sources.interface import EventSource, SourceError, SourceStats
from auditor.sources.logfile import LogFile, Range, rebased
from auditor.store import Checkpoint

PARALLEL_MIN = 64 << 20
"""A plain file with at least this much left to read is read in ranges by the workers."""
PARALLEL_PIECE = 16 << 20
"""Bytes of a file one worker reads at a time (then a batch is stored)."""
WHOLE_FILE_MAX = 64 << 20
"""Inputs up to this many bytes on disk may be read whole by a worker (larger plain files are
read here, in ranges by the workers; larger compressed ones here)."""
AHEAD_MIN = 32 << 20
"""Several inputs are read ahead by the workers when they hold at least this many bytes on disk
together; fewer are read here sooner than workers could start."""
MAX_WORKERS = 8
"""Worker processes per run at most."""
START_METHOD = ""
"""`fork` or `forkserver` to force one; "" to choose by the threads of this process (`start_method`)."""
_RECIPE_ENV = "REGION_AUDITOR_FORKSERVER_RECIPE"
"""How the fork server learns the recipe of the run that starts it (see `prestart`)."""


def usable_cores() -> int:
    """The cores this process may run on (`taskset`, cgroup cpusets), not all the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Audited:
    """A batch of an input, audited: its findings, grouped, and the checkpoint after it."""

    tallies: tuple[Tally, ...]
    offset: int
    """Byte offset just after the batch's last record (Batch.offset)."""
    line: int
    """Number of its last record (Batch.line)."""


def worth_workers(paths: Sequence[str]) -> bool:
    """Whether reading `paths` is likely to use worker processes (see `Executor.ahead` and
    `Executor.read`): several cores, and a plain file of PARALLEL_MIN or more, or several inputs
    of AHEAD_MIN or more together."""
    if usable_cores() < 2:
        return False
    if len(paths) > 1 and _total(paths) >= AHEAD_MIN:
        return True
    for path in paths:
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size >= PARALLEL_MIN and compression_of(f.read(8)) == "plain":
                    return True
        except OSError:
            continue
    return False


def _total(paths: Sequence[str]) -> int:
    """Bytes on disk of the inputs a worker may read whole (stdin and larger files are not)."""
    return sum(size for size in (_size(p) if p != "-" else 0 for p in paths) if size <= WHOLE_FILE_MAX)


def start_method() -> str:
    """How worker processes start: `fork` when this process has one thread (forking copies no
    lock another thread holds, and the workers inherit what is built), `forkserver` when it has
    more (a daemon: forking a threaded process is unsafe)."""
    if START_METHOD:
        return START_METHOD
    try:
        threads = len(os.listdir("/proc/self/task"))  # every thread, those of native libraries too
    except OSError:
        threads = threading.active_count()
    return "fork" if threads == 1 else "forkserver"


def prestart(recipe: Recipe) -> None:
    """Start the fork server now, without waiting for it, when workers are to come from one: it
    imports the readers and builds the pipeline of `recipe` while this process does the same and
    opens its store, and every worker of the run is forked from it with that pipeline. A fork
    server runs once per process: when one runs already, workers of another recipe build theirs."""
    if start_method() != "forkserver":
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    os.environ[_RECIPE_ENV] = base64.b64encode(pickle.dumps(recipe)).decode("ascii")
    try:
        multiprocessing.forkserver.ensure_running()
    except OSError:
        pass  # no process to be had: the pool will say so, and everything runs here
    finally:
        del os.environ[_RECIPE_ENV]


class Executor:
    """Runs a run's reading and auditing here or in its worker processes. Close it at the end of
    the run (the workers are stopped)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.workers = min(usable_cores(), MAX_WORKERS)
        """Worker processes the pool has (or would have); below 2, everything runs here."""
        self._pool: Any = None
        self._tried = False

    def pool(self) -> Any:
        """The run's worker processes, started on first use; None when there are to be none (one
        core; a fork server and no recipe) or none can be had (process limits): then everything
        runs here."""
        if not self._tried and self.workers >= 2:
            self._tried = True
            method = start_method()
            context = multiprocessing.get_context(method)
            if method == "fork":
                start: Pipeline | Recipe | None = self.pipeline  # inherited by the forked workers, never pickled
            else:
                start = self.pipeline.recipe
                context.set_forkserver_preload([__name__])  # when prestart did not start it
            if start is not None:
                try:
                    self._pool = context.Pool(self.workers, initializer=_start_worker, initargs=(start,))
                except OSError:
                    self._pool = None
        return self._pool

    def read(self, source: EventSource, config: SourceConfig) -> Iterator[Audited]:
        """One input from its position, audited as configured by `config`, batch by batch in input
        order: its byte ranges by the workers when it is large enough, the rest here."""
        if self.workers >= 2:
            end = source.range_end(PARALLEL_MIN)
            if end:
                yield from self._ranges(source, end, config)
        tally = self.pipeline.tally
        for batch in source.batches():
            yield Audited(tuple(tally(batch.events, config)), batch.offset, batch.line)

    def _ranges(self, source: Any, end: int, config: SourceConfig) -> Iterator[Audited]:
        """The ranges up to `end`, read and audited by the workers, one batch per range, its
        checkpoint at the range's end. A worker numbers its range's lines from 1; the locations
        it hands on are moved by the lines before the range (`rebased`)."""
        ranges = source.ranges(end, PARALLEL_PIECE)
        pool = self.pool() if ranges else None
        if pool is None:
            return
        # At most four ranges per worker in flight: memory stays flat however far the workers
        # get ahead of the store.
        window = 4 * self.workers
        pending = collections.deque(pool.apply_async(_read_range, (r, config)) for r in ranges[:window])
        for i, where in enumerate(ranges):
            tallies, stats = pending.popleft().get()
            if i + window < len(ranges):
                pending.append(pool.apply_async(_read_range, (ranges[i + window], config)))
            base = source.took(stats, where.stop)
            yield Audited(tuple(rebased(t, source.name, base) for t in tallies), where.stop, base + stats.lines)

    def ahead(self, paths: Sequence[str]) -> Ahead | None:
        """Whole inputs of `paths` read a few files ahead by the workers; None when there are
        none, or the inputs that workers could take are too small together to be worth starting
        them from a fork server (AHEAD_MIN)."""
        if self.workers < 2 or len(paths) < 2 or (start_method() == "forkserver" and _total(paths) < AHEAD_MIN):
            return None
        pool = self.pool()
        return Ahead(pool, self.workers) if pool is not None else None

    def close(self) -> None:
        """Stop the workers (what they were doing is dropped)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


@dataclass(frozen=True)
class Done:
    """What a worker read of one whole input: its batches of findings, grouped, with their checkpoints."""

    path: str
    name: str
    format: str
    compression: str
    checkpoint: Checkpoint
    batches: tuple[Audited, ...]
    stats: SourceStats
    unterminated: bool
    consumed: int
    error: str = ""
    earlier_copy: bool = False


class Ahead:
    """Worker processes reading whole inputs a few files ahead of the store.

    Order and dedupe are kept: results are handed on in the order the inputs were submitted, and
    an input whose content starts like one still in flight (a copy, a rotated name) waits until
    that one is stored, so that it sees its checkpoint."""

    def __init__(self, pool: Any, workers: int) -> None:
        self.pool = pool
        self.window = 2 * workers
        self.flight: collections.deque[tuple[bytes, Any]] = collections.deque()

    def takes(self, log: Any) -> bool:
        """True for an input a worker can read whole: see LogFile.reopenable, and not too large."""
        return bool(log.reopenable) and _size(log.name) <= WHOLE_FILE_MAX

    def drain_related(self, log: Any, store: Callable[[Done], None]) -> None:
        """Store what is in flight up to the last input whose content starts like `log`'s."""
        prefix = log.prefix
        related = [i for i, (other, _) in enumerate(self.flight) if other.startswith(prefix) or prefix.startswith(other)]
        for _ in range(related[-1] + 1 if related else 0):
            store(self.flight.popleft()[1].get())

    def submit(self, path: str, log: Any, checkpoint: Checkpoint, config: SourceConfig) -> None:
        """Have a worker read `path` (opened here as `log`) from `checkpoint` to its end."""
        fmt = log.format.name if log.format else None
        job = (path, log.name, fmt, log.fields, checkpoint, config)
        self.flight.append((log.prefix, self.pool.apply_async(_read_whole, (job,))))

    def ready(self) -> Iterator[Done]:
        """Results to store now: the oldest ones while more than `window` are in flight."""
        while len(self.flight) > self.window:
            yield self.flight.popleft()[1].get()

    def drain(self) -> Iterator[Done]:
        while self.flight:
            yield self.flight.popleft()[1].get()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return WHOLE_FILE_MAX + 1


# --- in the worker processes ---------------------------------------------------------------------

_pipeline: Pipeline | None = None
"""In a worker process: the run's pipeline, built from its recipe when the worker started."""
_preloaded: tuple[Recipe, Pipeline] | None = None
"""In the fork server and the workers forked from it: the pipeline of the run that started it."""


def _preload() -> None:
    """In the fork server, which imports this module first thing (`prestart`): build the pipeline
    of the run that started it, and warm it (the cloud ranges are loaded on the first lookup),
    for every worker forked from it to inherit."""
    global _preloaded  # noqa: PLW0603 (the fork server's state, set once before it forks)
    data = os.environ.get(_RECIPE_ENV) if multiprocessing.parent_process() is None and __name__ != "__main__" else None
    if not data:
        return
    try:
        recipe = pickle.loads(base64.b64decode(data))  # noqa: S301 - written by the process that started this one
        pipeline = recipe.build()
        pipeline.auditor.locator.locate("192.0.2.1")
    except Exception:  # noqa: BLE001 - the workers build it themselves, and say what is wrong
        return
    _preloaded = (recipe, pipeline)


_preload()


def _start_worker(start: Pipeline | Recipe) -> None:
    """First thing in a worker process: SIGTERM ends it, which is how Pool.terminate stops it (a
    handler inherited from the parent, the follower's, would only set a flag), SIGINT is left to
    the parent (Ctrl-C reaches the whole process group), it dies with its parent (Linux: the
    command, or the fork server, which ends with the command); then it takes the run's pipeline:
    inherited built (fork), the fork server's when it is the same, or built from the recipe."""
    global _pipeline  # noqa: PLW0603 (a worker's pipeline, set once by the pool's initializer)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if isinstance(start, Pipeline):
        _pipeline = start
    elif _preloaded is not None and _preloaded[0] == start:
        _pipeline = _preloaded[1]
    else:
        _pipeline = start.build()


def _read_range(where: Range, config: SourceConfig) -> tuple[list[Tally], SourceStats]:
    """The tallies and counts of a range of a file (lines numbered from its start)."""
    assert _pipeline is not None
    piece = LogFile.of_range(where)
    try:
        events = [e for batch in piece.batches() for e in batch.events]
    finally:
        piece.close()
    return _pipeline.tally(events, config), piece.stats


def _read_whole(job: tuple[str, str, str | None, Any, Checkpoint, SourceConfig]) -> Done:
    """Open one input, resume at its checkpoint, read and audit all of it."""
    assert _pipeline is not None
    path, _name, fmt, fields, checkpoint, config = job
    batches: list[Audited] = []
    error = ""
    try:
        log = LogFile.open(path, _pipeline.needles, fmt, fields)
    except SourceError as e:  # gone or changed since it was looked at
        return Done(path, path, fmt or "empty", "plain", checkpoint, (), SourceStats(), False, 0, str(e))
    try:
        if not log.resume(checkpoint.offset, checkpoint.line):
            return Done(path, log.name, log.kind, log.compression, checkpoint, (), log.stats, False, log.consumed() or 0, earlier_copy=True)
        for batch in log.batches():  # a loop: what was read before a failure is kept
            audited = Audited(tuple(_pipeline.tally(batch.events, config)), batch.offset, batch.line)
            batches.append(audited)
    except SourceError as e:
        error = str(e)
    finally:
        consumed = log.consumed() or 0
        log.close()
    return Done(path, log.name, log.kind, log.compression, checkpoint, tuple(batches), log.stats, log.unterminated, consumed, error)
