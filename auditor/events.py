"""The values that travel between pipeline stages. Connection fields use Zeek's vocabulary."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from geoip.interface import Location
from rules.policy import PROVIDER_BLOCKED, Verdict

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T", bound="DataclassInstance")


def quick_init(cls: type[_T]) -> type[_T]:
    """Give a frozen dataclass an `__init__` that fills the instance's `__dict__` in one step.

    The one dataclasses writes for a frozen class sets each field through object.__setattr__:
    2.2 us for a ConnectionEvent, made once per governed line, against 0.9 us for this one. The
    class stays what it was in every other respect (frozen, eq, hash, repr, replace, pickle); only
    fields with a plain default are supported."""
    names, params, defaults = [], [], {}
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING or not f.init:
            raise TypeError(f"quick_init: {cls.__name__}.{f.name} needs the dataclass __init__")
        names.append(f.name)
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            defaults[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
    source = f"def __init__(self, {', '.join(params)}):\n    self.__dict__.update({', '.join(f'{n}={n}' for n in names)})\n"
    namespace: dict[str, Any] = {}
    exec(source, defaults, namespace)  # noqa: S102 - the source is built from field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]  # replacing the generated __init__ is the point
    return cls


@quick_init
@dataclass(frozen=True)
class ConnectionEvent:
    """One outbound call, as a log line or a packet shows it."""

    ts: dt.datetime
    """When the call was made (UTC, timezone-aware)."""
    orig_h: str
    """Originator (client) address as the source records it (Zeek id.orig_h)."""
    server_name: str
    """Host the call was for: SNI, CONNECT host or URL/Host header host; lower case."""
    source: str
    """Where the event was read: `file:line` or interface."""
    orig_p: int = 0
    """Originator port, 0 when not recorded."""
    resp_h: str = ""
    """Responder (server) address, "" when not recorded (Zeek id.resp_h)."""
    resp_p: int = 0
    """Responder port, 0 when not recorded."""
    proto: str = "tcp"
    """Transport protocol."""
    method: str = ""
    """HTTP method (`CONNECT`, `POST`), "" when not HTTP."""
    status: int = 0
    """Response status as recorded, 0 when none."""
    egress_h: str = ""
    """Public address the call left from, when the event itself records it; "" otherwise."""
    egress_region: str = ""
    """`platform:region` the call left from when the record says (`vercel:hkg1`), else ""."""
    project_id: str = ""
    """Platform project id (Vercel `projectId`), for org attribution; "" when none."""
    project_name: str = ""
    """Platform project name (Vercel `projectName`); "" when none."""
    name_source: str = ""
    """How server_name was learnt from packets (the rules: auditor.sources.packets): `sni`, `sni+ech`
    (an ECH extension taken as GREASE), `ech-dns` (real ECH, named from this client's DNS), `ech-outer`,
    `dns` (no SNI), `none`, `http`, `connect`, `socks5`, `socks4`, `<tunnel>+sni`, `websocket+sni`; "" for logs."""
    message: str = ""
    """Application log text that came with the record (Vercel `message`), "" when none."""
    tunnel: str = ""
    """The monitor's id of the connection (Zeek's uid) when it may log the call twice: a CONNECT,
    and a TLS session that may be inside one (the store counts the pair once); "" otherwise."""
    raw: str = ""
    """The record as read, for evidence. It may hold secrets: whatever stores or prints it
    passes it through auditor.redact first."""


@dataclass(frozen=True)
class Egress:
    """The public address a call left from, and how it was established."""

    ip: str
    """The address; "" when it could not be established or the egress is a region."""
    basis: str
    """`event`, `source:<path>`, `site:<name>`, `client`, or `none`."""
    region: str = ""
    """`platform:region` when the egress is known only as a platform region (`vercel:hkg1`)."""

    @property
    def known(self) -> bool:
        return bool(self.ip or self.region)

    @property
    def label(self) -> str:
        """What reports show as the egress: the address, else the platform region."""
        return self.ip or self.region


@quick_init
@dataclass(frozen=True)
class Finding:
    """One governed call, located, judged and attributed."""

    event: ConnectionEvent
    """The call."""
    org: str
    """Organization, `unattributed` when no rule matched."""
    egress: Egress
    """Where it left from."""
    location: Location
    """Where that is."""
    verdict: Verdict
    """What the provider's policy says."""
    host: str = ""
    """The governed host the call was for (the event's server_name, or the pack's host when only
    the provider's error names the provider)."""


SAMPLES = 5
"""Findings kept whole per Tally: the evidence the store keeps per observation."""


@dataclass(frozen=True)
class Tally:
    """The findings of one batch that are one observation in the store: same org, provider, host,
    egress, country, basis, verdict and day (UTC). What workers hand to the store instead of every
    Finding: a few thousand of these stand for millions of calls."""

    org: str
    provider: str
    host: str
    egress: str
    """Egress.label: the address, else the platform region, else ""."""
    country: str
    basis: str
    verdict: str
    """Verdict.outcome's value."""
    day: dt.date
    calls: int
    blocked_calls: int
    """Calls the provider itself refused (rule `...:provider-blocked`)."""
    first_seen: dt.datetime
    last_seen: dt.datetime
    policy_version: str
    """The first finding's (all share one provider and day, hence one policy version)."""
    rule_id: str
    """The rule of its first call the provider did not refuse; `...:provider-blocked` when it refused them all."""
    samples: tuple[Finding, ...]
    """The first SAMPLES findings, in input order, as evidence."""
    tunnels: tuple[tuple[str, str, str], ...] = ()
    """tunnel_record() of its calls that a monitor may also have logged as the other record of a
    CONNECT tunnel (ConnectionEvent.tunnel); the store counts each pair once."""
    locators_disagree: str = ""
    """Verdict.locators_disagree of its calls: the other locator layers' answers that would change
    the verdict (one egress, provider and day give every call the same; a call the provider refused
    has none), "" when none."""


def tunnel_record(event: ConnectionEvent) -> tuple[str, str, str]:
    """Which record of its CONNECT tunnel a call with a `tunnel` id is: (id, `connect` or `tls`,
    proxy). The proxy is the responder's address of a CONNECT (the proxy that took it), and of a
    TLS session to port 443 of a public address, which is in a tunnel only when that address took
    CONNECTs too (a proxy listening on 443); "" for a TLS session to another port or to an address
    that is not public, which is paired whatever its responder (a proxy's port, a proxy inside the
    network: providers are reached at public addresses)."""
    if event.method == "CONNECT":
        return event.tunnel, "connect", event.resp_h
    return event.tunnel, "tls", event.resp_h if event.resp_p == 443 and _public(event.resp_h) else ""


@functools.lru_cache(maxsize=4096)
def _public(address: str) -> bool:
    """True for a global address (not private, shared, documentation, ...) or no address."""
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return True


GroupKey = tuple[str, str, str, str, str, str, str, dt.date]
"""(org, provider, host, egress label, country, basis, verdict, UTC day): a Tally's leading fields."""


class Groups:
    """Calls counted into Tallies as they come, in order of each group's first call."""

    def __init__(self) -> None:
        self._groups: dict[GroupKey, list[Any]] = {}

    def count(
        self, org: str, egress: Egress, location: Location, verdict: Verdict, host: str, day: dt.date, event: ConnectionEvent
    ) -> list[Finding] | None:
        """Count one call (a Finding's parts, its UTC day, its event): the samples of its group
        when they have room for its Finding (append it), else None."""
        key = (org, verdict.provider, host, egress.label, location.country_code, location.basis, verdict.outcome.value, day)
        blocked = verdict.rule_id.endswith(PROVIDER_BLOCKED)
        ts = event.ts
        group = self._groups.get(key)
        if group is None:
            samples: list[Finding] = []
            self._groups[key] = [
                1,
                int(blocked),
                ts,
                ts,
                samples,
                [tunnel_record(event)] if event.tunnel else [],
                verdict.locators_disagree,
                "" if blocked else verdict.rule_id,
            ]
            return samples
        if not blocked and not group[7]:
            group[7] = verdict.rule_id
        if event.tunnel:
            group[5].append(tunnel_record(event))
        if not group[6] and verdict.locators_disagree:  # the first calls were ones the provider refused
            group[6] = verdict.locators_disagree
        group[0] += 1
        group[1] += blocked
        if ts < group[2]:
            group[2] = ts
        elif ts > group[3]:
            group[3] = ts
        return group[4] if len(group[4]) < SAMPLES else None

    def tallies(self) -> list[Tally]:
        return [
            Tally(
                *key,
                calls=calls,
                blocked_calls=blocked,
                first_seen=first,
                last_seen=last,
                policy_version=samples[0].verdict.policy_version,
                rule_id=rule or samples[0].verdict.rule_id,
                samples=tuple(samples),
                tunnels=tuple(tunnels),
                locators_disagree=disagree,
            )
            for key, (calls, blocked, first, last, samples, tunnels, disagree, rule) in self._groups.items()
        ]


def tally(findings: Iterable[Finding]) -> list[Tally]:
    """Group findings into Tallies, in order of each group's first finding."""
    groups = Groups()
    for f in findings:
        ts = f.event.ts
        samples = groups.count(f.org, f.egress, f.location, f.verdict, f.host or f.event.server_name, ts.astimezone(dt.UTC).date(), f.event)
        if samples is not None:
            samples.append(f)
    return groups.tallies()
