"""Writing report files: all or none, each replaced whole, owner-only, never over the evidence."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from auditor.report.interface import ReportChoice, ReportError

Target = tuple[ReportChoice, Path | None]
"""A report to write: its format, and its file (None for stdout)."""


def targets(outputs: Sequence[Path], fmt: str | None) -> list[Target]:
    """What `-o` (repeated; `-` for stdout) and `--format` ask for: each file's format from its
    extension, else --format; stdout alone when no -o is given. ReportError for a file whose
    extension names no format without --format, one that names another format than --format, or
    stdout named twice."""
    found: list[Target] = []
    for path in outputs:
        if str(path) == "-":  # stdout, in --format (default md)
            if any(destination is None for _, destination in found):
                raise ReportError("-o - (stdout) is named twice; pass it once")
            found.append((ReportChoice(fmt or ReportChoice.MARKDOWN.value), None))
            continue
        named = ReportChoice.for_path(str(path))
        if named is None and fmt is None:
            raise ReportError(f"-o {path}: the extension names no report format (.html, .md, .json, .csv); rename it or pass --format")
        if named is not None and fmt is not None and named.value != fmt:
            raise ReportError(f"-o {path} names the {named.value} format and --format {fmt} another; drop one of them")
        found.append((named or ReportChoice(fmt or ReportChoice.MARKDOWN.value), path))
    return found or [(ReportChoice(fmt or ReportChoice.MARKDOWN.value), None)]


def check_destinations(paths: Sequence[Path], protected: Iterable[str]) -> None:
    """ReportError for an -o named twice, or naming a file the report must not replace (the
    findings database and its -wal/-shm: `protected`, as real paths)."""
    seen: set[str] = set()
    kept = set(protected)
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            raise ReportError(f"-o {path}: named twice; pass each file once")
        seen.add(real)
        if real in kept:
            raise ReportError(f"-o {path}: is the findings database (or its journal) the report is read from; pass another -o")


def write_all(files: Sequence[tuple[Path, str]]) -> None:
    """Write every (path, text) or none: each into a new owner-only (0600: a report holds evidence)
    file beside its destination, then each moved over it. A destination that is a symbolic link is
    replaced, not followed; a full disk or an unwritable directory leaves every earlier report as
    it was. OSError names the path."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files:
            directory = os.path.dirname(os.path.abspath(path))
            try:
                fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)  # 0600
            except OSError as e:
                raise OSError(e.errno, e.strerror, str(path)) from None
            staged.append((temporary, path))
            with os.fdopen(fd, "w", encoding="utf-8", errors="replace", newline="") as out:  # a lone surrogate from a foreign database
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
        for temporary, path in staged:
            os.replace(temporary, path)
        staged = []
    except OSError as e:
        if e.filename is None and staged:
            raise OSError(e.errno, e.strerror, str(staged[-1][1])) from None
        raise
    finally:
        for temporary, _ in staged:
            try:
                os.unlink(temporary)
            except OSError:
                pass
