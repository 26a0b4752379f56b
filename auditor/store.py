"""The FindingStore: runs, checkpoints, aggregated observations and sampled evidence.

The only module that imports SQLAlchemy. SQLite (a file, WAL mode, created owner-only) by
default; any SQLAlchemy URL works, PostgreSQL for fleets. Storage grows with distinct
(source, org, provider, host, egress, country, basis, verdict, day), not with raw events. A batch
of findings and the checkpoint of the input that produced it commit in one transaction, so a
crash loses nothing acknowledged and re-reading the same input never double counts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from auditor.events import SAMPLES, Tally
from auditor.spans import Span

EVIDENCE_PER_OBSERVATION = SAMPLES
"""Evidence events kept per observation (the first ones seen)."""
VERDICT_ORDER = ("violation", "at_risk", "unknown", "allowed")


class StoreError(Exception):
    """The store cannot be opened or written; the message says what to do."""


class CheckpointMoved(StoreError):
    """Another process moved an input's checkpoint since this one read it (two audits of the same
    input into one database at once). The batch was not stored: it would have counted lines twice."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__(f"line {checkpoint.line}")
        self.checkpoint = checkpoint
        """Where the input's checkpoint is now."""


@dataclass(frozen=True)
class Checkpoint:
    """Where reading an input resumes."""

    source_id: int
    """The input's row in `sources`."""
    offset: int
    """Bytes of the (decompressed) input already audited."""
    line: int
    """Lines already audited."""


@dataclass(frozen=True)
class Row:
    """One output row: calls aggregated per (org, provider, host, egress, country, basis, verdict)."""

    org: str
    provider: str
    host: str
    egress_ip: str
    country: str
    basis: str
    verdict: str
    calls: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    blocked_calls: int = 0
    """Calls the provider already refused with its blocked-region error."""
    locators_disagree: str = ""
    """Answers of other locator layers (`mmdb:GeoLite2-Country@2026-11-20=US`, `; ` between two)
    that would give the row's calls another verdict (Tally.locators_disagree), "" when none."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, timestamps in ISO 8601 UTC."""
        return {
            "org": self.org,
            "provider": self.provider,
            "host": self.host,
            "egress_ip": self.egress_ip,
            "country": self.country,
            "basis": self.basis,
            "verdict": self.verdict,
            "calls": self.calls,
            "blocked_calls": self.blocked_calls,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "locators_disagree": self.locators_disagree,
        }


@dataclass(frozen=True)
class Evidence:
    """One sampled call behind an observation."""

    location: str
    ts: dt.datetime
    orig_h: str
    egress_basis: str
    rule_id: str
    reason: str
    raw: str
    disagreements: str


@dataclass(frozen=True)
class Scope:
    """Which observations a read covers (a report's filters); empty means all."""

    providers: tuple[str, ...] = ()
    """Only these providers (pack ids), () for all."""
    orgs: tuple[str, ...] = ()
    """Only these organizations, () for all."""
    since: dt.date | None = None
    """Only calls on or after this day (UTC), None for no bound."""
    until: dt.date | None = None
    """Only calls on or before this day (UTC), None for no bound."""


@dataclass(frozen=True)
class RunRecord:
    """One run as the `runs` table keeps it."""

    id: int
    command: str
    geoip: str
    """The locator chain's description (data sources and their dates)."""
    policies: str
    """The packs and their newest versions (`openai@v188,...`)."""
    started_at: dt.datetime
    finished_at: dt.datetime | None
    lines: int
    events: int
    findings: int
    skipped: int


@dataclass(frozen=True)
class InputRead:
    """What one run read of one input: recorded by the runner (FindingStore.record_reads)."""

    source_id: int
    name: str
    format: str
    compression: str
    lines: int
    events: int
    calls: int
    malformed: tuple[tuple[str, int], ...]
    """Malformed records by reason, most frequent first."""


@dataclass(frozen=True)
class InputRecord:
    """An audited input, over every run that read it."""

    source_id: int
    name: str
    lines: int
    """Lines (packets) audited so far: its checkpoint."""
    calls: int
    """Governed calls stored from it (in the scope asked for)."""
    first_seen: dt.datetime | None
    """Its first governed call (UTC), None when it had none."""
    last_seen: dt.datetime | None
    formats: tuple[str, ...]
    """Formats it was read as; () when no run recorded it (a database from before reads were recorded)."""
    compression: str
    malformed: tuple[tuple[str, int], ...]
    """Malformed records by reason over the runs that recorded it, most frequent first."""
    recorded: bool
    """False when no run recorded how it was read (format, malformed counts): "not recorded"."""
    spans: tuple[tuple[dt.datetime, dt.datetime], ...] = ()
    """When its records were written (UTC, naive), over every run that recorded it: stretches of
    days with records, sorted; () when no run recorded them (a database from before they were)."""


@dataclass(frozen=True)
class DayCount:
    """Calls of one org on one day with one verdict."""

    org: str
    day: dt.date
    verdict: str
    calls: int
    blocked_calls: int


@dataclass(frozen=True)
class RuleCount:
    """Calls judged by one rule of one policy version."""

    provider: str
    policy_version: str
    """`openai@v188`."""
    rule_id: str
    """`openai@v188:not-listed:HK`."""
    verdict: str
    calls: int


@dataclass(frozen=True)
class Activity:
    """Calls by day and by rule (FindingStore.activity), in no particular order."""

    days: list[DayCount]
    rules: list[RuleCount]


RowKey = tuple[str, str, str, str, str, str, str]
"""(org, provider, host, egress_ip, country, basis, verdict): what identifies a Row."""


def row_key(row: Row) -> RowKey:
    return (row.org, row.provider, row.host, row.egress_ip, row.country, row.basis, row.verdict)


class Fingerprinted(Protocol):
    """What a checkpoint lookup needs from an open input."""

    name: str
    prefix: bytes
    whole_lines: int

    @property
    def fingerprint(self) -> str: ...

    def prefix_fingerprint(self, length: int) -> str: ...


def _iso(value: dt.datetime) -> str:
    return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)


class FindingStore(ABC):
    """Where findings are kept between runs."""

    @abstractmethod
    def start_run(self, command: str, geoip: str, policies: str) -> int:
        """Record the start of a run; returns its id."""

    @abstractmethod
    def finish_run(self, run_id: int, *, lines: int, events: int, findings: int, skipped: int) -> None:
        """Record what a run did."""

    @abstractmethod
    def checkpoint(self, source: Fingerprinted) -> Checkpoint:
        """The checkpoint of an input read before (same content), or a new one at 0."""

    @abstractmethod
    def known(self, source: Fingerprinted) -> Checkpoint | None:
        """The checkpoint `checkpoint` would give an input read before, None for a new one;
        nothing is written."""

    @abstractmethod
    def restart(self, source: Fingerprinted) -> Checkpoint:
        """A new checkpoint at 0 for an input whose old checkpoint no longer applies."""

    @abstractmethod
    def forget(self, source: Fingerprinted, keep: Collection[int] = ()) -> Checkpoint:
        """Drop what earlier audits of an input (the same content, as `checkpoint` finds it)
        recorded: checkpoints, calls and evidence; a new checkpoint at 0, so that it is audited
        again from the start with counts replaced, not added to (`logs --rescan`). When one of the
        checkpoints found is in `keep` (made by this run's own `forget`), nothing is dropped and
        that checkpoint is returned: a copy of an input the run has read is not a reason to forget it."""

    @abstractmethod
    def last_read(self, name: str) -> tuple[Checkpoint, dt.datetime] | None:
        """The checkpoint of the input last read under this name (the one taken or moved last) and
        when (UTC); None when none was: how far a follower of that path got before it stopped."""

    @abstractmethod
    def saw_end(self, checkpoint: Checkpoint, at: dt.datetime) -> None:
        """Record that the input's content ended at `checkpoint` (read to its end, no unfinished
        last line, nothing cut short), for every write made before `at`."""

    @abstractmethod
    def seen_end(self, source_id: int) -> tuple[int, dt.datetime] | None:
        """Where and when (UTC) `saw_end` last saw the input's content end; None when it never did."""

    @abstractmethod
    def read_as(self, name: str) -> set[int]:
        """The inputs read under this name (their checkpoints' source ids): the files a path named
        while they were audited, rotated away since or not."""

    @abstractmethod
    def add_batch(
        self,
        run_id: int,
        checkpoint: Checkpoint,
        tallies: Sequence[Tally],
        offset: int,
        line: int,
        spans: Sequence[Span] | None = None,
        read: int = 0,
    ) -> tuple[Checkpoint, int]:
        """Store a batch's findings, grouped (auditor.events.tally), and move the input's checkpoint
        from `checkpoint` (where the batch starts) to (`offset`, `line`), atomically; the new
        checkpoint, for the next batch, and how many of the batch's calls were not counted because
        the other record of their CONNECT tunnel was (Tally.tunnels: the first of the two stored
        counts, in this batch or any earlier one, of any input). CheckpointMoved, with nothing
        stored, when the stored checkpoint is no longer `checkpoint`: another process audited the
        same lines. `spans`: when the records read so far in this run's `read` (a number the run
        gives each input it reads) of this input were written (SourceStats.spans), stored in the
        same transaction in place of what earlier batches of the read stored: a run killed later
        keeps the times of what its checkpoint covers; None leaves them as they are."""

    @abstractmethod
    def rows(self, source_ids: Iterable[int] | None = None) -> list[Row]:
        """Aggregated rows, worst verdict first; only those from `source_ids` when given."""

    @abstractmethod
    def evidence(self, row: Row, limit: int = EVIDENCE_PER_OBSERVATION) -> list[Evidence]:
        """Sampled calls behind a row."""

    # The read model's queries (auditor.report.model)

    @abstractmethod
    def record_reads(self, run_id: int, reads: Sequence[InputRead]) -> None:
        """Record what a run read of each input (format, lines, calls, malformed by reason)."""

    @abstractmethod
    def runs(self) -> list[RunRecord]:
        """Every run, oldest first."""

    @abstractmethod
    def inputs(self, scope: Scope = Scope()) -> list[InputRecord]:
        """Every audited input with its checkpoint, how it was read and its governed calls' time
        range (calls counted within `scope`), by name."""

    @abstractmethod
    def scoped_rows(self, scope: Scope) -> list[Row]:
        """`rows()` within a scope."""

    def reading(self) -> AbstractContextManager[None]:
        """A context in which every read sees one state of the store (the report's reads)."""
        return contextlib.nullcontext()

    def files(self) -> list[str]:
        """The local files that hold the database (real paths: a SQLite file and its journals), [] for a server."""
        return []

    @abstractmethod
    def activity(self, scope: Scope) -> Activity:
        """Calls per (org, day, verdict) and per (provider, policy version, rule, verdict), in one read."""

    @abstractmethod
    def evidence_by_row(self, scope: Scope, limit: int = EVIDENCE_PER_OBSERVATION) -> dict[RowKey, list[Evidence]]:
        """The first `limit` sampled calls (by time) behind each row of `scoped_rows(scope)`, in one read."""

    @abstractmethod
    def known_values(self) -> tuple[set[str], set[str]]:
        """The organizations and the providers the store holds observations of (in any scope)."""


def recorded_name(name: str) -> str:
    """The name an input's checkpoint is recorded under: a path made absolute, with its
    directory's symbolic links resolved (the file's own link is kept: `access.log` may point at
    a dated file), so that `access.log`, `./access.log` and its absolute path are one; `<stdin>`
    and other names in angle brackets as they are."""
    if name.startswith("<"):
        return name
    path = os.path.abspath(name)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


TUNNEL_REPEATED = "a call counted already through the other record of its CONNECT tunnel (Zeek http.log and ssl.log, same uid)"
"""The reason a run gives for calls add_batch did not count."""


def default_db_path() -> Path:
    """`$XDG_DATA_HOME/region-auditor/findings.db`, else `~/.local/share/region-auditor/findings.db`."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "region-auditor" / "findings.db"


def to_url(target: str) -> str:
    """A path or URL -> SQLAlchemy URL (`postgresql://` gets the psycopg driver)."""
    if "://" not in target:
        return "sqlite:///" + os.path.abspath(os.path.expanduser(target))
    if target.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + target.split("://", 1)[1]
    return target
