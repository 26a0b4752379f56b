"""Rows as an aligned text table for a terminal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from auditor.report.interface import ReportFormat
from auditor.store import Row

DISAGREE = "locators disagree"
"""Said after the verdict of a row whose verdict another locator layer's answer would change."""
COLUMNS = ("ORG", "PROVIDER", "HOST", "EGRESS", "COUNTRY", "VERDICT", "CALLS", "FIRST SEEN", "LAST SEEN", "BASIS")


def _printable(text: object) -> str:
    """`text` with control characters escaped (`\\n`): values from logs cannot start a row of their own."""
    if not isinstance(text, str):  # a foreign database's BLOB
        text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _cells(row: Row) -> tuple[str, ...]:
    def when(value: dt.datetime) -> str:
        return value.strftime("%Y-%m-%d %H:%M:%S")

    return tuple(
        _printable(cell)
        for cell in (
            row.org,
            row.provider,
            row.host,
            row.egress_ip or "-",
            row.country or "-",
            f"{row.verdict} ({DISAGREE})" if row.locators_disagree else row.verdict,
            f"{row.calls} ({row.blocked_calls} blocked)" if row.blocked_calls else str(row.calls),
            when(row.first_seen),
            when(row.last_seen),
            row.basis,
        )
    )


class TableFormat(ReportFormat):
    def render(self, rows: Sequence[Row]) -> str:
        if not rows:
            return "no calls to governed AI provider hosts found\n"
        table = [COLUMNS, *(_cells(r) for r in rows)]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table]
        return "\n".join(out) + "\n"


class NewRows:
    """The line a watcher (`logs --follow`, `sniff`) prints for each row it has not shown yet:
    one printer for both; values from input are escaped (a host cannot move the cursor or retitle
    a terminal)."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, ...]] = set()

    def line(self, finding: Any) -> str | None:
        """The line for `finding` (an auditor.events.Finding), or None when its row was shown."""
        host = finding.host or finding.event.server_name
        location = finding.location
        key = (
            finding.org,
            finding.verdict.provider,
            host,
            finding.egress.label,
            location.country_code,
            location.basis,
            finding.verdict.outcome.value,
        )
        if key in self._seen:
            return None
        self._seen.add(key)
        verdict = finding.verdict.outcome.value + (f" ({DISAGREE})" if getattr(finding.verdict, "locators_disagree", "") else "")
        return _printable(
            f"{finding.event.ts:%Y-%m-%d %H:%M:%S} {verdict}: {finding.org} -> {host} from {finding.egress.label or '-'} "
            f"({location.country_code or '-'}, {location.basis}) at {finding.event.source}"
        )
