"""The ReportFormat role."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, assert_never

from auditor.store import Row

if TYPE_CHECKING:
    from auditor.report.model import Report


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


class ReportRenderer(ABC):
    """Renders the compliance report (auditor.report.model.Report): the value and nothing else."""

    @abstractmethod
    def render(self, report: Report) -> str:
        """The whole document."""


class ReportChoice(str, enum.Enum):
    """The compliance report's formats (`report --format`, and -o FILE's extension)."""

    HTML = "html"
    MARKDOWN = "md"
    JSON = "json"
    CSV = "csv"

    @classmethod
    def for_path(cls, path: str) -> ReportChoice | None:
        """The format a file name's extension names, None for another extension."""
        suffix = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
        return _EXTENSIONS.get(suffix)

    def to_renderer(self) -> ReportRenderer:
        if self is ReportChoice.HTML:
            from auditor.report.html import HtmlReport

            return HtmlReport()
        if self is ReportChoice.MARKDOWN:
            from auditor.report.markdown import MarkdownReport

            return MarkdownReport()
        if self is ReportChoice.JSON:
            from auditor.report.json import JsonReport

            return JsonReport()
        if self is ReportChoice.CSV:
            from auditor.report.csv import CsvReport

            return CsvReport()
        assert_never(self)


_EXTENSIONS = {
    "html": ReportChoice.HTML,
    "htm": ReportChoice.HTML,
    "md": ReportChoice.MARKDOWN,
    "markdown": ReportChoice.MARKDOWN,
    "json": ReportChoice.JSON,
    "csv": ReportChoice.CSV,
}
