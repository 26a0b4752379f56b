"""The shipped policy packs (rules/data/*.toml): they load, route hosts, and give the known answers."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest

import rules
from geoip.interface import Location
from rules.policy import Outcome, Pack, load_pack, load_policies
from tests.conftest import make_event

DATA = Path(rules.__file__).resolve().parent / "data"
SHIPPED = sorted(DATA.glob("*.toml"))
POLICIES = load_policies()
PACKS = {p.provider: p for p in POLICIES.packs}
UTC = dt.UTC

# Debian's iso-codes data, when installed, to check that codes are real (not only well formed).
ISO_JSON = Path("/usr/share/iso-codes/json")


def _iso(part: str, key: str) -> set[str]:
    path = ISO_JSON / f"iso_{part}.json"
    if not path.exists():
        pytest.skip(f"{path} not installed (apt-get install iso-codes)")
    return {entry[key] for entry in json.loads(path.read_text(encoding="utf-8"))[part]}


def test_shipped_packs_are_all_loaded_by_default() -> None:
    assert [p.stem for p in SHIPPED] == ["anthropic", "gemini", "openai"]
    assert [p.provider for p in POLICIES.packs] == ["anthropic", "gemini", "openai"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_pack_loads(path: Path) -> None:
    pack = load_pack(path)
    assert pack == PACKS[path.stem]  # the file name is the provider id
    assert pack.name and pack.source_url.startswith("https://")
    assert pack.hosts and pack.versions
    for version in pack.versions:
        assert version.id and version.label
        assert version.sources, f"{pack.provider}@{version.id} names no source"
        assert version.notes, f"{pack.provider}@{version.id} carries no uncertainty notes"
        assert all(isinstance(n, str) and n.strip() for n in version.notes)
    for host in pack.hosts:
        # Lower case, no bare suffix wildcard, at least three labels: never `*.googleapis.com`.
        assert host == host.lower() and "*" not in host.removeprefix("*.")
        assert len(host.removeprefix("*.").split(".")) >= 3, host


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai"])
def test_codes_are_real_iso_codes(provider: str) -> None:
    countries = _iso("3166-1", "alpha_2")
    subdivisions = _iso("3166-2", "code")
    for version in PACKS[provider].versions:
        assert set(version.supported) <= countries, set(version.supported) - countries
        assert {x.code for x in version.exclusions} <= subdivisions


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai"])
def test_no_duplicates_and_no_odd_exclusions(provider: str) -> None:
    pack = PACKS[provider]
    raw = tomllib.loads((DATA / f"{provider}.toml").read_text(encoding="utf-8"))
    by_id = {v.id: v for v in pack.versions}
    for entry in raw["version"]:
        added = set(entry.get("supported", {}))
        if "extends" in entry:
            # An extending version lists only additions: re-adding a code hides a typo.
            assert not added & set(by_id[entry["extends"]].supported), entry["id"]
        assert not added & set(entry.get("removed", [])), entry["id"]
    for version in pack.versions:
        names = Counter(version.supported.values())
        assert [n for n, k in names.items() if k > 1] == [], f"two codes share a name in {version.id}"
        codes = [x.code for x in version.exclusions]
        assert len(codes) == len(set(codes))
        for x in version.exclusions:
            assert re.fullmatch(r"[A-Z]{2}-[A-Z0-9]{1,3}", x.code)
            assert x.code[:2] in version.supported and x.code not in version.supported
            assert x.name and x.basis
            # An excluded subdivision is never judged allowed while its version is in force.
            assert pack.check(x.code, version.in_force_from).outcome is not Outcome.ALLOWED


@pytest.mark.parametrize(
    "host, provider",
    [
        ("api.anthropic.com", "anthropic"),
        ("API.Anthropic.com.", "anthropic"),
        ("generativelanguage.googleapis.com", "gemini"),
        ("GenerativeLanguage.GoogleAPIs.com.", "gemini"),
        ("api.openai.com", "openai"),
        ("eu.api.openai.com", "openai"),
        # Decoys and neighbours: not governed by any pack.
        ("api.anthropic.com.evil.example", None),
        ("anthropic.com", None),
        ("console.anthropic.com", None),
        ("claude.ai", None),
        ("xapi.anthropic.com", None),
        ("storage.googleapis.com", None),
        ("googleapis.com", None),
        ("generativelanguage.googleapis.com.evil.example", None),
        ("xgenerativelanguage.googleapis.com", None),
        ("ai.google.dev", None),
        # Vertex AI / Agent Platform and the Firebase proxy: other regimes, left out on purpose.
        ("us-central1-aiplatform.googleapis.com", None),
        ("aiplatform.googleapis.com", None),
        ("firebasevertexai.googleapis.com", None),
        ("bedrock-runtime.us-east-1.amazonaws.com", None),
        ("myresource.openai.azure.com", None),
    ],
)
def test_for_host_routes_to_the_right_pack(host: str, provider: str | None) -> None:
    pack = POLICIES.for_host(host)
    assert (pack.provider if pack else None) == provider


def test_needles_cover_every_governed_host() -> None:
    needles = POLICIES.needles()
    # Hosts, plus the blocked-region errors that name a provider in application logs.
    assert set(needles) == {
        b"api.openai.com",
        b"api.anthropic.com",
        b"generativelanguage.googleapis.com",
        b"unsupported_country_region_territory",
        b"user location is not supported for the api use.",
    }
    for pack in POLICIES.packs:
        assert set(pack.needles()) <= set(needles)
        for host in pack.hosts:
            assert any(n in host.removeprefix("*.").encode() for n in needles), host


def test_hosts_do_not_overlap_between_packs() -> None:
    for a, b in itertools.permutations(POLICIES.packs, 2):
        for host in b.hosts:
            probe = "probe." + host[2:] if host.startswith("*.") else host
            assert not a.governs(probe), f"{host} of {b.provider} is also governed by {a.provider}"


def test_load_policies_narrows() -> None:
    only = load_policies(["anthropic"])
    assert [p.provider for p in only.packs] == ["anthropic"]
    assert only.for_host("api.anthropic.com") == PACKS["anthropic"]
    assert only.for_host("api.openai.com") is None
    assert only.for_host("generativelanguage.googleapis.com") is None
    assert only.needles() == (b"api.anthropic.com",)
    assert only.version_tag == "anthropic@v175"
    two = load_policies(["gemini", "openai"])
    assert [p.provider for p in two.packs] == ["gemini", "openai"]
    assert two.for_host("api.anthropic.com") is None
    assert POLICIES.version_tag == "anthropic@v175,gemini@v2026-11-partial,openai@v2026-11-expanded"


def test_anthropic_pack_content() -> None:
    pack = PACKS["anthropic"]
    assert [v.id for v in pack.versions] == ["v175"]
    v175 = pack.version("v175")
    assert len(v175.supported) == 175
    assert pack.hosts == ("api.anthropic.com",)
    assert pack.blocked_error_code == ""  # the reference does not document Anthropic's answer
    assert v175.enforced_from == dt.date(2024, 4, 4)
    # Named by Anthropic -> not inferred; Sevastopol is our reading of "Crimea".
    assert {x.code: x.inferred for x in v175.exclusions} == {"UA-43": False, "UA-14": False, "UA-09": False, "UA-40": True}
    # The reference: every Anthropic code is in OpenAI's v188, and these 13 are only in OpenAI's.
    openai = PACKS["openai"].version("v188").supported
    assert set(v175.supported) <= set(openai)
    assert set(openai) - set(v175.supported) == {"AF", "CD", "CF", "ER", "ET", "LY", "ML", "MM", "NI", "SD", "SO", "SS", "YE"}
    notes = " ".join(v175.notes)
    for said in ("NOT VERIFIED", "Kherson", "ownership", "Bedrock", "CF, CD, ER and ET"):
        assert said in notes


def test_gemini_pack_content() -> None:
    pack = PACKS["gemini"]
    assert [v.id for v in pack.versions] == ["v213", "v2026-11-partial"]
    v213, newest = pack.versions
    assert len(v213.supported) == 213
    assert set(newest.supported) - set(v213.supported) == {"AL", "AD", "BA"}
    assert set(v213.supported) <= set(newest.supported)
    assert pack.hosts == ("generativelanguage.googleapis.com",)
    assert pack.blocked_error_code == "User location is not supported for the API use."
    assert v213.exclusions == () and newest.exclusions == ()
    assert v213.enforced_from == newest.enforced_from == dt.date(2023, 12, 16)
    assert newest.in_force_from == dt.date(2026, 11, 28)
    assert any("NOT VERIFIED" in n for n in newest.notes)
    assert any("Colab" in n for n in v213.notes)
    assert any("Vertex AI" in n for n in v213.notes)


# Known answers from the references, judged well after enforcement unless the row says otherwise.
KNOWN = [
    # Anthropic: absent per the reference's status table.
    *[
        ("anthropic", c, "2025-06-01", Outcome.VIOLATION, f"anthropic@v175:not-listed:{c}")
        for c in ("CN", "HK", "MO", "RU", "BY", "IR", "KP", "SY", "CU", "VE", "AF", "ET", "CD", "MM")
    ],
    # Only a third-party copy lists dependent territories such as Bermuda.
    ("anthropic", "BM", "2025-06-01", Outcome.VIOLATION, "anthropic@v175:not-listed:BM"),
    *[("anthropic", c, "2025-06-01", Outcome.ALLOWED, f"anthropic@v175:listed:{c}") for c in ("US", "GB", "JP", "SG", "TW", "KR", "VA", "SA", "CG")],
    ("anthropic", "UA", "2025-06-01", Outcome.ALLOWED, "anthropic@v175:listed-subdivision-unknown:UA"),
    *[("anthropic", c, "2025-06-01", Outcome.VIOLATION, f"anthropic@v175:subdivision-excluded:{c}") for c in ("UA-43", "UA-40", "UA-14", "UA-09")],
    # Kherson and Zaporizhzhia are excluded only in the consumer list, not the API list.
    ("anthropic", "UA-65", "2025-06-01", Outcome.ALLOWED, "anthropic@v175:listed:UA"),
    ("anthropic", "UA-23", "2025-06-01", Outcome.ALLOWED, "anthropic@v175:listed:UA"),
    ("anthropic", "UA-30", "2025-06-01", Outcome.ALLOWED, "anthropic@v175:listed:UA"),
    # Gemini: absent per the reference's status table (older full list).
    *[
        ("gemini", c, "2025-06-01", Outcome.VIOLATION, f"gemini@v213:not-listed:{c}")
        for c in ("CN", "HK", "MO", "RU", "BY", "IR", "KP", "SY", "CU", "UA", "MD", "RS", "ME", "MK", "SM", "VA", "MC")
    ],
    ("gemini", "UA-43", "2025-06-01", Outcome.VIOLATION, "gemini@v213:not-listed:UA"),
    *[
        ("gemini", c, "2025-06-01", Outcome.ALLOWED, f"gemini@v213:listed:{c}")
        for c in ("VE", "EH", "AQ", "BQ", "TW", "JP", "SG", "US", "GB", "DE", "IN")
    ],
    # Albania, Andorra, Bosnia and Herzegovina: added by the 2026 page, known from 2026-11-28.
    ("gemini", "AL", "2025-06-01", Outcome.VIOLATION, "gemini@v213:not-listed:AL"),
    ("gemini", "BA", "2026-11-27", Outcome.VIOLATION, "gemini@v213:not-listed:BA"),
    ("gemini", "BA", "2026-11-28", Outcome.ALLOWED, "gemini@v2026-11-partial:listed:BA"),
    ("gemini", "AD", "2026-12-01", Outcome.ALLOWED, "gemini@v2026-11-partial:listed:AD"),
    ("gemini", "HK", "2026-12-01", Outcome.VIOLATION, "gemini@v2026-11-partial:not-listed:HK"),
    ("gemini", "VE", "2026-12-01", Outcome.ALLOWED, "gemini@v2026-11-partial:listed:VE"),
    # OpenAI, for contrast on the same codes.
    ("openai", "VE", "2025-06-01", Outcome.VIOLATION, "openai@v188:not-listed:VE"),
    ("openai", "AF", "2025-06-01", Outcome.ALLOWED, "openai@v188:listed:AF"),
]


@pytest.mark.parametrize("provider, code, when, outcome, rule", KNOWN)
def test_known_answers(provider: str, code: str, when: str, outcome: Outcome, rule: str) -> None:
    verdict = PACKS[provider].check(code, dt.date.fromisoformat(when))
    assert (verdict.outcome, verdict.rule_id) == (outcome, rule)
    assert verdict.provider == provider and verdict.policy_version == rule.split(":")[0]


@pytest.mark.parametrize(
    "provider, code, day_before",
    [
        ("anthropic", "HK", "2024-04-03"),
        ("anthropic", "CN", "2024-04-03"),
        ("anthropic", "UA-43", "2024-04-03"),
        ("gemini", "HK", "2023-12-15"),
        ("gemini", "RU", "2023-12-15"),
    ],
)
def test_at_risk_before_enforcement_violation_from_it(provider: str, code: str, day_before: str) -> None:
    pack = PACKS[provider]
    before = dt.date.fromisoformat(day_before)
    enforced = pack.version_at(before).enforced_from
    assert enforced == before + dt.timedelta(days=1)
    early = pack.check(code, before)
    assert early.outcome is Outcome.AT_RISK
    assert f"blocking starts {enforced.isoformat()}" in early.reason
    on_the_day = pack.check(code, enforced)
    assert on_the_day.outcome is Outcome.VIOLATION
    assert f"blocked since {enforced.isoformat()}" in on_the_day.reason
    # A listed country stays allowed before enforcement too.
    assert pack.check("US", before).outcome is Outcome.ALLOWED


@pytest.mark.parametrize(
    "provider, ts, outcome",
    [
        # 2024-04-04 01:00 in Hong Kong is still 2024-04-03 in UTC: before Anthropic's date.
        ("anthropic", dt.datetime(2024, 4, 4, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))), Outcome.AT_RISK),
        ("anthropic", dt.datetime(2024, 4, 4, 0, 0, tzinfo=UTC), Outcome.VIOLATION),
        ("gemini", dt.datetime(2023, 12, 15, 23, 59, tzinfo=UTC), Outcome.AT_RISK),
        ("gemini", dt.datetime(2023, 12, 16, 0, 0, tzinfo=UTC), Outcome.VIOLATION),
    ],
)
def test_judge_events_from_hong_kong(provider: str, ts: dt.datetime, outcome: Outcome) -> None:
    pack: Pack = PACKS[provider]
    host = pack.hosts[0]
    event = make_event(ts=ts, server_name=host)
    assert POLICIES.for_host(event.server_name) is pack
    verdict = pack.judge(event, Location("HK", basis="override:test"))
    assert verdict.outcome is outcome
    assert verdict.rule_id.endswith(":not-listed:HK")
