"""Cloud providers' published IP range feeds -> `Feed` values (provider, region, prefixes, date).

Official feeds (formats in shared/reference/ip-range-feeds.md), each parsed into a `Feed`:

- AWS `ip-ranges.json`: `prefixes[].ip_prefix` / `ipv6_prefixes[].ipv6_prefix` with `region`;
  `region: GLOBAL` has no location and is skipped. Dated by `createDate` and `syncToken`.
- Google Cloud `cloud.json`: `prefixes[].ipv4Prefix` / `ipv6Prefix` with `scope` (a GCP region);
  a missing or `global` scope is skipped. Dated by `creationTime`.
- Azure Service Tags (`ServiceTags_Public_YYYYMMDD.json`): `values[].properties.addressPrefixes`
  with `properties.region`; tags with an empty region (the global tags, which repeat regional
  prefixes) are skipped. Versioned by `changeNumber` and `cloud`; the file itself has no date.
- Oracle `public_ip_ranges.json`: `regions[].region` with `regions[].cidrs[].cidr`. Dated by
  `last_updated_timestamp`.
- DigitalOcean geofeed (RFC 8805 CSV `prefix,country,region,city,postal`): the feed states the
  country itself; the region column (ISO 3166-2 style, not always valid) is kept as the region.

Pure parsing (bytes -> Feed; `read_feed_file` reads one downloaded file): geoip.update checks
downloads with it, geoip.cloud locates addresses in what it returns.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from geoip.interface import LocatorError

PROVIDERS = ("aws", "gcp", "azure", "oracle", "digitalocean")
"""Providers with per-region ranges, in the order their feeds are indexed."""

NO_LOCATION = {"aws": {"GLOBAL"}, "gcp": {"global"}}
"""Region values that say "not in one region" (skipped like an empty region)."""

DOWNLOAD_AGAIN = "download it again with `region-auditor geoip update`"
"""The fix for a damaged feed file."""

_FEED_LABELS = {
    "aws": "ip-ranges.json",
    "gcp": "cloud.json",
    "azure": "ServiceTags",
    "oracle": "public_ip_ranges.json",
    "digitalocean": "geofeed",
}


class FeedError(LocatorError):
    """A cloud range feed (downloaded or bundled) is missing, damaged or not in its format.

    Messages are one sentence: `<file>: <what is wrong>; <what to do>`."""


class CloudRange(NamedTuple):
    """One published prefix with a location."""

    network: str
    """The prefix as the feed writes it (`43.198.0.0/15`)."""
    region: str
    """The provider's region code (`ap-east-1`), or the geofeed's region (`SG-05`)."""
    country: str = ""
    """ISO 3166-1 alpha-2 country when the feed itself states it (geofeeds), else ""."""


@dataclass(frozen=True)
class Feed:
    """One provider's ranges from one source, with the date and serial of the data."""

    provider: str
    """`aws`, `gcp`, `azure`, `oracle` or `digitalocean`."""
    label: str
    """The data set: `ip-ranges.json`, `cloud.json`, `ServiceTags_Public`, ..., or `cloudip-db`."""
    published: str
    """When the provider published the data, as precise as the source says
    (`2026-11-27T21:03:13Z`, `2026-10-26`); "" when unknown."""
    serial: str
    """The source's own version marker (`syncToken=1795891393`, `changeNumber=347`), or ""."""
    ranges: tuple[CloudRange, ...]
    """Prefixes with a location."""
    skipped: int = 0
    """Prefixes without a location (AWS `GLOBAL`, Azure global tags, GCP `global`), not used."""

    @property
    def date(self) -> dt.date | None:
        """The day the data was published, when known."""
        return dt.date.fromisoformat(self.published[:10]) if self.published else None

    @property
    def version(self) -> str:
        """`source_version` of the answers from this feed: `aws:ip-ranges.json@2026-11-27T21:03:13Z/syncToken=1795891393`."""
        text = f"{self.provider}:{self.label}"
        if self.published:
            text += f"@{self.published}"
        if self.serial:
            text += f"/{self.serial}"
        return text


# ---------------------------------------------------------------------------------------------
# Parsers: bytes of one official feed -> Feed. Every problem is a FeedError naming the file.


def prefix_key(text: str) -> tuple[int, int, int]:
    """(IP version, network bits, prefix length) of a CIDR; ValueError when it is not one.

    Host bits are ignored (`10.0.0.1/8` is 10.0.0.0/8). Faster than ipaddress for 100k prefixes.
    """
    addr, slash, length = text.strip().partition("/")
    if ":" in addr:
        family, bits, version = socket.AF_INET6, 128, 6
    else:
        family, bits, version = socket.AF_INET, 32, 4
    try:
        value = int.from_bytes(socket.inet_pton(family, addr), "big")
    except OSError:
        raise ValueError(f"not an IP prefix: {text!r}") from None
    if not slash:
        plen = bits
    elif length.isascii() and length.isdigit() and int(length) <= bits:
        plen = int(length)
    else:
        raise ValueError(f"not an IP prefix: {text!r}")
    return version, value >> (bits - plen), plen


def memo_key(keys: dict[str, tuple[int, int, int]]) -> Any:
    """prefix_key remembering its answers in `keys`."""

    def parse(text: str) -> tuple[int, int, int]:
        found = keys.get(text)
        if found is None:
            found = keys[text] = prefix_key(text)
        return found

    return parse


def _load_json(data: bytes, name: str, what: str) -> Any:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        raise FeedError(f"{name}: is an HTML or XML page, not {what}; check the URL or " + DOWNLOAD_AGAIN)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # decode errors, and integers over 4300 digits
        raise FeedError(f"{name}: is not valid JSON, it is truncated or damaged ({str(e)[:200]}); " + DOWNLOAD_AGAIN) from None


def _shape_error(name: str, what: str, detail: str) -> FeedError:
    return FeedError(f"{name}: is not {what} ({detail}); check the URL or " + DOWNLOAD_AGAIN)


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _checked(name: str, where: str, prefix: Any) -> str:
    if not isinstance(prefix, str):
        raise FeedError(f"{name}: {where} has no prefix; " + DOWNLOAD_AGAIN)
    try:
        prefix_key(prefix)
    except ValueError:
        raise FeedError(f"{name}: {where} has an invalid prefix {prefix!r}; " + DOWNLOAD_AGAIN) from None
    return prefix.strip()


def _iso_utc(moment: dt.datetime) -> str:
    return moment.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def parse_aws(data: bytes, name: str = "ip-ranges.json") -> Feed:
    """AWS `ip-ranges.json`. `region: GLOBAL` (and an empty region) is skipped."""
    what = "an AWS ip-ranges.json feed"
    doc = _load_json(data, name, what)
    if not isinstance(doc, dict) or not isinstance(doc.get("prefixes"), list):
        raise _shape_error(name, what, "no 'prefixes' list")
    v6 = doc.get("ipv6_prefixes", [])
    if not isinstance(v6, list):
        raise _shape_error(name, what, "'ipv6_prefixes' is not a list")
    published = ""
    created = _str(doc.get("createDate"))
    if created:
        try:
            published = _iso_utc(dt.datetime.strptime(created, "%Y-%m-%d-%H-%M-%S").replace(tzinfo=dt.UTC))  # AWS writes UTC
        except ValueError:
            raise _shape_error(name, what, f"createDate {created!r} is not yyyy-mm-dd-hh-mm-ss") from None
    token = doc.get("syncToken")
    serial = f"syncToken={token}" if isinstance(token, (str, int)) and str(token) else ""
    ranges: list[CloudRange] = []
    skipped = 0
    for key, entries in (("ip_prefix", doc["prefixes"]), ("ipv6_prefix", v6)):
        field = "prefixes" if key == "ip_prefix" else "ipv6_prefixes"
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise _shape_error(name, what, f"{field}[{i}] is not an object")
            prefix = _checked(name, f"{field}[{i}]", entry.get(key))
            region = _str(entry.get("region"))
            if not region or region in NO_LOCATION["aws"]:
                skipped += 1
                continue
            ranges.append(CloudRange(prefix, region.lower()))
    return Feed("aws", _FEED_LABELS["aws"], published, serial, tuple(ranges), skipped)


def _iso_field(doc: dict[str, Any], key: str, name: str, what: str) -> str:
    """An ISO 8601 time field of a feed, as UTC text; "" when absent."""
    stamp = _str(doc.get(key))
    if not stamp:
        return ""
    try:
        # FURB162 kept: the replace also takes "2024-01-01Z" (as midnight), which fromisoformat alone refuses.
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: FURB162
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC)  # OverflowError for year 1 east of UTC
    except (ValueError, OverflowError):
        raise _shape_error(name, what, f"{key} {stamp!r} is not an ISO 8601 time") from None
    return _iso_utc(moment)


def parse_gcp(data: bytes, name: str = "cloud.json") -> Feed:
    """Google Cloud `cloud.json`. A missing or `global` scope is skipped."""
    what = "a Google Cloud cloud.json feed"
    doc = _load_json(data, name, what)
    if not isinstance(doc, dict) or not isinstance(doc.get("prefixes"), list):
        raise _shape_error(name, what, "no 'prefixes' list")
    published = _iso_field(doc, "creationTime", name, what)
    token = doc.get("syncToken")
    serial = f"syncToken={token}" if isinstance(token, (str, int)) and str(token) else ""
    ranges: list[CloudRange] = []
    skipped = 0
    for i, entry in enumerate(doc["prefixes"]):
        if not isinstance(entry, dict):
            raise _shape_error(name, what, f"prefixes[{i}] is not an object")
        prefix = _checked(name, f"prefixes[{i}]", entry.get("ipv4Prefix") or entry.get("ipv6Prefix"))
        scope = _str(entry.get("scope"))
        if not scope or scope.lower() in NO_LOCATION["gcp"]:
            skipped += 1
            continue
        ranges.append(CloudRange(prefix, scope.lower()))
    return Feed("gcp", _FEED_LABELS["gcp"], published, serial, tuple(ranges), skipped)


def parse_azure(data: bytes, name: str = "ServiceTags_Public.json", published: str = "") -> Feed:
    """Azure Service Tags JSON. Tags with an empty region carry no location and are skipped.

    The file has no date: `published` is the one the caller knows (the `YYYYMMDD` of the
    download's file name), else the result has none.
    """
    what = "an Azure Service Tags file"
    doc = _load_json(data, name, what)
    if not isinstance(doc, dict) or not isinstance(doc.get("values"), list):
        raise _shape_error(name, what, "no 'values' list")
    cloud = _str(doc.get("cloud")) or "Public"
    change = doc.get("changeNumber")
    serial = f"changeNumber={change}" if isinstance(change, (str, int)) and str(change) else ""
    ranges: list[CloudRange] = []
    skipped = 0
    for i, value in enumerate(doc["values"]):
        props = value.get("properties") if isinstance(value, dict) else None
        if not isinstance(props, dict) or not isinstance(props.get("addressPrefixes", []), list):
            raise _shape_error(name, what, f"values[{i}] has no 'properties.addressPrefixes' list")
        region = _str(props.get("region")).lower()
        for j, prefix in enumerate(props.get("addressPrefixes", [])):
            prefix = _checked(name, f"values[{i}].properties.addressPrefixes[{j}]", prefix)
            if not region:
                skipped += 1
                continue
            ranges.append(CloudRange(prefix, region))
    return Feed("azure", f"{_FEED_LABELS['azure']}_{cloud}", published, serial, tuple(ranges), skipped)


def parse_oracle(data: bytes, name: str = "public_ip_ranges.json") -> Feed:
    """Oracle Cloud `public_ip_ranges.json`."""
    what = "an Oracle Cloud public_ip_ranges.json feed"
    doc = _load_json(data, name, what)
    if not isinstance(doc, dict) or not isinstance(doc.get("regions"), list):
        raise _shape_error(name, what, "no 'regions' list")
    published = _iso_field(doc, "last_updated_timestamp", name, what)
    ranges: list[CloudRange] = []
    skipped = 0
    for i, block in enumerate(doc["regions"]):
        if not isinstance(block, dict) or not isinstance(block.get("cidrs"), list):
            raise _shape_error(name, what, f"regions[{i}] has no 'cidrs' list")
        region = _str(block.get("region")).lower()
        for j, entry in enumerate(block["cidrs"]):
            if not isinstance(entry, dict):
                raise _shape_error(name, what, f"regions[{i}].cidrs[{j}] is not an object")
            prefix = _checked(name, f"regions[{i}].cidrs[{j}]", entry.get("cidr"))
            if not region:
                skipped += 1
                continue
            ranges.append(CloudRange(prefix, region))
    return Feed("oracle", _FEED_LABELS["oracle"], published, "", tuple(ranges), skipped)


COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")
"""An ISO 3166-1 alpha-2 code as geofeeds write it."""


def parse_geofeed(data: bytes, name: str = "geofeed.csv", provider: str = "digitalocean", published: str = "") -> Feed:
    """An RFC 8805 geofeed (`prefix,country,region,city,postal`; `#` comments).

    The country column is the location; a row without a valid alpha-2 country is skipped. The
    region column is kept as the region (the country when it is empty). No date in the format:
    `published` is the one the caller knows.
    """
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<")) or data[:2] == b"\x1f\x8b":
        raise FeedError(f"{name}: is not a geofeed CSV (an HTML page or compressed data); check the URL or " + DOWNLOAD_AGAIN)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FeedError(f"{name}: is not a UTF-8 geofeed CSV; check the URL or " + DOWNLOAD_AGAIN) from None
    ranges: list[CloudRange] = []
    skipped = 0
    try:
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            prefix = _checked(name, f"line {lineno}", row[0])
            country = row[1].strip().upper() if len(row) > 1 else ""
            region = row[2].strip() if len(row) > 2 else ""
            if not COUNTRY_CODE.match(country):
                skipped += 1
                continue
            ranges.append(CloudRange(prefix, region or country, country))
    except csv.Error as e:  # a field over csv's limit (128 KiB), a NUL
        raise FeedError(f"{name}: is not a geofeed CSV ({e}); check the URL or " + DOWNLOAD_AGAIN) from None
    return Feed(provider, _FEED_LABELS.get(provider, "geofeed"), published, "", tuple(ranges), skipped)


def parse_feed(provider: str, data: bytes, name: str, published: str = "") -> Feed:
    """Parse one provider's official feed; `published` is used for formats without a date."""
    if provider == "aws":
        return parse_aws(data, name)
    if provider == "gcp":
        return parse_gcp(data, name)
    if provider == "azure":
        return parse_azure(data, name, published)
    if provider == "oracle":
        return parse_oracle(data, name)
    if provider == "digitalocean":
        return parse_geofeed(data, name, provider, published)
    raise ValueError(f"unknown cloud provider {provider!r}; known: {', '.join(PROVIDERS)}")


def read_feed_file(provider: str, path: Path) -> Feed:
    """A feed downloaded by geoip.update. For Azure and geofeeds (no date inside) the file's
    modification time is the data's date: the updater sets it to the date it established."""
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as e:
        raise FeedError(f"{path}: cannot read the {provider} range feed ({e.strerror}); fix its permissions or delete it") from e
    published = ""
    if provider in ("azure", "digitalocean"):
        published = dt.datetime.fromtimestamp(mtime, tz=dt.UTC).date().isoformat()
    return parse_feed(provider, data, str(path), published)
