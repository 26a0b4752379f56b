"""Messages that are not a command's output: notes, progress, summaries, the watchers' new rows.

They go through `logging` (the `auditor` logger and its children) to stderr: as plain text by
default, each message as it always read, or as JSON lines (`--log-format json`), one object per
message with its time, level, logger and text, for a collector to parse. A command's output
(tables, JSON, reports) stays on stdout.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import click

FORMATS = ("text", "json")
"""The values of --log-format."""
LOGGER = "auditor"
"""The logger every module's logger (`logging.getLogger(__name__)`) is a child of."""


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        return json.dumps(
            {
                "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            },
            ensure_ascii=False,
        )


class _Stderr(logging.Handler):
    """Writes each record on whatever stderr is when it is written (click's, which a test runner
    may have swapped), as click.echo writes it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # noqa: BLE001 - logging's contract: a failing handler does not fail the caller
            self.handleError(record)


def configure(log_format: str = "text") -> None:
    """Send the `auditor` logger's records (INFO and up) to stderr in `log_format` (see FORMATS);
    called again, it replaces what it set before."""
    handler = _Stderr()
    handler.setFormatter(_JsonLines() if log_format == "json" else logging.Formatter("%(message)s"))
    logger = logging.getLogger(LOGGER)
    for old in [h for h in logger.handlers if isinstance(h, _Stderr)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
