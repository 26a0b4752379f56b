"""CSV: one row per (org, provider, host, egress, verdict), under the JSON report's `rows` keys,
for spreadsheets."""

from __future__ import annotations

import csv
import io

from auditor.report.interface import ReportRenderer
from auditor.report.model import Report, ReportRow, to_data

COLUMNS = tuple(name for name in ReportRow.__dataclass_fields__ if name != "evidence")
"""The JSON report's row keys, but `evidence` (in the JSON and HTML reports)."""
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
"""What makes a spreadsheet read a cell as a formula (OWASP: CSV injection)."""


def neutral(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula (`=cmd|' /C calc'!A0`) prefixed with
    `'`, which shows it as text; numbers as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class CsvReport(ReportRenderer):
    def render(self, report: Report) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for row in report.rows:
            data = to_data(row)
            writer.writerow([neutral(data[c]) for c in COLUMNS])
        return out.getvalue()
