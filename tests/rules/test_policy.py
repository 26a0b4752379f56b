"""Policy packs: loading, dated versions, host matching and judgement, as tables."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

import rules
from geoip.interface import Location
from rules.policy import Outcome, PolicyError, load_pack, load_policies, parse_pack
from tests.conftest import make_event

OPENAI = load_policies().get("openai")
UTC = dt.UTC


def test_rules_package_is_this_checkout() -> None:
    # Other PyPI projects install a top-level `rules` (django-rules); make sure ours is imported.
    assert Path(rules.__file__).resolve().parent == Path(__file__).resolve().parents[2] / "rules"


def test_openai_pack_content() -> None:
    v188 = OPENAI.version("v188")
    assert len(v188.supported) == 188
    assert v188.enforced_from == dt.date(2024, 7, 9)
    for absent in ("CN", "HK", "MO", "RU", "BY", "IR", "KP", "SY", "CU", "VE"):
        assert absent not in v188.supported
    for listed in ("US", "SG", "JP", "TW", "UA", "SA", "AF"):
        assert listed in v188.supported
    assert {x.code for x in v188.exclusions} == {"UA-43", "UA-40", "UA-14", "UA-09", "UA-65", "UA-23"}
    assert all(x.inferred for x in v188.exclusions)
    assert OPENAI.source_url.startswith("https://help.openai.com/")
    assert OPENAI.blocked_error_code == "unsupported_country_region_territory"
    newest = OPENAI.versions[-1]
    assert set(newest.supported) - set(v188.supported) == {"AX", "AW", "BM", "KY", "FO", "GF", "PF", "TF"}
    assert any("NOT VERIFIED" in n for n in newest.notes)


@pytest.mark.parametrize(
    "host, governed",
    [
        ("api.openai.com", True),
        ("API.OpenAI.com", True),
        ("api.openai.com.", True),
        ("eu.api.openai.com", True),
        ("ae.api.openai.com", True),
        ("future-region.api.openai.com", True),
        ("openai.com", False),
        ("chatgpt.com", False),
        ("api.openai.com.evil.example", False),
        ("notapi.openai.community", False),
        ("xapi.openai.com", False),
        ("myresource.openai.azure.com", False),
        (".api.openai.com", False),
    ],
)
def test_governed_hosts(host: str, governed: bool) -> None:
    assert OPENAI.governs(host) is governed


@pytest.mark.parametrize(
    "when, country, region, outcome, rule",
    [
        # After the cutoff: unsupported is a violation.
        ("2024-07-22", "HK", "", Outcome.VIOLATION, "openai@v188:not-listed:HK"),
        ("2024-07-09", "CN", "", Outcome.VIOLATION, "openai@v188:not-listed:CN"),
        # Before the cutoff: the same call is at risk.
        ("2024-07-08", "HK", "", Outcome.AT_RISK, "openai@v188:not-listed:HK"),
        ("2023-01-01", "RU", "", Outcome.AT_RISK, "openai@v188:not-listed:RU"),
        ("2024-07-22", "SG", "", Outcome.ALLOWED, "openai@v188:listed:SG"),
        ("2024-07-08", "US", "", Outcome.ALLOWED, "openai@v188:listed:US"),
        # Subdivisions of a listed country.
        ("2025-01-01", "UA", "UA-43", Outcome.VIOLATION, "openai@v188:subdivision-excluded:UA-43"),
        ("2025-01-01", "UA", "UA-30", Outcome.ALLOWED, "openai@v188:listed:UA"),
        ("2025-01-01", "UA", "", Outcome.ALLOWED, "openai@v188:listed-subdivision-unknown:UA"),
        # Versions: Aruba was added by the late-2026 list.
        ("2026-11-09", "AW", "", Outcome.VIOLATION, "openai@v188:not-listed:AW"),
        ("2026-11-10", "AW", "", Outcome.ALLOWED, "openai@v2026-11-expanded:listed:AW"),
        ("2026-11-20", "HK", "", Outcome.VIOLATION, "openai@v2026-11-expanded:not-listed:HK"),
        ("2026-11-20", "UA", "UA-14", Outcome.VIOLATION, "openai@v2026-11-expanded:subdivision-excluded:UA-14"),
    ],
)
def test_judge(when: str, country: str, region: str, outcome: Outcome, rule: str) -> None:
    ts = dt.datetime.fromisoformat(when).replace(hour=12, tzinfo=UTC)
    location = Location(country_code=country, region_code=region, basis="override:test")
    verdict = OPENAI.judge(make_event(ts=ts), location)
    assert (verdict.outcome, verdict.rule_id) == (outcome, rule)
    assert verdict.policy_version == rule.split(":")[0]
    assert verdict.provider == "openai"


def test_judge_uses_utc_date_of_timestamp() -> None:
    # 2024-07-09 01:00 in Hong Kong is still 2024-07-08 in UTC: before the cutoff.
    hk = dt.timezone(dt.timedelta(hours=8))
    verdict = OPENAI.judge(make_event(ts=dt.datetime(2024, 7, 9, 1, 0, tzinfo=hk)), Location("HK", basis="x"))
    assert verdict.outcome is Outcome.AT_RISK
    assert "blocking starts 2024-07-09" in verdict.reason


def test_unknown_location_is_unknown_with_its_basis() -> None:
    verdict = OPENAI.judge(make_event(), Location.unknown(basis="no-egress"))
    assert verdict.outcome is Outcome.UNKNOWN
    assert verdict.rule_id == "openai@v188:no-location"
    assert "no-egress" in verdict.reason


@pytest.mark.parametrize(
    "code, outcome",
    [("HK", Outcome.VIOLATION), ("hk", Outcome.VIOLATION), ("UA-43", Outcome.VIOLATION), ("JP", Outcome.ALLOWED), ("UA", Outcome.ALLOWED)],
)
def test_check_code(code: str, outcome: Outcome) -> None:
    assert OPENAI.check(code, dt.date(2025, 1, 1)).outcome is outcome


@pytest.mark.parametrize("bad", ["H", "HKG", "12", "UA-", "U$-1", "ÅÅ", "UA-４３"])
def test_check_rejects_non_codes(bad: str) -> None:
    with pytest.raises(PolicyError, match="is not an ISO 3166-1 country code"):
        OPENAI.check(bad)


def test_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(PolicyError, match="no policy pack for 'foo'; known providers: anthropic, gemini, openai"):
        load_policies().get("foo")


def test_needles_cover_every_governed_host() -> None:
    needles = load_policies().needles()
    for host in OPENAI.hosts:
        assert any(n in host.removeprefix("*.").encode() for n in needles)
    assert OPENAI.needles() == (b"api.openai.com", b"unsupported_country_region_territory")
    assert set(OPENAI.needles()) <= set(needles)


PACK = """
provider = "acme"
hosts = ["api.acme.test", "*.acme.test"]
[[version]]
id = "v1"
in_force_from = 2024-01-01
enforced_from = 2024-06-01
[version.supported]
US = "United States"
UA = "Ukraine"
[[version.excluded_subdivision]]
code = "UA-43"
[[version]]
id = "v2"
extends = "v1"
removed = ["US"]
in_force_from = 2025-01-01
enforced_from = 2025-01-01
[version.supported]
JP = "Japan"
"""


def test_versions_extend_and_remove() -> None:
    pack = parse_pack(tomllib.loads(PACK), "acme.toml")
    assert set(pack.version("v2").supported) == {"UA", "JP"}
    assert pack.version("v2").exclusions[0].code == "UA-43"
    assert pack.version_at(dt.date(2023, 1, 1)).id == "v1"  # earlier events: the earliest version
    assert pack.version_at(dt.date(2025, 1, 1)).id == "v2"
    us = Location("US", basis="x")
    assert pack.judge(make_event(ts=dt.datetime(2024, 12, 31, tzinfo=UTC)), us).outcome is Outcome.ALLOWED
    # Removed in v2, enforced the same day.
    assert pack.judge(make_event(ts=dt.datetime(2025, 1, 2, tzinfo=UTC)), us).outcome is Outcome.VIOLATION
    assert pack.governs("eu.acme.test") and not pack.governs("acme.test")


@pytest.mark.parametrize(
    "mutation, message",
    [
        (lambda t: t.replace('provider = "acme"\n', ""), "'provider' is missing"),
        (lambda t: t.replace('hosts = ["api.acme.test", "*.acme.test"]', "hosts = []"), "'hosts' must be a non-empty list"),
        (lambda t: t.replace('US = "United States"', 'USA = "United States"'), "'USA' is not an ISO 3166-1 alpha-2 code"),
        (lambda t: t.replace('extends = "v1"', 'extends = "v0"'), "extends 'v0', which is not an earlier version"),
        (lambda t: t.replace('removed = ["US"]', 'removed = ["FR"]'), "removed code 'FR' was not supported"),
        (lambda t: t.replace("in_force_from = 2025-01-01", "in_force_from = 2023-01-01"), "versions must be listed oldest first"),
        (lambda t: t.replace("enforced_from = 2024-06-01", 'enforced_from = "soon"'), "'enforced_from' must be a date"),
        (lambda t: t.replace('code = "UA-43"', 'code = "RU-CR"'), "'RU-CR' is not a subdivision of a supported country"),
    ],
)
def test_bad_packs_name_the_entry(mutation, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyError, match=message) as info:
        parse_pack(tomllib.loads(mutation(PACK)), "acme.toml")
    assert str(info.value).startswith("acme.toml")


def test_load_pack_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy pack"):
        load_pack(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("provider = \n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_pack(bad)
    bad.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(PolicyError, match="nested too deeply"):
        load_pack(bad)
    good = tmp_path / "acme.toml"
    good.write_text(PACK)
    assert load_pack(good).provider == "acme"


def test_provider_blocked_is_a_violation_whatever_the_location() -> None:
    for location in (Location("US", basis="mmdb:x"), Location.unknown(basis="no-egress")):
        verdict = OPENAI.judge(make_event(ts=dt.datetime(2023, 1, 1, tzinfo=UTC)), location, provider_blocked=True)
        assert verdict.outcome is Outcome.VIOLATION
        assert verdict.rule_id == "openai@v188:provider-blocked"
        assert "unsupported_country_region_territory" in verdict.reason


@pytest.mark.parametrize(
    "message, provider, host",
    [
        ('OpenAI 403 {"error":{"code":"unsupported_country_region_territory"}}', "openai", "api.openai.com"),
        ("POST https://eu.api.openai.com/v1/x -> 403 unsupported_country_region_territory", "openai", "eu.api.openai.com"),
        ("[GoogleGenerativeAI Error]: 400 User location is not supported for the API use.", "gemini", "generativelanguage.googleapis.com"),
        ("403 Forbidden from api.openai.com", None, None),
        ("unsupported country", None, None),
    ],
)
def test_blocked_messages_name_the_provider(message: str, provider: str | None, host: str | None) -> None:
    pack = load_policies().blocked_by(message)
    assert (pack.provider if pack else None) == provider
    if pack is not None:
        assert pack.named_host(message) == host


@pytest.mark.parametrize(
    "when, other, locators_disagree",
    [
        ("2024-07-22", "mmdb:T@1=US", "mmdb:T@1=US"),  # violation from HK, allowed from US
        ("2024-07-01", "mmdb:T@1=US", "mmdb:T@1=US"),  # at_risk from HK, allowed from US
        ("2024-07-22", "mmdb:T@1=CN", ""),  # not served either way
        ("2024-07-22", "cloud-region-unknown:aws:xx-east-9=", ""),  # a layer without a country
        ("2024-07-22", "mmdb:T@1=US; mmdb:T@2=MO", "mmdb:T@1=US"),  # only the answer that changes the verdict
    ],
)
def test_locators_disagree_only_where_the_other_country_changes_the_verdict(when: str, other: str, locators_disagree: str) -> None:
    location = Location(country_code="HK", basis="cloud:aws:ap-east-1", disagreements=tuple(other.split("; ")))
    event = make_event(ts=dt.datetime.fromisoformat(when + "T09:00:00+00:00"))
    verdict = OPENAI.judge(event, location)
    assert verdict.outcome is (Outcome.AT_RISK if when < "2024-07-09" else Outcome.VIOLATION)
    assert verdict.locators_disagree == locators_disagree
    # The provider's own refusal decides, whatever any layer says.
    assert OPENAI.judge(event, location, provider_blocked=True).locators_disagree == ""
    # The other way round: allowed from US, not from HK.
    flipped = Location(country_code="US", basis="override:43.198.0.0/16", disagreements=("cloud:aws:ap-east-1=HK",))
    assert OPENAI.judge(event, flipped).locators_disagree == "cloud:aws:ap-east-1=HK"
