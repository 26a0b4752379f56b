"""The prefilter of log reading: where a block of bytes names a governed host, in one pass.

Every needle (governed host names, the providers' blocked-region error codes) is compiled into
one Hyperscan database, matched case-insensitively (ASCII, like `bytes.lower`). One pass over a
16 MiB block finds every occurrence of every needle at several GB/s; lower-casing the block and
one `bytes.find` pass per needle, which this replaced, cost four times as much with four needles
and grew with each pack (`bench/logs.py`).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import hyperscan


class Needles:
    """The needles of a policy set, compiled. Build with `compiled()`, which remembers them."""

    def __init__(self, needles: tuple[bytes, ...]) -> None:
        self.needles = needles
        self._db: hyperscan.Database | None = None
        if needles:
            self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._db.compile(
                expressions=[re.escape(n) for n in needles],
                ids=list(range(len(needles))),
                elements=len(needles),
                flags=[hyperscan.HS_FLAG_CASELESS] * len(needles),
            )

    def ends(self, data: bytes | bytearray | memoryview) -> list[int]:
        """The offset just past every occurrence of a needle in `data`, ascending."""
        found: list[int] = []
        if self._db is not None and len(data):
            # type-var: Hyperscan scans any buffer (no copy of a block); its stub says str or bytes.
            self._db.scan(data, match_event_handler=_note_end, context=found)  # type: ignore[type-var]
            found.sort()  # already in order of end offset; cheap to make sure
        return found

    def any_in(self, data: bytes | bytearray | memoryview) -> bool:
        """True when `data` holds a needle."""
        found: list[int] = []
        if self._db is not None and len(data):
            try:
                self._db.scan(data, match_event_handler=_stop, context=found)  # type: ignore[type-var]  # as in ends()
            except hyperscan.ScanTerminated:  # what stopping at the first one looks like
                pass
        return bool(found)


# `found` is the `context` given to scan, a list[int]: Any, since the stub hands it back as an
# object and a check per match would cost in this, the hottest loop.
def _note_end(_id: int, _start: int, end: int, _flags: int, found: Any) -> None:
    found.append(end)


def _stop(_id: int, _start: int, end: int, _flags: int, found: Any) -> bool:
    found.append(end)
    return True  # halts the scan: one is enough


@functools.lru_cache(maxsize=16)
def compiled(needles: tuple[bytes, ...]) -> Needles:
    """The compiled form of `needles`, built once per process (a compile takes milliseconds)."""
    return Needles(needles)
