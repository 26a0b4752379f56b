"""MMDB country databases (MaxMind DB format) read with maxminddb.

Two record layouts are understood:
- MaxMind's: `{"country": {"iso_code": "GB"}, "registered_country": {...}, "subdivisions": [...]}`
  (GeoIP2/GeoLite2 Country and City, DB-IP Lite, the embedded IPFire conversion);
- flat: `{"country_code": "GB"}` (ipinfo Lite, IPLocate and similar).

A record without a country is an unknown location: `registered_country` is kept apart and never
used in its place (a network registered in the US may be used anywhere).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from pathlib import Path
from typing import IO, Any

import maxminddb
from maxminddb.errors import InvalidDatabaseError

from geoip.interface import Location, Locator, LocatorError, normalize_ip


class DatabaseError(LocatorError):
    """An MMDB file is missing, corrupt, or not a country database."""


def _is_country_type(database_type: str) -> bool:
    kind = database_type.lower()
    return "country" in kind or "city" in kind


def _iso(value: Any) -> str:
    if isinstance(value, str) and len(value) == 2 and value.isalpha():
        return value.upper()
    return ""


class MmdbLocator(Locator):
    """Locates addresses in one MMDB country (or city) database."""

    def __init__(self, database: str | os.PathLike[str] | IO[bytes], *, label: str | None = None) -> None:
        """Open `database`: a path, or a binary file object read whole into memory.

        Raises DatabaseError with a sentence that says what to do.
        """
        name = label or str(getattr(database, "name", database))
        self.path = name
        if isinstance(database, (str, os.PathLike)):
            try:
                mode = os.stat(database).st_mode
            except OSError:
                mode = stat.S_IFREG  # missing or unreadable: said below, by the reader
            if not stat.S_ISREG(mode):
                kind = "a directory" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else "not a regular file"
                raise DatabaseError(f"{name}: is {kind}, not a GeoIP database file; pass the .mmdb file itself to --geoip-db")
        try:
            if isinstance(database, (str, os.PathLike)):
                self._reader = maxminddb.open_database(os.fspath(database))
            else:
                self._reader = maxminddb.open_database(database, maxminddb.MODE_FD)
        except FileNotFoundError as e:
            raise DatabaseError(f"{name}: no such GeoIP database; check the path given to --geoip-db") from e
        except PermissionError as e:
            raise DatabaseError(f"{name}: cannot read the GeoIP database (permission denied)") from e
        except (InvalidDatabaseError, OSError, ValueError) as e:
            raise DatabaseError(f"{name}: not a valid MMDB file ({e}); pass a MaxMind-format country database such as GeoLite2-Country.mmdb") from e
        meta = self._reader.metadata()
        self.database_type = str(meta.database_type)
        if not _is_country_type(self.database_type):
            self._reader.close()
            raise DatabaseError(
                f"{name}: is a {self.database_type} database, which has no country data; "
                "pass a Country or City database such as GeoLite2-Country.mmdb"
            )
        self.ip_version = int(meta.ip_version)
        try:
            built = dt.datetime.fromtimestamp(int(meta.build_epoch), tz=dt.UTC).date()
        except (ValueError, OverflowError, OSError):
            self._reader.close()
            raise DatabaseError(f"{name}: its build time ({meta.build_epoch}) is not a date; the file is damaged, replace it") from None
        self.build_date = built.isoformat()
        self.version = f"{self.database_type}@{self.build_date}"

    @property
    def description(self) -> str:
        return f"mmdb:{self.version}"

    @property
    def layer(self) -> str:
        return "embedded" if self.path.startswith("embedded:") else "mmdb"

    def close(self) -> None:
        self._reader.close()

    def locate(self, ip: str) -> Location:
        try:
            addr = normalize_ip(ip)
        except ValueError:
            return Location.unknown(basis=f"not-an-address:{ip}")
        if addr.version == 6 and self.ip_version == 4:
            return Location.unknown(basis=f"not-found:{self.version} is IPv4-only")
        try:
            record, prefix_len = self._reader.get_with_prefix_len(addr)
        except InvalidDatabaseError as e:
            raise DatabaseError(f"{self.path}: the database is corrupt ({e}); replace the file") from e
        network = str(ipaddress.ip_network(f"{addr}/{prefix_len}", strict=False))
        if not isinstance(record, dict):
            return Location.unknown(basis=f"not-found:{self.version}")
        country, registered, region = _read_record(record)
        if not country:
            return Location(
                country_code="",
                basis=f"no-country:{self.version}",
                registered_country_code=registered,
                network=network,
                source_version=self.version,
            )
        return Location(
            country_code=country,
            basis=f"mmdb:{self.version}",
            registered_country_code=registered,
            region_code=region,
            network=network,
            source_version=self.version,
        )


def _read_record(record: dict[str, Any]) -> tuple[str, str, str]:
    """(country, registered_country, ISO 3166-2 region) from either record layout."""
    country_obj = record.get("country")
    country = _iso(country_obj.get("iso_code")) if isinstance(country_obj, dict) else _iso(record.get("country_code"))
    registered_obj = record.get("registered_country")
    registered = _iso(registered_obj.get("iso_code")) if isinstance(registered_obj, dict) else ""
    region = ""
    subdivisions = record.get("subdivisions")
    if country and isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], dict):
        code = subdivisions[0].get("iso_code")
        if isinstance(code, str) and code.isalnum():
            region = f"{country}-{code.upper()}"
    return country, registered, region


SYSTEM_DIRS = (Path("/usr/share/GeoIP"), Path("/var/lib/GeoIP"))
"""Where geoipupdate and distribution packages put MaxMind databases."""

SYSTEM_NAMES = ("GeoIP2-Country.mmdb", "GeoLite2-Country.mmdb", "GeoIP2-City.mmdb", "GeoLite2-City.mmdb")
"""The files looked for in SYSTEM_DIRS, best first."""


def find_system_database(dirs: tuple[Path, ...] | None = None) -> Path | None:
    """The first readable MaxMind country/city database installed on this machine, if any."""
    if dirs is None:
        dirs = SYSTEM_DIRS
    for name in SYSTEM_NAMES:
        for directory in dirs:
            candidate = directory / name
            if candidate.is_file() and os.access(candidate, os.R_OK):
                return candidate
    return None
