"""The EventSource role and its error base."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from auditor.events import ConnectionEvent
from auditor.spans import Span, add_span


class SourceError(Exception):
    """An input cannot be read at all (missing, unreadable, not a known format)."""


class Malformed(Exception):
    """A record that cannot be parsed; counted and skipped with its location."""


class Ignored(Exception):
    """A well-formed record that is not an outbound call (denied by the proxy, no host)."""

    def __init__(self, reason: str, ts: dt.datetime | None = None) -> None:
        super().__init__(reason)
        self.ts = ts
        """When the record was written, when the parser read it before it knew: the record still
        dates its input (SourceStats.spans)."""


FINGERPRINT_BYTES = 4096
"""How much of the start of an input identifies it (Prefixed.prefix)."""
MAX_LOCATIONS = 5
"""How many locations of each skip reason a summary keeps."""


@dataclass
class SourceStats:
    """What reading a source saw; mutable, owned by the source while it reads."""

    lines: int = 0
    """Records read in this run (after any checkpoint)."""
    candidates: int = 0
    """Records that passed the prefilter and were parsed."""
    events: int = 0
    """Connection events produced."""
    from_dns: int = 0
    """Connections named from a DNS answer their client got (no SNI, or real ECH): captures only."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Malformed records by reason."""
    ignored: Counter[str] = field(default_factory=Counter)
    """Well-formed records that are not calls, by reason."""
    locations: dict[str, list[str]] = field(default_factory=dict)
    """The first few `file:line` locations per skip reason."""
    spans: list[Span] = field(default_factory=list)
    """When the records read were written: stretches of days with records, sorted (add_span). Taken
    from a few records (the first and last of every MiB or so of a log, of every few thousand
    packets), not from each: a day with no record inside a stretch is not seen."""

    def dated(self, first: dt.datetime | None, last: dt.datetime | None) -> None:
        """Note that records were read from `first` to `last` (either None when not known)."""
        first, last = first or last, last or first
        if first is not None and last is not None:
            add_span(self.spans, first, last)

    def count(self, event: ConnectionEvent) -> None:
        """Count an event a capture produced (and whether DNS named it)."""
        self.events += 1
        if event.name_source.endswith("dns"):
            self.from_dns += 1

    def skip(self, reason: str, location: str) -> None:
        """Count a malformed record. A reason quotes the record (`bad URL '...'`): its secrets are
        redacted, as it is printed and stored."""
        reason = _redacted(reason)
        self.skipped[reason] += 1
        where = self.locations.setdefault(reason, [])
        if len(where) < MAX_LOCATIONS:
            where.append(location)


@functools.lru_cache(maxsize=4096)
def _redacted(reason: str) -> str:
    from auditor.redact import redact

    return redact(reason)


@dataclass(frozen=True)
class Batch:
    """Events read since the last batch, and the position to resume after them."""

    events: tuple[ConnectionEvent, ...]
    """Events in the batch, in input order."""
    offset: int
    """Byte offset (in the decompressed stream) just after the last complete record."""
    line: int
    """Number of the last complete record (1-based; 0 before any)."""


class Prefixed:
    """An input identified by the first bytes of its content (see FindingStore.checkpoint)."""

    prefix: bytes
    """The first bytes of the (decompressed) content."""
    whole_lines: int = 0
    """When `prefix` is all of the input: how much of it is read as lines (all of it, or up to its
    last newline when an unterminated last line is left for later). 0 for a longer input: it is
    told by `prefix` alone."""
    resumable: bool = True
    """False for an input that is new at every run (a live capture): it gets a new checkpoint,
    never one found by its first bytes."""

    @property
    def fingerprint(self) -> str:
        """SHA-256 of `prefix`."""
        return hashlib.sha256(self.prefix).hexdigest()

    def prefix_fingerprint(self, length: int) -> str:
        """SHA-256 of the first `length` bytes (to match a checkpoint taken when it was shorter)."""
        return hashlib.sha256(self.prefix[:length]).hexdigest()


class EventSource(ABC):
    """A producer of connection events."""

    name: str
    """The input, as shown to users (path, `-`, interface)."""

    @abstractmethod
    def batches(self) -> Iterator[Batch]:
        """Events in batches, each ending at a position that can be checkpointed, read in this
        process (what runs in other processes is the executor's business: see `range_end`)."""

    def events(self) -> Iterator[ConnectionEvent]:
        """All events, one at a time."""
        for batch in self.batches():
            yield from batch.events

    def consumed(self) -> int | None:
        """Bytes of the input as stored (compressed, when it is) read so far, for progress
        meters; None when unknown (a pipe, a live source)."""
        return None

    def range_end(self, min_left: int) -> int:
        """How far from its position this input can be read in byte ranges by other processes
        (auditor.executor): a record boundary; 0 when it cannot be, or less than `min_left` is left."""
        return 0

    @property
    def complete(self) -> bool:
        """True when what was read is all the input holds, to its last byte, and that end is worth
        recording (FindingStore.saw_end: a follower tells rotated files by it): a log file on disk
        read to its end with no unfinished last line and nothing cut short. False by default."""
        return False


class Resumable(Protocol):
    """An input the store keeps a checkpoint for, whatever it is (a log file, a capture, a live
    source): what a Recorder and the commands need of it, and all they may touch.

    Identity: `name`, and the first bytes of its content (`prefix`, `whole_lines`, `fingerprint`,
    `prefix_fingerprint`: FindingStore.checkpoint tells inputs by them), or none (`resumable`
    False: new at every run). Checkpoint: `resume(offset, line)`. Reading: `batches()`, each
    ending at a checkpoint. End: `complete`, `unterminated`."""

    name: str
    prefix: bytes
    whole_lines: int
    resumable: bool

    @property
    def kind(self) -> str:
        """The format's name for summaries (`squid`, `pcapng`, `live`)."""

    compression: str
    stats: SourceStats
    unterminated: bool
    """True when it ended inside a record left for the next run."""

    @property
    def fingerprint(self) -> str: ...

    def prefix_fingerprint(self, length: int) -> str: ...

    def resume(self, offset: int, line: int) -> bool:
        """Move to a checkpoint taken on this input; False when it ends before it."""

    def batches(self) -> Iterator[Batch]: ...

    @property
    def complete(self) -> bool: ...

    def consumed(self) -> int | None: ...

    def close(self) -> None: ...
