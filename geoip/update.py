"""`region-auditor geoip update`: download the official cloud range feeds and country databases
into a local cache.

Each source is downloaded into a temporary file in the cache directory, validated (feeds are
parsed with geoip.cloud and must hold a sane number of located prefixes; databases are opened
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
publishes beside them; and a feed that moves prefixes to another country is refused unless
`accept_changes` when a move changes a verdict (`verdict_changes`) or more than MOVE_SHARE of
its prefixes move (`feed_moves`).

The cache directory is `$XDG_DATA_HOME/region-auditor/geoip` (`~/.local/share/...`), created
0700; files are written 0600. geoip.defaults.build_locator reads it: feeds at least as recent as
the bundled snapshot replace it (geoip.cloud.load_feeds), and a downloaded country database
comes before the embedded one (`downloaded_database`).

This module says what to fetch and where it goes; geoip.download does the transfer, imported only
when something is downloaded.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from geoip import regions
from geoip.cloud import FEED_FILES, PROVIDERS, Feed, FeedError, _prefix_key

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

DATABASE_FILES = tuple(f"{edition}.mmdb" for edition in MAXMIND_EDITIONS) + (f"{DBIP}.mmdb",)
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
    """`feed` (parsed with geoip.cloud) or `mmdb` (opened with geoip.mmdb)."""
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
    """The official feed of a provider of geoip.cloud.PROVIDERS (pinned to its official hosts),
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
        url = (MAXMIND_URL if account_id else MAXMIND_LEGACY_URL).format(
            edition=edition, license_key=urllib.parse.quote(license_key, safe="")
        )
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
) -> list[UpdateResult]:
    """Download, verify and install each source into `dest_dir` (default `default_dir()`).

    `allow_http` lets plain `http://` URLs through (never after an `https://` one);
    `accept_changes` installs a feed whose moves between countries would otherwise refuse it;
    `verdict_changes(old, new)` says whether a move between two countries changes a verdict
    (default: every move does); `cafile` is a CA bundle to trust instead of the system's.

    Never raises for a bad download: each source gets an UpdateResult (OK, KEPT, FAILED).
    Raises FeedError only when the directory cannot be created.
    """
    directory = ensure_dir(dest_dir)
    remove_stale_temporaries(directory)
    when = today or dt.datetime.now(dt.timezone.utc).date()
    from geoip.download import Job  # the HTTP stack, for this command only

    job = Job(directory, progress, timeout, when, max_bytes, allow_http=allow_http, accept_changes=accept_changes,
              verdict_changes=verdict_changes, cafile=cafile)
    return [job.run(source) for source in sources]


def remove_stale_temporaries(directory: Path, older_than: float = 3600.0) -> int:
    """Deletes `.tmp-*` files left in `directory` by an interrupted update; returns how many."""
    removed = 0
    now = dt.datetime.now().timestamp()
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


def _countries(feed: Feed) -> dict[tuple[int, int, int], tuple[str, set[str]]]:
    """(IP version, network, length) -> (prefix as written, countries; "?" for an unknown region)."""
    table: dict[tuple[int, int, int], tuple[str, set[str]]] = {}
    for rng in feed.ranges:
        try:
            key = _prefix_key(rng.network)
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


def feed_moves(old: Feed, new: Feed) -> list[Move]:
    """Address space whose country differs between `old` (the data in use) and `new`.

    Each prefix of either feed is compared with the most specific prefix of the other feed that
    holds it (itself, or a shorter one), so a more specific prefix added to move part of a range
    (`43.198.0.0/16` inside `43.198.0.0/15`) is a move, as is a specific prefix withdrawn in
    favour of a covering one in another country. Not moves: new prefixes in space the old feed
    did not cover, withdrawn prefixes, a prefix re-assigned between regions of one country, and
    space whose country the old data did not know.
    """
    before, after = _countries(old), _countries(new)
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


def changes_verdict(move: Move, verdict_changes: VerdictChange | None) -> bool:
    """Whether `move` changes a verdict: any pair of its old and new countries does."""
    if verdict_changes is None:
        return True
    olds = [c if c != "?" else "" for c in move.old.split("|")]
    news = [c if c != "?" else "" for c in move.new.split("|")]
    if len(news) > 1:  # one prefix in two countries: the locator answers "unknown"
        news = [""]
    return any(verdict_changes(a, b) for a in olds for b in news if a != b)


def in_use_feed(provider: str, directory: Path) -> Feed | None:
    """The feed the locator uses now for `provider`: the installed one when at least as recent as
    the bundled snapshot, else the snapshot; None when neither can be read."""
    from geoip import cloud

    installed: Feed | None = None
    path = directory / FEED_FILES[provider]
    if path.is_file():
        try:
            installed = cloud.read_feed_file(provider, path)
        except FeedError:
            installed = None
    try:
        bundled = next(f for f in cloud.bundled_feeds() if f.provider == provider)
    except (FeedError, StopIteration):
        return installed
    if installed is not None and installed.date is not None and bundled.date is not None and installed.date >= bundled.date:
        return installed
    return bundled


def describe_moves(moves: Sequence[Move], verdict_changes: VerdictChange | None, total: int) -> tuple[str, bool]:
    """(clause about the moves, whether they refuse the feed without accept_changes)."""
    decisive = [m for m in moves if changes_verdict(m, verdict_changes)]
    share = len(moves) / total if total else 1.0
    clause = f"the download moves {len(moves)} of the {total} prefixes in use to another country"
    if decisive:
        clause += f", {len(decisive)} of them changing a verdict (first: {decisive[0]})"
    elif moves:
        clause += f" ({share:.1%}; first: {moves[0]})"
    return clause, bool(decisive) or share > MOVE_SHARE
