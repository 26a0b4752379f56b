"""Cloud and edge region codes -> country (geoip/data/regions.toml).

Keyed by (platform, region): region ids collide across providers. Cloud platforms: aws, gcp,
azure, oracle, alibaba, tencent. Edge platforms: vercel, cloudflare (colos, unofficial list), fly.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from geoip.interface import Location

DATA_VERSION = "regions@2026-12-06"
"""Version of the region tables (their compile date)."""


@dataclass(frozen=True)
class Region:
    """One region of one platform."""

    kind: str
    """`cloud` or `edge`."""
    platform: str
    """`aws`, `vercel`, ..."""
    code: str
    """Region code as the platform writes it (`ap-east-1`, `hkg1`), lower case."""
    country_code: str
    """ISO 3166-1 alpha-2 country of the region."""
    place: str
    """City or description, for humans."""

    def location(self, network: str = "", source_version: str = DATA_VERSION) -> Location:
        """A Location for an address or execution in this region, basis `kind:platform:code`."""
        return Location(
            country_code=self.country_code,
            basis=f"{self.kind}:{self.platform}:{self.code}",
            network=network,
            source_version=source_version,
            cloud_provider=self.platform,
            cloud_region=self.code,
        )


@lru_cache(maxsize=1)
def _tables() -> dict[str, dict[str, dict[str, Region]]]:
    raw = tomllib.loads(resources.files("geoip").joinpath("data", "regions.toml").read_text(encoding="utf-8"))
    tables: dict[str, dict[str, dict[str, Region]]] = {}
    for kind, platforms in raw.items():
        for platform, table in platforms.items():
            tables.setdefault(kind, {})[platform] = {
                code.lower(): Region(kind, platform, code.lower(), entry["country"], entry.get("place", ""))
                for code, entry in table["regions"].items()
            }
    return tables


def lookup(kind: str, platform: str, code: str) -> Region | None:
    """The region, or None when the platform or code is unknown."""
    return _tables().get(kind, {}).get(platform, {}).get(code.strip().lower())


def regions_of(kind: str, platform: str) -> tuple[Region, ...]:
    """Every known region of a platform, by code; () for an unknown platform."""
    return tuple(region for _, region in sorted(_tables().get(kind, {}).get(platform, {}).items()))


def platforms(kind: str) -> tuple[str, ...]:
    """Known platforms of a kind."""
    return tuple(sorted(_tables().get(kind, {})))


def locate_reference(text: str) -> Location | None:
    """A region reference -> its Location; None when `text` is not one (an address, say).

    References: `vercel:hkg1`, `fly:nrt`, `cloudflare:hkg` (a colo), `cf-ray:230b030023ae2822-HKG`
    (the colo is the Ray ID's suffix), `aws:ap-east-1` and the other cloud platforms. A known
    platform with an unknown code gives an unknown Location that says so.
    """
    platform, sep, code = text.strip().partition(":")
    platform = platform.lower()
    if not sep or not code:
        return None
    if platform == "cf-ray":
        platform, code = "cloudflare", code.rpartition("-")[2]
    for kind in ("edge", "cloud"):
        if platform in _tables().get(kind, {}):
            region = lookup(kind, platform, code)
            if region is None:
                return Location.unknown(basis=f"{kind}-region-unknown:{platform}:{code.lower()}")
            return region.location()
    return None
