"""Auditing live traffic: findings stored batch by batch while the capture runs, until stopped."""

from __future__ import annotations

from auditor.config import Config
from auditor.pipeline import Auditor
from auditor.recorder import InputSummary, Recorder
from auditor.sources.live import LiveCapture


def run_sniffer(capture: LiveCapture, *, config: Config, auditor: Auditor, recorder: Recorder) -> int:
    """Audit until `capture.stop()`; every batch's findings are committed (through `recorder`,
    its hook shown new rows) before the next is read, so what was reported is never lost.
    Returns the capture's input id in the store."""
    recorder.start()
    recording = recorder.open(capture)  # a live capture is a new input at every run
    source_config = config.source(capture.name)
    try:
        for batch in capture.batches():
            recording.add(auditor.tally(batch.events, source_config), 0, batch.line, capture.stats)  # packets carry no tunnel uids
    finally:
        capture.close()
        recorder.summary.inputs.append(InputSummary.of(capture.name, "live", "plain", capture.stats, False, 0, recording.calls,
                                                       source_id=recording.source_id))
        recorder.finish()
    return recording.source_id
