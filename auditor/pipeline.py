"""The Auditor: events -> classify -> egress -> locate -> judge -> attribute -> Finding."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from auditor.attribution import Attributor
from auditor.config import SourceConfig
from auditor.events import ConnectionEvent, Finding
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
            pack = self.policies.for_host(event.server_name)
            if pack is None:
                continue
            egress = self.attributor.egress(event, source)
            if egress.known:
                location = self.locator.locate(egress.ip)
            else:
                location = Location.unknown(basis="no-egress")
            yield Finding(
                event=event,
                org=self.attributor.org(event, source),
                egress=egress,
                location=location,
                verdict=pack.judge(event, location),
            )
