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

DATA_VERSION = "regions@2026-11-28"
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


def platforms(kind: str) -> tuple[str, ...]:
    """Known platforms of a kind."""
    return tuple(sorted(_tables().get(kind, {})))
