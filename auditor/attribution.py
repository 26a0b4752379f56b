"""Who made a call and where it left from: egress resolution and org attribution, from config."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import TypeVar

from auditor.config import Config, Org, Site, SourceConfig
from auditor.events import ConnectionEvent, Egress
from geoip.interface import normalize_ip
from geoip.overrides import Network

UNATTRIBUTED = "unattributed"
"""The org of traffic no configuration claims."""

NO_EGRESS = Egress(ip="", basis="none")


class Attributor:
    """Applies the egress rule and org attribution of DESIGN.md."""

    def __init__(self, config: Config) -> None:
        # Most specific network first, so a /24 inside a /16 wins.
        self._sites = _by_specificity(config.sites)
        self._orgs = _by_specificity(config.orgs)
        self._projects = {p: org.name for org in config.orgs for p in org.vercel_projects}
        self._parse = lru_cache(maxsize=65536)(_parse)

    def egress(self, event: ConnectionEvent, source: SourceConfig) -> Egress:
        """In order: an egress address the event records, the source's configured egress_ip, the
        region the event records (a Vercel function's, a firewall's: the operator's egress_ip is
        more precise, such as Vercel Secure Compute's static addresses), the site whose networks
        contain the client, the client itself when it is public, else none."""
        if event.egress_h:
            return Egress(event.egress_h, "event")
        if source.egress_ip:
            return Egress(source.egress_ip, f"source:{source.path}")
        if event.egress_region:
            return Egress("", "event", region=event.egress_region)
        addr = self._parse(event.orig_h)
        if addr is None:
            return NO_EGRESS
        for network, site in self._sites:
            if addr.version == network.version and addr in network:
                return Egress(site.egress_ip, f"site:{site.name}")
        if addr.is_global:
            return Egress(str(addr), "client")
        return NO_EGRESS

    def org(self, event: ConnectionEvent, source: SourceConfig) -> str:
        """The org owning the event's platform project, else the org whose networks contain the
        client, else the source's org, else unattributed."""
        for project in (event.project_id, event.project_name):
            if project and project in self._projects:
                return self._projects[project]
        addr = self._parse(event.orig_h)
        if addr is not None:
            for network, org in self._orgs:
                if addr.version == network.version and addr in network:
                    return org.name
        return source.org or UNATTRIBUTED


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return normalize_ip(text)
    except ValueError:
        return None


_Entry = TypeVar("_Entry", Site, Org)


def _by_specificity(entries: Sequence[_Entry]) -> list[tuple[Network, _Entry]]:
    pairs = [(network, entry) for entry in entries for network in entry.networks]
    return sorted(pairs, key=lambda pair: pair[0].prefixlen, reverse=True)
