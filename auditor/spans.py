"""Stretches of time an input's records were written in: what the report's coverage is made of.

A reader dates a few records of what it reads (SourceStats.dated), the store keeps the stretches
each run read of each input, and the report tells a day no input has records of ("no input") from
a day with records and no governed call ("no calls")."""

from __future__ import annotations

import bisect
import datetime as dt

MAX_SPANS = 256
"""How many separate stretches of record times a read keeps (SourceStats.spans); past that the two
closest are joined."""

Span = tuple[dt.datetime, dt.datetime]
"""The times of the first and last records of a stretch of an input, first <= last: UTC, aware as
readers give them, naive as the store keeps them (never the two mixed in one list)."""


def add_span(spans: list[Span], first: dt.datetime, last: dt.datetime, limit: int | None = MAX_SPANS) -> None:
    """Add the stretch [first, last] to `spans` (sorted, none on the same or the next day as
    another): joined to every span it shares a day with or touches a day of. What spans keep is
    which days records were read on, and the first and last record's times. Past `limit` spans
    (a reader's bound on what it holds; None for none) the two closest are joined."""
    if last < first:
        first, last = last, first
    i = bisect.bisect_left(spans, (first, last))
    lo, hi = i, i
    while lo > 0 and _touch(spans[lo - 1], first):
        lo -= 1
        first = min(first, spans[lo][0])
        last = max(last, spans[lo][1])
    while hi < len(spans) and _touch((first, last), spans[hi][0]):
        last = max(last, spans[hi][1])
        hi += 1
    spans[lo:hi] = [(first, last)]
    if limit is not None and len(spans) > limit:  # the two closest joined: their days between are taken as read
        j = min(range(len(spans) - 1), key=lambda k: spans[k + 1][0] - spans[k][1])
        spans[j : j + 2] = [(spans[j][0], max(spans[j][1], spans[j + 1][1]))]


def _touch(span: Span, then: dt.datetime) -> bool:
    """True when a stretch starting at `then` (not before `span` starts) shares a day with `span`
    or starts on the day after it ends."""
    return (then.date() - span[1].date()).days <= 1
