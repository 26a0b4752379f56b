"""The Auditor: events -> classify -> egress -> locate -> judge -> attribute -> Finding."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from auditor.attribution import Attributor
from auditor.config import SourceConfig
from auditor.events import ConnectionEvent, Egress, Finding
from geoip import regions
from geoip.interface import Location, Locator
from rules.policy import PolicySet


class Auditor:
    """Turns connection events into findings. The CLI and the daemon wire the same object."""

    def __init__(self, policies: PolicySet, locator: Locator, attributor: Attributor) -> None:
        self.policies = policies
        self.locator = locator
        self.attributor = attributor

    def audit(self, events: Iterable[ConnectionEvent], source: SourceConfig) -> Iterator[Finding]:
        """One Finding per event that calls a governed host; other events are dropped."""
        for event in events:
            pack = self.policies.for_host(event.server_name) if event.server_name else None
            blocked = self.policies.blocked_by(event.message) if event.message else None
            if blocked is not None and pack in (None, blocked):
                pack = blocked
            else:
                blocked = None
            if pack is None:
                continue
            egress = self.attributor.egress(event, source)
            location = self._locate(egress)
            yield Finding(
                event=event,
                org=self.attributor.org(event, source),
                egress=egress,
                location=location,
                verdict=pack.judge(event, location, provider_blocked=blocked is not None),
                host=event.server_name or pack.named_host(event.message),
            )

    def _locate(self, egress: Egress) -> Location:
        if egress.ip:
            return self.locator.locate(egress.ip)
        if egress.region:
            platform, _, code = egress.region.partition(":")
            region = regions.lookup("edge", platform, code)
            if region is None:
                return Location.unknown(basis=f"edge-region-unknown:{egress.region}")
            return region.location()
        return Location.unknown(basis="no-egress")
