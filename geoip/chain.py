"""The locator chain: overrides > cloud/edge region data > MMDB; the first known answer wins."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from geoip.interface import Location, Locator


class ChainLocator(Locator):
    """Asks each locator in turn and keeps the first known answer; answers are cached per address."""

    def __init__(self, locators: Sequence[Locator], cache_size: int = 65536) -> None:
        self.locators = tuple(locators)
        self._cached = lru_cache(maxsize=cache_size)(self._locate)

    @property
    def description(self) -> str:
        return " > ".join(loc.description for loc in self.locators)

    def locate(self, ip: str) -> Location:
        return self._cached(ip)

    def _locate(self, ip: str) -> Location:
        unknowns: list[Location] = []
        for locator in self.locators:
            location = locator.locate(ip)
            if location.known:
                return location
            unknowns.append(location)
        # Prefer an unknown that says something (a record without a country) over plain misses.
        for location in unknowns:
            if not location.basis.startswith("not-found"):
                return location
        sources = ",".join(loc.basis.removeprefix("not-found:") for loc in unknowns)
        return Location.unknown(basis=f"not-found:{sources or 'no locator'}")
