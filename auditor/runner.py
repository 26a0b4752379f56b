"""Ad-hoc audit of log inputs: open, resume from checkpoint, audit, store in batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditor.config import Config, SourceConfig
from auditor.events import ConnectionEvent, Finding
from auditor.pipeline import Auditor
from auditor.sources.interface import SourceError
from auditor.sources.logfile import LogFile
from auditor.store import FindingStore


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

    def describe(self) -> str:
        """One paragraph for stderr."""
        kind = self.format if self.compression == "plain" else f"{self.format}, {self.compression}"
        text = f"{self.name} ({kind}): {self.lines} lines"
        if self.resumed_at_line:
            text += f" after line {self.resumed_at_line} (audited before)"
        text += f", {self.calls} calls to governed hosts"
        parts = [text]
        for reason, count in self.skipped.most_common():
            where = ", ".join(self.locations.get(reason, []))
            more = " ..." if count > len(self.locations.get(reason, [])) else ""
            parts.append(f"  skipped {count} malformed: {reason} ({where}{more})")
        for reason, count in self.ignored.most_common():
            parts.append(f"  not counted {count}: {reason}")
        if self.unterminated:
            parts.append("  the last line has no newline and the file changed just now; it is read once complete")
        return "\n".join(parts)


@dataclass
class RunSummary:
    """What a run did, input by input."""

    run_id: int
    inputs: list[InputSummary] = field(default_factory=list)
    source_ids: list[int] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    """Why inputs that may be skipped (files found in a directory) were not read, or not to the end."""

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
    is told after each batch how many bytes of the inputs (as stored) were read so far."""
    run_id = store.start_run(command, auditor.locator.description, auditor.policies.version_tag)
    summary = RunSummary(run_id)
    totals = Counter[str]()
    needles = auditor.policies.needles()
    done = 0
    for path in paths:
        try:
            known = config.source(path)  # its format and field map, when the config gives them
            log = opener(path) if opener else LogFile.open(path, needles, fmt or known.format or None, known.field_map)
        except SourceError as e:
            if path not in tolerate:
                raise
            summary.unread.append(f"skipped {e}")
            continue
        try:
            checkpoint = store.forget(log) if rescan else store.checkpoint(log)
            if not log.resume(checkpoint.offset, checkpoint.line):
                checkpoint = store.restart(log)
            summary.source_ids.append(checkpoint.source_id)
            source_config = config.source(path)
            calls = 0
            def audit(events: Sequence[ConnectionEvent], source: SourceConfig = source_config) -> list[Finding]:
                return list(auditor.audit(events, source))

            for batch in log.batches(audit):
                findings = list(batch.findings) if batch.findings is not None else audit(batch.events)
                store.add_batch(run_id, checkpoint, findings, batch.offset, batch.line)
                calls += len(findings)
                if progress:
                    progress(done + (log.consumed() or 0))
        except SourceError as e:
            if path not in tolerate:
                raise
            summary.unread.append(f"stopped reading {e}")
            continue
        finally:
            done += log.consumed() or 0
            log.close()
        stats = log.stats
        summary.inputs.append(
            InputSummary(
                name=log.name, format=log.format.name if log.format else "empty", compression=log.compression,
                resumed_at_line=checkpoint.line, lines=stats.lines, calls=calls, skipped=stats.skipped,
                ignored=stats.ignored, locations=stats.locations, unterminated=log.unterminated,
            )
        )
        totals.update(lines=stats.lines, events=stats.events, findings=calls, skipped=sum(stats.skipped.values()))
    store.finish_run(run_id, lines=totals["lines"], events=totals["events"], findings=totals["findings"], skipped=totals["skipped"])
    return summary
