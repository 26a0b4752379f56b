"""`scan()`: walk a repository, read its Vercel configurations first (an edge route's fix pins it
to its project's regions), then its routes, and return what was flagged and read."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from auditor.preflight.judge import Flags, Judge
from auditor.preflight.project import PROGRAMMATIC_CONFIGS, VERCEL_CONFIGS, Project, walk
from auditor.preflight.result import PreflightError, ScanResult, Skipped
from auditor.preflight.routes import Routes
from auditor.preflight.vercel_json import VercelConfigs
from rules.policy import PolicySet


def scan(root: Path, policies: PolicySet, today: dt.date | None = None) -> ScanResult:
    """Scan a repository for region configuration that would send governed calls from an
    unsupported place. Reads files under `root` only; never follows symlinks."""
    if not root.is_dir():
        raise PreflightError(f"{root}: not a directory; give the root of a repository to scan")
    when = today or dt.datetime.now().astimezone().date()  # the local date
    base = Path(os.path.normpath(root.absolute()))
    project = Project(base, policies)
    files = project.files
    flags = Flags(Judge(policies, when))
    configs = VercelConfigs(base, files, flags)
    route_checks = Routes(project, flags, configs)
    ignored: list[str] = []
    vercel_files: list[Path] = []
    route_files: list[tuple[Path, str, Path | None]] = []
    for path in walk(base, files, ignored):
        if path.name in VERCEL_CONFIGS:
            vercel_files.append(path)
            continue
        if path.name in PROGRAMMATIC_CONFIGS and project.layout.is_project(path.parent):
            files.skipped[files.rel(path)] = "programmatic Vercel configuration is not evaluated; check its regions by hand"
            continue
        found = project.layout.route_kind(path)
        if found is None:
            continue
        if path.is_symlink():
            files.skipped[files.rel(path)] = "symbolic link, not followed"
            continue
        route_files.append((path, found[0], found[1]))
    for path in vercel_files:
        if path.is_symlink():
            files.skipped[files.rel(path)] = "symbolic link, not followed"
            continue
        configs.read(path)
    routes = [r for r in (route_checks.route(p, kind, app) for p, kind, app in route_files) if r is not None]
    return ScanResult(
        root=str(root),
        date=when,
        policies=policies.version_tag,
        flags=tuple(sorted(flags.raised, key=lambda f: (f.path, f.line, f.kind, f.region))),
        files_read=files.files_read(),
        vercel_configs=tuple(sorted(c.path for c in configs.configs.values())),
        routes=tuple(routes),
        skipped=tuple(Skipped(p, r) for p, r in sorted(files.skipped.items())),
        ignored_dirs=tuple(sorted(ignored)),
    )
