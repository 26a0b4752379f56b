"""Recording a run in the store: the one path from audited batches to the FindingStore.

`logs`, `logs --follow`, `pcap` and `sniff` all record through a Recorder: it starts the run,
finds each input's checkpoint (or forgets it, `--rescan`; a live source gets a new one), moves it
batch by batch by compare-and-set (FindingStore.add_batch: another process that stored the same
lines first makes it raise CheckpointMoved, nothing stored), counts the calls each input gave,
hands the tallies of every batch to a hook (the printer of new rows of the watching commands),
and records the run's totals and what it read of each input when it finishes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from auditor.events import Tally
from auditor.sources.interface import Resumable, SourceStats
from auditor.spans import Span
from auditor.store import TUNNEL_REPEATED, Checkpoint, FindingStore, InputRead


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
        return cls(
            name=name,
            format=fmt,
            compression=compression,
            resumed_at_line=checkpoint.line,
            lines=0,
            calls=0,
            skipped=Counter(),
            ignored=Counter(),
            locations={},
            unterminated=False,
            earlier_copy=True,
            source_id=checkpoint.source_id,
        )

    @classmethod
    def of(
        cls,
        name: str,
        fmt: str,
        compression: str,
        stats: SourceStats,
        unterminated: bool,
        resumed_at_line: int,
        calls: int,
        *,
        behind: bool = False,
        source_id: int = 0,
    ) -> InputSummary:
        """The summary of an input from what reading it counted."""
        return cls(
            name=name,
            format=fmt,
            compression=compression,
            resumed_at_line=resumed_at_line,
            lines=stats.lines,
            calls=calls,
            skipped=stats.skipped,
            ignored=stats.ignored,
            locations=stats.locations,
            unterminated=unterminated,
            events=stats.events,
            behind=behind,
            from_dns=stats.from_dns,
            source_id=source_id,
        )

    def describe(self, unit: str = "line") -> str:
        """One paragraph for stderr; `unit`: what a record is (`packet` for a capture)."""
        kind = self.format if self.compression == "plain" else f"{self.format}, {self.compression}"
        if self.earlier_copy:
            return (
                f"{self.name} ({kind}): nothing new: it starts like an input audited up to line {self.resumed_at_line} "
                "and ends before that (an earlier, shorter copy of it)"
            )
        text = f"{self.name} ({kind}): {self.lines} {unit if self.lines == 1 else unit + 's'}"
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
            parts.append(
                f"  stopped before the end of the file (after line {self.resumed_at_line + self.lines}); "
                "the rest is read when it is followed or audited again"
            )
        elif self.unterminated and self.compression != "plain":
            parts.append(
                "  the last line has no newline (copied while it was being written?): not counted; "
                "it is counted from the file it was copied from, once complete"
            )
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


NewRows = Callable[[Sequence[Tally]], None]
"""The hook for new rows: the tallies of each batch stored, in input order of their first call."""


class Recorder:
    """One run of a command in the store. `start()` it, `open()` each input, `add()` each audited
    batch to the input's Recording, and `finish()` it."""

    def __init__(self, store: FindingStore, command: str, *, geoip: str, policies: str, on_new_rows: NewRows | None = None) -> None:
        self.store = store
        self.command = command
        self.geoip = geoip
        """The locator's description, recorded with the run."""
        self.policies = policies
        """The policy set's version tag, recorded with the run."""
        self.on_new_rows = on_new_rows
        self.summary = RunSummary(0)
        """What the run did so far, input by input."""
        self._rescanned: set[int] = set()
        self.reads = 0
        """Inputs opened so far (Recording.read)."""

    @property
    def run_id(self) -> int:
        return self.summary.run_id

    def start(self) -> RunSummary:
        """Record the start of the run."""
        self.summary.run_id = self.store.start_run(self.command, self.geoip, self.policies)
        return self.summary

    def open(self, source: Resumable, *, rescan: bool = False, resume: bool = True) -> Recording:
        """The input's place in the store: its checkpoint, the source moved there (unless not
        `resume`: a worker process moves it). `rescan`: what earlier runs recorded of it is
        forgotten, not what this run stored (a copy of an input read in this run resumes from
        its checkpoint). A source that cannot resume (live capture) gets a new checkpoint."""
        if not source.resumable:
            return Recording(self, self.store.restart(source), resumed=True)
        if rescan:
            checkpoint = self.store.forget(source, keep=self._rescanned)
            self._rescanned.add(checkpoint.source_id)
        else:
            checkpoint = self.store.checkpoint(source)
        return Recording(self, checkpoint, resumed=not resume or source.resume(checkpoint.offset, checkpoint.line))

    def recording(self, checkpoint: Checkpoint) -> Recording:
        """The Recording of an input whose checkpoint was found already (a worker read it)."""
        return Recording(self, checkpoint, resumed=True)

    def finish(self) -> RunSummary:
        """Record the run's totals, from what its inputs gave, and what it read of each input."""
        summary = self.summary
        totals = Counter[str]()
        for item in summary.inputs:
            totals.update(lines=item.lines, events=item.events, findings=item.calls, skipped=sum(item.skipped.values()))
        self.store.finish_run(summary.run_id, lines=totals["lines"], events=totals["events"], findings=totals["findings"], skipped=totals["skipped"])
        self.store.record_reads(
            summary.run_id,
            [
                InputRead(
                    source_id=item.source_id,
                    name=item.name,
                    format=item.format,
                    compression=item.compression,
                    lines=item.lines,
                    events=item.events,
                    calls=item.calls,
                    malformed=tuple(item.skipped.most_common()),
                )
                for item in summary.inputs
                if item.source_id and not item.earlier_copy
            ],
        )
        return summary


class Recording:
    """One input's part in a run: its checkpoint, moved batch by batch, and the calls it gave."""

    def __init__(self, recorder: Recorder, checkpoint: Checkpoint, *, resumed: bool) -> None:
        self._recorder = recorder
        self.start = checkpoint
        """Where this run started reading it."""
        self.checkpoint = checkpoint
        """Where the next batch starts."""
        self.resumed = resumed
        """False when the input ends before its checkpoint: an earlier, shorter copy of an input
        audited further, with nothing new in it."""
        self.calls = 0
        """Calls to governed hosts stored (those the other record of their tunnel counted left out)."""
        recorder.reads += 1
        self.read = recorder.reads
        """The run's number for this read of the input (FindingStore.add_batch keeps its record times under it)."""
        self._spans: list[Span] = []
        """The record times stored so far."""

    @property
    def source_id(self) -> int:
        return self.start.source_id

    def add(self, tallies: Sequence[Tally], offset: int, line: int, stats: SourceStats) -> None:
        """Store a batch's tallies and move the checkpoint to (`offset`, `line`), atomically;
        CheckpointMoved, with nothing stored, when another process moved it first. The calls the
        store left out as counted already (the other record of a CONNECT tunnel) are counted in
        `stats` as not counted."""
        recorder = self._recorder
        spans = None if stats.spans == self._spans else list(stats.spans)
        self.checkpoint, repeated = recorder.store.add_batch(recorder.run_id, self.checkpoint, tallies, offset, line, spans, self.read)
        if spans is not None:
            self._spans = spans
        self.calls += sum(t.calls for t in tallies) - repeated
        if repeated:
            stats.ignored[TUNNEL_REPEATED] += repeated
        if recorder.on_new_rows is not None and tallies:
            recorder.on_new_rows(tallies)

    def saw_end(self, at: dt.datetime) -> None:
        """Record that the input's content ends at the checkpoint, for every write before `at`."""
        self._recorder.store.saw_end(self.checkpoint, at)


def new_rows_printer(say: Callable[[str], None]) -> NewRows:
    """The hook that says one line (auditor.report.table.NewRows, the one printer of the watching
    commands) for each row the run has not shown yet: a tally's first sample is the first call
    of its row in the batch, and tallies come in order of their first call."""
    from auditor.report.table import NewRows as Printer

    printer = Printer()

    def show(tallies: Sequence[Tally]) -> None:
        for tally in tallies:
            line = printer.line(tally.samples[0])
            if line is not None:
                say(line)

    return show
