"""The Auditor: events -> classify -> egress -> locate -> judge -> attribute -> Finding."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from auditor.attribution import Attributor
from auditor.config import Config, SourceConfig
from auditor.events import ConnectionEvent, Egress, Finding, Groups, Tally
from geoip import regions
from geoip.defaults import build_locator
from geoip.interface import Location, Locator
from rules.policy import Pack, PolicySet, Verdict, load_policies

CACHE_ENTRIES = 65_536
"""Answers remembered per cache (hosts, clients, egresses, verdicts); a full cache starts over."""


class Auditor:
    """Turns connection events into findings. The CLI and the daemon wire the same object.

    Everything after parsing depends on few values that repeat across millions of lines (host,
    client, egress, day), so each step's answer is remembered; all of them are pure for a given
    configuration, policy set and locator."""

    def __init__(self, policies: PolicySet, locator: Locator, attributor: Attributor) -> None:
        self.policies = policies
        self.locator = locator
        self.attributor = attributor
        self._packs: dict[str, Pack | None] = {}
        self._who: dict[SourceConfig, dict[tuple[str, ...], tuple[Egress, str]]] = {}
        self._where: dict[tuple[str, str], Location] = {}
        self._verdicts: dict[tuple[object, ...], Verdict] = {}

    def audit(self, events: Iterable[ConnectionEvent], source: SourceConfig) -> Iterator[Finding]:
        """One Finding per event that calls a governed host; other events are dropped."""
        who = self._who_for(source)
        for event in events:
            judged = self._judge(event, source, who)
            if judged is not None:
                org, egress, location, verdict, host, _ = judged
                yield Finding(event, org, egress, location, verdict, host)

    def tally(self, events: Iterable[ConnectionEvent], source: SourceConfig) -> list[Tally]:
        """`events.tally(self.audit(events, source))`, without a Finding for each call: only the
        calls a Tally keeps as samples become Findings."""
        who = self._who_for(source)
        groups = Groups()
        for event in events:
            judged = self._judge(event, source, who)
            if judged is None:
                continue
            org, egress, location, verdict, host, day = judged
            samples = groups.count(org, egress, location, verdict, host, day, event)
            if samples is not None:
                samples.append(Finding(event, org, egress, location, verdict, host))
        return groups.tallies()

    def _who_for(self, source: SourceConfig) -> dict[tuple[str, ...], tuple[Egress, str]]:
        who = self._who.get(source)
        if who is None:
            who = _remember(self._who, source, {})
        return who

    def _judge(
        self, event: ConnectionEvent, source: SourceConfig, who: dict[tuple[str, ...], tuple[Egress, str]]
    ) -> tuple[str, Egress, Location, Verdict, str, dt.date] | None:
        """(org, egress, location, verdict, host, UTC day) of a call to a governed host, else None."""
        pack = self._pack(event.server_name) if event.server_name else None
        blocked = self.policies.blocked_by(event.message) if event.message else None
        if blocked is not None and pack in (None, blocked):
            pack = blocked
        else:
            blocked = None
        if pack is None:
            return None
        key = (event.orig_h, event.egress_h, event.egress_region, event.project_id, event.project_name)
        found = who.get(key)
        if found is None:
            found = _remember(who, key, (self.attributor.egress(event, source), self.attributor.org(event, source)))
        egress, org = found
        where = (egress.ip, egress.region)
        location = self._where.get(where)
        if location is None:
            location = _remember(self._where, where, self._locate(egress))
        day = event.ts.astimezone(dt.UTC).date()
        judged = (pack.provider, day, where, blocked is not None)
        verdict = self._verdicts.get(judged)
        if verdict is None:
            verdict = _remember(self._verdicts, judged, pack.judge(event, location, provider_blocked=blocked is not None))
        return org, egress, location, verdict, event.server_name or pack.named_host(event.message), day

    def _pack(self, host: str) -> Pack | None:
        if host in self._packs:
            return self._packs[host]
        return _remember(self._packs, host, self.policies.for_host(host))

    def _locate(self, egress: Egress) -> Location:
        if egress.ip:
            return self.locator.locate(egress.ip)
        if egress.region:
            return regions.locate_reference(egress.region) or Location.unknown(basis=f"edge-region-unknown:{egress.region}")
        return Location.unknown(basis="no-egress")


@dataclass(frozen=True)
class Pipeline:
    """Everything applied to events, as one value: the configuration (sources, sites, orgs), the
    auditor (policies, locator chain, attribution) and the prefilter's needles. Built once from
    the configuration, the policies and the GeoIP data (`Recipe.build`); readers, the executor,
    the recorder and the scheduler's tasks take it whole, and a reload swaps it whole (a new one
    is built; nothing in one is changed)."""

    config: Config
    auditor: Auditor
    recipe: Recipe | None = None
    """What it was built from: worker processes build the same pipeline from it. None for one
    put together by hand (`Pipeline(config, auditor)`): it audits in this process only."""
    needles: tuple[bytes, ...] = field(init=False)
    """The prefilter: governed host names and blocked-region error codes (PolicySet.needles)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "needles", self.auditor.policies.needles())

    @property
    def geoip(self) -> str:
        """The locator chain's description, recorded with each run."""
        return self.auditor.locator.description

    @property
    def policies(self) -> str:
        """The policy set's version tag, recorded with each run."""
        return self.auditor.policies.version_tag

    def source(self, path: str) -> SourceConfig:
        """What the configuration says of the input at `path` (its [[source]] entry)."""
        return self.config.source(path)

    def tally(self, events: Iterable[ConnectionEvent], source: SourceConfig) -> list[Tally]:
        """The findings of `events`, grouped (Auditor.tally)."""
        return self.auditor.tally(events, source)


@dataclass(frozen=True)
class Recipe:
    """What a Pipeline is built from, by value (picklable): the configuration, the providers
    audited and the country database named. Worker processes build the same pipeline from it."""

    config: Config
    providers: tuple[str, ...] = ()
    """Audit only calls to these providers; () for the configuration's, else all packs."""
    geoip_db: str = ""
    """The MMDB country database to use before the embedded one; "" for the configuration's."""

    def build(self) -> Pipeline:
        """The pipeline: the policies, the locator chain and the attribution this recipe names."""
        database = self.geoip_db or self.config.geoip_database
        locator = build_locator(self.config.overrides, Path(database) if database else None)
        policies = load_policies(self.providers or self.config.providers or None)
        return Pipeline(self.config, Auditor(policies, locator, Attributor(self.config)), self)


_V = TypeVar("_V")


def _remember(cache: dict[Any, _V], key: Any, value: _V) -> _V:
    if len(cache) >= CACHE_ENTRIES:
        cache.clear()
    cache[key] = value
    return value
