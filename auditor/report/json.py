"""JSON: the rows of `findings`/`logs --json`, and the compliance report (schema
auditor/report/schema/report-1.json)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from auditor.report.interface import ReportFormat, ReportRenderer
from auditor.report.model import Report, to_data
from auditor.store import Row


class JsonFormat(ReportFormat):
    """Rows as a JSON array with exactly the keys of Row.as_dict()."""

    def render(self, rows: Sequence[Row]) -> str:
        return json.dumps([r.as_dict() for r in rows], indent=2) + "\n"


class JsonReport(ReportRenderer):
    """The report as one JSON object (`to_data`), valid against schema/report-1.json."""

    def render(self, report: Report) -> str:
        return json.dumps(to_data(report), indent=2, ensure_ascii=False) + "\n"
