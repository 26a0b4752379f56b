"""The transfer half of `region-auditor geoip update` (geoip.update says what to fetch): HTTP
downloads with limits and timeouts, unpacking, validation, and the outcome of each source.

Imported only by the command that downloads: the HTTP stack (http.client, ssl, email) costs every
other command its start-up time.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import hashlib
import http.client
import os
import re
import ssl
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from base64 import b64encode
from pathlib import Path
from typing import IO, Protocol

from geoip.cloud import CloudRangeLocator
from geoip.feeds import PROVIDERS, Feed, FeedError, parse_feed, read_feed_file
from geoip.interface import Locator
from geoip.mmdb import DatabaseError, MmdbLocator
from geoip.update import (
    FAILED,
    KEPT,
    OK,
    SHOWN_MOVES,
    USER_AGENT,
    Progress,
    Source,
    UpdateResult,
    VerdictChange,
    changed_prefixes,
    chosen_feed,
    describe_changes,
    feed_moves,
    in_use_feed,
    locator_changes,
)

_CHUNK = 64 * 1024


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Bad(Exception):
    """A download that cannot be used; the message says why (one clause, no trailing period)."""

    def __init__(self, message: str, received: int = 0, changes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.received = received
        self.changes = changes


def _display(url: str) -> str:
    """The URL with any license key masked."""
    return re.sub(r"(license_key=)[^&]*", r"\1***", url)


_AZURE_LINK = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+/ServiceTags_[A-Za-z]+_(\d{8})\.json")
_AZURE_FILE = re.compile(r"ServiceTags_[A-Za-z]+_(\d{8})\.json$")


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL the current source may come from (Job.check_url)."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: http.client.HTTPMessage, newurl: str
    ) -> urllib.request.Request | None:
        try:
            self.job.check_url(newurl, req.full_url, "redirected to")
        except _Bad:
            fp.close()
            raise
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Job:
    """One `update` run: downloads sources one after the other into the cache directory."""

    def __init__(
        self,
        directory: Path,
        progress: Progress | None,
        timeout: float,
        today: dt.date,
        max_bytes: int,
        *,
        allow_http: bool = False,
        accept_changes: bool = False,
        verdict_changes: VerdictChange | None = None,
        cafile: str | None = None,
        database: Path | None = None,
    ) -> None:
        self.directory = directory
        self.progress = progress
        self.timeout = timeout
        self.today = today
        self.max_bytes = max_bytes
        self.allow_http = allow_http
        self.accept_changes = accept_changes
        self.verdict_changes = verdict_changes
        # Certificates and host names verified (create_default_context), against `cafile` when
        # given, else the system's CAs (SSL_CERT_FILE and SSL_CERT_DIR are honoured).
        context = ssl.create_default_context(cafile=cafile)
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _Redirects(self))
        self.opener.addheaders = [("User-Agent", USER_AGENT)]
        self._temps: list[str] = []
        self._source: Source | None = None
        """The source being downloaded (what check_url checks against)."""
        self._changes: tuple[str, ...] = ()
        """Moves accepted in the feed being installed."""
        self.database = database
        """The country database the audits use before the embedded one (None: the one
        geoip.defaults.build_locator finds without a config)."""
        self._databases: list[Locator] | None = None
        """The country databases the locator uses after the cloud layer (None: not opened yet)."""
        self._opened: list[MmdbLocator] = []
        """Those this job opened (closed by close())."""
        self._in_use: dict[str, Feed] | None = None
        """The feed the locator uses now, per provider (None: not read yet)."""
        self._cloud: CloudRangeLocator | None = None
        """The cloud layer over _in_use."""
        self._keys: dict[str, tuple[int, int, int]] = {}
        """Prefix text -> geoip.feeds.prefix_key, for the locators and comparisons of this job."""
        self._pending: tuple[str, Feed, CloudRangeLocator] | None = None
        """The feed being installed and the cloud layer with it in place."""

    def close(self) -> None:
        """Closes the country databases this job opened."""
        for database in self._opened:
            database.close()
        self._opened.clear()

    def check_url(self, url: str, came_from: str = "", how: str = "") -> None:
        """Raises _Bad unless the current source may be downloaded from `url`: https (http only
        with allow_http, and never after an https URL) on one of the source's hosts."""
        source = self._source
        assert source is not None
        shown = _display(url)
        try:
            parts = urllib.parse.urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            raise _Bad(f"{shown} is not a valid URL") from None
        scheme = parts.scheme.lower()
        where = f"{_display(came_from)} {how} {shown}, which" if came_from else shown
        if scheme == "http" and urllib.parse.urlsplit(came_from).scheme.lower() == "https":
            raise _Bad(f"{where} is a downgrade from https to plain HTTP, never followed; check the mirror or the network path")
        if scheme == "http" and not self.allow_http:
            raise _Bad(f"{where} is plain HTTP; use an https:// URL, or pass --allow-http for a local mirror")
        if scheme not in ("http", "https"):
            raise _Bad(f"{where} is not an http(s) URL")
        allowed = source.allowed_hosts
        if host not in allowed:
            raise _Bad(
                f"{where} is on {host or 'no host'}, not a host {source.name} may come from ({', '.join(allowed)}); "
                "check the URL, or pass the file's own URL with --url"
            )

    # -- one source ---------------------------------------------------------------------------

    def run(self, source: Source) -> UpdateResult:
        target = self.directory / source.filename
        url = source.url
        self._source = source
        self._changes = ()
        self._pending = None
        try:
            try:
                staged, url, date, detail, received = self._fetch(source)
                os.replace(staged, target)
                self._installed()
            except _Bad as e:
                return self._keep_or_fail(source, target, str(e), e.received, url, e.changes)
            except OSError as e:  # the cache directory itself: full disk, permissions
                reason = f"cannot write into {self.directory} ({e.strerror or e})"
                return self._keep_or_fail(source, target, reason, 0, url)
            return UpdateResult(source.name, OK, str(target), received, date, f"{source.name}: {detail}", _display(url), self._changes)
        finally:
            self._source = None
            for tmp in self._temps:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
            self._temps.clear()

    def _keep_or_fail(self, source: Source, target: Path, reason: str, received: int, url: str, changes: tuple[str, ...] = ()) -> UpdateResult:
        if target.is_file():
            date = _date_of(source, target)
            kept = f"kept the previous copy (data of {date})" if date else "kept the previous copy"
            return UpdateResult(source.name, KEPT, str(target), received, date, f"{source.name}: {reason}; {kept}", _display(url), changes)
        fallback = "the bundled snapshot is used" if source.kind == "feed" else "the embedded database is used"
        return UpdateResult(source.name, FAILED, "", received, "", f"{source.name}: {reason}; no previous copy, {fallback}", _display(url), changes)

    def _fetch(self, source: Source) -> tuple[str, str, str, str, int]:
        """(staged file ready to install, URL used, data date, detail sentence, bytes received)."""
        self.check_url(source.url)
        if source.kind == "feed":
            return self._fetch_feed(source)
        return self._fetch_database(source)

    def _fetch_feed(self, source: Source) -> tuple[str, str, str, str, int]:
        url = source.url
        published = ""
        if source.name == "azure":
            url, published = self._azure_file_url(url)
        staged, received, headers = self._download(source, url)
        if source.name == "digitalocean":
            published = _http_date(headers.get("Last-Modified")) or self.today.isoformat()
        with open(staged, "rb") as f:
            data = f.read()
        try:
            feed = parse_feed(source.name, data, _display(url), published)
        except FeedError as e:
            # `<url>: <what is wrong>; <what to do>`: what to do is this update's own outcome.
            raise _Bad(str(e).rsplit("; ", 1)[0], received) from None
        if len(feed.ranges) < source.min_prefixes:
            raise _Bad(
                f"the download from {_display(url)} holds {len(feed.ranges)} prefixes with a location, "
                f"fewer than the {source.min_prefixes} expected of a complete {source.name} feed",
                received,
            )
        if published:
            # Azure and geofeeds have no date inside: the file's mtime carries it (geoip.feeds.read_feed_file).
            stamp = dt.datetime.combine(dt.date.fromisoformat(published), dt.time(), dt.UTC).timestamp()
            os.utime(staged, (stamp, stamp))
        detail = f"{len(feed.ranges)} prefixes with a location ({feed.skipped} without, skipped); {feed.version}"
        detail += self._guard_moves(source, feed, received)
        return staged, url, _feed_date(feed), detail, received

    def _guard_moves(self, source: Source, feed: Feed, received: int) -> str:
        """Refuses (_Bad) a feed that changes the country the whole locator gives somewhere in a
        way that changes a verdict, or moves more than MOVE_SHARE of the provider's prefixes in
        use to another country, unless accept_changes; returns what to add to the success sentence."""
        in_use = self._feeds_in_use()
        current = in_use.get(source.name)
        before = self._cloud_layer()
        after = CloudRangeLocator([feed if p == source.name else in_use[p] for p in PROVIDERS if p == source.name or p in in_use], self._keys)
        self._pending = (source.name, feed, after)
        moves = feed_moves(current, feed, self._keys) if current is not None else []
        changed = changed_prefixes(current, feed, self._keys)
        changes = locator_changes(changed, before, after, self._country_databases(), self.verdict_changes)
        if not moves and not changes:
            return ""
        clause, refused = describe_changes(moves, changes, len(current.ranges) if current is not None else 0)
        listed = tuple(str(c) for c in changes[:SHOWN_MOVES]) or tuple(str(m) for m in moves[:SHOWN_MOVES])
        databases = " > ".join(d.description for d in self._country_databases()) or "no country database"
        against = f"against {current.version if current is not None else f'no {source.name} data'}, the other feeds in use and {databases}"
        if refused and not self.accept_changes:
            raise _Bad(
                f"refused: {clause}, {against}; if these changes are expected, run again with --accept-changes",
                received,
                listed,
            )
        self._changes = listed
        return f"; accepted: {clause}, {against}" if refused else f"; {clause}, {against}"

    def _feeds_in_use(self) -> dict[str, Feed]:
        if self._in_use is None:
            found = {p: in_use_feed(p, self.directory) for p in PROVIDERS}
            self._in_use = {p: f for p, f in found.items() if f is not None}
        return self._in_use

    def _cloud_layer(self) -> CloudRangeLocator:
        if self._cloud is None:
            in_use = self._feeds_in_use()
            self._cloud = CloudRangeLocator([in_use[p] for p in PROVIDERS if p in in_use], self._keys)
        return self._cloud

    def _country_databases(self) -> list[Locator]:
        """The databases after the cloud layer, as geoip.defaults.build_locator chooses them:
        `database`, else one downloaded into the directory, else one installed on the system;
        then the embedded one. One that cannot be opened is left out (the audits would stop on it)."""
        if self._databases is None:
            from geoip.embedded import open_embedded
            from geoip.mmdb import find_system_database
            from geoip.update import downloaded_database

            self._databases = []
            path = self.database or downloaded_database(self.directory) or find_system_database()
            openers = [lambda: MmdbLocator(path)] if path is not None else []
            for opener in [*openers, open_embedded]:
                try:
                    database = opener()
                except DatabaseError:
                    continue
                self._opened.append(database)
                self._databases.append(database)
        return self._databases

    def _installed(self) -> None:
        """The feed just installed is in use from now on (when the locator chooses it)."""
        if self._pending is None:
            return
        provider, feed, after = self._pending
        self._pending = None
        in_use = self._feeds_in_use()
        now = chosen_feed(provider, feed)
        if now is feed:
            in_use[provider] = feed
            self._cloud = after
        elif now is not None and in_use.get(provider) is not now:
            in_use[provider] = now
            self._cloud = None

    def _azure_file_url(self, url: str) -> tuple[str, str]:
        """The ServiceTags file URL and its date: `url` itself when it names the file, else the
        link found in the Download Center page at `url`."""
        path = urllib.parse.urlsplit(url).path
        match = _AZURE_FILE.search(path)
        if match is None:
            page = self._small(url)
            found = _AZURE_LINK.search(page)
            if found is None:
                raise _Bad(f"the page {_display(url)} links no ServiceTags_Public_YYYYMMDD.json file (the page changed, or pass the file's URL)")
            link = found.group(0).decode("ascii", "replace")
            self.check_url(link, url, "links the file at")
            url = link
            day = found.group(1).decode("ascii")
        else:
            day = match.group(1)
        try:
            published = dt.date(int(day[:4]), int(day[4:6]), int(day[6:])).isoformat()
        except ValueError:
            published = ""
        return url, published

    def _fetch_database(self, source: Source) -> tuple[str, str, str, str, int]:
        if "{month}" in source.url:
            staged, url, received = self._monthly(source)
        else:
            url = source.url
            staged, received, _ = self._download(source, url)
        if source.checksum_url:
            self._verify_checksum(source, staged, url, received)
        if source.packing == "gzip":
            staged = self._gunzip(staged, received)
        elif source.packing == "tar.gz":
            staged = self._untar(staged, source, received)
        label = f"{source.name} download"
        try:
            db = MmdbLocator(staged, label=label)
        except DatabaseError as e:
            # MmdbLocator's sentence names the file and how to pass another; keep only the why.
            why = str(e).removeprefix(f"{label}: ").split("; ")[0]
            raise _Bad(f"the download from {_display(url)} is not a usable country database ({why})", received) from None
        try:
            date, kind = db.build_date, db.database_type
        finally:
            db.close()
        return staged, url, date, f"{kind} database built {date}", received

    def _verify_checksum(self, source: Source, staged: str, url: str, received: int) -> None:
        """Refuses (_Bad) an archive that does not match the SHA-256 published at
        source.checksum_url (MaxMind: `<64 hex digits>  <edition>_<YYYYMMDD>.tar.gz`)."""
        shown = _display(source.checksum_url)
        try:
            text = self._small(source.checksum_url, limit=4096, source=source).decode("ascii")
        except _NotFound:
            raise _Bad(
                f"no SHA-256 is published at {shown} (HTTP 404), so the download cannot be verified; a mirror must serve it too", received
            ) from None
        except UnicodeDecodeError:
            text = ""
        fields = text.split()
        expected = fields[0].lower() if fields else ""
        if not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise _Bad(f"{shown} holds no SHA-256, so the download cannot be verified; check the URL", received)
        digest = hashlib.sha256()
        with open(staged, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            raise _Bad(
                f"the download from {_display(url)} does not match the SHA-256 published at {shown} "
                f"({digest.hexdigest()[:16]}... instead of {expected[:16]}...); run the update again later, "
                "and if it persists, the download is being altered on its way",
                received,
            )

    def _monthly(self, source: Source) -> tuple[str, str, int]:
        """DB-IP: this month's file, else last month's (published early in the month)."""
        first = self.today.replace(day=1)
        months = [first, (first - dt.timedelta(days=1)).replace(day=1)]
        missing = []
        for month in months:
            url = source.url.format(month=month.strftime("%Y-%m"))
            self.check_url(url)
            try:
                staged, received, _ = self._download(source, url)
            except _NotFound:
                missing.append(month.strftime("%Y-%m"))
                continue
            return staged, url, received
        raise _Bad(f"no file for {' or '.join(missing)} at {_display(source.url)} (HTTP 404)")

    # -- transfer -----------------------------------------------------------------------------

    def _temp(self, suffix: str) -> tuple[int, str]:
        fd, path = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=suffix)
        self._temps.append(path)
        return fd, path

    def _request(self, source: Source | None, url: str) -> urllib.request.Request:
        request = urllib.request.Request(url)  # noqa: S310 - a source URL (check_url: http, https) or its checksum sibling
        if source is not None and source.account_id and source.license_key:
            token = b64encode(f"{source.account_id}:{source.license_key}".encode()).decode("ascii")
            # Unredirected: not sent again when MaxMind redirects to its storage host.
            request.add_unredirected_header("Authorization", f"Basic {token}")
        return request

    def _open(self, source: Source | None, url: str) -> http.client.HTTPResponse:
        shown = _display(url)
        try:
            response: http.client.HTTPResponse = self.opener.open(self._request(source, url), timeout=self.timeout)
            return response
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 404:
                raise _NotFound(f"HTTP 404 (not found) from {shown}") from None
            if e.code in (401, 403) and source is not None and source.license_key:
                raise _Bad(f"HTTP {e.code} from {shown}: MaxMind refused the credentials; check the license key and account id") from None
            raise _Bad(f"HTTP {e.code} ({e.reason}) from {shown}") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise _Bad(f"no answer from {shown} within {self.timeout:g} s") from None
            raise _Bad(f"cannot reach {shown} ({reason})") from None
        except TimeoutError:
            raise _Bad(f"no answer from {shown} within {self.timeout:g} s") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise _Bad(f"cannot download {shown} ({e})") from None

    def _small(self, url: str, limit: int = 8 * 1024 * 1024, source: Source | None = None) -> bytes:
        response = self._open(source, url)
        with response:
            try:
                data = response.read(limit + 1)
            except (OSError, http.client.HTTPException) as e:
                raise _Bad(f"the download of {_display(url)} failed ({e})") from None
        if len(data) > limit:
            raise _Bad(f"{_display(url)} is larger than {limit} bytes")
        return data

    def _download(self, source: Source, url: str) -> tuple[str, int, http.client.HTTPMessage]:
        """Streams `url` into a temporary file in the cache directory: (path, bytes, headers)."""
        shown = _display(url)
        response = self._open(source, url)
        fd, path = self._temp(".download")
        received = 0
        with response, os.fdopen(fd, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > self.max_bytes:
                raise _Bad(f"{shown} is {total} bytes, more than the {self.max_bytes} accepted")
            self._report(source.name, 0, total)
            while True:
                try:
                    chunk = response.read1(_CHUNK)
                except TimeoutError:
                    raise _Bad(f"the download from {shown} stalled for {self.timeout:g} s after {received} bytes", received) from None
                except (OSError, http.client.HTTPException) as e:
                    raise _Bad(f"the download from {shown} broke off after {received} bytes ({e})", received) from None
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                if received > self.max_bytes:
                    raise _Bad(f"{shown} sent more than the {self.max_bytes} bytes accepted", received)
                self._report(source.name, received, total)
            if total is not None and received < total:
                raise _Bad(f"the download from {shown} stopped after {received} of {total} bytes", received)
            out.flush()
            os.fsync(out.fileno())
        return path, received, response.headers

    def _report(self, name: str, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(name, done, total)

    # -- unpacking ----------------------------------------------------------------------------

    def _copy_capped(self, src: _Readable, what: str, received: int) -> str:
        fd, path = self._temp(".mmdb")
        written = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > self.max_bytes:
                    raise _Bad(f"{what} unpacks to more than {self.max_bytes} bytes", received)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return path

    def _gunzip(self, archive: str, received: int) -> str:
        try:
            with gzip.open(archive, "rb") as src:
                return self._copy_capped(src, "the gzip download", received)
        except (OSError, EOFError, zlib.error) as e:
            raise _Bad(f"the download is not a valid gzip file ({e})", received) from None

    def _untar(self, archive: str, source: Source, received: int) -> str:
        wanted = f"{source.name}.mmdb"
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".mmdb")]
                member = next((m for m in members if os.path.basename(m.name) == wanted), members[0] if members else None)
                if member is None:
                    raise _Bad(f"the archive holds no .mmdb file (expected {wanted})", received)
                src = tar.extractfile(member)
                if src is None:
                    raise _Bad(f"cannot read {member.name} from the archive", received)
                with src:
                    return self._copy_capped(src, f"{member.name} in the archive", received)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise _Bad(f"the download is not a valid tar.gz archive ({e})", received) from None


class _NotFound(_Bad):
    """HTTP 404 (DB-IP: this month's file is not published yet)."""


def _http_date(value: str | None) -> str:
    if not value:
        return ""
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(dt.UTC).date().isoformat()
    except (TypeError, ValueError, IndexError):
        return ""


def _feed_date(feed: Feed) -> str:
    return feed.published[:10] if feed.published else ""


def _date_of(source: Source, path: Path) -> str:
    """Date of the data in an installed file, "" when it cannot be read."""
    try:
        if source.kind == "feed":
            return _feed_date(read_feed_file(source.name, path))
        db = MmdbLocator(path)
        try:
            return db.build_date
        finally:
            db.close()
    except (FeedError, DatabaseError, OSError):
        return ""
