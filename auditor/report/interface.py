"""The ReportFormat role."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence

from auditor.store import Row


class ReportError(Exception):
    """A report cannot be rendered."""


class ReportFormat(ABC):
    """Renders aggregated rows."""

    is_manifest = True
    """Renders even when there are no rows: "nothing found" is evidence too."""

    @abstractmethod
    def render(self, rows: Sequence[Row]) -> str:
        """The whole output, ending in a newline."""


class FormatChoice(str, enum.Enum):
    """Output formats offered on the command line."""

    TABLE = "table"
    JSON = "json"

    def to_format(self) -> ReportFormat:
        from auditor.report.json import JsonFormat
        from auditor.report.table import TableFormat

        if self is FormatChoice.TABLE:
            return TableFormat()
        return JsonFormat()
