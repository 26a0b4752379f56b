"""The locator chain: overrides > cloud/edge region data > MMDB; the first known answer wins."""

from __future__ import annotations

import dataclasses
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

    def layers(self, ip: str) -> tuple[Location, ...]:
        """Every layer's own answer, in precedence order."""
        return tuple(locator.locate(ip) for locator in self.locators)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Locator.layer of each layer, in precedence order."""
        return tuple(locator.layer for locator in self.locators)

    @staticmethod
    def winner(answers: Sequence[Location]) -> int | None:
        """Which of `layers`' answers `locate` gives (with the others' differences): the first that
        knows a country; None when none does."""
        return next((i for i, location in enumerate(answers) if location.known), None)

    def _locate(self, ip: str) -> Location:
        answers = self.layers(ip)
        i = self.winner(answers)
        if i is not None:
            location = answers[i]
            differing = tuple(
                f"{o.basis}={o.country_code}"
                for o in answers[i + 1 :]
                if (o.known and o.country_code != location.country_code) or o.basis.startswith("cloud-")
            )
            return dataclasses.replace(location, disagreements=differing) if differing else location
        unknowns = list(answers)
        # Prefer an unknown that says something (a record without a country) over plain misses.
        for location in unknowns:
            if not location.basis.startswith("not-found"):
                return location
        sources = ",".join(loc.basis.removeprefix("not-found:") for loc in unknowns)
        return Location.unknown(basis=f"not-found:{sources or 'no locator'}")
