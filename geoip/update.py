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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from geoip.cloud import FEED_FILES, PROVIDERS, FeedError

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
MAXMIND_EDITIONS = ("GeoIP2-Country", "GeoIP2-City", "GeoLite2-Country", "GeoLite2-City")
"""Editions with country data, best first."""

DATABASE_FILES = tuple(f"{edition}.mmdb" for edition in MAXMIND_EDITIONS) + (f"{DBIP}.mmdb",)
"""Downloaded country databases in the cache directory, in order of preference."""

DEFAULT_TIMEOUT = 60.0
"""Seconds without data before a download is abandoned."""
MAX_BYTES = 512 * 1024 * 1024
"""Largest download (and decompressed database) accepted."""
USER_AGENT = "region-auditor-geoip-update"

Progress = Callable[[str, int, "int | None"], None]
"""progress(source name, bytes received, total bytes or None when the server does not say)."""


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


def feed_source(provider: str, url: str = "", min_prefixes: int | None = None) -> Source:
    """The official feed of a provider of geoip.cloud.PROVIDERS."""
    if provider not in FEED_URLS:
        raise ValueError(f"unknown feed {provider!r}; known: {', '.join(PROVIDERS)}")
    return Source(
        name=provider,
        url=url or FEED_URLS[provider],
        filename=FEED_FILES[provider],
        kind="feed",
        min_prefixes=MIN_PREFIXES[provider] if min_prefixes is None else min_prefixes,
    )


def dbip_source(url: str = "") -> Source:
    """DB-IP IP to Country Lite (CC BY 4.0, attribution "IP Geolocation by DB-IP")."""
    return Source(name=DBIP, url=url or DBIP_URL, filename=f"{DBIP}.mmdb", kind="mmdb", packing="gzip")


def maxmind_source(edition: str, license_key: str, account_id: str = "", url: str = "") -> Source:
    """A MaxMind country or city edition. Raises ValueError for another edition or no key."""
    if edition not in MAXMIND_EDITIONS:
        raise ValueError(f"MaxMind edition {edition!r} has no country data or is unknown; use one of {', '.join(MAXMIND_EDITIONS)}")
    if not license_key:
        raise ValueError(f"downloading {edition} needs a MaxMind license key (--license-key)")
    if not url:
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
) -> list[Source]:
    """The sources to update: the given feeds, DB-IP Lite, and the MaxMind editions when a
    license key is given. `base_url` moves every official URL to a mirror (same paths);
    `urls` overrides single sources by name (`{"aws": "http://127.0.0.1:8000/ip-ranges.json"}`).

    Raises ValueError for an unknown source name or MaxMind edition, or a URL that does not parse.
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
                source = replace(source, url=_rebase(source.url, base_url))
            sources.append(source)
    if urls:
        raise ValueError(f"no source named {', '.join(sorted(urls))} to override; sources: {', '.join(s.name for s in sources)}")
    for source in sources:
        try:
            urllib.parse.urlsplit(source.url).port  # noqa: B018 - parses the authority: a broken one raises here
        except ValueError as e:
            raise ValueError(f"{source.name}: {source.url!r} is not a valid URL ({e})") from None
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
) -> list[UpdateResult]:
    """Download, validate and install each source into `dest_dir` (default `default_dir()`).

    Never raises for a bad download: each source gets an UpdateResult (OK, KEPT, FAILED).
    Raises FeedError only when the directory cannot be created.
    """
    directory = ensure_dir(dest_dir)
    remove_stale_temporaries(directory)
    when = today or dt.datetime.now(dt.timezone.utc).date()
    from geoip.download import Job  # the HTTP stack, for this command only

    job = Job(directory, progress, timeout, when, max_bytes)
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

