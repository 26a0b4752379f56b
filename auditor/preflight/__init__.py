"""Pre-flight config scan: find Vercel/Next.js region settings that would send governed calls from
an unsupported place, before any traffic exists.

Reads, under a repository root:

- `vercel.json` (and the legacy `now.json`): project `regions` and `functionFailoverRegions`, and
  `functions.<glob>.regions` / `functionFailoverRegions`. Vercel applies these to serverless
  (Node.js) functions; edge functions ignore them (except `preferredRegion = 'home'`, which means
  the project's regions) and run where `preferredRegion` (or `config.regions`) says, by default
  in the region closest to each request.
- Next.js route segment config in the app router (`app/**/route.*`, `page.*`, `layout.*`:
  `export const runtime`, `export const preferredRegion`), the pages router (`pages/**`:
  `export const config = { runtime, regions }`), `middleware.*` (edge unless it says otherwise)
  and Vercel functions under a project's `api/` directory (`export const config`).

and flags, with `file:line` and a fix to paste:

- `unsupported-region`: a configured region maps to a country a provider does not serve (`hkg1`);
- `unknown-region`: a region code that is not in the Vercel region table (never passed silently);
- `unpinned-edge`: an edge-runtime route that calls a governed API and may run anywhere (no
  regions, or `'auto'`/`'global'`/`'all'`): a user in Hong Kong means an egress from `hkg1`;
- `all-regions`: vercel.json `"regions": "all"` (every region, `hkg1` included);
- `unresolved-region`: a route calling a governed API whose runtime (or, on the edge, whose
  regions) is not a literal, so the scan cannot show it is pinned.

A route "calls a governed API" when its source, or a module it imports directly (relative
`./`/`../` paths and the `@/`/`~/` aliases of create-next-app; one level, not transitive),
imports an SDK listed in SDK_MODULES or names a host governed by a policy pack. Only providers
with a pack in the PolicySet are judged; packs added to rules/data are picked up automatically.

Modules, in the order a scan uses them: `project` (files, routes, imports, API evidence),
`lexer` (vercel.json and JS/TS read with line numbers), `judge` (regions against the packs, and
the flags raised), `vercel_json` and `routes` (the checks), `scan` (the walk), `result` (the
values returned) and `render` (text and JSON; SARIF is auditor.report.sarif).
"""

from __future__ import annotations

from auditor.preflight.judge import Judge
from auditor.preflight.lexer import strip_comments
from auditor.preflight.project import SDK_MODULES, SdkModule
from auditor.preflight.render import render_json, render_text
from auditor.preflight.result import ApiUse, Flag, PreflightError, Route, ScanResult, Skipped
from auditor.preflight.scan import scan

__all__ = [
    "SDK_MODULES",
    "ApiUse",
    "Flag",
    "Judge",
    "PreflightError",
    "Route",
    "ScanResult",
    "SdkModule",
    "Skipped",
    "render_json",
    "render_text",
    "scan",
    "strip_comments",
]
