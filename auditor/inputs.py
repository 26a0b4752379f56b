"""The FILE... arguments of `logs`: files, directories (the files in them) and `-` (stdin)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from auditor.sources.interface import SourceError


@dataclass
class Inputs:
    """What a run reads, in order."""

    paths: list[str] = field(default_factory=list)
    """Files to read, and `-` for stdin."""
    found: set[str] = field(default_factory=set)
    """Paths found inside a directory: one that cannot be read, or is not a log, is skipped with a
    note instead of stopping the run."""
    notes: list[str] = field(default_factory=list)
    """What the expansion has to say (an empty directory, one that cannot be listed)."""

    @property
    def total_bytes(self) -> int:
        """Size on disk of the files (stdin counts 0), for a progress meter."""
        total = 0
        for path in self.paths:
            if path != "-":
                try:
                    total += os.stat(path).st_size
                except OSError:
                    pass
        return total


def expand(args: Sequence[str]) -> Inputs:
    """Files and `-` as given; a directory becomes the regular files under it, recursively, in
    sorted order, without hidden files or directories (names starting with a dot)."""
    inputs = Inputs()
    for arg in args:
        if arg == "-" or not os.path.isdir(arg):
            inputs.paths.append(arg)
            continue
        files = _files_under(arg, inputs.notes)
        if not files:
            inputs.notes.append(f"{arg}: no files in this directory")
        inputs.paths.extend(files)
        inputs.found.update(files)
    inputs.found.difference_update(args)  # a file named on its own is never skipped
    return inputs


def _files_under(root: str, notes: list[str]) -> list[str]:
    """The files under `root`. Symbolic links to directories are followed, each directory read
    once (a link back up the tree is not a loop). A directory named on the command line that
    cannot be listed stops the run, as a file that cannot be read does."""
    try:
        os.scandir(root).close()
    except OSError as e:
        raise SourceError(f"{root}: cannot list this directory ({e.strerror}); check its permissions") from None

    def unlisted(e: OSError) -> None:
        notes.append(f"{e.filename}: cannot list this directory ({e.strerror}); its files were not read")

    files = []
    seen: set[tuple[int, int]] = set()
    for directory, subdirs, names in os.walk(root, onerror=unlisted, followlinks=True):
        try:
            st = os.stat(directory)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            subdirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in names:
            path = os.path.join(directory, name)
            if not name.startswith(".") and os.path.isfile(path):
                files.append(path)
    return sorted(files)
