"""`scan-config --format sarif`: the pre-flight scan as a SARIF 2.1.0 log, for code-scanning views
(GitHub code scanning, editors' SARIF viewers).

One run; `tool.driver.rules` lists every kind of flag the scan can raise (the same five, in the
same order, in every log, so `ruleIndex` is stable), each with help naming the setting to
change; one result per flag. A result's `level` comes from the flag's outcome on the scan's
date: `error` for a violation (a region the provider blocks already), `warning` for at risk
(blocking has not started, or an edge route may land in such a region), `note` for what the
scan cannot judge. Locations are relative to the scanned root (`uriBaseId` `%SRCROOT%`), which
is the repository root when the scan runs at the root of a checkout. Files the scan skipped are
tool execution notifications, so a code-scanning view shows what was not read.

Validated in the tests against the OASIS SARIF 2.1.0 schema (tests/data/sarif/).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from auditor import __version__
from auditor.preflight import Flag, ScanResult

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
"""The `$schema` GitHub's documentation and most tools use for SARIF 2.1.0."""

LEVELS = {"violation": "error", "at_risk": "warning", "unknown": "note"}
"""Flag outcome -> SARIF result level."""

FINGERPRINT = "regionAuditorFlag/v1"
"""partialFingerprints key: a hash of the rule, file, flagged value and providers, without the
line, so that an alert stays the same alert when lines above it move."""

_RULES: tuple[dict[str, Any], ...] = (
    {
        "id": "unsupported-region",
        "name": "UnsupportedRegion",
        "short": "A configured region is in a country an AI provider the code calls does not serve",
        "full": "A region listed in vercel.json or in a route's segment config maps to a country that a "
        "provider's policy does not serve: calls to that provider from functions running there "
        "are blocked (or will be once its enforcement date is reached).",
        "help": "Replace the region code where the result points: in vercel.json, the project's `regions` "
        'or `functionFailoverRegions`, or `functions["<glob>"].regions` / '
        '`functions["<glob>"].functionFailoverRegions`; in a Next.js app-router route, page or '
        "layout, `export const preferredRegion`; in the pages router, middleware or a Vercel "
        "function, `regions` in `export const config`. The result's message names the nearest "
        "region every provider serves, and its fix is the whole corrected value to paste.",
        "level": "error",
    },
    {
        "id": "all-regions",
        "name": "AllRegions",
        "short": 'vercel.json regions is "all", which includes regions an AI provider does not serve',
        "full": '`"regions": "all"` deploys the functions to every Vercel region, including regions in '
        "countries a provider the project calls does not serve.",
        "help": 'In vercel.json, replace `"regions": "all"` (or the `functions["<glob>"]` entry\'s '
        '`regions`) with a list of regions every provider serves, such as `["iad1"]`; the '
        "result's fix is the value to paste.",
        "level": "error",
    },
    {
        "id": "unpinned-edge",
        "name": "UnpinnedEdgeRoute",
        "short": "An edge route calls an AI provider without pinned regions",
        "full": "An edge-runtime route (or middleware) that calls a governed API runs in the region closest "
        "to each user when `preferredRegion` is missing or is 'auto', 'global' or 'all': a user near "
        "an unsupported region makes the call from there. vercel.json `regions` do not apply to "
        "edge functions.",
        "help": "Pin the route: add `export const preferredRegion = ['iad1']` (app router; any list of "
        "regions every provider serves) or `regions: ['iad1']` in `export const config` (pages "
        "router, middleware, Vercel functions), or set `export const runtime = 'nodejs'` so that "
        "vercel.json `regions` apply. The result's fix is the line to paste.",
        "level": "warning",
    },
    {
        "id": "unknown-region",
        "name": "UnknownRegion",
        "short": "A region code is not one region-auditor knows, so it cannot be judged",
        "full": "A region listed in vercel.json or a route's config is not in region-auditor's Vercel region "
        "table (a typo, or a region newer than the table), so whether the provider serves it is "
        "unknown.",
        "help": "Correct the code in the `regions`, `functionFailoverRegions` or `preferredRegion` value "
        "the result points at to a Vercel region code (the message lists the known codes); the "
        "result's fix is the value with the unknown code dropped.",
        "level": "note",
    },
    {
        "id": "unresolved-region",
        "name": "UnresolvedRegion",
        "short": "A route calling an AI provider has a runtime or regions that are not literals",
        "full": "The route's `runtime`, `preferredRegion` or `config.regions` is computed, so the scan cannot "
        "show that the route runs only in regions every provider it calls serves.",
        "help": "Write `export const runtime` and `export const preferredRegion` (or `runtime` and `regions` "
        "in `export const config`) as string literals, e.g. `export const runtime = 'nodejs'` or "
        "`export const preferredRegion = ['iad1']`; the result's fix is the line to paste.",
        "level": "note",
    },
)
RULE_IDS = tuple(r["id"] for r in _RULES)


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rule["id"],
        "name": rule["name"],
        "shortDescription": {"text": rule["short"]},
        "fullDescription": {"text": rule["full"]},
        "help": {"text": rule["help"], "markdown": rule["help"]},
        "defaultConfiguration": {"level": rule["level"]},
        "properties": {"tags": ["region-compliance", "vercel", "configuration"], "precision": "high"},
    }


def artifact_uri(path: str) -> str:
    """A relative path (POSIX separators) as a URI reference: every character outside the
    unreserved set and `/` is percent-encoded as UTF-8, so `#`, `?`, `%`, spaces, a `:` in the
    first segment and non-ASCII names cannot change what the URI names."""
    return quote(_bytes(path), safe="/-._~")


def _bytes(value: str) -> bytes:
    """UTF-8, a file name's undecodable bytes (surrogate escapes) given back as they were."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _text(value: str) -> str:
    """A path or message as valid Unicode: bytes of a file name that are not UTF-8 (carried as
    lone surrogates) become U+FFFD, which every JSON parser accepts."""
    return _bytes(value).decode("utf-8", "replace")


def _fingerprint(flag: Flag) -> str:
    key = "\0".join((flag.kind, flag.path, flag.region, flag.provider))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _location(path: str, line: int = 0) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(path), "uriBaseId": "%SRCROOT%"}}
    if line > 0:
        physical["region"] = {"startLine": line}
    return {"physicalLocation": physical}


def _result(flag: Flag) -> dict[str, Any]:
    index = RULE_IDS.index(flag.kind)
    props: dict[str, Any] = {"outcome": flag.outcome, "fix": _text(flag.fix)}
    for name in ("region", "country", "provider", "rule"):
        if getattr(flag, name):
            props[name] = _text(getattr(flag, name))
    return {
        "ruleId": flag.kind,
        "ruleIndex": index,
        "level": LEVELS.get(flag.outcome, "note"),
        "message": {"text": _text(f"{flag.message} Fix: {flag.fix}")},
        "locations": [_location(flag.path, flag.line)],
        "partialFingerprints": {FINGERPRINT: _fingerprint(flag)},
        "properties": props,
    }


def to_sarif(result: ScanResult) -> dict[str, Any]:
    """The SARIF log as a dict."""
    notifications = [
        {
            "level": "warning",
            "message": {"text": _text(f"{s.path}: skipped: {s.reason}")},
            "locations": [_location(s.path)],
        }
        for s in result.skipped
    ]
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "region-auditor",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [_rule(r) for r in _RULES],
                    }
                },
                "automationDetails": {"id": "region-auditor/scan-config/"},
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "toolExecutionNotifications": notifications,
                        "properties": {"date": result.date.isoformat(), "policies": result.policies},
                    }
                ],
                "columnKind": "unicodeCodePoints",
                "results": [_result(f) for f in result.flags],
            }
        ],
    }


def render_sarif(result: ScanResult) -> str:
    """`--format sarif` output, ending in a newline. ASCII-only (non-ASCII escaped), so the log
    is the same bytes whatever the terminal's or file's encoding."""
    return json.dumps(to_sarif(result), indent=2, ensure_ascii=True) + "\n"
