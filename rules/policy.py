"""Policy packs: one TOML file per provider under rules/data/, with dated versions.

A pack names the provider, its governed hosts and one or more versions of its supported-country
list. Each version has `in_force_from` (the date from which it describes the provider's policy)
and `enforced_from` (the date the provider starts blocking). An event is judged by the version in
force at its timestamp (the earliest version for older events); an unsupported location before
`enforced_from` is `at_risk`, on or after it `violation`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from geoip.interface import Location


class PolicyError(Exception):
    """A policy pack is unreadable or malformed, or a provider is unknown."""


PROVIDER_BLOCKED = ":provider-blocked"
"""How the rule id of a call the provider itself refused ends."""


class Outcome(str, enum.Enum):
    """What a verdict says about one call."""

    VIOLATION = "violation"
    """From a location the provider does not serve, on or after its enforcement date."""
    AT_RISK = "at_risk"
    """From an unsupported location before the enforcement date: will be blocked."""
    ALLOWED = "allowed"
    """From a supported location."""
    UNKNOWN = "unknown"
    """No egress or no location: a coverage gap, never compliant."""


class EventLike(Protocol):
    """What judging needs from an event (auditor's ConnectionEvent satisfies it)."""

    @property
    def ts(self) -> dt.datetime: ...


@dataclass(frozen=True)
class Verdict:
    """The judgement of one call, naming the rule that made it."""

    outcome: Outcome
    """violation, at_risk, allowed or unknown."""
    provider: str
    """Pack id (`openai`)."""
    policy_version: str
    """`openai@v188`."""
    rule_id: str
    """Which rule decided: `openai@v188:country-not-listed:HK`."""
    reason: str
    """One sentence for a human."""
    locators_disagree: str = ""
    """The answers of other locator layers (Location.disagreements, `basis=country`, `; ` between
    two) under which this call would get another outcome than this one: the verdict rests on which
    layer is believed. "" when no other layer's country changes it (HK against CN for a provider
    that serves neither), and for a call the provider itself refused."""


@dataclass(frozen=True)
class Exclusion:
    """A subdivision excluded although its country is listed."""

    code: str
    """ISO 3166-2 code (`UA-43`)."""
    name: str
    """Name as published or as inferred."""
    inferred: bool
    """True when the provider does not name it and it was inferred from other sources."""
    basis: str
    """Why it is listed."""


@dataclass(frozen=True)
class PolicyVersion:
    """One dated version of a provider's supported-country list."""

    id: str
    """Version id within the pack (`v188`)."""
    label: str
    """Short description."""
    in_force_from: dt.date
    """From this date the version describes the provider's policy."""
    enforced_from: dt.date
    """From this date the provider blocks unsupported locations."""
    supported: Mapping[str, str]
    """ISO 3166-1 alpha-2 code -> name as published."""
    exclusions: tuple[Exclusion, ...]
    """Subdivisions excluded from listed countries."""
    sources: tuple[str, ...]
    """Where the list was read."""
    notes: tuple[str, ...]
    """Uncertainty notes, carried into reports."""


@dataclass(frozen=True)
class Pack:
    """A provider's policy: governed hosts and dated versions, oldest first."""

    provider: str
    """Pack id (`openai`)."""
    name: str
    """Human name (`OpenAI API`)."""
    source_url: str
    """The provider's page for the list."""
    hosts: tuple[str, ...]
    """Governed hosts; `*.example.com` matches subdomains only."""
    versions: tuple[PolicyVersion, ...]
    """Oldest first."""
    blocked_error_code: str = ""
    """The error code the provider returns once it blocks a call."""

    def governs(self, host: str) -> bool:
        """True when calls to `host` are governed by this pack."""
        name = host.strip().rstrip(".").lower()
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if name.endswith(pattern[1:]) and len(name) > len(pattern) - 1:
                    return True
            elif name == pattern:
                return True
        return False

    def needles(self) -> tuple[bytes, ...]:
        """Lower-case byte strings one of which every line naming a governed host, or carrying
        the provider's blocked-region error, contains."""
        found = {p.removeprefix("*.").encode() for p in self.hosts}
        if self.blocked_error_code:
            found.add(self.blocked_error_code.lower().encode())
        return _minimal(found)

    def is_blocked_message(self, text: str) -> bool:
        """True when `text` carries this provider's blocked-region error."""
        return bool(self.blocked_error_code) and self.blocked_error_code.lower() in text.lower()

    def named_host(self, text: str) -> str:
        """The first governed host `text` names, else the pack's first exact host."""
        low = text.lower()
        exact = [h for h in self.hosts if not h.startswith("*.")]
        for host in sorted(exact, key=len, reverse=True):
            if host in low:
                return host
        return exact[0] if exact else self.hosts[0].removeprefix("*.")

    def version_at(self, when: dt.date) -> PolicyVersion:
        """The version in force on `when` (the earliest version for earlier dates)."""
        current = self.versions[0]
        for version in self.versions:
            if version.in_force_from <= when:
                current = version
        return current

    def version(self, version_id: str | None = None) -> PolicyVersion:
        """A version by id; the newest when `version_id` is None."""
        if version_id is None:
            return self.versions[-1]
        for version in self.versions:
            if version.id == version_id:
                return version
        known = ", ".join(v.id for v in self.versions)
        raise PolicyError(f"{self.provider} has no version {version_id!r}; known versions: {known}")

    def judge(self, event: EventLike, location: Location, *, provider_blocked: bool = False) -> Verdict:
        """Judge one call from `location` at `event.ts`. Pure. A call the provider already
        answered with its blocked-region error is a violation whatever the location says."""
        when = event.ts.astimezone(dt.UTC).date()
        version = self.version_at(when)
        tag = f"{self.provider}@{version.id}"
        if provider_blocked:
            where = f"from {location.country_code} ({location.basis})" if location.known else f"({location.basis})"
            return Verdict(
                Outcome.VIOLATION,
                self.provider,
                tag,
                tag + PROVIDER_BLOCKED,
                f"{self.name} already refused this call {where} with {self.blocked_error_code!r}",
            )
        if not location.known:
            return Verdict(
                Outcome.UNKNOWN,
                self.provider,
                tag,
                f"{tag}:no-location",
                f"no location established ({location.basis})",
            )
        verdict = self._judge_code(version, location.country_code, location.region_code, when)
        if location.disagreements:
            deciding = self._deciding(version, verdict, location, when)
            if deciding:
                return dataclasses.replace(verdict, locators_disagree="; ".join(text for text, _ in deciding))
        return verdict

    def contested(self, location: Location, when: dt.date) -> tuple[Verdict, list[tuple[str, Verdict]]]:
        """The verdict on a known `location` on `when`, and (other layer's answer, the verdict on
        that layer's country) for each other layer whose country gets another outcome: what `judge`
        sums up in Verdict.locators_disagree, spelt out (`geoip lookup`)."""
        version = self.version_at(when)
        verdict = self._judge_code(version, location.country_code, location.region_code, when)
        return verdict, self._deciding(version, verdict, location, when)

    def _deciding(self, version: PolicyVersion, verdict: Verdict, location: Location, when: dt.date) -> list[tuple[str, Verdict]]:
        found = []
        for text, country in location.other_countries:
            other = self._judge_code(version, country, "", when)
            if other.outcome is not verdict.outcome:
                found.append((text, other))
        return found

    def check(self, code: str, when: dt.date | None = None) -> Verdict:
        """Judge a bare ISO 3166-1 (`HK`) or 3166-2 (`UA-43`) code on `when` (default: today)."""
        when = when or dt.datetime.now().astimezone().date()  # the local date
        code = code.strip().upper()
        country, dash, sub = code.partition("-")
        if not code.isascii() or len(country) != 2 or not country.isalpha() or (dash and not (sub.isalnum() and len(sub) <= 3)):
            raise PolicyError(f"{code!r} is not an ISO 3166-1 country code (HK) or 3166-2 code (UA-43)")
        version = self.version_at(when)
        return self._judge_code(version, country, code if sub else "", when)

    def _judge_code(self, version: PolicyVersion, country: str, region: str, when: dt.date) -> Verdict:
        tag = f"{self.provider}@{version.id}"
        name = version.supported.get(country)
        if name is not None:
            excluded = next((x for x in version.exclusions if x.code == region), None)
            if excluded is None:
                if any(x.code.startswith(country + "-") for x in version.exclusions) and not region:
                    return Verdict(
                        Outcome.ALLOWED,
                        self.provider,
                        tag,
                        f"{tag}:listed-subdivision-unknown:{country}",
                        f"{country} ({name}) is listed with excluded subdivisions; the subdivision is not known, so it is judged allowed",
                    )
                return Verdict(
                    Outcome.ALLOWED,
                    self.provider,
                    tag,
                    f"{tag}:listed:{country}",
                    f"{country} ({name}) is listed by {self.name}",
                )
            unsupported_rule = f"{tag}:subdivision-excluded:{region}"
            inferred = " (inferred exclusion)" if excluded.inferred else ""
            what = f"{region} ({excluded.name}) is excluded from {country}{inferred}"
        else:
            unsupported_rule = f"{tag}:not-listed:{country}"
            what = f"{country} is not listed by {self.name}"
        if when < version.enforced_from:
            return Verdict(
                Outcome.AT_RISK,
                self.provider,
                tag,
                unsupported_rule,
                f"{what}; blocking starts {version.enforced_from.isoformat()}",
            )
        return Verdict(
            Outcome.VIOLATION,
            self.provider,
            tag,
            unsupported_rule,
            f"{what}; blocked since {version.enforced_from.isoformat()}",
        )


def _minimal(needles: set[bytes]) -> tuple[bytes, ...]:
    ordered = sorted(needles, key=len)
    kept: list[bytes] = []
    for needle in ordered:
        if not any(k in needle for k in kept):
            kept.append(needle)
    return tuple(kept)


class PolicySet:
    """The packs in force for a run; finds the pack governing a host."""

    def __init__(self, packs: Iterable[Pack]) -> None:
        self.packs = tuple(packs)

    def for_host(self, host: str) -> Pack | None:
        """The pack governing `host`, if any."""
        for pack in self.packs:
            if pack.governs(host):
                return pack
        return None

    def get(self, provider: str) -> Pack:
        """A pack by provider id."""
        for pack in self.packs:
            if pack.provider == provider:
                return pack
        known = ", ".join(p.provider for p in self.packs)
        raise PolicyError(f"no policy pack for {provider!r}; known providers: {known}")

    def blocked_by(self, text: str) -> Pack | None:
        """The pack whose blocked-region error `text` carries, if any."""
        for pack in self.packs:
            if pack.is_blocked_message(text):
                return pack
        return None

    def needles(self) -> tuple[bytes, ...]:
        """Prefilter strings for all packs, without any that contains another."""
        return _minimal({n for p in self.packs for n in p.needles()})

    @property
    def version_tag(self) -> str:
        """All packs and their newest versions, for run records."""
        return ",".join(f"{p.provider}@{p.versions[-1].id}" for p in self.packs)


def _req(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind):
        raise PolicyError(f"{where}: '{key}' is missing or not a {kind.__name__}")
    return value


def _codes(table: Any, where: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: 'supported' must be a table of CODE = \"name\"")
    for code, name in table.items():
        if len(code) != 2 or not (code.isascii() and code.isalpha() and code.isupper()) or not isinstance(name, str):
            raise PolicyError(f"{where}: supported entry {code!r} is not an ISO 3166-1 alpha-2 code")
    return dict(table)


def parse_pack(data: Mapping[str, Any], where: str) -> Pack:
    """Build a Pack from parsed TOML; errors name the file and the bad entry."""
    provider = _req(data, "provider", str, where)
    hosts = _req(data, "hosts", list, where)
    if not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise PolicyError(f"{where}: 'hosts' must be a non-empty list of host names")
    raw_versions = _req(data, "version", list, where)
    versions: list[PolicyVersion] = []
    by_id: dict[str, PolicyVersion] = {}
    for i, raw in enumerate(raw_versions, 1):
        vwhere = f"{where}: [[version]] #{i}"
        vid = _req(raw, "id", str, vwhere)
        supported = _codes(raw.get("supported", {}), vwhere)
        exclusions: list[Exclusion] = []
        base_id = raw.get("extends")
        if base_id is not None:
            base = by_id.get(base_id)
            if base is None:
                raise PolicyError(f"{vwhere}: extends {base_id!r}, which is not an earlier version")
            supported = {**base.supported, **supported}
            exclusions = list(base.exclusions)
        for code in raw.get("removed", []):
            if supported.pop(code, None) is None:
                raise PolicyError(f"{vwhere}: removed code {code!r} was not supported")
        for j, ex in enumerate(raw.get("excluded_subdivision", []), 1):
            xwhere = f"{vwhere} excluded_subdivision #{j}"
            code = _req(ex, "code", str, xwhere).upper()
            if code[:2] not in supported or "-" not in code:
                raise PolicyError(f"{xwhere}: {code!r} is not a subdivision of a supported country")
            exclusions.append(Exclusion(code, ex.get("name", ""), bool(ex.get("inferred", False)), ex.get("basis", "")))
        for key in ("in_force_from", "enforced_from"):
            if not isinstance(raw.get(key), dt.date):
                raise PolicyError(f"{vwhere}: '{key}' must be a date (YYYY-MM-DD)")
        version = PolicyVersion(
            id=vid,
            label=raw.get("label", ""),
            in_force_from=raw["in_force_from"],
            enforced_from=raw["enforced_from"],
            supported=supported,
            exclusions=tuple(exclusions),
            sources=tuple(raw.get("sources", ())),
            notes=tuple(raw.get("notes", ())),
        )
        if versions and version.in_force_from <= versions[-1].in_force_from:
            raise PolicyError(f"{vwhere}: versions must be listed oldest first")
        versions.append(version)
        by_id[vid] = version
    return Pack(
        provider=provider,
        name=data.get("name", provider),
        source_url=data.get("source_url", ""),
        hosts=tuple(h.lower() for h in hosts),
        versions=tuple(versions),
        blocked_error_code=data.get("blocked_error_code", ""),
    )


def load_pack(path: Path) -> Pack:
    """Load one pack file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PolicyError(f"{path}: cannot read the policy pack ({e.strerror})") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PolicyError(f"{path}: not valid TOML ({e})") from e
    except RecursionError:
        raise PolicyError(f"{path}: not valid TOML (arrays or tables nested too deeply)") from None
    return parse_pack(data, str(path))


def load_policies(providers: Iterable[str] | None = None) -> PolicySet:
    """The packs shipped in rules/data, optionally narrowed to `providers`."""
    packs = [
        parse_pack(tomllib.loads(entry.read_text(encoding="utf-8")), f"rules/data/{entry.name}")
        for entry in sorted(resources.files("rules").joinpath("data").iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".toml")
    ]
    policies = PolicySet(packs)
    if providers is not None:
        policies = PolicySet(policies.get(p) for p in providers)
    return policies
