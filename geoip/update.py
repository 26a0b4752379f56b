"""`region-auditor geoip update`: download the official cloud range feeds and country databases
into a local cache.

Each source is downloaded into a temporary file in the cache directory, validated (feeds are
parsed with geoip.feeds and must hold a sane number of located prefixes; databases are opened
with geoip.mmdb.MmdbLocator, which refuses corrupt and non-country files), and only then moved
over the previous copy with `os.replace` (atomic). A bad download leaves the previous copy in
place and is reported in that source's result; the other sources go on.

Sources (official URLs; each can be overridden, e.g. to a mirror or a test server):
- AWS ip-ranges.json, Google Cloud cloud.json, Azure Service Tags (found through the Microsoft
  Download Center page, whose link names the file's date), Oracle public_ip_ranges.json, the
  DigitalOcean geofeed;
- DB-IP IP to Country Lite (monthly `dbip-country-lite-YYYY-MM.mmdb.gz`, CC BY 4.0): this month's,
  else last month's;
- MaxMind GeoLite2/GeoIP2 Country or City (tar.gz with the .mmdb inside), with a license key:
  with an account id, MaxMind's permalink and HTTP Basic authentication (the credentials are
  not sent on to the storage host MaxMind redirects to); without one, the legacy URL that takes
  the key as a query parameter.
- IPFire Location is not downloaded: it is published as `location.db` in libloc's own signed
  format (no MMDB or text form to validate here); the embedded database is IPFire's data.

How a download is authenticated (docs/security.md, "How updates are verified"): TLS with
certificate and host name verification; plain `http://` only with `allow_http` (a local mirror),
and never after an `https://` URL (a redirect or Azure's page link that downgrades is refused);
each official source may come only from the hosts of OFFICIAL_HOSTS (redirects and Azure's page
link included), a mirror only from its own host; MaxMind archives must match the SHA-256 MaxMind
publishes beside them; and a feed is refused unless `accept_changes` when, put in place of the
provider's feed in use, it changes the country the whole locator gives (the other providers' feeds,
then the country databases) in a way that changes a verdict (`locator_changes`, `verdict_changes`),
or when more than MOVE_SHARE of the provider's prefixes move to another country (`feed_moves`).

The cache directory is `$XDG_DATA_HOME/region-auditor/geoip` (`~/.local/share/...`), created
0700; files are written 0600. geoip.defaults.build_locator reads it: feeds at least as recent as
the bundled snapshot replace it (geoip.cloud.load_feeds), and a downloaded country database
comes before the embedded one (`downloaded_database`).

This module says what to fetch and where it goes; geoip.download does the transfer, imported only
when something is downloaded.
"""

from __future__ import annotations

import bisect
import datetime as dt
import ipaddress
import os
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from geoip import regions
from geoip.cloud import FEED_FILES, CloudRangeLocator
from geoip.feeds import PROVIDERS, Feed, FeedError, memo_key, prefix_key, read_feed_file
from geoip.interface import Location, Locator

OK = "ok"
"""The new copy was validated and is in place."""
KEPT = "kept-previous"
"""The download was bad; the previous copy is still in place."""
FAILED = "failed"
"""The download was bad and there is no previous copy."""

FEED_URLS = {
    "aws": "https://ip-ranges.amazonaws.com/ip-ranges.json",
    "gcp": "https://www.gstatic.com/ipranges/cloud.json",
    "azure": "https://www.microsoft.com/en-us/download/details.aspx?id=56519",
    "oracle": "https://docs.oracle.com/iaas/tools/public_ip_ranges.json",
    "digitalocean": "https://digitalocean.com/geo/google.csv",
}
"""Official URL of each provider's feed (Azure: the Download Center page that links the file)."""

MIN_PREFIXES = {"aws": 4000, "gcp": 250, "azure": 10000, "oracle": 250, "digitalocean": 250}
"""Fewest located prefixes a downloaded feed must hold: about a quarter of what the feeds held
in 2026-10 (AWS 16.9k, GCP 1.1k, Azure 53k, Oracle 1.1k, DigitalOcean 1.2k)."""

DBIP = "dbip-country-lite"
DBIP_URL = "https://download.db-ip.com/free/dbip-country-lite-{month}.mmdb.gz"
"""DB-IP Lite country database, monthly; `{month}` is `YYYY-MM`."""

MAXMIND_URL = "https://download.maxmind.com/geoip/databases/{edition}/download?suffix=tar.gz"
"""MaxMind's permalink; HTTP Basic authentication with account id and license key."""
MAXMIND_LEGACY_URL = "https://download.maxmind.com/app/geoip_download?edition_id={edition}&license_key={license_key}&suffix=tar.gz"
"""MaxMind's older URL with the license key as a query parameter (no account id needed)."""
MAXMIND_STORAGE_HOST = "mm-prod-geoip-databases.a2649acb697e2c09b632799562c076f2.r2.cloudflarestorage.com"
"""Where MaxMind redirects database downloads (R2 presigned URLs, since 2024-01; dev.maxmind.com
"Updating GeoIP and GeoLite Databases")."""
MAXMIND_EDITIONS = ("GeoIP2-Country", "GeoIP2-City", "GeoLite2-Country", "GeoLite2-City")
"""Editions with country data, best first."""

DATABASE_FILES = (*(f"{edition}.mmdb" for edition in MAXMIND_EDITIONS), f"{DBIP}.mmdb")
"""Downloaded country databases in the cache directory, in order of preference."""

OFFICIAL_HOSTS = {
    "aws": ("ip-ranges.amazonaws.com",),
    "gcp": ("www.gstatic.com",),
    "azure": ("www.microsoft.com", "download.microsoft.com"),
    "oracle": ("docs.oracle.com",),
    "digitalocean": ("digitalocean.com", "www.digitalocean.com"),
    DBIP: ("download.db-ip.com",),
    "maxmind": ("download.maxmind.com", MAXMIND_STORAGE_HOST),
}
"""The only hosts an official source may be downloaded from, redirects included: Azure's
Download Center page (www.microsoft.com) links the file on download.microsoft.com; MaxMind
redirects to its R2 storage host. A source moved to a mirror may come only from the mirror's host."""

MOVE_SHARE = 0.05
"""Largest share of a feed's prefixes (in the data in use) that may move to another country in
one update without `accept_changes`, when no move changes a verdict. A week of a provider's
changes adds and withdraws prefixes and re-homes a few between regions; prefixes that change
country are rare, so a twentieth of them moving at once is a substituted or broken feed."""
SHOWN_MOVES = 20
"""Moves listed in a result (the count says how many there are)."""

DEFAULT_TIMEOUT = 60.0
"""Seconds without data before a download is abandoned."""
MAX_BYTES = 512 * 1024 * 1024
"""Largest download (and decompressed database) accepted."""
USER_AGENT = "region-auditor-geoip-update"

Progress = Callable[[str, int, "int | None"], None]
"""progress(source name, bytes received, total bytes or None when the server does not say)."""
VerdictChange = Callable[[str, str], bool]
"""verdict_changes(old country, new country): True when an address moving from one to the other
changes some policy's verdict ("" is an unknown country)."""


@dataclass(frozen=True)
class Source:
    """One thing to download."""

    name: str
    """`aws`, `gcp`, `azure`, `oracle`, `digitalocean`, `dbip-country-lite`, or a MaxMind edition."""
    url: str = field(repr=False)
    """Where to get it (not in repr: MaxMind's legacy URL holds the license key). DB-IP's contains `{month}`; Azure's may be the Download Center page
    (the file's link is looked up in it) or the `ServiceTags_Public_YYYYMMDD.json` file itself."""
    filename: str
    """Name of the file in the cache directory."""
    kind: str
    """`feed` (parsed with geoip.feeds) or `mmdb` (opened with geoip.mmdb)."""
    packing: str = ""
    """`gzip`, `tar.gz`, or "" for the file itself."""
    min_prefixes: int = 0
    """Feeds: fewest located prefixes accepted."""
    account_id: str = field(default="", repr=False)
    """MaxMind account id (HTTP Basic user)."""
    license_key: str = field(default="", repr=False)
    """MaxMind license key (HTTP Basic password); never shown in messages."""
    hosts: tuple[str, ...] = ()
    """Hosts the download may come from, redirects and Azure's page link included (lower case);
    empty: only the host of `url`."""
    checksum_url: str = field(default="", repr=False)
    """Where the SHA-256 of the download is published (MaxMind), "" when none is."""

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """`hosts`, else the host of `url`."""
        return self.hosts or (_host(self.url),)


@dataclass(frozen=True)
class UpdateResult:
    """What happened to one source."""

    source: str
    """Source name."""
    status: str
    """OK, KEPT or FAILED."""
    path: str
    """The file in the cache directory ("" when there is none)."""
    bytes: int
    """Bytes received from the server in this run."""
    date: str
    """Date of the data now in place (feed publication, database build), "" when none or unknown."""
    message: str
    """One sentence for humans: what is in place, or what went wrong and what was kept."""
    url: str = ""
    """The URL downloaded (license keys masked)."""
    changes: tuple[str, ...] = ()
    """Feeds: prefixes that move to another country against the data in use
    (`43.198.0.0/16: HK -> US`), at most SHOWN_MOVES; refused, or installed with accept_changes."""

    @property
    def ok(self) -> bool:
        """True when the new copy is in place."""
        return self.status == OK


def default_dir() -> Path:
    """`$XDG_DATA_HOME/region-auditor/geoip`, else `~/.local/share/region-auditor/geoip`."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "region-auditor" / "geoip"


def downloaded_database(directory: Path | None = None) -> Path | None:
    """The best country database `geoip update` put in `directory` (default `default_dir()`):
    GeoIP2 before GeoLite2 before DB-IP; None when there is none."""
    directory = default_dir() if directory is None else directory
    for name in DATABASE_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _rebase(url: str, base_url: str) -> str:
    """`url` with the scheme and host of `base_url` (a mirror that serves the official paths)."""
    if not base_url:
        return url
    try:
        base = urllib.parse.urlsplit(base_url)
    except ValueError as e:
        raise ValueError(f"the base URL {base_url!r} is not a valid URL ({e})") from None
    parts = urllib.parse.urlsplit(url)
    path = base.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def _host(url: str) -> str:
    try:
        return (urllib.parse.urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _hosts(url: str, official_url: str, official: str) -> tuple[str, ...]:
    """The pinned hosts of an official URL; only its own host for any other (a mirror)."""
    return OFFICIAL_HOSTS[official] if url == official_url else (_host(url),)


def feed_source(provider: str, url: str = "", min_prefixes: int | None = None) -> Source:
    """The official feed of a provider of geoip.feeds.PROVIDERS (pinned to its official hosts),
    or the same feed from `url` (pinned to that URL's host)."""
    if provider not in FEED_URLS:
        raise ValueError(f"unknown feed {provider!r}; known: {', '.join(PROVIDERS)}")
    url = url or FEED_URLS[provider]
    return Source(
        name=provider,
        url=url,
        filename=FEED_FILES[provider],
        kind="feed",
        min_prefixes=MIN_PREFIXES[provider] if min_prefixes is None else min_prefixes,
        hosts=_hosts(url, FEED_URLS[provider], provider),
    )


def dbip_source(url: str = "") -> Source:
    """DB-IP IP to Country Lite (CC BY 4.0, attribution "IP Geolocation by DB-IP")."""
    url = url or DBIP_URL
    return Source(name=DBIP, url=url, filename=f"{DBIP}.mmdb", kind="mmdb", packing="gzip", hosts=_hosts(url, DBIP_URL, DBIP))


def maxmind_checksum_url(url: str) -> str:
    """Where MaxMind publishes the SHA-256 of the archive at `url`: the same URL with
    `suffix=tar.gz.sha256` (a mirror URL without that parameter: the path plus `.sha256`)."""
    parts = urllib.parse.urlsplit(url)
    query = parts.query.split("&")
    if "suffix=tar.gz" in query:
        query = ["suffix=tar.gz.sha256" if item == "suffix=tar.gz" else item for item in query]
        return urllib.parse.urlunsplit(parts._replace(query="&".join(query), fragment=""))
    return urllib.parse.urlunsplit(parts._replace(path=parts.path + ".sha256", fragment=""))


def maxmind_source(edition: str, license_key: str, account_id: str = "", url: str = "") -> Source:
    """A MaxMind country or city edition. Raises ValueError for another edition or no key."""
    if edition not in MAXMIND_EDITIONS:
        raise ValueError(f"MaxMind edition {edition!r} has no country data or is unknown; use one of {', '.join(MAXMIND_EDITIONS)}")
    if not license_key:
        raise ValueError(f"downloading {edition} needs a MaxMind license key (--license-key)")
    hosts = OFFICIAL_HOSTS["maxmind"]
    if url:
        hosts = (_host(url),)
    else:
        url = (MAXMIND_URL if account_id else MAXMIND_LEGACY_URL).format(edition=edition, license_key=urllib.parse.quote(license_key, safe=""))
    return Source(
        name=edition,
        url=url,
        filename=f"{edition}.mmdb",
        kind="mmdb",
        packing="tar.gz",
        account_id=account_id,
        license_key=license_key,
        hosts=hosts,
        checksum_url=maxmind_checksum_url(url),
    )


def default_sources(
    *,
    feeds: Iterable[str] = PROVIDERS,
    dbip: bool = True,
    license_key: str = "",
    account_id: str = "",
    editions: Iterable[str] = ("GeoLite2-Country",),
    base_url: str = "",
    urls: Mapping[str, str] | None = None,
    allow_http: bool = False,
) -> list[Source]:
    """The sources to update: the given feeds, DB-IP Lite, and the MaxMind editions when a
    license key is given. `base_url` moves every official URL to a mirror (same paths);
    `urls` overrides single sources by name (`{"aws": "https://mirror.example/ip-ranges.json"}`).
    A source moved to a mirror may come only from the mirror's host.

    Raises ValueError for an unknown source name or MaxMind edition, a URL that does not parse,
    or a plain `http://` URL without `allow_http`.
    """
    urls = dict(urls or {})
    sources = [feed_source(p, urls.pop(p, "") or _rebase(FEED_URLS[p], base_url)) for p in feeds]
    if dbip:
        sources.append(dbip_source(urls.pop(DBIP, "") or _rebase(DBIP_URL, base_url)))
    if license_key:
        for edition in editions:
            override = urls.pop(edition, "")
            source = maxmind_source(edition, license_key, account_id, override)
            if base_url and not override:
                url = _rebase(source.url, base_url)
                source = replace(source, url=url, hosts=(_host(url),), checksum_url=maxmind_checksum_url(url))
            sources.append(source)
    if urls:
        raise ValueError(f"no source named {', '.join(sorted(urls))} to override; sources: {', '.join(s.name for s in sources)}")
    for source in sources:
        try:
            urllib.parse.urlsplit(source.url).port  # noqa: B018 - parses the authority: a broken one raises here
        except ValueError as e:
            raise ValueError(f"{source.name}: {source.url!r} is not a valid URL ({e})") from None
        if urllib.parse.urlsplit(source.url).scheme.lower() == "http" and not allow_http:
            shown = source.url.split("?")[0]
            raise ValueError(f"{source.name}: {shown} is plain HTTP; use an https:// URL, or pass --allow-http for a local mirror")
    return sources


def ensure_dir(directory: Path | None = None) -> Path:
    """The cache directory, created (0700) when missing. Raises FeedError when it cannot be."""
    directory = default_dir() if directory is None else Path(directory)
    if directory.is_dir():
        return directory
    try:
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)
    except FileExistsError:
        if not directory.is_dir():
            raise FeedError(f"{directory}: exists and is not a directory; pass another GeoIP data directory") from None
    except OSError as e:
        raise FeedError(f"{directory}: cannot create the GeoIP data directory ({e.strerror}); pass a writable directory") from e
    return directory


def update(
    sources: Iterable[Source],
    dest_dir: Path | None = None,
    *,
    progress: Progress | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    today: dt.date | None = None,
    max_bytes: int = MAX_BYTES,
    allow_http: bool = False,
    accept_changes: bool = False,
    verdict_changes: VerdictChange | None = None,
    cafile: str | None = None,
    database: Path | None = None,
) -> list[UpdateResult]:
    """Download, verify and install each source into `dest_dir` (default `default_dir()`).

    `allow_http` lets plain `http://` URLs through (never after an `https://` one);
    `accept_changes` installs a feed whose changes to the locator's countries would otherwise
    refuse it; `verdict_changes(old, new)` says whether a move between two countries changes a
    verdict (default: every move does); `cafile` is a CA bundle to trust instead of the system's;
    `database` is the country database the audits use before the embedded one (default: the one
    downloaded into `dest_dir`, else one installed on the system), which feeds are judged against.

    Never raises for a bad download: each source gets an UpdateResult (OK, KEPT, FAILED).
    Raises FeedError only when the directory cannot be created, DatabaseError when `database`
    cannot be opened.
    """
    directory = ensure_dir(dest_dir)
    remove_stale_temporaries(directory)
    when = today or dt.datetime.now(dt.UTC).date()
    from geoip.download import Job  # the HTTP stack, for this command only

    if database is not None:
        from geoip.mmdb import MmdbLocator

        MmdbLocator(database).close()  # DatabaseError now, not a feed refused for it later
    job = Job(
        directory,
        progress,
        timeout,
        when,
        max_bytes,
        allow_http=allow_http,
        accept_changes=accept_changes,
        verdict_changes=verdict_changes,
        cafile=cafile,
        database=database,
    )
    try:
        return [job.run(source) for source in sources]
    finally:
        job.close()


def remove_stale_temporaries(directory: Path, older_than: float = 3600.0) -> int:
    """Deletes `.tmp-*` files left in `directory` by an interrupted update; returns how many."""
    removed = 0
    now = dt.datetime.now(dt.UTC).timestamp()
    for path in directory.glob(".tmp-*"):
        try:
            if now - path.stat().st_mtime > older_than:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


# -- moves between countries ----------------------------------------------------------------------


class Move(NamedTuple):
    """Address space that a new feed places in another country than the data in use."""

    network: str
    """The prefix, as the feed that names it writes it."""
    old: str
    """Country (or countries, `CN|HK`) the data in use gives it."""
    new: str
    """Country the new feed gives it; "?" when its region is unknown."""

    def __str__(self) -> str:
        return f"{self.network}: {self.old} -> {self.new}"


def _countries(feed: Feed, keys: dict[str, tuple[int, int, int]] | None = None) -> dict[tuple[int, int, int], tuple[str, set[str]]]:
    """(IP version, network, length) -> (prefix as written, countries; "?" for an unknown region)."""
    table: dict[tuple[int, int, int], tuple[str, set[str]]] = {}
    parse = prefix_key if keys is None else memo_key(keys)
    for rng in feed.ranges:
        try:
            key = parse(rng.network)
        except ValueError:
            continue
        country = rng.country
        if not country:
            region = regions.lookup("cloud", feed.provider, rng.region)
            country = region.country_code if region is not None else ""
        table.setdefault(key, (rng.network, set()))[1].add(country or "?")
    return table


class _Index:
    """Longest-prefix match over one feed's prefixes."""

    def __init__(self, table: dict[tuple[int, int, int], tuple[str, set[str]]]) -> None:
        self.table = table
        self.lengths: dict[int, list[int]] = {4: [], 6: []}
        for version, _, plen in table:
            self.lengths[version].append(plen)
        self.lengths = {v: sorted(set(lens), reverse=True) for v, lens in self.lengths.items()}

    def covering(self, key: tuple[int, int, int]) -> set[str] | None:
        """The countries of the most specific prefix that holds `key` (itself included)."""
        version, value, plen = key
        for length in self.lengths[version]:
            if length <= plen:
                found = self.table.get((version, value >> (plen - length), length))
                if found is not None:
                    return found[1]
        return None


def _label(countries: set[str]) -> str:
    return "|".join(sorted(countries))


def feed_moves(old: Feed, new: Feed, keys: dict[str, tuple[int, int, int]] | None = None) -> list[Move]:
    """Address space whose country differs between `old` (the data in use) and `new`.

    Each prefix of either feed is compared with the most specific prefix of the other feed that
    holds it (itself, or a shorter one), so a more specific prefix added to move part of a range
    (`43.198.0.0/16` inside `43.198.0.0/15`) is a move, as is a specific prefix withdrawn in
    favour of a covering one in another country. Not moves: new prefixes in space the old feed
    did not cover, withdrawn prefixes, a prefix re-assigned between regions of one country, and
    space whose country the old data did not know.
    """
    before, after = _countries(old, keys), _countries(new, keys)
    old_index, new_index = _Index(before), _Index(after)
    moves: dict[tuple[int, int, int], Move] = {}
    for key, (network, countries) in after.items():
        was = old_index.covering(key)
        if was and was != {"?"} and was != countries:
            moves[key] = Move(network, _label(was), _label(countries))
    for key, (network, countries) in before.items():
        now = new_index.covering(key)
        if key not in moves and now and countries != {"?"} and now != countries:
            moves[key] = Move(network, _label(countries), _label(now))
    return [moves[k] for k in sorted(moves)]


def in_use_feed(provider: str, directory: Path) -> Feed | None:
    """The feed the locator uses now for `provider`: the installed one when at least as recent as
    the bundled snapshot, else the snapshot; None when neither can be read."""
    installed: Feed | None = None
    path = directory / FEED_FILES[provider]
    if path.is_file():
        try:
            installed = read_feed_file(provider, path)
        except FeedError:
            installed = None
    return chosen_feed(provider, installed)


def chosen_feed(provider: str, installed: Feed | None) -> Feed | None:
    """What the locator uses for `provider` with `installed` in the data directory (as
    geoip.cloud.load_feeds chooses): it when at least as recent as the bundled snapshot, else the
    snapshot; None when neither is there."""
    from geoip import cloud

    try:
        bundled = next(f for f in cloud.bundled_feeds() if f.provider == provider)
    except (FeedError, StopIteration):
        return installed
    if installed is not None and installed.date is not None and bundled.date is not None and installed.date >= bundled.date:
        return installed
    return bundled


# -- what a feed changes in the locator's answers -------------------------------------------------


class Change(NamedTuple):
    """Address space inside one prefix of a new feed (or one it withdraws) to which the locator
    would give another country with the new feed in place."""

    network: str
    """The prefix, as the feed that names it writes it."""
    old: str
    """Country the locator gives now; "?" when it knows none."""
    new: str
    """Country it would give with the new feed; "?" when none."""
    basis: str
    """Where the answer of now comes from (`cloud:aws:ap-east-1`, `mmdb:...`), "unknown" when none."""
    decisive: bool
    """Whether the move changes a verdict."""

    def __str__(self) -> str:
        return f"{self.network}: {self.old} -> {self.new} (was {self.basis})"


def _regions_by_prefix(
    feed: Feed | None, keys: dict[str, tuple[int, int, int]] | None
) -> dict[tuple[int, int, int], tuple[str, set[tuple[str, str]]]]:
    table: dict[tuple[int, int, int], tuple[str, set[tuple[str, str]]]] = {}
    parse = prefix_key if keys is None else memo_key(keys)
    for rng in feed.ranges if feed is not None else ():
        try:
            key = parse(rng.network)
        except ValueError:
            continue
        table.setdefault(key, (rng.network, set()))[1].add((rng.region, rng.country))
    return table


def changed_prefixes(old: Feed | None, new: Feed, keys: dict[str, tuple[int, int, int]] | None = None) -> list[tuple[tuple[int, int, int], str]]:
    """(key, prefix as written) of the prefixes of `new` that `old` does not publish with the same
    regions, and of those of `old` that `new` withdraws: every address whose answer a feed change
    can change is in one of them."""
    before, after = _regions_by_prefix(old, keys), _regions_by_prefix(new, keys)
    found = [(key, network) for key, (network, places) in after.items() if key not in before or before[key][1] != places]
    found += [(key, network) for key, (network, _) in before.items() if key not in after]
    return sorted(found)


_BITS = {4: 32, 6: 128}


def _span_of(network: str, version: int) -> tuple[int, int] | None:
    """(first, last address) as integers of `network`; None when it is empty or of another version."""
    try:
        v, value, plen = prefix_key(network)
    except ValueError:
        return None
    if v != version:
        return None
    shift = _BITS[version] - plen
    return value << shift, ((value + 1) << shift) - 1


class _DatabaseWalk:
    """The country databases' answer (the first that knows a country) over a stretch of
    addresses, one per part where it stays the same: walks the databases' networks, and
    remembers the last part (adjacent prefixes often share one database network)."""

    def __init__(self, databases: Sequence[Locator]) -> None:
        self.databases = databases
        self.last: tuple[int, int, int, Location] = (0, 1, 0, _NO_COUNTRY)
        """(IP version, first, last address, answer) of the part looked up last."""

    def answers(self, version: int, first: int, last: int) -> Iterator[Location]:
        make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        full = _BITS[version]
        at = first
        while at <= last:
            v, low, high, answer = self.last
            if not (v == version and low <= at <= high):
                low, high, answer = 0, (1 << full) - 1, _NO_COUNTRY
                ip = str(make(at))
                for database in self.databases:
                    location = database.locate(ip)
                    span = _span_of(location.network, version) if location.network else _missing(database, make(at), version)
                    # No network of this version (an IPv4-only database, an IPv4-mapped or 6to4
                    # address answered as IPv4): the same answer throughout, as far as it says.
                    if span is not None and span[0] <= at <= span[1]:
                        low, high = max(low, span[0]), min(high, span[1])
                    if location.known:
                        answer = location
                        break
                self.last = (version, low, high, answer)
            yield answer
            at = high + 1


_NO_COUNTRY = Location.unknown(basis="unknown")


def _missing(database: Locator, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, version: int) -> tuple[int, int] | None:
    """How far a database's miss (an answer without a network) extends around `ip`: MmdbLocator
    does not say, its tree does. None when unknown (an IPv4-only database asked for IPv6)."""
    reader = getattr(database, "_reader", None)
    if reader is None:
        return None
    try:
        _, plen = reader.get_with_prefix_len(ip)
    except Exception:  # noqa: BLE001 - IPv6 in an IPv4-only database (ValueError), a damaged tree
        return None
    shift = _BITS[version] - plen
    value = int(ip) >> shift
    return value << shift, ((value + 1) << shift) - 1


def locator_changes(
    changed: Sequence[tuple[tuple[int, int, int], str]],
    before: CloudRangeLocator,
    after: CloudRangeLocator,
    databases: Sequence[Locator],
    verdict_changes: VerdictChange | None = None,
) -> list[Change]:
    """Where the locator's country changes when the cloud layer `before` (the feeds in use)
    becomes `after` (one feed replaced), inside the `changed` prefixes (changed_prefixes), with
    `databases` (the country databases in use, in order) answering where the cloud layer does not.

    Not every address is looked up: inside a prefix, both cloud layers answer the same between
    the boundaries of the more specific prefixes it holds (of any provider, before or after), so
    each stretch between them is looked up once; where one side has no cloud answer, the
    databases' networks in the stretch are walked.

    A change is decisive (changes a verdict) when the locator knew a country before and
    `verdict_changes(old, new)` ("" for unknown; None: every change does) says so: a country a
    policy treats differently, or none. Space where the locator knew no country before and the
    new feed gives one is a change but not a decisive one. One Change per prefix: the first
    decisive one, else the first; decisive ones first in the result."""
    spans: dict[int, list[tuple[int, int]]] = {}
    starts: dict[int, list[int]] = {}
    result: list[Change] = []
    walk = _DatabaseWalk(databases)
    for (version, value, plen), network in changed:
        if version not in spans:
            # The prefixes of both layers: those of `before` and the new ones among `changed`.
            extra = [(v << (_BITS[n] - p), ((v + 1) << (_BITS[n] - p)) - 1) for (n, v, p), _ in changed if n == version]
            spans[version] = sorted(before.spans(version) + extra)
            starts[version] = [first for first, _ in spans[version]]
        shift = _BITS[version] - plen
        first, last = value << shift, ((value + 1) << shift) - 1
        cuts = {first}
        inner = spans[version]
        i = bisect.bisect_left(starts[version], first)
        while i < len(inner) and inner[i][0] <= last:
            start, end = inner[i]
            if start > first:
                cuts.add(start)
            if end < last:
                cuts.add(end + 1)
            i += 1
        ordered = sorted(cuts)
        found: Change | None = None
        for k, at in enumerate(ordered):
            was, now = before.locate_value(version, at), after.locate_value(version, at)
            if was.country_code == now.country_code:
                continue
            stretch_last = ordered[k + 1] - 1 if k + 1 < len(ordered) else last
            if was.known and now.known:
                answers: Iterable[Location] = (_NO_COUNTRY,)
            else:
                answers = walk.answers(version, at, stretch_last)
            for database in answers:
                old = was.country_code or database.country_code
                new = now.country_code or database.country_code
                if old == new:
                    continue
                # Space no source placed before gains a country: information added, not a
                # contradiction (no verdict to hide: it was "unknown"); not decisive.
                decisive = bool(old) and (verdict_changes(old, new) if verdict_changes is not None else True)
                if found is None or (decisive and not found.decisive):
                    basis = was.basis if was.known else database.basis
                    found = Change(network, old or "?", new or "?", basis, decisive)
                if decisive:
                    break
            if found is not None and found.decisive:
                break
        if found is not None:
            result.append(found)
    return [c for c in result if c.decisive] + [c for c in result if not c.decisive]


def describe_changes(moves: Sequence[Move], changes: Sequence[Change], total: int) -> tuple[str, bool]:
    """(clause about what a feed changes, whether that refuses it without accept_changes).

    `moves`: feed_moves against the provider's data in use, which holds `total` prefixes;
    `changes`: locator_changes. Refused when any change changes a verdict, or when more than
    MOVE_SHARE of the prefixes in use move to another country."""
    decisive = [c for c in changes if c.decisive]
    share = len(moves) / total if total else 0.0
    clauses = []
    if moves:
        clauses.append(f"moves {len(moves)} of the {total} prefixes in use to another country ({share:.1%}; first: {moves[0]})")
    if changes:
        clause = f"changes the country the locator gives in {len(changes)} of its prefixes"
        if decisive:
            clause += f", {len(decisive)} of them changing a verdict (first: {decisive[0]})"
        else:
            clause += f", none changing a verdict (first: {changes[0]})"
        clauses.append(clause)
    return "the download " + ", and ".join(clauses), bool(decisive) or share > MOVE_SHARE
