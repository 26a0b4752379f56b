"""MmdbLocator against MaxMind's known-answer test databases and tiny databases written here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geoip.mmdb import DatabaseError, MmdbLocator, find_system_database
from tests.conftest import asset

COUNTRY_DBS = ["GeoIP2-Country-Test.mmdb", "GeoLite2-Country-Test.mmdb", "GeoIP2-City-Test.mmdb"]

# (address, country, registered_country) known answers from shared/geoip-testdata/README.md,
# true in every database of COUNTRY_DBS.
KNOWN = [
    ("81.2.69.160", "GB", "US"),
    ("2.125.160.216", "GB", "FR"),
    ("89.160.20.112", "SE", "DE"),
    ("216.160.83.56", "US", "GB"),
    ("67.43.156.1", "BT", "RO"),
    ("202.196.224.1", "PH", "PH"),
    ("2001:218::1", "JP", "JP"),
    # IPv4-mapped and 6to4 spellings of 81.2.69.160 are normalised to IPv4 first.
    ("::ffff:81.2.69.160", "GB", "US"),
    ("2002:5102:45a0::1", "GB", "US"),
]


@pytest.mark.parametrize("db", COUNTRY_DBS)
@pytest.mark.parametrize("ip, country, registered", KNOWN)
def test_known_answers(db: str, ip: str, country: str, registered: str) -> None:
    loc = MmdbLocator(asset(f"maxmind/{db}")).locate(ip)
    assert (loc.country_code, loc.registered_country_code) == (country, registered)
    assert loc.basis.startswith("mmdb:Geo") and loc.basis.endswith("@2026-02-04")
    assert loc.source_version == loc.basis.removeprefix("mmdb:")


def test_basis_names_database_type_and_build_date() -> None:
    locator = MmdbLocator(asset("maxmind/GeoLite2-Country-Test.mmdb"))
    assert locator.description == "mmdb:GeoLite2-Country@2026-02-04"
    loc = locator.locate("89.160.20.112")
    assert loc.basis == "mmdb:GeoLite2-Country@2026-02-04"
    assert loc.network == "89.160.20.112/28"


@pytest.mark.parametrize("db", ["GeoIP2-Country-Test.mmdb", "GeoIP2-City-Test.mmdb"])
def test_record_without_country_is_unknown_never_registered_country(db: str) -> None:
    # 214.1.1.1: traits.is_anycast, no country. 2a02:d500::1: continent only.
    locator = MmdbLocator(asset(f"maxmind/{db}"))
    for ip in ("214.1.1.1", "2a02:d500::1"):
        loc = locator.locate(ip)
        assert not loc.known
        assert loc.country_code == ""
        assert loc.basis.startswith("no-country:")


def test_city_database_gives_subdivision() -> None:
    loc = MmdbLocator(asset("maxmind/GeoIP2-City-Test.mmdb")).locate("81.2.69.160")
    assert loc.region_code == "GB-ENG"


def test_address_not_in_database_is_unknown() -> None:
    loc = MmdbLocator(asset("maxmind/GeoIP2-Country-Test.mmdb")).locate("8.8.8.8")
    assert not loc.known
    assert loc.basis == "not-found:GeoIP2-Country@2026-02-04"


def test_text_that_is_not_an_address_is_unknown_not_an_error() -> None:
    loc = MmdbLocator(asset("maxmind/GeoIP2-Country-Test.mmdb")).locate("proxy.example.com")
    assert loc.basis == "not-an-address:proxy.example.com"


def test_flat_country_code_layout(write_mmdb) -> None:  # type: ignore[no-untyped-def]
    path = write_mmdb(
        {"198.51.100.0/24": {"country_code": "sg", "asn": "AS64500"}, "2001:db8::/32": {"country_code": "HK"}}, database_type="ipinfo ip_country.mmdb"
    )
    locator = MmdbLocator(path)
    assert locator.locate("198.51.100.7").country_code == "SG"
    assert locator.locate("2001:db8::1").country_code == "HK"
    assert locator.locate("::ffff:198.51.100.7").country_code == "SG"
    assert locator.locate("2002:c633:6407::").country_code == "SG"  # 6to4 of 198.51.100.7


def test_ipv4_only_database(write_mmdb) -> None:  # type: ignore[no-untyped-def]
    path = write_mmdb({"203.0.113.0/24": {"country": {"iso_code": "HK"}}}, ip_version=4, database_type="Test-Country-IPv4")
    locator = MmdbLocator(path)
    assert locator.locate("203.0.113.9").country_code == "HK"
    assert locator.locate("::ffff:203.0.113.9").country_code == "HK"
    loc = locator.locate("2001:db8::1")
    assert not loc.known
    assert "IPv4-only" in loc.basis


def test_garbage_codes_are_not_countries(write_mmdb) -> None:  # type: ignore[no-untyped-def]
    path = write_mmdb({"192.0.2.0/24": {"country": {"iso_code": "??"}}, "198.51.100.0/24": {"country_code": 7}})
    locator = MmdbLocator(path)
    assert not locator.locate("192.0.2.1").known
    assert not locator.locate("198.51.100.1").known


def test_non_country_database_is_rejected() -> None:
    with pytest.raises(DatabaseError, match=r"GeoIP2-Anonymous-IP database, which has no country data; pass a Country or City"):
        MmdbLocator(asset("maxmind/GeoIP2-Anonymous-IP-Test.mmdb"))


def test_corrupt_database_is_rejected() -> None:
    with pytest.raises(DatabaseError, match="not a valid MMDB file"):
        MmdbLocator(asset("maxmind/GeoIP2-City-Test-Invalid-Node-Count.mmdb"))


def test_file_that_is_not_mmdb(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bogus = tmp_path / "GeoLite2-Country.mmdb"
    bogus.write_bytes(b"<html>404 Not Found</html>\n" * 10)
    with pytest.raises(DatabaseError, match="not a valid MMDB file"):
        MmdbLocator(bogus)


def test_missing_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatabaseError, match="no such GeoIP database; check the path given to --geoip-db"):
        MmdbLocator(tmp_path / "nope.mmdb")


def test_system_database_search(tmp_path) -> None:  # type: ignore[no-untyped-def]
    empty, full = tmp_path / "a", tmp_path / "b"
    empty.mkdir()
    full.mkdir()
    assert find_system_database((empty, full)) is None
    (full / "GeoLite2-City.mmdb").write_bytes(b"x")
    (full / "GeoLite2-Country.mmdb").write_bytes(b"x")
    # Country beats City, whatever directory order.
    assert find_system_database((empty, full)) == full / "GeoLite2-Country.mmdb"


def test_a_fifo_or_directory_as_the_database_is_refused_not_read(tmp_path: Path) -> None:
    """A named pipe with no writer would block the open forever."""
    fifo = tmp_path / "geo.mmdb"
    os.mkfifo(fifo)
    with pytest.raises(DatabaseError, match=r"geo.mmdb: is a pipe, not a GeoIP database file; pass the .mmdb file itself to --geoip-db"):
        MmdbLocator(str(fifo))
    with pytest.raises(DatabaseError, match="is a directory, not a GeoIP database file"):
        MmdbLocator(str(tmp_path))
