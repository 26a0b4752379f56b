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
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from geoip import regions as region_table
from rules.policy import Outcome, Pack, PolicySet

MAX_BYTES = 2 * 1024 * 1024
"""Files larger than this are skipped (with a reason), never read."""

SKIP_DIRS = frozenset({"node_modules", ".git", ".next", "dist", "build", ".vercel"})
"""Directories never entered: dependencies, VCS data, build output (`.vercel/output` included)."""

JS_SUFFIXES = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
"""Source files that can be routes or imported modules (`.d.ts` excluded)."""

VERCEL_CONFIGS = ("vercel.json", "now.json")
"""Static project configuration files (now.json is the legacy name the Vercel CLI still reads)."""

PROGRAMMATIC_CONFIGS = ("vercel.ts", "vercel.mts", "vercel.js", "vercel.mjs", "vercel.cjs", "vercel.toml")
"""Configuration that is not evaluated here: reported as skipped so the gap is visible."""

EDGE_RUNTIMES = frozenset({"edge", "experimental-edge"})
"""`runtime` values that mean the edge runtime (`experimental-edge`: Next.js before 15)."""

ANYWHERE = frozenset({"auto", "global", "all"})
"""Region values that pin nothing on the edge runtime: closest to the user, or every region."""

HOME = "home"
"""`preferredRegion = 'home'`: the project's function regions (vercel.json or dashboard)."""

DEFAULT_REGION = "iad1"
"""Vercel's default function region for new projects (Washington, D.C.)."""

# Approximate coordinates of each Vercel region's reference location (the city in Vercel's region
# table), used only to suggest the nearest supported replacement for a flagged region.
REGION_COORDINATES: dict[str, tuple[float, float]] = {
    "arn1": (59.33, 18.07), "bom1": (19.08, 72.88), "cdg1": (48.86, 2.35), "cle1": (41.50, -81.69),
    "cpt1": (-33.92, 18.42), "dub1": (53.35, -6.26), "dxb1": (25.20, 55.27), "fra1": (50.11, 8.68),
    "gru1": (-23.55, -46.63), "hkg1": (22.32, 114.17), "hnd1": (35.68, 139.69), "iad1": (38.91, -77.04),
    "icn1": (37.57, 126.98), "kix1": (34.69, 135.50), "lhr1": (51.51, -0.13), "pdx1": (45.52, -122.68),
    "sfo1": (37.77, -122.42), "sin1": (1.35, 103.82), "syd1": (-33.87, 151.21), "yul1": (45.50, -73.57),
}


@dataclass(frozen=True)
class SdkModule:
    """An npm module whose use means calls to a provider's governed API."""

    module: str
    """Import specifier; also matches its subpaths (`openai` matches `openai/resources`)."""
    provider: str
    """Policy pack id it calls (`openai`, `anthropic`, `gemini`)."""


SDK_MODULES: tuple[SdkModule, ...] = (
    SdkModule("openai", "openai"),
    SdkModule("openai-edge", "openai"),
    SdkModule("@ai-sdk/openai", "openai"),
    SdkModule("@langchain/openai", "openai"),
    SdkModule("langchain/llms/openai", "openai"),
    SdkModule("langchain/chat_models/openai", "openai"),
    SdkModule("langchain/embeddings/openai", "openai"),
    SdkModule("@openai/agents", "openai"),
    SdkModule("@anthropic-ai/sdk", "anthropic"),
    SdkModule("@ai-sdk/anthropic", "anthropic"),
    SdkModule("@langchain/anthropic", "anthropic"),
    SdkModule("langchain/chat_models/anthropic", "anthropic"),
    SdkModule("@google/generative-ai", "gemini"),
    SdkModule("@google/genai", "gemini"),
    SdkModule("@ai-sdk/google", "gemini"),
    SdkModule("@langchain/google-genai", "gemini"),
)
"""SDK imports -> provider. Deliberately absent: cloud-hosted variants under other rules
(`@azure/openai`, `@ai-sdk/azure`, `@anthropic-ai/bedrock-sdk`, `@anthropic-ai/vertex-sdk`,
`@ai-sdk/amazon-bedrock`, `@ai-sdk/google-vertex`) and the provider-neutral `ai` package."""


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
                        "path": r.path, "kind": r.kind, "runtime": r.runtime, "regions": list(r.regions),
                        "regions_from": r.regions_from,
                        "apis": [
                            {"provider": a.provider, "evidence": a.evidence, "path": a.path, "line": a.line,
                             "via_line": a.via_line, "judged": a.judged}
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
        "path": flag.path, "line": flag.line, "kind": flag.kind, "region": flag.region, "country": flag.country,
        "provider": flag.provider, "message": flag.message, "fix": flag.fix, "rule": flag.rule,
    }


def render_json(result: ScanResult) -> str:
    """`--json` output, ending in a newline."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render_text(result: ScanResult) -> str:
    """One `path:line: message` line per flag, then `  fix: ...`; "" when nothing is flagged."""
    out = []
    for f in result.flags:
        out.append(f"{f.path}:{f.line}: {f.message}\n")
        out.append(f"  fix: {f.fix}\n")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Vercel regions and judgement


@dataclass(frozen=True)
class _RegionInfo:
    code: str
    country: str
    place: str


@lru_cache(maxsize=1)
def _vercel_regions() -> dict[str, _RegionInfo]:
    """Every Vercel region code known to geoip's region table (looked up through geoip.regions)."""
    raw = tomllib.loads(resources.files("geoip").joinpath("data", "regions.toml").read_text(encoding="utf-8"))
    codes = sorted(raw.get("edge", {}).get("vercel", {}).get("regions", {}))
    found = {}
    for code in codes:
        region = region_table.lookup("edge", "vercel", code)
        if region is not None:
            found[region.code] = _RegionInfo(region.code, region.country_code, region.place)
    return found


def _distance_km(a: str, b: str) -> float:
    (la1, lo1), (la2, lo2) = (tuple(map(math.radians, REGION_COORDINATES[c])) for c in (a, b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


class _Judge:
    """Region code -> country -> verdict per pack, cached, and the nearest supported replacement."""

    def __init__(self, policies: PolicySet, today: dt.date) -> None:
        self.packs = policies.packs
        self.today = today
        self.regions = _vercel_regions()
        self._cache: dict[tuple[str, str], tuple[bool, str, str]] = {}

    def pack(self, provider: str) -> Pack:
        return next(p for p in self.packs if p.provider == provider)

    def verdict(self, provider: str, country: str) -> tuple[bool, str, str]:
        """(supported, reason, rule) for a country under one pack, as of today."""
        key = (provider, country)
        if key not in self._cache:
            v = self.pack(provider).check(country, self.today)
            self._cache[key] = (v.outcome is Outcome.ALLOWED, v.reason, v.rule_id)
        return self._cache[key]

    def outcome(self, provider: str, country: str) -> Outcome:
        """The pack's outcome for a country as of today (VIOLATION once blocking has started)."""
        return self.pack(provider).check(country, self.today).outcome

    def unsupported_by(self, code: str, providers: Sequence[str]) -> list[str]:
        """Providers (of `providers`) that do not serve a known region's country."""
        info = self.regions[code]
        return [p for p in providers if not self.verdict(p, info.country)[0]]

    def supported_by_all(self, code: str, providers: Sequence[str]) -> bool:
        return code in self.regions and not self.unsupported_by(code, providers)

    def nearest_supported(self, code: str, providers: Sequence[str]) -> str:
        """The closest region every provider serves (Vercel's default when distance is unknown)."""
        candidates = [c for c in self.regions if c != code and self.supported_by_all(c, providers)]
        if not candidates:
            return DEFAULT_REGION
        if code in REGION_COORDINATES:
            measured = [c for c in candidates if c in REGION_COORDINATES]
            if measured:
                return min(measured, key=lambda c: (_distance_km(code, c), c))
        return DEFAULT_REGION if DEFAULT_REGION in candidates else candidates[0]

    def describe(self, code: str) -> str:
        info = self.regions[code]
        return f"{code} ({info.place.split(' (')[0]}, {info.country})"

    def names(self, providers: Sequence[str]) -> str:
        names = [self.pack(p).name for p in providers]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    def serve(self, providers: Sequence[str], negate: bool = False) -> str:
        """`OpenAI API does not serve` / `A and B do not serve` (agreement with the subject)."""
        one = len(providers) == 1
        if negate:
            return f"{self.names(providers)} {'does' if one else 'do'} not serve"
        return f"{self.names(providers)} {'serves' if one else 'all serve'}"

    def known_codes(self) -> str:
        return ", ".join(sorted(self.regions))

    def risky_regions(self, providers: Sequence[str]) -> list[str]:
        """Regions an unpinned edge route can land in that some provider does not serve."""
        return [c for c in sorted(self.regions) if self.unsupported_by(c, providers)]


# --------------------------------------------------------------------------------------------
# Reading files


class _Files:
    """Reads files once, bounded and text-only, and records what was read or skipped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.read: dict[str, str | None] = {}
        self.skipped: dict[str, str] = {}

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def text(self, path: Path) -> str | None:
        rel = self.rel(path)
        if rel in self.read:
            return self.read[rel]
        content = None
        try:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                self.skipped[rel] = "symbolic link, not followed"
            elif not stat.S_ISREG(st.st_mode):
                self.skipped[rel] = "not a regular file, not read"
            elif st.st_size > MAX_BYTES:
                self.skipped[rel] = f"larger than {MAX_BYTES // (1024 * 1024)} MB ({st.st_size} bytes), not read"
            else:
                data = path.read_bytes()
                if b"\x00" in data[:8192]:
                    self.skipped[rel] = "binary file (NUL bytes), not read"
                else:
                    content = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            self.skipped[rel] = f"not UTF-8 text (invalid byte at offset {e.start})"
        except OSError as e:
            self.skipped[rel] = f"unreadable ({e.strerror or e.__class__.__name__})"
        self.read[rel] = content
        return content

    def files_read(self) -> tuple[str, ...]:
        return tuple(sorted(r for r, c in self.read.items() if c is not None))


class _Lines:
    """Offset -> 1-based line number."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)


# --------------------------------------------------------------------------------------------
# vercel.json: JSON with the line of every string


@dataclass(frozen=True)
class _J:
    value: Any
    """dict[str, _J] | list[_J] | str | int | float | bool | None."""
    line: int


class _JsonPositions:
    """A small parser for text json.loads has already accepted, keeping the line of each value."""

    _WS = " \t\r\n"

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = _Lines(text)

    def parse(self) -> _J:
        node, _ = self._value(self._ws(0))
        return node

    def _ws(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in self._WS:
            i += 1
        return i

    def _value(self, i: int) -> tuple[_J, int]:
        c = self.text[i]
        line = self.lines.at(i)
        if c == "{":
            items: dict[str, _J] = {}
            i = self._ws(i + 1)
            if self.text[i] == "}":
                return _J(items, line), i + 1
            while True:
                key, i = self._value(self._ws(i))
                i = self._ws(i) + 1  # ':'
                val, i = self._value(self._ws(i))
                items[key.value] = val
                i = self._ws(i)
                if self.text[i] == "}":
                    return _J(items, line), i + 1
                i += 1  # ','
        if c == "[":
            elems: list[_J] = []
            i = self._ws(i + 1)
            if self.text[i] == "]":
                return _J(elems, line), i + 1
            while True:
                val, i = self._value(self._ws(i))
                elems.append(val)
                i = self._ws(i)
                if self.text[i] == "]":
                    return _J(elems, line), i + 1
                i = self._ws(i + 1)
        if c == '"':
            j = i + 1
            while self.text[j] != '"':
                j += 2 if self.text[j] == "\\" else 1
            return _J(json.loads(self.text[i : j + 1]), line), j + 1
        m = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null").match(self.text, i)
        assert m is not None  # json.loads accepted the text
        return _J(json.loads(m.group()), line), m.end()


# --------------------------------------------------------------------------------------------
# JavaScript / TypeScript: comments blanked, exports and imports read with a tolerant scanner


_REGEX_KEYWORDS = frozenset({"return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw", "yield", "await"})


def _skip_string(src: str, i: int) -> int:
    """Index after the string literal starting at `i` (unterminated: end of line / of text)."""
    quote = src[i]
    j = i + 1
    n = len(src)
    while j < n:
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == quote:
            return j + 1
        if c == "\n" and quote != "`":
            return j
        j += 1
    return n


def _skip_regex(src: str, i: int) -> int | None:
    """Index after a regex literal at `i`, or None when it is not one (division)."""
    j = i + 1
    n = len(src)
    in_class = False
    while j < n:
        c = src[j]
        if c == "\n":
            return None
        if c == "\\":
            j += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "/":
            j += 1
            while j < n and (src[j].isalpha()):
                j += 1
            return j
        j += 1
    return None


def strip_comments(src: str) -> str:
    """`src` with `//` and `/* */` comments replaced by spaces (newlines kept, so offsets and lines
    are unchanged). Strings, template literals and regex literals are left alone."""
    out = list(src)
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c in "'\"`":
            i = _skip_string(src, i)
            continue
        if c == "/" and i + 1 < n:
            nxt = src[i + 1]
            if nxt == "/":
                end = src.find("\n", i)
                end = n if end == -1 else end
                out[i:end] = " " * (end - i)
                i = end
                continue
            if nxt == "*":
                end = src.find("*/", i + 2)
                end = n if end == -1 else end + 2
                out[i:end] = ["\n" if ch == "\n" else " " for ch in src[i:end]]
                i = end
                continue
            if _regex_may_start(out, i):
                end = _skip_regex(src, i)
                if end is not None:
                    i = end
                    continue
        i += 1
    return "".join(out)


def _regex_may_start(out: list[str], i: int) -> bool:
    j = i - 1
    while j >= 0 and out[j].isspace():
        j -= 1
    if j < 0:
        return True
    prev = out[j]
    if prev.isalnum() or prev in "_$":
        k = j
        while k >= 0 and (out[k].isalnum() or out[k] in "_$"):
            k -= 1
        return "".join(out[k + 1 : j + 1]) in _REGEX_KEYWORDS
    return prev not in ")]}\"'`"


@dataclass(frozen=True)
class _Lit:
    """A string literal inside an expression."""

    value: str
    line: int
    quote: str
    dynamic: bool
    """A template literal with `${...}`: its value is not known."""


@dataclass(frozen=True)
class _Value:
    """A parsed export value."""

    kind: str
    """`string`, `list`, `object` or `expression`."""
    literals: tuple[_Lit, ...]
    """Every string literal in it, in order."""
    keys: dict[str, _Value | None] = field(default_factory=dict)
    """For objects: top-level keys (None for shorthand or computed values)."""
    key_lines: dict[str, int] = field(default_factory=dict)
    """For objects: line of each top-level key."""
    text: str = ""
    """The expression as written (comments blanked)."""


@dataclass(frozen=True)
class _Export:
    name: str
    line: int
    value: _Value


_EXPORT_RE = re.compile(
    r"(?:^|(?<=[;{}\s]))export\s+(?:const|let|var)\s+(runtime|preferredRegion|config)\b\s*(?::\s*[^=;]+?)?\s*=(?!=)",
)
_TRAILING_CAST_RE = re.compile(r"\s+(?:as\s+const|as\s+[\w.$<>\[\]|' \"]+|satisfies\s+[\w.$<>\[\]|' \"]+)\s*$")
_OPERATOR_END = "?:=|&+-*/,(<>!%^~"
_OPERATOR_START = "?:.|&+*/,=<>%^"


def _expression_end(text: str, start: int) -> int:
    """End offset of the expression starting at `start` (a `;`, a `,` or a statement-ending newline
    at depth 0, or a closing bracket of an enclosing scope)."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            i = _skip_string(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return i
        elif depth == 0 and c in ";,":
            return i
        elif depth == 0 and c == "\n":
            before = text[start:i].rstrip()
            after = text[i:].lstrip()
            if before and before[-1] not in _OPERATOR_END and not (after and after[0] in _OPERATOR_START):
                return i
        i += 1
    return n


def _literals(text: str, start: int, end: int, lines: _Lines) -> tuple[list[_Lit], list[tuple[int, int]]]:
    lits: list[_Lit] = []
    spans: list[tuple[int, int]] = []
    i = start
    while i < end:
        c = text[i]
        if c in "'\"`":
            j = min(_skip_string(text, i), end)
            raw = text[i + 1 : j - 1] if j - 1 > i and text[j - 1] == c else text[i + 1 : j]
            dynamic = c == "`" and "${" in raw
            lits.append(_Lit(_unescape(raw), lines.at(i), c, dynamic))
            spans.append((i, j))
            i = j
            continue
        i += 1
    return lits, spans


def _unescape(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw)


def _parse_value(text: str, start: int, end: int, lines: _Lines) -> _Value:
    expr = text[start:end]
    cast = _TRAILING_CAST_RE.search(expr)
    if cast:
        end = start + cast.start()
        expr = text[start:end]
    lead = len(expr) - len(expr.lstrip())
    start += lead
    expr = expr.strip()
    end = start + len(expr)
    if expr.startswith("(") and expr.endswith(")") and _expression_end(text, start + 1) == end - 1:
        return _parse_value(text, start + 1, end - 1, lines)
    lits, spans = _literals(text, start, end, lines)
    rest = list(expr)
    for a, b in spans:
        rest[a - start : b - start] = " " * (b - a)
    remainder = "".join(rest).strip()
    if len(lits) == 1 and not remainder:
        return _Value("string", tuple(lits), text=expr)
    if expr.startswith("[") and expr.endswith("]") and set(remainder) <= set("[], \t\r\n"):
        return _Value("list", tuple(lits), text=expr)
    if expr.startswith("{") and expr.endswith("}"):
        keys, key_lines = _object_keys(text, start + 1, end - 1, lines)
        return _Value("object", tuple(lits), keys, key_lines, text=expr)
    return _Value("expression", tuple(lits), text=expr)


_KEY_RE = re.compile(r"\s*(?:(['\"])([\w$-]+)\1|([A-Za-z_$][\w$]*))\s*(:?)")


def _object_keys(text: str, start: int, end: int, lines: _Lines) -> tuple[dict[str, _Value | None], dict[str, int]]:
    keys: dict[str, _Value | None] = {}
    key_lines: dict[str, int] = {}
    i = start
    while i < end:
        while i < end and text[i] in " \t\r\n,":
            i += 1
        if i >= end:
            break
        m = _KEY_RE.match(text, i, end)
        value_end = _expression_end(text, i)
        if m and m.group(2) or m and m.group(3):
            name = m.group(2) or m.group(3)
            key_lines[name] = lines.at(m.start(2) if m.group(2) else m.start(3))
            if m.group(4):
                vstart = m.end()
                value_end = min(_expression_end(text, vstart), end)
                keys[name] = _parse_value(text, vstart, value_end, lines)
            else:
                keys[name] = None
        i = max(value_end, i + 1)
    return keys, key_lines


_IMPORT_RES = (
    re.compile(r"\bfrom\s*(['\"])([^'\"\n]+)\1"),
    re.compile(r"(?:^|(?<=[;{}\s]))import\s*(['\"])([^'\"\n]+)\1"),
    re.compile(r"\bimport\s*\(\s*(['\"`])([^'\"`\n]+)\1\s*\)"),
    re.compile(r"\brequire\s*\(\s*(['\"`])([^'\"`\n]+)\1\s*\)"),
)
_STATEMENT_START_RE = re.compile(r"\b(import|export)\b")
_HOST_RE = re.compile(r"(?<![A-Za-z0-9-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9-])")


@dataclass(frozen=True)
class _Import:
    spec: str
    line: int


@dataclass(frozen=True)
class _Module:
    """What the scan reads from one JS/TS file."""

    path: str
    exports: dict[str, _Export]
    imports: tuple[_Import, ...]
    hosts: tuple[tuple[str, str, int], ...]
    """(host, provider, line) for each governed host named."""


def _analyse(path: str, src: str, policies: PolicySet) -> _Module:
    text = strip_comments(src)
    lines = _Lines(text)
    exports: dict[str, _Export] = {}
    for m in _EXPORT_RE.finditer(text):
        start = m.end()
        value = _parse_value(text, start, _expression_end(text, start), lines)
        exports.setdefault(m.group(1), _Export(m.group(1), lines.at(m.start()), value))
    imports: list[_Import] = []
    seen: set[tuple[str, int]] = set()
    for pattern in _IMPORT_RES:
        for m in pattern.finditer(text):
            if pattern is _IMPORT_RES[0] and _type_only(text, m.start()):
                continue
            key = (m.group(2), m.start(2))
            if key not in seen:
                seen.add(key)
                imports.append(_Import(m.group(2), lines.at(m.start(2))))
    imports.sort(key=lambda imp: imp.line)
    hosts: list[tuple[str, str, int]] = []
    lowered = text.lower()
    if any(n.decode() in lowered for n in policies.needles()):
        for m in _HOST_RE.finditer(text):
            pack = policies.for_host(m.group())
            if pack is not None:
                hosts.append((m.group().lower(), pack.provider, lines.at(m.start())))
    return _Module(path, exports, tuple(imports), tuple(hosts))


def _type_only(text: str, at: int) -> bool:
    """True for `import type ... from` / `export type ... from` (erased by TypeScript)."""
    starts = list(_STATEMENT_START_RE.finditer(text, max(0, at - 2000), at))
    if not starts:
        return False
    return re.match(r"(?:import|export)\s+type\b", text[starts[-1].start() : at]) is not None


def _sdk(spec: str) -> SdkModule | None:
    for sdk in SDK_MODULES:
        if spec == sdk.module or spec.startswith(sdk.module + "/"):
            return sdk
    return None


# --------------------------------------------------------------------------------------------
# Route discovery

_PROJECT_MARKERS = ("package.json", "next.config.js", "next.config.mjs", "next.config.ts", "next.config.cjs", *VERCEL_CONFIGS)


def _js_stem(name: str) -> str | None:
    """`route` for `route.ts`; None for other files and for declarations (`x.d.ts`)."""
    if name.endswith(".d.ts"):
        return None
    for suffix in JS_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


class _Layout:
    """Where route files are, given the directories that hold a project (package.json, vercel.json...)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._projects: dict[Path, bool] = {}

    def is_project(self, d: Path) -> bool:
        if d not in self._projects:
            self._projects[d] = d == self.root or any((d / n).is_file() for n in _PROJECT_MARKERS)
        return self._projects[d]

    def _hosts_router(self, d: Path) -> bool:
        """`d` (an `app` or `pages` directory) sits in a project, or in its `src/`."""
        base = d.parent
        if self.is_project(base):
            return True
        return base.name == "src" and base != self.root and self.is_project(base.parent)

    def route_kind(self, path: Path) -> tuple[str, Path | None] | None:
        """(kind, app directory) for a route file, else None."""
        stem = _js_stem(path.name)
        if stem is None:
            return None
        rel_parts = path.relative_to(self.root).parts[:-1]
        d = self.root
        for part in rel_parts:  # outermost directory first
            d = d / part
            if part == "app" and self._hosts_router(d):
                return (f"app-{stem}", d) if stem in ("route", "page", "layout") else None
            if part == "pages" and self._hosts_router(d):
                return "pages", None
            if part == "api" and self.is_project(d.parent):
                return "vercel-function", None
        if stem == "middleware":
            parent = path.parent
            if self.is_project(parent) or (parent.name == "src" and parent != self.root and self.is_project(parent.parent)):
                return "middleware", None
        return None


def _walk(root: Path, files: _Files, ignored: list[str]) -> Iterator[Path]:
    def onerror(e: OSError) -> None:
        files.skipped[files.rel(Path(e.filename))] = f"unreadable directory ({e.strerror})"

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=onerror):
        here = Path(dirpath)
        kept = []
        for d in sorted(dirnames):
            p = here / d
            if d in SKIP_DIRS:
                ignored.append(files.rel(p))
            elif p.is_symlink():
                files.skipped[files.rel(p)] = "symbolic link to a directory, not followed"
            else:
                kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            yield here / name


# --------------------------------------------------------------------------------------------
# The scan


@dataclass(frozen=True)
class _VercelConfig:
    path: str
    regions: tuple[str, ...]
    """Project `regions` codes as configured (() when absent or "all")."""


@dataclass(frozen=True)
class _RouteConfig:
    """What decides where one route runs, and where that is written."""

    runtime: str
    """`edge`, `nodejs` or `unresolved`."""
    runtime_line: int
    """Line of the export that sets the runtime, in the route file (1 when inherited or default)."""
    runtime_how: str
    """For messages: `edge route`, `edge route (runtime from app/layout.tsx:3)`, `middleware (edge by default)`."""
    runtime_text: str
    """The runtime expression as written ("" when not set)."""
    regions: _Value | None
    """The regions value (preferredRegion or config.regions), None when not set."""
    regions_line: int
    """Line of the regions export (in the route file; else the runtime line)."""
    regions_own: bool
    """The regions are written in the route file itself (not inherited from a layout)."""
    regions_from: str
    """`preferredRegion`, `config.regions` or `app/layout.tsx:4`; "" when not set."""
    config_style: bool
    """Regions go in `export const config = { regions }` (pages, middleware, api/), not preferredRegion."""
    config_line: int
    """Line of `export const config`; 0 when the file has none."""


_UNRESOLVED = _Value("expression", ())
"""A shorthand or computed value (`{ runtime }`): present, but not readable."""


_REGION_LIKE_RE = re.compile(r"[a-z]{3}\d")


def _region_literals(value: _Value) -> list[_Lit]:
    """The literals of a regions value that name regions. In an expression
    (`env === 'production' ? ['iad1'] : ['sfo1']`) only code-shaped literals and keywords count."""
    lits = [lit for lit in value.literals if not lit.dynamic]
    if value.kind != "expression":
        return lits
    return [lit for lit in lits if _REGION_LIKE_RE.fullmatch(lit.value.strip().lower()) or lit.value.strip().lower() in ANYWHERE | {HOME}]


def _runtime_of(value: _Value) -> str:
    values = [lit.value.strip() for lit in value.literals if not lit.dynamic]
    if any(v in EDGE_RUNTIMES for v in values):
        return "edge"
    return "nodejs" if values else "unresolved"


class _Scan:
    def __init__(self, root: Path, policies: PolicySet, today: dt.date) -> None:
        self.root = root
        self.policies = policies
        self.providers = [p.provider for p in policies.packs]
        self.judge = _Judge(policies, today)
        self.files = _Files(root)
        self.layout = _Layout(root)
        self.flags: list[Flag] = []
        self.modules: dict[str, _Module | None] = {}
        self.configs: dict[Path, _VercelConfig] = {}
        self.real_root = Path(os.path.realpath(root))

    # -- files and imports

    def module(self, path: Path) -> _Module | None:
        rel = self.files.rel(path)
        if rel not in self.modules:
            src = self.files.text(path)
            try:
                self.modules[rel] = None if src is None else _analyse(rel, src, self.policies)
            except RecursionError:
                self.files.skipped[rel] = "expressions nested too deeply to read; check its region exports by hand"
                self.modules[rel] = None
        return self.modules[rel]

    def resolve(self, importer: Path, spec: str) -> Path | None:
        """A local module imported by `importer` (`./`, `../`, or the `@/`/`~/` alias resolved to
        the project directory or its `src/`), inside the root and not a symlink."""
        if spec.startswith(("./", "../")):
            bases = [importer.parent / spec]
        elif spec.startswith(("@/", "~/")):
            project = importer.parent
            while project != self.root and not any(
                _is_file(project / n) for n in ("tsconfig.json", "jsconfig.json", "package.json")
            ):
                project = project.parent
            bases = [project / spec[2:], project / "src" / spec[2:]]
        else:
            return None
        for base in bases:
            stem = base.with_suffix("") if base.suffix in (".js", ".mjs", ".cjs", ".jsx") else base
            candidates = [base, *(stem.with_name(stem.name + s) for s in JS_SUFFIXES), *(base / f"index{s}" for s in JS_SUFFIXES)]
            for candidate in candidates:
                resolved = Path(os.path.normpath(candidate))
                if not resolved.is_relative_to(self.root):
                    return None
                if _js_stem(resolved.name) is not None and _is_file(resolved):
                    return resolved
        return None

    def apis(self, path: Path, module: _Module) -> tuple[ApiUse, ...]:
        judged = set(self.providers)
        uses: dict[tuple[str, int, str], ApiUse] = {}

        def collect(mod: _Module, via: int) -> None:
            for imp in mod.imports:
                sdk = _sdk(imp.spec)
                if sdk is not None:
                    use = ApiUse(sdk.provider, f"import '{imp.spec}'", mod.path, imp.line, via, sdk.provider in judged)
                    uses.setdefault((mod.path, imp.line, use.evidence), use)
            for host, provider, line in mod.hosts:
                use = ApiUse(provider, f"host {host}", mod.path, line, via, True)
                uses.setdefault((mod.path, line, use.evidence), use)

        collect(module, 0)
        for imp in module.imports:
            target = self.resolve(path, imp.spec)
            if target is not None and target != path:
                if Path(os.path.realpath(target)) != self.real_root / target.relative_to(self.root):
                    self.files.skipped[self.files.rel(target)] = "reached through a symbolic link, not followed"
                    continue
                sub = self.module(target)
                if sub is not None:
                    collect(sub, imp.line)
        return tuple(uses.values())

    # -- judging and flagging

    def rules(self, code: str, providers: Sequence[str]) -> str:
        country = self.judge.regions[code].country
        return "; ".join(self.judge.verdict(p, country)[2] for p in providers)

    def flag(self, path: str, line: int, kind: str, region: str, country: str, providers: Sequence[str],
             message: str, fix: str, rules: str) -> None:
        self.flags.append(Flag(path, line, kind, region, country, ",".join(providers), message, fix, rules,
                               self.outcome(kind, country, providers)))

    def outcome(self, kind: str, country: str, providers: Sequence[str]) -> str:
        """`violation` when a configured region (or, for "all", any region) is blocked as of the
        scan's date, `at_risk` when blocking has not started or an edge route may land there,
        `unknown` for codes and values the scan cannot judge."""
        if kind == "unsupported-region":
            countries = [country]
        elif kind == "all-regions":
            countries = sorted({self.judge.regions[c].country for c in self.judge.risky_regions(providers)})
        elif kind == "unpinned-edge":
            return Outcome.AT_RISK.value
        else:
            return Outcome.UNKNOWN.value
        blocked = any(self.judge.outcome(p, c) is Outcome.VIOLATION for p in providers for c in countries)
        return (Outcome.VIOLATION if blocked else Outcome.AT_RISK).value

    def judge_codes(self, rel: str, codes: Sequence[tuple[str, int]], providers: Sequence[str], what: str,
                    effect: str, render_fix: Callable[[list[str], str], str], note: str = "") -> None:
        """Flag unknown and unsupported codes of one configured list. `render_fix(fixed, replacement)`
        gets the whole corrected list (unknown codes dropped, unsupported ones replaced by the
        nearest region every provider in `providers` serves) and the flagged code's replacement."""
        fixed: list[str] = []
        problems: list[tuple[str, int, list[str] | None]] = []
        for raw, line in codes:
            code = raw.strip().lower()
            if code not in self.judge.regions:
                problems.append((raw, line, None))
                continue
            against = self.judge.unsupported_by(code, providers)
            if against:
                problems.append((raw, line, against))
            replacement = self.judge.nearest_supported(code, providers) if against else code
            if replacement not in fixed:
                fixed.append(replacement)
        fixed = fixed or [self.default_region(providers)]
        for raw, line, against in problems:
            if against is None:
                self.flag(
                    rel, line, "unknown-region", raw, "", [],
                    f"{what} lists {raw!r}, which is not a Vercel region code region-auditor knows, so it "
                    f"cannot be judged{note}. Known codes: {self.judge.known_codes()}.",
                    render_fix(fixed, self.default_region(providers)), "",
                )
                continue
            code = raw.strip().lower()
            country = self.judge.regions[code].country
            replacement = self.judge.nearest_supported(code, providers)
            fix = render_fix(fixed, replacement)
            reasons = " / ".join(self.judge.verdict(p, country)[1] for p in against)
            distance = (
                f", {_distance_km(code, replacement):,.0f} km away"
                if code in REGION_COORDINATES and replacement in REGION_COORDINATES else ""
            )
            self.flag(
                rel, line, "unsupported-region", code, country, against,
                f"{what} lists {self.judge.describe(code)}, which {self.judge.serve(against, negate=True)} "
                f"({reasons}); {effect}{note}. Nearest region {self.judge.serve(providers)}: "
                f"{self.judge.describe(replacement)}{distance}.",
                fix, self.rules(code, against),
            )

    def default_region(self, providers: Sequence[str]) -> str:
        if self.judge.supported_by_all(DEFAULT_REGION, providers):
            return DEFAULT_REGION
        return next((c for c in sorted(self.judge.regions) if self.judge.supported_by_all(c, providers)), DEFAULT_REGION)

    # -- vercel.json

    def vercel_config(self, path: Path) -> None:
        rel = self.files.rel(path)
        src = self.files.text(path)
        if src is None:
            return
        try:
            json.loads(src, parse_constant=_not_json)
            tree = _JsonPositions(src).parse()
        except _NotJson as e:
            self.files.skipped[rel] = f"not valid JSON ({e} is a JavaScript number, not JSON); Vercel refuses to deploy it"
            return
        except json.JSONDecodeError as e:
            self.files.skipped[rel] = (
                f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); Vercel reads {path.name} as "
                "strict JSON (no comments, no trailing commas) and refuses to deploy it either"
            )
            return
        except RecursionError:
            self.files.skipped[rel] = "arrays or objects nested too deeply to read; no Vercel configuration is that deep"
            return
        if not isinstance(tree.value, dict):
            self.files.skipped[rel] = "not a JSON object, so not a Vercel configuration"
            return
        top: dict[str, _J] = tree.value
        project: tuple[str, ...] = ()
        if "regions" in top:
            project = self.json_regions(rel, top["regions"], "regions", "", "this project's serverless functions run there")
        if "functionFailoverRegions" in top:
            self.json_regions(rel, top["functionFailoverRegions"], "functionFailoverRegions", "", "functions fail over to it")
        functions = top.get("functions")
        if functions is not None and isinstance(functions.value, dict):
            for glob, conf in functions.value.items():
                if not isinstance(conf.value, dict):
                    continue
                where = f'functions["{glob}"].'
                if "regions" in conf.value:
                    self.json_regions(rel, conf.value["regions"], "regions", where, "functions matching it run there")
                if "functionFailoverRegions" in conf.value:
                    self.json_regions(rel, conf.value["functionFailoverRegions"], "functionFailoverRegions", where, "functions matching it fail over to it")
        self.configs[path.parent] = _VercelConfig(rel, project)

    def json_regions(self, rel: str, node: _J, key: str, where: str, effect: str) -> tuple[str, ...]:
        """Judge one `regions`-like value of vercel.json against every pack; its codes, lower case."""
        what = f"{where}{key}"
        if isinstance(node.value, str) and node.value.strip().lower() == "all":
            risky = self.judge.risky_regions(self.providers)
            if risky:
                against = self.judge.unsupported_by(risky[0], self.providers)
                self.flag(
                    rel, node.line, "all-regions", node.value, "", against,
                    f"{what} is \"all\": every Vercel region, including {self.judge.describe(risky[0])}, which "
                    f"{self.judge.serve(against, negate=True)}; {effect}.",
                    f'"{key}": {_json_list([self.default_region(self.providers)])}', self.rules(risky[0], against),
                )
            return ()
        items = node.value if isinstance(node.value, list) else [node]
        # A list or object where a code belongs is flagged by its kind, not printed whole (it may be deep).
        codes = [("[...]" if isinstance(i.value, list) else "{...}" if isinstance(i.value, dict) else str(i.value), i.line) for i in items]
        self.judge_codes(rel, codes, self.providers, what, effect, lambda fixed, _: f'"{key}": {_json_list(fixed)}')
        return tuple(c.strip().lower() for c, _ in codes)

    def nearest_config(self, path: Path) -> _VercelConfig | None:
        d = path.parent
        while True:
            if d in self.configs:
                return self.configs[d]
            if d == self.root or d == d.parent:
                return None
            d = d.parent

    def pin_to(self, path: Path, providers: Sequence[str]) -> list[str]:
        """Regions to pin an edge route to: the project's vercel.json regions when every provider
        serves them all (functions stay together), else Vercel's default region."""
        config = self.nearest_config(path)
        if config is not None and config.regions and all(self.judge.supported_by_all(c, providers) for c in config.regions):
            return list(config.regions)
        return [self.default_region(providers)]

    # -- routes

    def route(self, path: Path, kind: str, app_dir: Path | None) -> Route | None:
        module = self.module(path)
        if module is None:
            return None
        rel = module.path
        apis = self.apis(path, module)
        called = [p for p in self.providers if any(a.provider == p and a.judged for a in apis)]
        cfg = self.route_config(path, kind, module, app_dir)
        if cfg.regions is not None and cfg.regions_own:
            self.route_codes(rel, cfg, called or self.providers)
        if called and cfg.runtime == "edge":
            self.edge_exposure(rel, path, cfg, called, apis)
        elif called and cfg.runtime == "unresolved":
            risky = self.judge.risky_regions(called)
            self.flag(
                rel, cfg.runtime_line, "unresolved-region", "", "", called,
                f"runtime is not a literal ({cfg.runtime_text}), so region-auditor cannot tell whether this route, "
                f"which calls {self.judge.names(called)} ({_evidence(apis)}), runs on the edge runtime "
                "(in the region closest to each user).",
                "export const runtime = 'nodejs'" if not cfg.config_style else "runtime: 'nodejs',",
                self.rules(risky[0], self.judge.unsupported_by(risky[0], called)) if risky else "",
            )
        regions = tuple(lit.value for lit in cfg.regions.literals) if cfg.regions is not None else ()
        return Route(rel, kind, cfg.runtime, regions, cfg.regions_from, apis)

    def route_config(self, path: Path, kind: str, module: _Module, app_dir: Path | None) -> _RouteConfig:
        config = module.exports.get("config")
        config_line = config.line if config is not None else 0
        if not kind.startswith("app-"):
            keys: dict[str, _Value | None] = config.value.keys if config is not None and config.value.kind == "object" else {}
            key_lines = config.value.key_lines if config is not None else {}
            if config is not None and config.value.kind != "object":
                keys = {"runtime": _UNRESOLVED, "regions": _UNRESOLVED}
                key_lines = {"runtime": config.line, "regions": config.line}
            runtime_value = (keys["runtime"] or _UNRESOLVED) if "runtime" in keys else None
            regions_value = (keys["regions"] or _UNRESOLVED) if "regions" in keys else None
            if runtime_value is not None:
                runtime, runtime_line, how = _runtime_of(runtime_value), key_lines.get("runtime", config_line), "edge route"
            elif kind == "middleware":
                runtime, runtime_line, how = "edge", config_line or 1, "middleware (edge runtime by default)"
            else:
                runtime, runtime_line, how = "nodejs", 1, ""
            return _RouteConfig(
                runtime=runtime, runtime_line=runtime_line, runtime_how=how,
                runtime_text=runtime_value.text.strip() if runtime_value is not None else "",
                regions=regions_value, regions_line=key_lines.get("regions", runtime_line), regions_own=True,
                regions_from="config.regions" if regions_value is not None else "",
                config_style=True, config_line=config_line,
            )
        # App router: the file's own exports, then (pages and layouts) the enclosing layouts'.
        chain = [module]
        if kind != "app-route" and app_dir is not None:
            d = path.parent
            while True:
                layout = next((d / f"layout{s}" for s in JS_SUFFIXES if (d / f"layout{s}").is_file()), None)
                if layout is not None and layout != path:
                    m = self.module(layout)
                    if m is not None:
                        chain.append(m)
                if d == app_dir:
                    break
                d = d.parent
        rt = next(((m, m.exports["runtime"]) for m in chain if "runtime" in m.exports), None)
        rg = next(((m, m.exports["preferredRegion"]) for m in chain if "preferredRegion" in m.exports), None)
        runtime, runtime_line, how, text = "nodejs", 1, "", ""
        if rt is not None:
            runtime, text = _runtime_of(rt[1].value), rt[1].value.text.strip()
            own = rt[0] is module
            runtime_line = rt[1].line if own else 1
            how = "edge route" if own else f"edge route (runtime inherited from {rt[0].path}:{rt[1].line})"
        regions_own = rg is not None and rg[0] is module
        return _RouteConfig(
            runtime=runtime, runtime_line=runtime_line, runtime_how=how, runtime_text=text,
            regions=rg[1].value if rg is not None else None,
            regions_line=rg[1].line if regions_own and rg is not None else runtime_line,
            regions_own=regions_own,
            regions_from=("preferredRegion" if regions_own else f"{rg[0].path}:{rg[1].line}") if rg is not None else "",
            config_style=False, config_line=config_line,
        )

    def route_codes(self, rel: str, cfg: _RouteConfig, providers: Sequence[str]) -> None:
        """Judge the region codes a route file names itself (inherited ones are judged in the layout)."""
        value = cfg.regions
        assert value is not None
        keywords = ANYWHERE | {HOME}
        codes = [(lit.value, lit.line) for lit in _region_literals(value) if lit.value.strip().lower() not in keywords]
        if not codes:
            return
        quote = next((lit.quote for lit in value.literals if lit.quote != "`"), "'")
        label = "regions" if cfg.config_style else "preferredRegion"
        note = (
            " (the value is an expression: every region it can name is judged; replace the flagged literal with the fix)"
            if value.kind == "expression" else ""
        )

        def render(fixed: list[str], replacement: str) -> str:
            quoted = [f"{quote}{c}{quote}" for c in fixed]
            if value.kind == "expression":
                return f"{quote}{replacement}{quote}"
            literal = quoted[0] if value.kind == "string" and len(fixed) == 1 else f"[{', '.join(quoted)}]"
            return f"regions: {literal}," if cfg.config_style else f"export const preferredRegion = {literal}"

        self.judge_codes(rel, codes, providers, label, "this route runs there", render, note)

    def edge_exposure(self, rel: str, path: Path, cfg: _RouteConfig, called: list[str], apis: tuple[ApiUse, ...]) -> None:
        """An edge route calling a governed API: flag it when it may run in an unsupported region."""
        risky = self.judge.risky_regions(called)
        if not risky:
            return  # every Vercel region is served: running anywhere is fine
        example = risky[0]
        against = self.judge.unsupported_by(example, called)
        rules = self.rules(example, against)
        evidence = _evidence(apis)
        exposure = (
            f"so a user near {self.judge.describe(example)} makes the call from there, "
            f"which {self.judge.serve(against, negate=True)}"
        )
        pin = ", ".join(f"'{c}'" for c in self.pin_to(path, called))
        if cfg.config_style:
            fix = f"regions: [{pin}]," if cfg.config_line else f"export const config = {{ regions: [{pin}] }}"
            where = f" Add the fix to export const config (line {cfg.config_line})." if cfg.config_line else " Add the fix to this file."
        else:
            fix = f"export const preferredRegion = [{pin}]"
            where = " Add the fix below export const runtime." if cfg.runtime_line > 1 else " Add the fix to this file."
        config = self.nearest_config(path)
        vercel_note = (
            f" The {config.path} \"regions\" do not apply to edge functions."
            if config is not None and config.regions else ""
        )
        value = cfg.regions
        label = "regions" if cfg.config_style else "preferredRegion"
        if value is None:
            self.flag(
                rel, cfg.runtime_line, "unpinned-edge", "", "", against,
                f"{cfg.runtime_how} calls {self.judge.names(called)} ({evidence}) without pinned regions: it runs "
                f"in the region closest to each user, {exposure}.{vercel_note}{where}",
                fix, rules,
            )
            return
        values = [lit.value.strip().lower() for lit in _region_literals(value)]
        anywhere = next((v for v in values if v in ANYWHERE), None)
        line = cfg.regions_line
        if anywhere is not None:
            meaning = "the region closest to each user" if anywhere == "auto" else "every region"
            inherited = "" if cfg.regions_own else f" (inherited from {cfg.regions_from})"
            self.flag(
                rel, line, "unpinned-edge", anywhere, "", against,
                f"{label} {anywhere!r}{inherited} on an {cfg.runtime_how} means {meaning}; this route calls "
                f"{self.judge.names(called)} ({evidence}), {exposure}. "
                + (f"Replace line {line} with the fix." if cfg.regions_own else "Add the fix to this file."),
                fix, rules,
            )
            return
        if not [v for v in values if v != HOME] and HOME not in values:
            self.flag(
                rel, line, "unresolved-region", "", "", called,
                f"{label} is not a literal ({value.text.strip() or 'a shorthand or computed value'}), so region-auditor "
                f"cannot show that this {cfg.runtime_how}, which calls {self.judge.names(called)} ({evidence}), "
                "is pinned to supported regions.",
                fix, rules,
            )


def _is_file(path: Path) -> bool:
    """Path.is_file, false also for a name the file system refuses (too long: an import
    specifier can be any string)."""
    try:
        return path.is_file()
    except OSError:
        return False


class _NotJson(ValueError):
    pass


def _not_json(constant: str) -> None:
    """json.loads takes NaN and Infinity; JSON, and so Vercel, does not."""
    raise _NotJson(constant)


def _evidence(apis: Sequence[ApiUse]) -> str:
    judged = [a for a in apis if a.judged]
    first = judged[0]
    more = f"; {len(judged) - 1} more" if len(judged) > 1 else ""
    if first.via_line:
        return f"{first.evidence} in {first.path}:{first.line}, imported on line {first.via_line}{more}"
    return f"{first.evidence} on line {first.line}{more}"


def _json_list(codes: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{c}"' for c in codes) + "]"


def scan(root: Path, policies: PolicySet, today: dt.date | None = None) -> ScanResult:
    """Scan a repository for region configuration that would send governed calls from an
    unsupported place. Reads files under `root` only; never follows symlinks."""
    if not root.is_dir():
        raise PreflightError(f"{root}: not a directory; give the root of a repository to scan")
    when = today or dt.date.today()
    base = Path(os.path.normpath(root.absolute()))
    state = _Scan(base, policies, when)
    ignored: list[str] = []
    vercel_files: list[Path] = []
    route_files: list[tuple[Path, str, Path | None]] = []
    for path in _walk(base, state.files, ignored):
        if path.name in VERCEL_CONFIGS:
            vercel_files.append(path)
            continue
        if path.name in PROGRAMMATIC_CONFIGS and state.layout.is_project(path.parent):
            state.files.skipped[state.files.rel(path)] = "programmatic Vercel configuration is not evaluated; check its regions by hand"
            continue
        found = state.layout.route_kind(path)
        if found is None:
            continue
        if path.is_symlink():
            state.files.skipped[state.files.rel(path)] = "symbolic link, not followed"
            continue
        route_files.append((path, found[0], found[1]))
    for path in vercel_files:
        if path.is_symlink():
            state.files.skipped[state.files.rel(path)] = "symbolic link, not followed"
            continue
        state.vercel_config(path)
    routes = [r for r in (state.route(p, kind, app) for p, kind, app in route_files) if r is not None]
    return ScanResult(
        root=str(root),
        date=when,
        policies=policies.version_tag,
        flags=tuple(sorted(state.flags, key=lambda f: (f.path, f.line, f.kind, f.region))),
        files_read=state.files.files_read(),
        vercel_configs=tuple(sorted(c.path for c in state.configs.values())),
        routes=tuple(routes),
        skipped=tuple(Skipped(p, r) for p, r in sorted(state.files.skipped.items())),
        ignored_dirs=tuple(sorted(ignored)),
    )
