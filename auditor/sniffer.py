"""Auditing live traffic: a capture as a scheduler task, its findings stored batch by batch."""

from __future__ import annotations

from auditor.pipeline import Pipeline
from auditor.recorder import InputSummary, Recorder, Recording
from auditor.sources.interface import Batch
from auditor.sources.live import LiveCapture


class Sniffer:
    """A live capture stepped by the scheduler (auditor.scheduler.Task): every batch's findings
    are committed (and new rows shown by the recorder's hook) before the next is read, so what
    was reported is never lost. A capture is a new input in the store at every run."""

    def __init__(self, capture: LiveCapture, *, pipeline: Pipeline, recorder: Recorder) -> None:
        self.capture = capture
        self.pipeline = pipeline
        self.recorder = recorder
        self._recording: Recording | None = None
        self.ongoing = True
        """A capture goes on until stopped."""

    @property
    def source_id(self) -> int:
        """The capture's input id in the store (0 before it began)."""
        return self._recording.source_id if self._recording is not None else 0

    def begin(self) -> None:
        self._recording = self.recorder.open(self.capture)

    def step(self, deadline: float) -> bool:
        batch, read = self.capture.step()
        if batch is not None:
            self._record(batch)
        return read

    def due(self) -> float | None:
        return self.capture.flush_at

    def descriptors(self) -> list[int]:
        return self.capture.descriptors()

    def swap(self, pipeline: Pipeline) -> None:
        """Audit with `pipeline` from the next batch on."""
        self.pipeline = pipeline

    def stop(self) -> None:
        """The scheduler's stop ends the capture: nothing to do here."""

    def finish(self, clean: bool) -> None:
        try:
            if clean and self._recording is not None:
                self._record(self.capture.finish())
        finally:
            self.capture.close()
            self.recorder.summary.inputs.append(
                InputSummary.of(
                    self.capture.name,
                    "live",
                    "plain",
                    self.capture.stats,
                    False,
                    0,
                    self._recording.calls if self._recording is not None else 0,
                    source_id=self.source_id,
                )
            )

    def _record(self, batch: Batch) -> None:
        assert self._recording is not None
        tallies = self.pipeline.tally(batch.events, self.pipeline.source(self.capture.name))
        self._recording.add(tallies, 0, batch.line, self.capture.stats)  # packets carry no tunnel uids
