"""The Locator role: an address in, a Location (with the basis of the answer) out."""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


class LocatorError(Exception):
    """A locator cannot answer at all (unreadable or wrong database). Subclass per cause."""


@dataclass(frozen=True)
class Location:
    """Where an address is, and how we know."""

    country_code: str
    """ISO 3166-1 alpha-2 code of the country the address is used in; "" when unknown."""
    basis: str
    """Where the answer came from: `override:198.51.100.0/24`, `mmdb:GeoLite2-Country@2026-11-20`;
    for an unknown location, why: `not-found:...`, `no-egress`."""
    registered_country_code: str = ""
    """Country the network is registered to (MaxMind `registered_country`); "" when unknown.
    Never used in place of `country_code`."""
    region_code: str = ""
    """ISO 3166-2 subdivision code (`UA-43`) when the source knows it, else ""."""
    network: str = ""
    """The network (CIDR) the answer applies to, as the source stores it."""
    source_version: str = ""
    """Version of the data behind the answer (`GeoLite2-Country@2026-11-20`), "" for config."""
    cloud_provider: str = ""
    """Cloud or edge platform whose region the answer names (`aws`, `vercel`), else ""."""
    cloud_region: str = ""
    """That platform's region code (`ap-east-1`, `hkg1`), else ""."""
    disagreements: tuple[str, ...] = ()
    """Answers of other locator layers that differ from this one, as `basis=country`
    (`mmdb:GeoLite2-Country@2026-11-20=CN`), kept as evidence."""

    @property
    def known(self) -> bool:
        """True when a country was established."""
        return bool(self.country_code)

    @property
    def other_countries(self) -> tuple[tuple[str, str], ...]:
        """(answer, country) of each entry of `disagreements` that names a country, the answer as
        kept (`mmdb:GeoLite2-Country@2026-11-20=US`); a layer that knows no country (a cloud region
        without one) contradicts nothing and is left out."""
        return tuple((text, text.rpartition("=")[2]) for text in self.disagreements if text.rpartition("=")[2])

    @classmethod
    def unknown(cls, basis: str) -> Location:
        """An unknown location, with the reason as its basis."""
        return cls(country_code="", basis=basis)


class Locator(ABC):
    """Answers `locate(ip)`. Implementations never raise for an address they do not know:
    they return `Location.unknown(...)`; they raise LocatorError only when they cannot work."""

    @property
    @abstractmethod
    def description(self) -> str:
        """Short name and version of the data, for run records (`mmdb:GeoLite2-Country@2026-11-20`)."""

    @property
    def layer(self) -> str:
        """Which layer of the chain this is, for explanations: `override`, `cloud`, `mmdb`, `embedded`."""
        return self.description.split(":", 1)[0]

    @abstractmethod
    def locate(self, ip: str) -> Location:
        """Locate one address (IPv4 or IPv6 text)."""

    def locate_all(self, ips: Iterable[str]) -> Iterator[tuple[str, Location]]:
        """Locate many addresses; override to batch."""
        for ip in ips:
            yield ip, self.locate(ip)


def normalize_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address; IPv4-mapped (::ffff:a.b.c.d) and 6to4 (2002:aabb:ccdd::) become IPv4.

    Raises ValueError for text that is not an address.
    """
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    addr = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr.sixtofour is not None:
            return addr.sixtofour
    return addr
