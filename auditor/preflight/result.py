"""What a pre-flight scan returns: flags, the routes and files it read, and what it skipped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


class PreflightError(Exception):
    """The scan cannot start (the root is not a directory)."""


@dataclass(frozen=True)
class Flag:
    """One configuration that would (or may) send governed calls from an unsupported place."""

    path: str
    """File, relative to the scanned root, POSIX separators."""
    line: int
    """1-based line of the flagged value or export."""
    kind: str
    """`unsupported-region`, `unknown-region`, `unpinned-edge`, `all-regions` or `unresolved-region`."""
    region: str
    """The region code or value flagged (`hkg1`, `auto`); "" when none is configured."""
    country: str
    """ISO 3166-1 country of the region; "" when not one region (or unknown)."""
    provider: str
    """Pack ids of the providers concerned, comma-separated in PolicySet order; "" for unknown codes."""
    message: str
    """One or two sentences for a human."""
    fix: str
    """The exact text to paste (a full replacement value or an export to add)."""
    rule: str
    """The policy rules behind the flag (`openai@v188:not-listed:HK`), `; `-separated."""
    outcome: str = "unknown"
    """What the flag means on the scan's date, as `rules.policy.Outcome` values: `violation` (a
    region a provider blocks already), `at_risk` (blocking has not started yet, or an edge route
    may land in such a region) or `unknown` (the scan cannot judge it). Not in the `--json`
    document; SARIF's `level` is made from it."""


@dataclass(frozen=True)
class ApiUse:
    """Evidence that a route calls a provider's API."""

    provider: str
    """Pack id (`openai`)."""
    evidence: str
    """`import '@ai-sdk/openai'` or `host api.openai.com`."""
    path: str
    """File holding the evidence (the route, or a module it imports)."""
    line: int
    """1-based line of the evidence."""
    via_line: int
    """Line of the route's import of `path` when the evidence is in an imported module; else 0."""
    judged: bool
    """True when the PolicySet has a pack for the provider."""


@dataclass(frozen=True)
class Route:
    """A route file found, and what the scan read from it."""

    path: str
    """Relative path."""
    kind: str
    """`app-route`, `app-page`, `app-layout`, `pages`, `middleware` or `vercel-function`."""
    runtime: str
    """`edge`, `nodejs` or `unresolved` (an expression that cannot be edge)."""
    regions: tuple[str, ...]
    """Configured region values (`('iad1', 'sfo1')`, `('auto',)`); () when none."""
    regions_from: str
    """Where the regions come from: `preferredRegion`, `config.regions`, `app/layout.tsx:4`, ""."""
    apis: tuple[ApiUse, ...]
    """Governed-API evidence, in the route and the modules it imports."""


@dataclass(frozen=True)
class Skipped:
    """A file or directory not scanned, and why."""

    path: str
    """Relative path."""
    reason: str
    """One sentence."""


@dataclass(frozen=True)
class ScanResult:
    """Everything one scan found and read."""

    root: str
    """The scanned directory, as given."""
    date: dt.date
    """Policies were judged as of this date."""
    policies: str
    """Packs and newest versions (`openai@v2026-11-expanded`)."""
    flags: tuple[Flag, ...]
    """Sorted by path and line."""
    files_read: tuple[str, ...]
    """Every file whose content was read."""
    vercel_configs: tuple[str, ...]
    """vercel.json / now.json files parsed."""
    routes: tuple[Route, ...]
    """Route files found."""
    skipped: tuple[Skipped, ...]
    """Files and directories not scanned, with reasons."""
    ignored_dirs: tuple[str, ...]
    """Directories pruned by name (node_modules, .next, ...)."""

    def summary(self) -> str:
        """One line for stderr."""
        edge = sum(r.runtime == "edge" for r in self.routes)
        calling = sum(any(a.judged for a in r.apis) for r in self.routes)
        return (
            f"scanned {len(self.files_read)} files: {len(self.vercel_configs)} Vercel configs, "
            f"{len(self.routes)} routes ({edge} edge, {calling} calling a governed API); "
            f"{len(self.skipped)} skipped; {len(self.flags)} flagged (policies {self.policies}, as of {self.date})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The `--json` document: `flags` and a `scanned` summary."""
        return {
            "flags": [_flag_dict(f) for f in self.flags],
            "scanned": {
                "root": self.root,
                "date": self.date.isoformat(),
                "policies": self.policies,
                "files_read": list(self.files_read),
                "vercel_configs": list(self.vercel_configs),
                "routes": [
                    {
                        "path": r.path,
                        "kind": r.kind,
                        "runtime": r.runtime,
                        "regions": list(r.regions),
                        "regions_from": r.regions_from,
                        "apis": [
                            {
                                "provider": a.provider,
                                "evidence": a.evidence,
                                "path": a.path,
                                "line": a.line,
                                "via_line": a.via_line,
                                "judged": a.judged,
                            }
                            for a in r.apis
                        ],
                    }
                    for r in self.routes
                ],
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
                "ignored_dirs": list(self.ignored_dirs),
            },
        }


def _flag_dict(flag: Flag) -> dict[str, Any]:
    return {
        "path": flag.path,
        "line": flag.line,
        "kind": flag.kind,
        "region": flag.region,
        "country": flag.country,
        "provider": flag.provider,
        "message": flag.message,
        "fix": flag.fix,
        "rule": flag.rule,
    }
