"""The values between stages: quick_init keeps every dataclass behaviour of a frozen class."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle

import pytest

from auditor.events import ConnectionEvent, quick_init

TS = dt.datetime(2024, 7, 15, 9, 10, 11, tzinfo=dt.timezone.utc)


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

    with pytest.raises(TypeError, match="WithFactory.items"):
        quick_init(WithFactory)
