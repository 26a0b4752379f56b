"""Operator overrides: CIDR -> country, from configuration. They come first of all."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from geoip.interface import Location, Locator, normalize_ip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Override:
    """One operator statement: addresses in `network` are in `country_code`."""

    network: Network
    """The network the statement covers."""
    country_code: str
    """ISO 3166-1 alpha-2 code."""
    region_code: str = ""
    """Optional ISO 3166-2 subdivision (`UA-43`)."""


class OverrideLocator(Locator):
    """Answers from operator overrides; the most specific network wins."""

    def __init__(self, overrides: Iterable[Override]) -> None:
        self._overrides = sorted(overrides, key=lambda o: o.network.prefixlen, reverse=True)

    @property
    def description(self) -> str:
        return f"override:{len(self._overrides)} networks"

    def __len__(self) -> int:
        return len(self._overrides)

    def locate(self, ip: str) -> Location:
        try:
            addr = normalize_ip(ip)
        except ValueError:
            return Location.unknown(basis=f"not-an-address:{ip}")
        for o in self._overrides:
            if addr.version == o.network.version and addr in o.network:
                return Location(
                    country_code=o.country_code,
                    region_code=o.region_code,
                    basis=f"override:{o.network}",
                    network=str(o.network),
                    source_version="config",
                )
        return Location.unknown(basis="not-found:override")
