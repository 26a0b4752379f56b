"""Auditing live traffic: findings stored batch by batch while the capture runs, until stopped."""

from __future__ import annotations

from collections.abc import Callable

from auditor.config import Config
from auditor.events import Finding, tally
from auditor.pipeline import Auditor
from auditor.sources.live import LiveCapture
from auditor.store import FindingStore, InputRead


def run_sniffer(capture: LiveCapture, *, config: Config, auditor: Auditor, store: FindingStore, command: str,
                on_finding: Callable[[Finding], None]) -> int:
    """Audit until `capture.stop()`; every batch's findings are committed before the next is read,
    so what was reported is never lost. Returns the capture's input id in the store."""
    run_id = store.start_run(command, auditor.locator.description, auditor.policies.version_tag)
    checkpoint = store.restart(capture)
    source_config = config.source(capture.name)
    calls = 0
    try:
        for batch in capture.batches():
            findings = list(auditor.audit(batch.events, source_config))
            checkpoint, _ = store.add_batch(run_id, checkpoint, tally(findings), 0, batch.line)  # packets carry no tunnel uids
            calls += len(findings)
            for finding in findings:
                on_finding(finding)
    finally:
        capture.close()
        stats = capture.stats
        store.finish_run(run_id, lines=stats.lines, events=stats.events, findings=calls, skipped=sum(stats.skipped.values()))
        store.record_reads(run_id, [InputRead(checkpoint.source_id, capture.name, "live", "plain", stats.lines, stats.events, calls,
                                              tuple(stats.skipped.most_common()))])
    return checkpoint.source_id
