"""The values between stages: quick_init keeps every dataclass behaviour of a frozen class."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import pickle

import pytest

from auditor.events import ConnectionEvent, quick_init

TS = dt.datetime(2024, 7, 15, 9, 10, 11, tzinfo=dt.UTC)


def test_defaults_keywords_and_positions_are_the_dataclass_ones() -> None:
    event = ConnectionEvent(TS, "10.20.1.5", "api.openai.com", "a.log:1", resp_p=443)
    assert (event.ts, event.orig_h, event.server_name, event.source) == (TS, "10.20.1.5", "api.openai.com", "a.log:1")
    assert (event.orig_p, event.resp_h, event.resp_p, event.proto, event.status, event.raw) == (0, "", 443, "tcp", 0, "")
    with pytest.raises(TypeError):
        ConnectionEvent(TS, "10.20.1.5")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ConnectionEvent(TS, "10.20.1.5", "api.openai.com", "a.log:1", colour="red")  # type: ignore[call-arg]


def test_still_frozen_equal_hashable_replaceable_and_picklable() -> None:
    event = ConnectionEvent(TS, "10.20.1.5", "api.openai.com", "a.log:1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.orig_h = "10.0.0.1"  # type: ignore[misc]
    twin = ConnectionEvent(TS, "10.20.1.5", "api.openai.com", "a.log:1")
    assert event == twin and hash(event) == hash(twin) and len({event, twin}) == 1
    moved = dataclasses.replace(event, source="a.log:9")
    assert moved.source == "a.log:9" and moved.orig_h == "10.20.1.5" and moved != event
    assert pickle.loads(pickle.dumps(moved)) == moved
    assert "server_name='api.openai.com'" in repr(event)


def test_fields_it_cannot_fill_are_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class WithFactory:
        items: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match=r"WithFactory.items"):
        quick_init(WithFactory)


def test_auditor_tally_is_tally_of_audit() -> None:
    """The runner's fused path (Findings only for samples) gives the Tallies of the plain path:
    groups per org, egress, day and verdict, counts past the sample cap, first and last seen out of
    order, calls the provider refused, and events that call no governed host."""
    from auditor.attribution import Attributor
    from auditor.config import parse_config
    from auditor.events import SAMPLES, tally
    from auditor.pipeline import Auditor
    from geoip.chain import ChainLocator
    from geoip.overrides import OverrideLocator
    from rules.policy import load_policies
    from tests.conftest import make_event

    config = parse_config(
        {
            "site": [{"name": "hk", "networks": ["10.20.0.0/16"], "egress_ip": "203.0.113.10"}],
            "org": [{"name": "acme", "networks": ["10.20.1.0/24"]}],
            "override": [{"network": "203.0.113.0/24", "country": "HK"}],
        },
        "test.toml",
    )
    refusal = '{"error": {"code": "unsupported_country_region_territory", "message": "Country, region, or territory not supported"}}'
    events = []
    for i in range(12 * SAMPLES):
        day = 8 + i % 3  # 8 July: before OpenAI's cutoff; 9 and 10: after
        events.append(
            make_event(
                ts=dt.datetime(2024, 7, day, 12, (i * 7) % 60, tzinfo=dt.UTC),
                orig_h=f"10.20.{1 + i % 2}.{i}",
                source=f"a.log:{i + 1}",
                message=refusal if i % 4 == 0 else "",
            )
        )
    events += [make_event(orig_h="192.168.7.7", source="a.log:90"), make_event(server_name="github.com", source="a.log:91")]
    source = config.source("a.log")

    def auditor() -> Auditor:
        return Auditor(load_policies(), ChainLocator([OverrideLocator(config.overrides)]), Attributor(config))

    plain, fused = tally(auditor().audit(events, source)), auditor().tally(events, source)
    assert fused == plain
    assert sum(t.calls for t in fused) == len(events) - 1  # github.com is not governed
    assert {t.org for t in fused} == {"acme", "unattributed"} and {t.verdict for t in fused} >= {"at_risk", "violation", "unknown"}
    assert sum(t.blocked_calls for t in fused) == len(range(0, 12 * SAMPLES, 4))
    assert max(t.calls for t in fused) > SAMPLES and all(len(t.samples) == min(t.calls, SAMPLES) for t in fused)
    assert all(t.first_seen < t.last_seen for t in fused if t.calls > 1)


def test_a_tally_says_locators_disagree_when_any_of_its_calls_does() -> None:
    """The first calls of a group may be ones the provider refused (their verdict rests on no
    layer); the group still says that the verdict of the others does, on both paths."""
    from auditor.attribution import Attributor
    from auditor.config import parse_config
    from auditor.events import tally
    from auditor.pipeline import Auditor
    from geoip.chain import ChainLocator
    from geoip.overrides import Override, OverrideLocator
    from rules.policy import load_policies
    from tests.conftest import make_event

    config = parse_config(
        {
            "site": [{"name": "hk", "networks": ["10.20.0.0/16"], "egress_ip": "203.0.113.10"}],
            "override": [{"network": "203.0.113.0/24", "country": "HK"}],
        },
        "test.toml",
    )
    second = OverrideLocator([Override(ipaddress.ip_network("203.0.112.0/23"), "US")])  # a later layer that says US
    refusal = '{"error": {"code": "unsupported_country_region_territory"}}'
    events = [make_event(orig_h="10.20.1.5", source=f"a.log:{i}", message=refusal if i < 2 else "") for i in range(4)]
    source = config.source("a.log")

    def auditor() -> Auditor:
        return Auditor(load_policies(), ChainLocator([OverrideLocator(config.overrides), second]), Attributor(config))

    for tallies in (tally(auditor().audit(events, source)), auditor().tally(events, source)):
        (t,) = tallies
        assert (t.country, t.verdict, t.calls, t.blocked_calls) == ("HK", "violation", 4, 2)
        assert t.locators_disagree == "override:203.0.112.0/23=US"
        assert [f.verdict.locators_disagree for f in t.samples] == ["", "", "override:203.0.112.0/23=US", "override:203.0.112.0/23=US"]
