"""Rows as an aligned text table for a terminal."""

from __future__ import annotations

from collections.abc import Sequence

from auditor.report.interface import ReportFormat
from auditor.store import Row

DISAGREE = "locators disagree"
"""Said after the verdict of a row whose verdict another locator layer's answer would change."""
COLUMNS = ("ORG", "PROVIDER", "HOST", "EGRESS", "COUNTRY", "VERDICT", "CALLS", "FIRST SEEN", "LAST SEEN", "BASIS")


def _printable(text: str) -> str:
    """`text` with control characters escaped (`\\n`): values from logs cannot start a row of their own."""
    if not isinstance(text, str):  # a foreign database's BLOB
        text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _cells(row: Row) -> tuple[str, ...]:
    def when(value):  # type: ignore[no-untyped-def]
        return value.strftime("%Y-%m-%d %H:%M:%S")

    return tuple(_printable(cell) for cell in (
        row.org, row.provider, row.host, row.egress_ip or "-", row.country or "-",
        f"{row.verdict} ({DISAGREE})" if row.locators_disagree else row.verdict,
        f"{row.calls} ({row.blocked_calls} blocked)" if row.blocked_calls else str(row.calls), when(row.first_seen), when(row.last_seen), row.basis,
    ))


class TableFormat(ReportFormat):
    def render(self, rows: Sequence[Row]) -> str:
        if not rows:
            return "no calls to governed AI provider hosts found\n"
        table = [COLUMNS, *(_cells(r) for r in rows)]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        out = []
        for line in table:
            out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        return "\n".join(out) + "\n"
