"""Vercel region codes judged against the policy packs: the region table, each provider's
verdict on a region's country, the nearest region every provider serves, and the flags that
configured region lists raise."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from auditor.preflight.result import Flag
from geoip import regions as region_table
from rules.policy import Outcome, Pack, PolicySet

DEFAULT_REGION = "iad1"
"""Vercel's default function region for new projects (Washington, D.C.)."""

# Approximate coordinates of each Vercel region's reference location (the city in Vercel's region
# table), used only to suggest the nearest supported replacement for a flagged region.
REGION_COORDINATES: dict[str, tuple[float, float]] = {
    "arn1": (59.33, 18.07),
    "bom1": (19.08, 72.88),
    "cdg1": (48.86, 2.35),
    "cle1": (41.50, -81.69),
    "cpt1": (-33.92, 18.42),
    "dub1": (53.35, -6.26),
    "dxb1": (25.20, 55.27),
    "fra1": (50.11, 8.68),
    "gru1": (-23.55, -46.63),
    "hkg1": (22.32, 114.17),
    "hnd1": (35.68, 139.69),
    "iad1": (38.91, -77.04),
    "icn1": (37.57, 126.98),
    "kix1": (34.69, 135.50),
    "lhr1": (51.51, -0.13),
    "pdx1": (45.52, -122.68),
    "sfo1": (37.77, -122.42),
    "sin1": (1.35, 103.82),
    "syd1": (-33.87, 151.21),
    "yul1": (45.50, -73.57),
}


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


class Judge:
    """Region code -> country -> verdict per pack, cached, and the nearest supported replacement."""

    def __init__(self, policies: PolicySet, today: dt.date) -> None:
        self.packs = policies.packs
        self.providers = [p.provider for p in self.packs]
        """Pack ids, in PolicySet order."""
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

    def rules(self, code: str, providers: Sequence[str]) -> str:
        country = self.regions[code].country
        return "; ".join(self.verdict(p, country)[2] for p in providers)

    def flag_outcome(self, kind: str, country: str, providers: Sequence[str]) -> str:
        """`violation` when a configured region (or, for "all", any region) is blocked as of the
        scan's date, `at_risk` when blocking has not started or an edge route may land there,
        `unknown` for codes and values the scan cannot judge."""
        if kind == "unsupported-region":
            countries = [country]
        elif kind == "all-regions":
            countries = sorted({self.regions[c].country for c in self.risky_regions(providers)})
        elif kind == "unpinned-edge":
            return Outcome.AT_RISK.value
        else:
            return Outcome.UNKNOWN.value
        blocked = any(self.outcome(p, c) is Outcome.VIOLATION for p in providers for c in countries)
        return Outcome.VIOLATION.value if blocked else Outcome.AT_RISK.value

    def default_region(self, providers: Sequence[str]) -> str:
        if self.supported_by_all(DEFAULT_REGION, providers):
            return DEFAULT_REGION
        return next((c for c in sorted(self.regions) if self.supported_by_all(c, providers)), DEFAULT_REGION)


class Flags:
    """The flags one scan raises (`raised`), each with its outcome on the scan's date."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.raised: list[Flag] = []

    def flag(self, path: str, line: int, kind: str, region: str, country: str, providers: Sequence[str], message: str, fix: str, rules: str) -> None:
        self.raised.append(
            Flag(path, line, kind, region, country, ",".join(providers), message, fix, rules, self.judge.flag_outcome(kind, country, providers))
        )

    def judge_codes(
        self,
        rel: str,
        codes: Sequence[tuple[str, int]],
        providers: Sequence[str],
        what: str,
        effect: str,
        render_fix: Callable[[list[str], str], str],
        note: str = "",
    ) -> None:
        """Flag unknown and unsupported codes of one configured list. `render_fix(fixed, replacement)`
        gets the whole corrected list (unknown codes dropped, unsupported ones replaced by the
        nearest region every provider in `providers` serves) and the flagged code's replacement."""
        fixed: list[str] = []
        problems: list[tuple[str, int, list[str] | None]] = []
        against: list[str] | None
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
        fixed = fixed or [self.judge.default_region(providers)]
        for raw, line, against in problems:
            if against is None:
                self.flag(
                    rel,
                    line,
                    "unknown-region",
                    raw,
                    "",
                    [],
                    f"{what} lists {raw!r}, which is not a Vercel region code region-auditor knows, so it "
                    f"cannot be judged{note}. Known codes: {self.judge.known_codes()}.",
                    render_fix(fixed, self.judge.default_region(providers)),
                    "",
                )
                continue
            code = raw.strip().lower()
            country = self.judge.regions[code].country
            replacement = self.judge.nearest_supported(code, providers)
            fix = render_fix(fixed, replacement)
            reasons = " / ".join(self.judge.verdict(p, country)[1] for p in against)
            distance = f", {_distance_km(code, replacement):,.0f} km away" if code in REGION_COORDINATES and replacement in REGION_COORDINATES else ""
            self.flag(
                rel,
                line,
                "unsupported-region",
                code,
                country,
                against,
                f"{what} lists {self.judge.describe(code)}, which {self.judge.serve(against, negate=True)} "
                f"({reasons}); {effect}{note}. Nearest region {self.judge.serve(providers)}: "
                f"{self.judge.describe(replacement)}{distance}.",
                fix,
                self.judge.rules(code, against),
            )
