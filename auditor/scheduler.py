"""Watching sources until stopped: one loop steps every task in turn and records what they read.

A task is a source that can be stepped: `step(deadline)` reads what its inputs hold now, records
it (through the run's Recorder) and returns, waiting for nothing. `logs --follow` is a Scheduler
over a Follower (the followed paths and the files rotated away from them), `sniff` one over a
live capture; the daemon will be one over all of them. Signals reach the scheduler one way
(`stop_on_signals`): the current step ends, every task finishes (what was read is stored), and
the run is recorded.
"""

from __future__ import annotations

import select
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from auditor.pipeline import Pipeline
from auditor.recorder import Recorder, RunSummary

POLL_SECONDS = 0.5
"""How long the loop waits when no task had anything to read (less when a task is due sooner, or
one of its descriptors becomes readable)."""
COMMIT_SECONDS = 1.0
"""Longest time one input is read before what was read is stored (one round)."""
_SLICE = 0.1
"""A wait is cut in slices this long, so that a stop is seen soon."""


class Task(Protocol):
    """A source that can be stepped, and records what it reads."""

    def begin(self) -> None:
        """Before the first step: open the inputs, catch up on what came while no run watched."""

    def step(self, deadline: float) -> bool:
        """Read and record what the inputs hold now, without waiting; an input is read until
        `deadline - now` has passed (time.monotonic()), then what was read of it is stored. True
        when anything was read."""

    @property
    def ongoing(self) -> bool:
        """False once nothing more will come (a pipe's writer closed it)."""

    def due(self) -> float | None:
        """When (time.monotonic()) it wants a step though nothing was read; None: any time."""

    def descriptors(self) -> list[int]:
        """What to wait on between steps: readable descriptors end the wait ([] for files, which are looked at)."""

    def swap(self, pipeline: Pipeline) -> None:
        """Audit with `pipeline` from the next step on."""

    def stop(self) -> None:
        """End the current step soon (called from a signal handler: set a flag, nothing more)."""

    def finish(self, clean: bool) -> None:
        """After the last step (`clean`: not ended by an error): store what is left, close the
        inputs, add their summaries to the run."""


class Scheduler:
    """Steps its tasks in turn until stopped, or until none of them is ongoing."""

    def __init__(self, recorder: Recorder, tasks: Sequence[Task]) -> None:
        self.recorder = recorder
        self.tasks = list(tasks)
        self.stopped = False
        """True once stop() was called (by a signal)."""

    def swap(self, pipeline: Pipeline) -> None:
        """Audit with `pipeline` (built anew: a reload) from the next step on, in every task."""
        for task in self.tasks:
            task.swap(pipeline)

    def stop(self) -> None:
        """Finish the current step (what was read is stored) and return from run(); safe in a signal handler."""
        self.stopped = True
        for task in self.tasks:
            task.stop()

    def run(self) -> RunSummary:
        """Start the run, step the tasks until stopped, finish them and the run; what each input gave."""
        self.recorder.start()
        clean = False
        try:
            for task in self.tasks:
                task.begin()
            while not self.stopped and any(task.ongoing for task in self.tasks):
                busy = False
                for task in self.tasks:
                    if self.stopped:  # a task's step may have stopped the scheduler
                        break  # type: ignore[unreachable]  # mypy narrows self.stopped from the while
                    if task.ongoing:
                        busy |= task.step(time.monotonic() + COMMIT_SECONDS)
                if not busy:
                    self._wait()
            clean = True
        finally:
            for task in self.tasks:
                task.finish(clean)
            summary = self.recorder.finish()
        return summary

    def _wait(self) -> None:
        """Up to POLL_SECONDS, less when a task is due sooner; over when a task's descriptor is readable or on stop."""
        now = time.monotonic()
        end = min([now + POLL_SECONDS, *(d for d in (t.due() for t in self.tasks) if d is not None)])
        descriptors = [fd for task in self.tasks for fd in task.descriptors()]
        while not self.stopped and (left := end - time.monotonic()) > 0:
            if not descriptors:
                time.sleep(min(left, _SLICE))
                continue
            try:
                ready, _, _ = select.select(descriptors, [], [], min(left, _SLICE))
            except InterruptedError:
                ready = []
            if ready:
                return


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call `stop` instead of ending the process mid-transaction."""

    def handler(_signum: int, _frame: Any) -> None:
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
