"""Rows as a JSON array with exactly the keys of Row.as_dict()."""

from __future__ import annotations

import json
from collections.abc import Sequence

from auditor.report.interface import ReportFormat
from auditor.store import Row


class JsonFormat(ReportFormat):
    def render(self, rows: Sequence[Row]) -> str:
        return json.dumps([r.as_dict() for r in rows], indent=2) + "\n"
