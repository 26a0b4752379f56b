"""Overrides, the embedded database and the locator chain."""

from __future__ import annotations

import ipaddress
import os

from geoip.chain import ChainLocator
from geoip.defaults import build_locator
from geoip.embedded import cache_dir, open_embedded
from geoip.mmdb import MmdbLocator
from geoip.overrides import Override, OverrideLocator
from tests.conftest import asset


def _override(network: str, country: str, region: str = "") -> Override:
    return Override(ipaddress.ip_network(network), country, region)


def test_override_most_specific_network_wins() -> None:
    locator = OverrideLocator([_override("10.0.0.0/8", "US"), _override("10.20.0.0/16", "HK"), _override("2001:db8::/32", "SG")])
    assert locator.locate("10.20.1.5").country_code == "HK"
    assert locator.locate("10.20.1.5").basis == "override:10.20.0.0/16"
    assert locator.locate("10.99.0.1").basis == "override:10.0.0.0/8"
    assert locator.locate("::ffff:10.20.1.5").country_code == "HK"
    assert locator.locate("2001:db8::5").country_code == "SG"
    assert not locator.locate("192.0.2.1").known


def test_chain_precedence_override_then_user_db_then_next() -> None:
    user = MmdbLocator(asset("maxmind/GeoIP2-Country-Test.mmdb"))
    other = MmdbLocator(asset("maxmind/GeoLite2-Country-Test.mmdb"))
    chain = ChainLocator([OverrideLocator([_override("81.2.69.0/24", "SG")]), user, other])
    assert chain.locate("81.2.69.160").basis == "override:81.2.69.0/24"
    assert chain.locate("89.160.20.112").basis == "mmdb:GeoIP2-Country@2026-02-04"
    # 217.65.48.1 is in both; the first database answers.
    assert chain.locate("217.65.48.1").basis.startswith("mmdb:GeoIP2-Country")
    miss = chain.locate("8.8.8.8")
    assert not miss.known
    assert miss.basis.startswith("not-found:")
    assert "GeoIP2-Country@2026-02-04" in miss.basis and "GeoLite2-Country@2026-02-04" in miss.basis


def test_chain_falls_through_a_record_without_country_but_keeps_it_when_nothing_knows() -> None:
    user = MmdbLocator(asset("maxmind/GeoIP2-Country-Test.mmdb"))
    assert ChainLocator([user]).locate("214.1.1.1").basis.startswith("no-country:")
    override = OverrideLocator([_override("214.1.1.0/24", "US")])
    assert ChainLocator([user, override]).locate("214.1.1.1").basis == "override:214.1.1.0/24"


def test_embedded_database_smoke() -> None:
    locator = open_embedded()
    assert locator.database_type == "IPFire-Location-Country"
    assert locator.build_date == "2026-06-25"
    # AWS ap-east-1 (Hong Kong) and ap-southeast-1 (Singapore) NAT ranges; Google DNS.
    assert locator.locate("43.198.12.34").country_code == "HK"
    assert locator.locate("52.220.10.20").country_code == "SG"
    assert locator.locate("8.8.8.8").country_code == "US"
    assert locator.locate("2001:4860:4860::8888").country_code == "US"
    assert locator.locate("::ffff:43.198.12.34").country_code == "HK"
    for private in ("10.0.0.1", "127.0.0.1", "192.168.1.1", "::1"):
        assert not locator.locate(private).known
    # The decompressed copy is cached, and a second open uses it.
    cached = list(cache_dir().glob("ipfire-country-*.mmdb"))
    assert len(cached) == 1
    mtime = os.stat(cached[0]).st_mtime_ns
    assert open_embedded().locate("43.198.12.34").country_code == "HK"
    assert os.stat(cached[0]).st_mtime_ns == mtime


def test_embedded_database_without_writable_cache(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert open_embedded().locate("43.198.12.34").country_code == "HK"


def test_a_damaged_cached_copy_of_the_embedded_database_is_written_again(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Cut short on disk after it was written, it stopped every run with "not a valid MMDB file ...;
    # pass a MaxMind-format country database", advice about a file the user never chose.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    open_embedded()
    (cached,) = cache_dir().glob("ipfire-country-*.mmdb")
    whole = cached.read_bytes()
    cached.write_bytes(whole[:1000])
    assert open_embedded().locate("43.198.12.34").country_code == "HK"
    assert cached.read_bytes() == whole


def test_build_locator_user_database_before_embedded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chain = build_locator([_override("198.51.100.0/24", "SG")], asset("maxmind/GeoIP2-Country-Test.mmdb"))
    assert [loc.description.split(":")[0] for loc in chain.locators] == ["override", "cloud", "mmdb", "mmdb"]
    assert chain.locate("198.51.100.1").basis == "override:198.51.100.0/24"
    assert chain.locate("81.2.69.160").basis.startswith("mmdb:GeoIP2-Country")
    # AWS ap-east-1: the cloud layer answers before the country databases.
    assert chain.locate("43.198.12.34").basis == "cloud:aws:ap-east-1"
    assert chain.locators[-1].locate("43.198.12.34").basis.startswith("mmdb:IPFire-Location-Country")


def test_build_locator_finds_system_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "GeoLite2-Country.mmdb").write_bytes(asset("maxmind/GeoLite2-Country-Test.mmdb").read_bytes())
    chain = build_locator(system_dirs=(tmp_path,))
    assert chain.locate("89.160.20.112").basis == "mmdb:GeoLite2-Country@2026-02-04"


def test_disagreeing_layers_are_kept_as_evidence() -> None:
    mmdb = MmdbLocator(asset("maxmind/GeoIP2-Country-Test.mmdb"))
    chain = ChainLocator([OverrideLocator([_override("81.2.69.0/24", "SG"), _override("89.160.20.0/24", "SE")]), mmdb])
    loc = chain.locate("81.2.69.160")
    assert (loc.country_code, loc.basis) == ("SG", "override:81.2.69.0/24")
    assert loc.disagreements == ("mmdb:GeoIP2-Country@2026-02-04=GB",)
    # Agreement is not a disagreement.
    assert chain.locate("89.160.20.112").disagreements == ()
    assert [layer.basis for layer in chain.layers("81.2.69.160")] == ["override:81.2.69.0/24", "mmdb:GeoIP2-Country@2026-02-04"]


import pytest  # noqa: E402

from geoip.regions import locate_reference  # noqa: E402


@pytest.mark.parametrize(
    "ref, country, basis",
    [
        ("vercel:hkg1", "HK", "edge:vercel:hkg1"),
        ("Vercel:SIN1", "SG", "edge:vercel:sin1"),
        ("cf-ray:230b030023ae2822-HKG", "HK", "edge:cloudflare:hkg"),
        ("cloudflare:mfm", "MO", "edge:cloudflare:mfm"),
        ("fly:nrt", "JP", "edge:fly:nrt"),
        ("aws:ap-east-1", "HK", "cloud:aws:ap-east-1"),
        ("gcp:asia-east2", "HK", "cloud:gcp:asia-east2"),
        ("alibaba:ap-southeast-3", "MY", "cloud:alibaba:ap-southeast-3"),  # Jakarta on AWS, Kuala Lumpur here
        ("aws:ap-southeast-3", "ID", "cloud:aws:ap-southeast-3"),
        ("vercel:zzz9", "", "edge-region-unknown:vercel:zzz9"),
    ],
)
def test_region_references(ref: str, country: str, basis: str) -> None:
    loc = locate_reference(ref)
    assert loc is not None and (loc.country_code, loc.basis) == (country, basis)


@pytest.mark.parametrize("text", ["2001:db8::1", "::ffff:1.2.3.4", "8.8.8.8", "nosuch:hkg1", "vercel:"])
def test_not_region_references(text: str) -> None:
    assert locate_reference(text) is None
