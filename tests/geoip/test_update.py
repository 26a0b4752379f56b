"""`geoip update` against a local HTTPS server (127.0.0.1 only, a self-signed certificate made
per test session and trusted through SSL_CERT_FILE) serving fixtures in the official formats,
malformed ones and broken transfers included; a plain HTTP server for downgrades."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import ipaddress
import json
import os
import ssl
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from geoip import cloud, feeds, update
from geoip.defaults import build_locator
from geoip.feeds import FeedError
from geoip.interface import Location, Locator
from geoip.update import FAILED, KEPT, OK, Source, UpdateResult
from tests.conftest import asset

TODAY = dt.date(2026, 11, 28)
AZURE_PAGE = "/en-us/download/details.aspx?id=56519"
AZURE_DIR = "/download/7/1/D/71D86715-5596-4529-9B13-DA13A5DE5B63"
MAXMIND_PATH = "/geoip/databases/GeoLite2-Country/download?suffix=tar.gz"
MAXMIND_SHA256_PATH = "/geoip/databases/GeoLite2-Country/download?suffix=tar.gz.sha256"


# -- a local server -----------------------------------------------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    mode: str = ""
    """"" | "truncate" (announces the full length, sends half) | "stall-headers" | "stall-body"."""
    location: str = ""
    """Redirect target (with status 302)."""


class FeedServer:
    """Serves routes by exact request path (query included); 404 with an HTML page otherwise."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                if tls is not None:  # the handshake in this connection's thread, not the server's
                    self.request = tls.wrap_socket(self.request, server_side=True)
                super().setup()

            def do_GET(self) -> None:
                owner.requests.append((self.headers.get("Host", ""), self.path, dict(self.headers)))
                route = owner.routes.get(self.path)
                if route is None:
                    route = Route(asset("feeds/malformed/error.html").read_bytes(), status=404, headers={"Content-Type": "text/html"})
                if route.mode == "stall-headers":
                    owner.stop.wait(5)
                    return
                self.send_response(route.status)
                if route.location:
                    self.send_header("Location", route.location)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if route.mode == "truncate":
                    self.wfile.write(route.body[: len(route.body) // 2])
                    return
                if route.mode == "stall-body":
                    self.wfile.write(route.body[:10])
                    self.wfile.flush()
                    owner.stop.wait(5)
                    return
                self.wfile.write(route.body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that refuses the certificate, or hangs up

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls is not None else "http"
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.localhost_url = f"{self.scheme}://localhost:{self.port}"
        """The same server under another host name (an unpinned host, or a second pinned one)."""
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes = b"", **kwargs: object) -> None:
        self.routes[path] = Route(body, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "region-auditor test server")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(autouse=True)
def trust_test_certificate(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The client trusts the test certificate (and only it): OpenSSL reads SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def server(certificate: tuple[Path, Path]) -> Iterator[FeedServer]:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*certificate)
    s = FeedServer(tls)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def plain_server() -> Iterator[FeedServer]:
    """Plain HTTP (downgrades, --allow-http)."""
    s = FeedServer()
    try:
        yield s
    finally:
        s.close()


# -- fixtures in the official formats -----------------------------------------------------------


def _fresh() -> dt.date:
    """A data date at least as recent as the bundled snapshot, so downloads take precedence."""
    return max(TODAY, dt.date.fromisoformat(cloud.bundle_info().date) + dt.timedelta(days=1))


def aws_bytes(created: dt.date | None = None) -> bytes:
    doc = json.loads(asset("feeds/ip-ranges.json").read_text())
    doc["createDate"] = (created or _fresh()).strftime("%Y-%m-%d-21-03-13")
    return json.dumps(doc).encode()


def tar_gz(mmdb: Path, member: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(mmdb, arcname=member)
    return buf.getvalue()


GOOD_MMDB = asset("maxmind/GeoLite2-Country-Test.mmdb")
ANONYMOUS_MMDB = asset("maxmind/GeoIP2-Anonymous-IP-Test.mmdb")


def serve_official(server: FeedServer) -> str:
    """Every source at its official path under the server; returns the Azure file's date."""
    azure_day = _fresh()
    azure_file = f"ServiceTags_Public_{azure_day:%Y%m%d}.json"
    page = asset("feeds/azure-details.html").read_text().replace("{base}", server.url).replace("ServiceTags_Public_20261123.json", azure_file)
    server.serve("/ip-ranges.json", aws_bytes(), headers={"Content-Type": "application/json"})
    server.serve("/ipranges/cloud.json", asset("feeds/cloud.json").read_bytes())
    server.serve(AZURE_PAGE, page.encode(), headers={"Content-Type": "text/html"})
    server.serve(f"{AZURE_DIR}/{azure_file}", asset("feeds/ServiceTags_Public_20261123.json").read_bytes())
    server.serve("/iaas/tools/public_ip_ranges.json", asset("feeds/public_ip_ranges.json").read_bytes())
    server.serve("/geo/google.csv", asset("feeds/google.csv").read_bytes(), headers={"Last-Modified": "Wed, 25 Nov 2026 08:00:00 GMT"})
    server.serve("/free/dbip-country-lite-2026-11.mmdb.gz", gzip.compress(GOOD_MMDB.read_bytes()))
    serve_maxmind(server, MAXMIND_PATH, tar_gz(GOOD_MMDB, "GeoLite2-Country_20260204/GeoLite2-Country.mmdb"))
    return azure_day.isoformat()


def serve_maxmind(server: FeedServer, path: str, archive: bytes, published: bytes | None = None) -> None:
    """A MaxMind archive at `path` and its SHA-256 beside it (`suffix=tar.gz.sha256`), as MaxMind
    publishes it: `<hex>  GeoLite2-Country_20260204.tar.gz`; `published` replaces that file."""
    server.serve(path, archive)
    checksum = published if published is not None else f"{hashlib.sha256(archive).hexdigest()}  GeoLite2-Country_20260204.tar.gz\n".encode()
    server.serve(path.replace("suffix=tar.gz", "suffix=tar.gz.sha256"), checksum)


def sources_for(server: FeedServer, **kwargs: object) -> list[Source]:
    """The official sources moved to the test server, with fixture-sized prefix minimums."""
    return [replace(s, min_prefixes=1) for s in update.default_sources(base_url=server.url, **kwargs)]  # type: ignore[arg-type]


def fetch(sources: list[Source], directory: Path, **kwargs: object) -> list[UpdateResult]:
    """update.update with accept_changes, for the tests of transfers and validation: a fixture
    feed holds a few prefixes in place of the bundled snapshot's thousands, so installing it
    withdraws them, which changes the locator's answers (the tests of moves cover that)."""
    return update.update(sources, directory, accept_changes=True, **kwargs)  # type: ignore[arg-type]


def by_name(results: list[UpdateResult]) -> dict[str, UpdateResult]:
    return {r.source: r for r in results}


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".tmp-"))


# -- everything at once -------------------------------------------------------------------------


@pytest.mark.slow
def test_update_all_sources(server: FeedServer, tmp_path: Path) -> None:
    azure_day = serve_official(server)
    dest = tmp_path / "data" / "region-auditor" / "geoip"
    calls: list[tuple[str, int, int | None]] = []
    sources = sources_for(server, license_key="s3cret-key", account_id="123456")
    results = by_name(fetch(sources, dest, progress=lambda *a: calls.append(a), today=TODAY))

    assert set(results) == {"aws", "gcp", "azure", "oracle", "digitalocean", "dbip-country-lite", "GeoLite2-Country"}
    assert all(r.status == OK for r in results.values()), [r.message for r in results.values()]
    assert results["aws"].date == _fresh().isoformat()
    assert results["aws"].message.startswith("aws: 8 prefixes with a location (2 without, skipped); aws:ip-ranges.json@")
    assert results["azure"].date == azure_day
    assert results["azure"].url.endswith(f"ServiceTags_Public_{azure_day.replace('-', '')}.json")
    assert results["digitalocean"].date == "2026-11-25"  # from Last-Modified: the geofeed has no date
    assert results["dbip-country-lite"].date == "2026-02-04"
    assert results["dbip-country-lite"].url.endswith("/free/dbip-country-lite-2026-11.mmdb.gz")
    assert results["GeoLite2-Country"].message == "GeoLite2-Country: GeoLite2-Country database built 2026-02-04"
    assert results["aws"].bytes == len(aws_bytes())

    # Files: in place, 0600, in a 0700 directory, no temporaries left.
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    for r in results.values():
        assert Path(r.path).parent == dest
        assert stat.S_IMODE(Path(r.path).stat().st_mode) == 0o600
    assert sorted(p.name for p in dest.iterdir()) == sorted([*cloud.FEED_FILES.values(), "dbip-country-lite.mmdb", "GeoLite2-Country.mmdb"])
    assert (dest / "dbip-country-lite.mmdb").read_bytes() == GOOD_MMDB.read_bytes()

    # Progress: per source, from (0, total) to (total, total), never backwards.
    for name, result in results.items():
        mine = [(done, total) for n, done, total in calls if n == name]
        assert mine[0] == (0, result.bytes) and mine[-1] == (result.bytes, result.bytes), name
        assert [d for d, _ in mine] == sorted(d for d, _ in mine)

    # Credentials: HTTP Basic to MaxMind only, never in a URL or a message.
    auth = {path: headers.get("Authorization") for _, path, headers in server.requests}
    assert auth[MAXMIND_PATH] == "Basic " + base64.b64encode(b"123456:s3cret-key").decode()
    assert [p for p, a in auth.items() if a] == [MAXMIND_PATH, MAXMIND_SHA256_PATH]
    assert not any("s3cret" in r.message + r.url for r in results.values())

    # The chain now uses the downloads: feeds newer than the snapshot, the country database
    # before the embedded one (GeoLite2 preferred over DB-IP).
    chain = build_locator(data_dir=dest)
    assert chain.locate("43.198.12.34").source_version.startswith("aws:ip-ranges.json@")
    assert chain.locate("198.18.0.10").source_version == f"azure:ServiceTags_Public@{azure_day}/changeNumber=347"
    assert chain.locate("198.18.49.1").basis == "cloud:digitalocean:US-SF"
    assert update.downloaded_database(dest) == dest / "GeoLite2-Country.mmdb"
    assert chain.locate("89.160.20.112").basis == "mmdb:GeoLite2-Country@2026-02-04"
    assert chain.locators[-1].description.startswith("mmdb:IPFire-Location-Country")


# -- bad downloads keep the previous copy -------------------------------------------------------


BAD_AWS = [
    ("truncated JSON", {"body": asset("feeds/malformed/truncated.json").read_bytes()}, "is not valid JSON"),
    ("wrong top-level shape", {"body": asset("feeds/malformed/list.json").read_bytes()}, "no 'prefixes' list"),
    (
        "HTML error page with 200",
        {"body": asset("feeds/malformed/error.html").read_bytes()},
        "is an HTML or XML page, not an AWS ip-ranges.json feed",
    ),
    (
        "no prefixes",
        {"body": asset("feeds/malformed/empty-prefixes.json").read_bytes()},
        "holds 0 prefixes with a location, fewer than the 1 expected",
    ),
    ("invalid prefix", {"body": asset("feeds/malformed/bad-prefix.json").read_bytes()}, "invalid prefix '300.198.0.0/15'"),
    ("HTTP 404", None, "HTTP 404 (not found) from https://127.0.0.1:"),
    ("HTTP 500", {"body": b"oops", "status": 500}, "HTTP 500 (Internal Server Error)"),
    ("connection closed mid-body", {"body": b"{" + b" " * 4000 + b"}", "mode": "truncate"}, "stopped after 2001 of 4002 bytes"),
    ("no answer", {"mode": "stall-headers"}, "no answer from https://127.0.0.1:"),
    ("stalled mid-body", {"body": b"x" * 100, "mode": "stall-body"}, "stalled for 0.3 s after 10 bytes"),
]


@pytest.mark.parametrize("case, route, reason", BAD_AWS, ids=[c[0] for c in BAD_AWS])
def test_bad_download_keeps_previous_copy(server: FeedServer, tmp_path: Path, case: str, route: dict | None, reason: str) -> None:  # type: ignore[type-arg]
    sources = sources_for(server, feeds=["aws"], dbip=False)
    good = aws_bytes(dt.date(2026, 11, 20))
    server.serve("/ip-ranges.json", good)
    assert fetch(sources, tmp_path, timeout=0.3)[0].status == OK
    target = tmp_path / cloud.FEED_FILES["aws"]
    before = target.stat()

    if route is None:
        del server.routes["/ip-ranges.json"]
    else:
        server.serve("/ip-ranges.json", **route)
    [result] = fetch(sources, tmp_path, timeout=0.3)

    assert result.status == KEPT, result.message
    assert reason in result.message
    assert result.message.endswith("; kept the previous copy (data of 2026-11-20)")
    assert result.date == "2026-11-20" and result.path == str(target)
    assert target.read_bytes() == good
    assert target.stat().st_mtime_ns == before.st_mtime_ns and target.stat().st_ino == before.st_ino
    assert leftovers(tmp_path) == []


def test_bad_download_without_previous_copy_fails(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/iaas/tools/public_ip_ranges.json", asset("feeds/malformed/error.html").read_bytes())
    [result] = fetch(sources_for(server, feeds=["oracle"], dbip=False), tmp_path)
    assert result.status == FAILED
    assert result.path == "" and result.date == ""
    assert result.message == (
        f"oracle: {server.url}/iaas/tools/public_ip_ranges.json: is an HTML or XML page, not an Oracle Cloud "
        "public_ip_ranges.json feed; no previous copy, the bundled snapshot is used"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_one_bad_source_does_not_stop_the_others(server: FeedServer, tmp_path: Path) -> None:
    serve_official(server)
    server.serve("/ipranges/cloud.json", b"{}")
    results = by_name(fetch(sources_for(server, dbip=False), tmp_path, today=TODAY))
    assert results["gcp"].status == FAILED and "no 'prefixes' list" in results["gcp"].message
    assert [n for n, r in results.items() if r.ok] == ["aws", "azure", "oracle", "digitalocean"]


def test_default_minimum_refuses_a_tiny_feed(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/ip-ranges.json", aws_bytes())
    [result] = fetch(update.default_sources(feeds=["aws"], dbip=False, base_url=server.url), tmp_path)
    assert result.status == FAILED
    assert "holds 8 prefixes with a location, fewer than the 4000 expected of a complete aws feed" in result.message


# -- Azure: the Download Center page ------------------------------------------------------------


def test_azure_page_without_link_fails(server: FeedServer, tmp_path: Path) -> None:
    server.serve(AZURE_PAGE, b"<!DOCTYPE html><html><body>Download</body></html>")
    [result] = fetch(sources_for(server, feeds=["azure"], dbip=False), tmp_path)
    assert result.status == FAILED
    assert "links no ServiceTags_Public_YYYYMMDD.json file" in result.message


@pytest.mark.slow
def test_azure_file_url_given_directly(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/x/ServiceTags_Public_20261123.json", asset("feeds/ServiceTags_Public_20261123.json").read_bytes())
    source = update.feed_source("azure", f"{server.url}/x/ServiceTags_Public_20261123.json", min_prefixes=1)
    [result] = fetch([source], tmp_path)
    assert (result.status, result.date) == (OK, "2026-11-23")
    # The date travels in the file's modification time (the format has none).
    assert feeds.read_feed_file("azure", tmp_path / cloud.FEED_FILES["azure"]).published == "2026-11-23"


# -- DB-IP ---------------------------------------------------------------------------------------


def test_dbip_falls_back_to_last_month(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/free/dbip-country-lite-2026-10.mmdb.gz", gzip.compress(GOOD_MMDB.read_bytes()))
    [result] = fetch(update.default_sources(feeds=[], base_url=server.url), tmp_path, today=dt.date(2026, 11, 1))
    assert result.status == OK
    assert result.url.endswith("dbip-country-lite-2026-10.mmdb.gz")
    paths = [path for _, path, _ in server.requests]
    assert paths == ["/free/dbip-country-lite-2026-11.mmdb.gz", "/free/dbip-country-lite-2026-10.mmdb.gz"]

    [missing] = fetch(update.default_sources(feeds=[], base_url=server.url), tmp_path / "other", today=dt.date(2027, 1, 5))
    assert missing.status == FAILED
    assert "no file for 2027-01 or 2026-12" in missing.message


@pytest.mark.parametrize(
    "body, reason",
    [
        (asset("feeds/malformed/dbip-garbage.mmdb.gz").read_bytes(), "the download is not a valid gzip file"),
        (GOOD_MMDB.read_bytes(), "the download is not a valid gzip file"),  # not compressed at all
        (gzip.compress(ANONYMOUS_MMDB.read_bytes()), "is a GeoIP2-Anonymous-IP database, which has no country data"),
        (gzip.compress(b"not an mmdb" * 100), "is not a usable country database"),
    ],
    ids=["gzip garbage", "not gzip", "Anonymous-IP database", "not an MMDB"],
)
def test_bad_dbip_download_keeps_previous(server: FeedServer, tmp_path: Path, body: bytes, reason: str) -> None:
    path = "/free/dbip-country-lite-2026-11.mmdb.gz"
    server.serve(path, gzip.compress(GOOD_MMDB.read_bytes()))
    sources = update.default_sources(feeds=[], base_url=server.url)
    assert fetch(sources, tmp_path, today=TODAY)[0].ok
    server.serve(path, body)
    [result] = fetch(sources, tmp_path, today=TODAY)
    assert result.status == KEPT
    assert reason in result.message
    assert result.message.endswith("kept the previous copy (data of 2026-02-04)")
    assert (tmp_path / "dbip-country-lite.mmdb").read_bytes() == GOOD_MMDB.read_bytes()
    assert leftovers(tmp_path) == []


# -- MaxMind --------------------------------------------------------------------------------------


def test_maxmind_redirect_to_storage_host_drops_credentials(server: FeedServer, tmp_path: Path) -> None:
    # MaxMind answers its permalink with a redirect to a presigned storage URL on another host:
    # here `localhost` (the same loopback server under another name), pinned like MaxMind's R2 host.
    storage = f"{server.localhost_url}/r2/GeoLite2-Country.tar.gz?X-Amz-Signature=abc"
    archive = tar_gz(GOOD_MMDB, "GeoLite2-Country_20260204/GeoLite2-Country.mmdb")
    serve_maxmind(server, MAXMIND_PATH, archive)
    server.serve(MAXMIND_PATH, status=302, location=storage)
    server.serve("/r2/GeoLite2-Country.tar.gz?X-Amz-Signature=abc", archive)
    source = update.maxmind_source("GeoLite2-Country", "s3cret-key", "123456", url=server.url + MAXMIND_PATH)
    source = replace(source, hosts=("127.0.0.1", "localhost"))
    [result] = fetch([source], tmp_path)
    assert result.status == OK, result.message
    seen = {path: (host, headers.get("Authorization")) for host, path, headers in server.requests}
    assert seen[MAXMIND_PATH][1] is not None
    assert seen["/r2/GeoLite2-Country.tar.gz?X-Amz-Signature=abc"] == (f"localhost:{server.port}", None)


def test_maxmind_legacy_url_masks_the_key(server: FeedServer, tmp_path: Path) -> None:
    legacy = "/app/geoip_download?edition_id=GeoLite2-Country&license_key=s3cret-key&suffix=tar.gz"
    serve_maxmind(server, legacy, tar_gz(GOOD_MMDB, "GeoLite2-Country_20260204/GeoLite2-Country.mmdb"))
    sources = update.default_sources(feeds=[], dbip=False, license_key="s3cret-key", base_url=server.url)
    assert sources[0].url == f"{server.url}{legacy}"
    assert sources[0].checksum_url == f"{server.url}{legacy}.sha256"
    [result] = fetch(sources, tmp_path)
    assert result.status == OK
    assert result.url.endswith("license_key=***&suffix=tar.gz")
    assert "s3cret" not in repr(sources[0])

    server.serve(legacy, b"Invalid license key", status=401)
    [refused] = fetch(sources, tmp_path)
    assert refused.status == KEPT
    assert "HTTP 401 from" in refused.message and "MaxMind refused the credentials" in refused.message
    assert "s3cret" not in refused.message + refused.url


@pytest.mark.parametrize(
    "archive, reason",
    [
        (lambda: tar_gz(ANONYMOUS_MMDB, "GeoIP2-Anonymous-IP_20260204/GeoIP2-Anonymous-IP.mmdb"), "which has no country data"),
        (lambda: tar_gz(asset("feeds/README.md"), "GeoLite2-Country_20260204/README.txt"), "the archive holds no .mmdb file"),
        (lambda: gzip.compress(GOOD_MMDB.read_bytes()), "not a valid tar.gz archive"),
        (lambda: asset("feeds/malformed/error.html").read_bytes(), "not a valid tar.gz archive"),
    ],
    ids=["Anonymous-IP database", "no mmdb inside", "gzip without tar", "HTML page"],
)
def test_bad_maxmind_archive(server: FeedServer, tmp_path: Path, archive, reason: str) -> None:  # type: ignore[no-untyped-def]
    serve_maxmind(server, MAXMIND_PATH, archive())
    source = update.maxmind_source("GeoLite2-Country", "k", "1", url=server.url + MAXMIND_PATH)
    [result] = fetch([source], tmp_path)
    assert result.status == FAILED
    assert reason in result.message
    assert result.message.endswith("no previous copy, the embedded database is used")
    assert list(tmp_path.iterdir()) == []


def test_maxmind_source_checks_edition_and_key() -> None:
    with pytest.raises(ValueError, match=r"GeoLite2-ASN.*has no country data"):
        update.maxmind_source("GeoLite2-ASN", "k")
    with pytest.raises(ValueError, match="needs a MaxMind license key"):
        update.maxmind_source("GeoLite2-Country", "")
    assert update.maxmind_source("GeoIP2-City", "k", "1").url == "https://download.maxmind.com/geoip/databases/GeoIP2-City/download?suffix=tar.gz"


# -- sources, directories, odds and ends --------------------------------------------------------


def test_default_sources_official_urls_and_overrides() -> None:
    sources = {s.name: s for s in update.default_sources()}
    assert list(sources) == ["aws", "gcp", "azure", "oracle", "digitalocean", "dbip-country-lite"]
    assert sources["aws"].url == "https://ip-ranges.amazonaws.com/ip-ranges.json"
    assert sources["dbip-country-lite"].url == "https://download.db-ip.com/free/dbip-country-lite-{month}.mmdb.gz"
    mirrored = {s.name: s for s in update.default_sources(base_url="https://127.0.0.1:9/mirror/", urls={"gcp": "https://127.0.0.1:9/g.json"})}
    assert mirrored["aws"].url == "https://127.0.0.1:9/mirror/ip-ranges.json"
    assert mirrored["azure"].url == "https://127.0.0.1:9/mirror/en-us/download/details.aspx?id=56519"
    assert mirrored["gcp"].url == "https://127.0.0.1:9/g.json"
    with pytest.raises(ValueError, match="no source named nope"):
        update.default_sources(urls={"nope": "https://127.0.0.1:9/"})


def test_non_http_url_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_bytes(aws_bytes())
    [result] = fetch([update.feed_source("aws", secret.as_uri(), min_prefixes=1)], tmp_path / "d")
    assert result.status == FAILED and "is not an http(s) URL" in result.message


def test_default_dir_and_its_creation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert update.default_dir() == tmp_path / "xdg" / "region-auditor" / "geoip"
    old = os.umask(0o022)
    try:
        created = update.ensure_dir()
    finally:
        os.umask(old)
    assert created == update.default_dir()
    assert stat.S_IMODE(created.stat().st_mode) == 0o700
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert update.default_dir() == tmp_path / "home" / ".local" / "share" / "region-auditor" / "geoip"

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FeedError, match="cannot create the GeoIP data directory"):
        update.ensure_dir(blocker / "geoip")


def test_downloaded_database_preference(tmp_path: Path) -> None:
    assert update.downloaded_database(tmp_path) is None
    for name in ("dbip-country-lite.mmdb", "GeoLite2-City.mmdb", "GeoLite2-Country.mmdb"):
        (tmp_path / name).write_bytes(GOOD_MMDB.read_bytes())
    assert update.downloaded_database(tmp_path) == tmp_path / "GeoLite2-Country.mmdb"
    (tmp_path / "GeoIP2-Country.mmdb").write_bytes(GOOD_MMDB.read_bytes())
    assert update.downloaded_database(tmp_path) == tmp_path / "GeoIP2-Country.mmdb"


def test_stale_temporaries_are_removed(server: FeedServer, tmp_path: Path) -> None:
    stale = tmp_path / ".tmp-abc.download"
    stale.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = tmp_path / ".tmp-def.download"  # maybe another update running now: left alone
    fresh.write_bytes(b"partial")
    server.serve("/ip-ranges.json", aws_bytes())
    fetch(sources_for(server, feeds=["aws"], dbip=False), tmp_path)
    assert leftovers(tmp_path) == [".tmp-def.download"]


def test_write_failure_in_the_cache_keeps_previous(server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server.serve("/ip-ranges.json", aws_bytes(dt.date(2026, 11, 20)))
    sources = sources_for(server, feeds=["aws"], dbip=False)
    assert fetch(sources, tmp_path)[0].ok

    def full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(update.os, "replace", full)
    server.serve("/ip-ranges.json", aws_bytes(dt.date(2026, 11, 27)))
    [result] = fetch(sources, tmp_path)
    assert result.status == KEPT
    assert result.message == f"aws: cannot write into {tmp_path} (No space left on device); kept the previous copy (data of 2026-11-20)"
    assert leftovers(tmp_path) == []


# -- through the command line -------------------------------------------------------------------


def test_cli_update_then_lookup_uses_the_download(server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import json as _json

    from click.testing import CliRunner

    from auditor.cli import cli

    for provider in update.MIN_PREFIXES:
        monkeypatch.setitem(update.MIN_PREFIXES, provider, 1)
    serve_official(server)
    runner = CliRunner()
    result = runner.invoke(
        cli, ["geoip", "update", "--base-url", server.url, "--only", "aws", "--only", "dbip-country-lite", "-q", "--json", "--accept-changes"]
    )
    assert result.exit_code == 0, result.output
    statuses = {r["source"]: r["status"] for r in _json.loads(result.stdout)}
    assert statuses == {"aws": "ok", "dbip-country-lite": "ok"}
    # The downloaded AWS feed (newer than the bundled snapshot) now answers, with its own date.
    (found,) = _json.loads(runner.invoke(cli, ["geoip", "lookup", "198.51.100.200", "--json"]).stdout)
    assert (found["country"], found["basis"]) == ("SG", "cloud:aws:ap-southeast-1")
    assert found["source_version"].startswith("aws:ip-ranges.json@")
    # The downloaded DB-IP database sits before the embedded one.
    bases = [layer["basis"] for layer in found["layers"]]
    assert len(bases) == 3
    assert bases[1].endswith("GeoLite2-Country@2026-02-04") and bases[2].endswith("IPFire-Location-Country@2026-06-25")

    # A bad download: HTML instead of JSON. The previous copy stays; exit 3 names the source.
    server.serve("/ip-ranges.json", b"<html><body>Service Unavailable</body></html>", headers={"Content-Type": "text/html"})
    bad = runner.invoke(cli, ["geoip", "update", "--base-url", server.url, "--only", "aws", "-q"])
    assert bad.exit_code == 3
    assert bad.stdout.startswith("kept-previous\t")
    assert "not updated: aws" in bad.stderr
    (again,) = _json.loads(runner.invoke(cli, ["geoip", "lookup", "198.51.100.200", "--json"]).stdout)
    assert again["basis"] == "cloud:aws:ap-southeast-1"
    usage = runner.invoke(cli, ["geoip", "update", "--edition", "GeoLite2-Country"])
    assert usage.exit_code == 2 and "need --license-key" in usage.output


# -- authenticity: https only, no downgrade, pinned hosts, checksums, moves (issue 16, item 5) ---


def test_plain_http_is_refused_unless_allow_http(plain_server: FeedServer, tmp_path: Path) -> None:
    plain_server.serve("/ip-ranges.json", aws_bytes())
    with pytest.raises(ValueError, match=r"aws: http://127\.0\.0\.1:\d+/ip-ranges\.json is plain HTTP; use an https:// URL, or pass --allow-http"):
        update.default_sources(feeds=["aws"], dbip=False, base_url=plain_server.url)
    # A Source made by hand is refused by the download itself.
    source = update.feed_source("aws", plain_server.url + "/ip-ranges.json", min_prefixes=1)
    [refused] = fetch([source], tmp_path)
    assert refused.status == FAILED
    assert "is plain HTTP; use an https:// URL, or pass --allow-http for a local mirror" in refused.message
    assert plain_server.requests == []
    # A local mirror over plain HTTP, said so explicitly.
    sources = [replace(s, min_prefixes=1) for s in update.default_sources(feeds=["aws"], dbip=False, base_url=plain_server.url, allow_http=True)]
    [result] = fetch(sources, tmp_path, allow_http=True)
    assert result.status == OK, result.message


@pytest.mark.parametrize("allow_http", [False, True], ids=["https only", "even with --allow-http"])
def test_https_to_http_redirect_is_refused(server: FeedServer, plain_server: FeedServer, tmp_path: Path, allow_http: bool) -> None:
    sources = sources_for(server, feeds=["aws"], dbip=False)
    server.serve("/ip-ranges.json", aws_bytes(dt.date(2026, 11, 20)))
    assert fetch(sources, tmp_path)[0].ok
    # Same host, same path, plain HTTP: what a man in the middle of a mirror's redirect would do.
    plain_server.serve("/ip-ranges.json", aws_bytes())
    server.serve("/ip-ranges.json", status=302, location=f"{plain_server.url}/ip-ranges.json")
    [result] = fetch(sources, tmp_path, allow_http=allow_http)
    assert result.status == KEPT
    assert f"redirected to {plain_server.url}/ip-ranges.json, which is a downgrade from https to plain HTTP, never followed" in result.message
    assert result.message.endswith("kept the previous copy (data of 2026-11-20)")
    assert plain_server.requests == []
    assert leftovers(tmp_path) == []


def test_redirect_to_an_unpinned_host_is_refused(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/ip-ranges.json", status=302, location=f"{server.localhost_url}/elsewhere.json")
    server.serve("/elsewhere.json", aws_bytes())
    [result] = fetch(sources_for(server, feeds=["aws"], dbip=False), tmp_path)
    assert result.status == FAILED
    assert f"redirected to {server.localhost_url}/elsewhere.json, which is on localhost, not a host aws may come from (127.0.0.1)" in result.message
    assert [path for _, path, _ in server.requests] == ["/ip-ranges.json"]
    # The same redirect within the source's pinned hosts is followed.
    [followed] = fetch([replace(s, hosts=("127.0.0.1", "localhost")) for s in sources_for(server, feeds=["aws"], dbip=False)], tmp_path)
    assert followed.status == OK, followed.message


def test_official_sources_are_pinned_to_their_hosts() -> None:
    sources = {s.name: s for s in update.default_sources(license_key="k", account_id="1")}
    assert sources["aws"].allowed_hosts == ("ip-ranges.amazonaws.com",)
    assert sources["gcp"].allowed_hosts == ("www.gstatic.com",)
    assert sources["azure"].allowed_hosts == ("www.microsoft.com", "download.microsoft.com")
    assert sources["oracle"].allowed_hosts == ("docs.oracle.com",)
    assert sources["digitalocean"].allowed_hosts == ("digitalocean.com", "www.digitalocean.com")
    assert sources["dbip-country-lite"].allowed_hosts == ("download.db-ip.com",)
    assert sources["GeoLite2-Country"].allowed_hosts == ("download.maxmind.com", update.MAXMIND_STORAGE_HOST)
    assert sources["GeoLite2-Country"].checksum_url == "https://download.maxmind.com/geoip/databases/GeoLite2-Country/download?suffix=tar.gz.sha256"
    # A mirror: its own host only, for every source (MaxMind's checksum from the mirror too).
    mirrored = update.default_sources(
        license_key="k", account_id="1", base_url="https://mirror.example:8443/m", urls={"gcp": "https://other.example/cloud.json"}
    )
    assert {s.name: s.allowed_hosts for s in mirrored} == {
        "aws": ("mirror.example",),
        "gcp": ("other.example",),
        "azure": ("mirror.example",),
        "oracle": ("mirror.example",),
        "digitalocean": ("mirror.example",),
        "dbip-country-lite": ("mirror.example",),
        "GeoLite2-Country": ("mirror.example",),
    }
    assert mirrored[-1].checksum_url == "https://mirror.example:8443/m/geoip/databases/GeoLite2-Country/download?suffix=tar.gz.sha256"


AZURE_LINKS = [
    ("plain HTTP on the page's host", "http://127.0.0.1:{port}", ", which is a downgrade from https to plain HTTP, never followed"),
    ("another host", "https://localhost:{port}", ", which is on localhost, not a host azure may come from (127.0.0.1)"),
    ("another scheme", "ftp://127.0.0.1:{port}", ", which is not an http(s) URL"),
]


@pytest.mark.parametrize("case, base, reason", AZURE_LINKS, ids=[c[0] for c in AZURE_LINKS])
def test_azure_page_link_must_stay_on_https_and_a_pinned_host(server: FeedServer, tmp_path: Path, case: str, base: str, reason: str) -> None:
    page = asset("feeds/azure-details.html").read_text().replace("{base}", base.format(port=server.port))
    server.serve(AZURE_PAGE, page.encode(), headers={"Content-Type": "text/html"})
    server.serve(f"{AZURE_DIR}/ServiceTags_Public_20261123.json", asset("feeds/ServiceTags_Public_20261123.json").read_bytes())
    [result] = fetch(sources_for(server, feeds=["azure"], dbip=False), tmp_path, allow_http=True)
    assert result.status == FAILED
    assert f"{server.url}{AZURE_PAGE} links the file at " in result.message and reason in result.message
    assert [path for _, path, _ in server.requests] == [AZURE_PAGE]


MAXMIND_CHECKSUMS = [
    (
        "another archive's SHA-256",
        hashlib.sha256(b"another archive").hexdigest().encode() + b"  GeoLite2-Country_20260204.tar.gz\n",
        "does not match the SHA-256 published at https://127.0.0.1:",
    ),
    ("not a SHA-256", b"<html>Service Unavailable</html>", "holds no SHA-256, so the download cannot be verified"),
    ("not published", None, "no SHA-256 is published at https://127.0.0.1:"),
]


@pytest.mark.parametrize("case, published, reason", MAXMIND_CHECKSUMS, ids=[c[0] for c in MAXMIND_CHECKSUMS])
def test_maxmind_archive_must_match_its_published_sha256(server: FeedServer, tmp_path: Path, case: str, published: bytes | None, reason: str) -> None:
    good = tar_gz(GOOD_MMDB, "GeoLite2-Country_20260204/GeoLite2-Country.mmdb")
    serve_maxmind(server, MAXMIND_PATH, good)
    source = update.maxmind_source("GeoLite2-Country", "k", "1", url=server.url + MAXMIND_PATH)
    assert fetch([source], tmp_path)[0].ok
    installed = (tmp_path / "GeoLite2-Country.mmdb").read_bytes()

    # A different (valid) database whose checksum file was not, or could not be, altered.
    forged = tar_gz(ANONYMOUS_MMDB.with_name("GeoIP2-Country-Test.mmdb"), "GeoLite2-Country_20260204/GeoLite2-Country.mmdb")
    serve_maxmind(server, MAXMIND_PATH, forged, published=published)
    if published is None:
        del server.routes[MAXMIND_SHA256_PATH]
    [result] = fetch([source], tmp_path)
    assert result.status == KEPT, result.message
    assert reason in result.message
    assert result.message.endswith("kept the previous copy (data of 2026-02-04)")
    assert (tmp_path / "GeoLite2-Country.mmdb").read_bytes() == installed
    assert leftovers(tmp_path) == []


# -- moves between countries --------------------------------------------------------------------


def snapshot_doc(provider: str, created: dt.date | None = None) -> dict:  # type: ignore[type-arg]
    """The bundled snapshot's feed of `provider` (aws or gcp) in the provider's own format, dated
    `created` (default: fresh): what a real download looks like, as opposed to the small fixtures."""
    feed = next(f for f in cloud.bundled_feeds() if f.provider == provider)
    day = created or _fresh()
    if provider == "aws":
        v4 = [
            {"ip_prefix": r.network, "region": r.region, "service": "EC2", "network_border_group": r.region}
            for r in feed.ranges
            if ":" not in r.network
        ]
        v6 = [
            {"ipv6_prefix": r.network, "region": r.region, "service": "EC2", "network_border_group": r.region}
            for r in feed.ranges
            if ":" in r.network
        ]
        return {"syncToken": "1", "createDate": day.strftime("%Y-%m-%d-21-03-13"), "prefixes": v4, "ipv6_prefixes": v6}
    prefixes = [{"ipv6Prefix" if ":" in r.network else "ipv4Prefix": r.network, "service": "Google Cloud", "scope": r.region} for r in feed.ranges]
    return {"syncToken": "1", "creationTime": f"{day}T10:03:28.48825", "prefixes": prefixes}


def aws_with(extra: list[dict[str, str]], drop: tuple[str, ...] = (), created: dt.date | None = None, **regions: str) -> bytes:
    """The bundled snapshot's AWS feed with prefixes added, dropped, or given another region (`regions`)."""
    doc = snapshot_doc("aws", created)
    doc["prefixes"] = [{**p, "region": regions.get(p["ip_prefix"], p["region"])} for p in doc["prefixes"] if p["ip_prefix"] not in drop] + [
        {"service": "EC2", "network_border_group": e["region"], **e} for e in extra
    ]
    return json.dumps(doc).encode()


def gcp_with(extra: list[dict[str, str]], created: dt.date | None = None) -> bytes:
    """The bundled snapshot's Google Cloud feed with prefixes added."""
    doc = snapshot_doc("gcp", created)
    doc["prefixes"] += [{"service": "Google Cloud", **e} for e in extra]
    return json.dumps(doc).encode()


AWS_PREFIXES = len(next(f for f in cloud.bundled_feeds() if f.provider == "aws").ranges)
FORGED_HK = [{"ip_prefix": "43.198.0.0/16", "region": "us-east-1"}]
"""The hostile pass's forged feed: Hong Kong's 43.198.0.0/16 placed in us-east-1."""
FORGED_GCP = [{"ipv4Prefix": "43.198.12.0/24", "scope": "us-central1"}]
"""The second hostile pass's forged Google Cloud feed: AWS Hong Kong's 43.198.12.0/24 (the demo's
egress) claimed for us-central1, new space for GCP that the most specific prefix rule lets win."""
MMDB_HK = "203.198.0.0/24"
"""Hong Kong space in no cloud feed: only the country database places it (HK)."""


@pytest.mark.slow
def test_forged_aws_feed_moving_hong_kong_is_refused_with_its_diff(server: FeedServer, tmp_path: Path) -> None:
    sources = sources_for(server, feeds=["aws"], dbip=False)
    server.serve("/ip-ranges.json", aws_with([]))
    [same] = update.update(sources, tmp_path)
    assert (same.status, same.changes) == (OK, ()), same.message
    assert "move" not in same.message and "change" not in same.message
    before = (tmp_path / cloud.FEED_FILES["aws"]).read_bytes()

    server.serve("/ip-ranges.json", aws_with(FORGED_HK, created=_fresh() + dt.timedelta(days=1)))
    [result] = update.update(sources, tmp_path)
    assert result.status == KEPT
    assert result.changes == ("43.198.0.0/16: HK -> US (was cloud:aws:ap-east-1)",)
    assert (
        f"refused: the download moves 1 of the {AWS_PREFIXES} prefixes in use to another country (0.0%; first: 43.198.0.0/16: HK -> US), "
        "and changes the country the locator gives in 1 of its prefixes, 1 of them changing a verdict "
        "(first: 43.198.0.0/16: HK -> US (was cloud:aws:ap-east-1)), against aws:ip-ranges.json@"
    ) in result.message
    assert "the other feeds in use and mmdb:IPFire-Location-Country@2026-06-25" in result.message
    assert "if these changes are expected, run again with --accept-changes" in result.message
    assert (tmp_path / cloud.FEED_FILES["aws"]).read_bytes() == before
    assert build_locator(data_dir=tmp_path).locate("43.198.12.34").country_code == "HK"

    [accepted] = update.update(sources, tmp_path, accept_changes=True)
    assert accepted.status == OK, accepted.message
    assert accepted.changes == ("43.198.0.0/16: HK -> US (was cloud:aws:ap-east-1)",)
    assert f"; accepted: the download moves 1 of the {AWS_PREFIXES} prefixes in use to another country" in accepted.message


def test_forged_feed_is_compared_with_the_bundled_snapshot_when_none_is_installed(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/ip-ranges.json", aws_with(FORGED_HK))
    [result] = update.update(sources_for(server, feeds=["aws"], dbip=False), tmp_path)
    assert result.status == FAILED
    assert result.changes == ("43.198.0.0/16: HK -> US (was cloud:aws:ap-east-1)",)
    assert f"against aws:cloudip-db@{cloud.bundle_info().date}" in result.message
    assert list(tmp_path.iterdir()) == []


def test_ordinary_feed_changes_are_not_moves(server: FeedServer, tmp_path: Path) -> None:
    sources = sources_for(server, feeds=["aws"], dbip=False)
    server.serve("/ip-ranges.json", aws_with([]))
    assert update.update(sources, tmp_path)[0].ok
    # A week's changes: a prefix in new space that the country database already places in the
    # region's country, a more specific prefix in the region of the range that holds it, a
    # prefix withdrawn where the database agrees with it, a prefix re-assigned between two
    # regions of one country.
    us_east = next(p["ip_prefix"] for p in snapshot_doc("aws")["prefixes"] if p["region"] == "us-east-1")
    weekly = aws_with(
        [{"ip_prefix": "23.1.0.0/24", "region": "us-east-1"}, {"ip_prefix": "43.198.128.0/17", "region": "ap-east-1"}],
        drop=("18.162.0.0/16",),
        created=_fresh() + dt.timedelta(days=7),
        **{us_east: "us-west-2"},
    )
    server.serve("/ip-ranges.json", weekly)
    [result] = update.update(sources, tmp_path)
    assert result.status == OK, result.message
    assert result.changes == ()
    assert "move" not in result.message and "change" not in result.message
    assert build_locator(data_dir=tmp_path).locate("23.1.0.1").basis == "cloud:aws:us-east-1"


def test_forged_aws_feed_over_space_only_the_database_placed_is_refused(server: FeedServer, tmp_path: Path) -> None:
    from auditor.cli import _verdict_changes

    assert build_locator(data_dir=tmp_path).locate("203.198.0.1").basis.startswith("mmdb:IPFire-Location-Country")
    server.serve("/ip-ranges.json", aws_with([{"ip_prefix": MMDB_HK, "region": "us-east-1"}]))
    sources = sources_for(server, feeds=["aws"], dbip=False)
    [result] = update.update(sources, tmp_path, verdict_changes=_verdict_changes())
    assert result.status == FAILED
    assert result.changes == ("203.198.0.0/24: HK -> US (was mmdb:IPFire-Location-Country@2026-06-25)",)
    assert "changes the country the locator gives in 1 of its prefixes, 1 of them changing a verdict" in result.message
    assert build_locator(data_dir=tmp_path).locate("203.198.0.1").country_code == "HK"
    # The same prefix placed where the database places it changes no answer.
    server.serve("/ip-ranges.json", aws_with([{"ip_prefix": MMDB_HK, "region": "ap-east-1"}]))
    [agreed] = update.update(sources, tmp_path, verdict_changes=_verdict_changes())
    assert (agreed.status, agreed.changes) == (OK, ()), agreed.message


def test_legitimate_gcp_update_adding_new_space_installs(server: FeedServer, tmp_path: Path) -> None:
    from auditor.cli import _verdict_changes

    # New space the database places in the US, in us-central1; and space no source placed
    # (198.18.16.0/24, a benchmarking network), which gains a country: listed, not refused.
    server.serve(
        "/ipranges/cloud.json",
        gcp_with([{"ipv4Prefix": "64.233.160.0/24", "scope": "us-central1"}, {"ipv4Prefix": "198.18.16.0/24", "scope": "asia-southeast1"}]),
    )
    [result] = update.update(sources_for(server, feeds=["gcp"], dbip=False), tmp_path, verdict_changes=_verdict_changes())
    assert result.status == OK, result.message
    assert result.changes == ("198.18.16.0/24: ? -> SG (was unknown)",)
    assert "changes the country the locator gives in 1 of its prefixes, none changing a verdict" in result.message
    chain = build_locator(data_dir=tmp_path)
    assert chain.locate("64.233.160.9").basis == "cloud:gcp:us-central1"
    assert chain.locate("198.18.16.9").country_code == "SG"


def _feed(ranges: list[tuple[str, str]], provider: str = "aws") -> feeds.Feed:
    return feeds.Feed(provider, "ip-ranges.json", "2026-11-28", "", tuple(feeds.CloudRange(n, r) for n, r in ranges))


MOVES = [
    ("same prefix, other country", [("43.198.0.0/15", "ap-east-1")], [("43.198.0.0/15", "us-east-1")], ["43.198.0.0/15: HK -> US"]),
    (
        "more specific prefix added",
        [("43.198.0.0/15", "ap-east-1")],
        [("43.198.0.0/15", "ap-east-1"), ("43.198.0.0/16", "us-east-1")],
        ["43.198.0.0/16: HK -> US"],
    ),
    ("specific prefix replaced by a covering one", [("43.198.0.0/16", "ap-east-1")], [("43.0.0.0/8", "us-east-1")], ["43.198.0.0/16: HK -> US"]),
    ("to an unknown region", [("43.198.0.0/15", "ap-east-1")], [("43.198.0.0/15", "xx-new-1")], ["43.198.0.0/15: HK -> ?"]),
    (
        "into two countries at once",
        [("2406:da1e::/32", "ap-east-1")],
        [("2406:da1e::/32", "ap-east-1"), ("2406:da1e::/32", "us-east-1")],
        ["2406:da1e::/32: HK -> HK|US"],
    ),
    ("same country, other region", [("198.51.100.0/24", "us-east-1")], [("198.51.100.0/24", "us-west-2")], []),
    ("new space", [("198.51.100.0/24", "us-east-1")], [("198.51.100.0/24", "us-east-1"), ("43.198.0.0/15", "ap-east-1")], []),
    ("withdrawn", [("198.51.100.0/24", "us-east-1"), ("43.198.0.0/15", "ap-east-1")], [("198.51.100.0/24", "us-east-1")], []),
    ("from an unknown region", [("203.0.113.0/24", "xx-new-1")], [("203.0.113.0/24", "ap-east-1")], []),
]


@pytest.mark.parametrize("case, old, new, moves", MOVES, ids=[c[0] for c in MOVES])
def test_feed_moves(case: str, old: list[tuple[str, str]], new: list[tuple[str, str]], moves: list[str]) -> None:
    assert [str(m) for m in update.feed_moves(_feed(old), _feed(new))] == moves


def _changes(old: feeds.Feed, new: feeds.Feed, others: list[feeds.Feed], databases: list, verdict=None) -> list[update.Change]:  # type: ignore[type-arg, no-untyped-def]
    before, after = cloud.CloudRangeLocator([*others, old]), cloud.CloudRangeLocator([*others, new])
    return update.locator_changes(update.changed_prefixes(old, new), before, after, databases, verdict)


def test_share_of_moves_without_a_verdict_change() -> None:
    # 100 prefixes in Singapore; some move to Japan, which changes no verdict (both supported).
    old = _feed([(f"10.0.{i}.0/24", "ap-southeast-1") for i in range(100)])
    same = lambda a, b: False  # noqa: E731
    for moved, refused in ((5, False), (6, True)):
        new = _feed([(f"10.0.{i}.0/24", "ap-northeast-1" if i < moved else "ap-southeast-1") for i in range(100)])
        moves = update.feed_moves(old, new)
        assert len(moves) == moved
        changes = _changes(old, new, [], [], same)
        assert [str(c) for c in changes][:1] == ["10.0.0.0/24: SG -> JP (was cloud:aws:ap-southeast-1)"] and not any(c.decisive for c in changes)
        clause, refuses = update.describe_changes(moves, changes, 100)
        assert refuses is refused, clause
        assert clause.startswith(
            f"the download moves {moved} of the 100 prefixes in use to another country ({moved / 100:.1%}; first: 10.0.0.0/24: SG -> JP), "
            f"and changes the country the locator gives in {moved} of its prefixes, none changing a verdict"
        )
    # One change of a verdict is enough.
    hk = _feed([("10.0.0.0/24", "ap-east-1")] + [(f"10.0.{i}.0/24", "ap-southeast-1") for i in range(1, 100)])
    clause, refuses = update.describe_changes(update.feed_moves(old, hk), _changes(old, hk, [], [], lambda a, b: "HK" in (a, b)), 100)
    assert refuses and "1 of them changing a verdict (first: 10.0.0.0/24: SG -> HK (was cloud:aws:ap-southeast-1))" in clause


class _Database(Locator):
    """A country database of a few networks, nested ones more specific, answering like an MMDB:
    with the largest network around the address that no other listed network cuts."""

    def __init__(self, networks: list[tuple[str, str]]) -> None:
        self.networks = [(ipaddress.ip_network(n), c) for n, c in networks]

    @property
    def description(self) -> str:
        return "mmdb:Test"

    def locate(self, ip: str) -> Location:
        addr = ipaddress.ip_address(ip)
        holding = [(n, c) for n, c in self.networks if n.version == addr.version and addr in n]
        network, country = (
            max(holding, key=lambda h: h[0].prefixlen) if holding else (ipaddress.ip_network("0.0.0.0/0" if addr.version == 4 else "::/0"), "")
        )
        for plen in range(network.prefixlen, addr.max_prefixlen + 1):
            leaf = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
            if not any(n != leaf and n.version == leaf.version and n.subnet_of(leaf) for n, _ in self.networks):  # type: ignore[arg-type]
                break
        return Location(country, "mmdb:Test" if country else "not-found:Test", network=str(leaf))


LOCATOR_CHANGES = [
    # (case, provider of the feed, other providers' prefixes, old feed, new feed, database, changes)
    (
        "a move under other providers' more specific prefixes",
        "aws",
        [("gcp", "10.0.0.0/25", "us-central1"), ("gcp", "10.0.0.128/25", "us-east1")],
        [("10.0.0.0/24", "ap-east-1")],
        [("10.0.0.0/24", "us-east-1")],
        [],
        [],
    ),
    (
        "a prefix also published by another provider, in another country: no answer",
        "aws",
        [("gcp", "43.198.12.0/24", "us-central1")],
        [("43.198.0.0/15", "ap-east-1")],
        [("43.198.0.0/15", "ap-east-1"), ("43.198.12.0/24", "ap-east-1")],
        [],
        ["43.198.12.0/24: US -> ? (was cloud:gcp:us-central1)"],
    ),
    (
        "a new prefix over another provider's",
        "gcp",
        [("aws", "43.198.0.0/15", "ap-east-1")],
        [],
        [("43.198.12.0/24", "us-central1")],
        [],
        ["43.198.12.0/24: HK -> US (was cloud:aws:ap-east-1)"],
    ),
    (
        "a new prefix around another provider's, found at its boundary",
        "gcp",
        [("aws", "43.198.12.0/24", "ap-east-1")],
        [],
        [("43.198.0.0/16", "asia-east2")],
        [("43.198.0.0/16", "US")],
        ["43.198.0.0/16: US -> HK (was mmdb:Test)"],
    ),
    (
        "space the database places elsewhere, in the middle of a prefix",
        "aws",
        [],
        [],
        [("10.0.0.0/16", "us-east-1")],
        [("10.0.77.0/24", "CN"), ("10.0.0.0/16", "US")],
        ["10.0.0.0/16: CN -> US (was mmdb:Test)"],
    ),
    ("the database agrees", "aws", [], [], [("10.0.0.0/16", "us-east-1")], [("10.0.0.0/16", "US")], []),
    (
        "no source placed it: a change, not decisive",
        "aws",
        [],
        [],
        [("10.0.0.0/16", "us-east-1")],
        [],
        ["10.0.0.0/16: ? -> US (was unknown) (not decisive)"],
    ),
    (
        "withdrawn, the database places it elsewhere",
        "aws",
        [],
        [("10.0.0.0/16", "ap-east-1")],
        [],
        [("10.0.0.0/8", "US")],
        ["10.0.0.0/16: HK -> US (was cloud:aws:ap-east-1)"],
    ),
    ("withdrawn to nowhere", "aws", [], [("10.0.0.0/16", "ap-east-1")], [], [], ["10.0.0.0/16: HK -> ? (was cloud:aws:ap-east-1)"]),
    (
        "to a region no table knows, the database agrees",
        "aws",
        [],
        [("10.0.0.0/16", "ap-east-1")],
        [("10.0.0.0/16", "xx-new-1")],
        [("10.0.0.0/16", "HK")],
        [],
    ),
    (
        "the same prefix as another provider's, in another country",
        "aws",
        [("gcp", "10.0.0.0/16", "asia-east2")],
        [],
        [("10.0.0.0/16", "us-east-1")],
        [("10.0.0.0/8", "US")],
        ["10.0.0.0/16: HK -> US (was cloud:gcp:asia-east2)"],
    ),
    (
        "IPv6",
        "aws",
        [],
        [("2406:da1e::/32", "ap-east-1")],
        [("2406:da1e::/32", "ap-east-1"), ("2406:da1e:8000::/33", "us-east-1")],
        [],
        ["2406:da1e:8000::/33: HK -> US (was cloud:aws:ap-east-1)"],
    ),
]


@pytest.mark.parametrize("case, provider, others, old, new, database, changes", LOCATOR_CHANGES, ids=[c[0] for c in LOCATOR_CHANGES])
def test_locator_changes(
    case: str,
    provider: str,
    others: list[tuple[str, str, str]],
    old: list[tuple[str, str]],
    new: list[tuple[str, str]],
    database: list[tuple[str, str]],
    changes: list[str],
) -> None:
    other_feeds = [_feed([(n, r) for p, n, r in others if p == name], name) for name in ("aws", "gcp") if any(p == name for p, _, _ in others)]
    found = _changes(_feed(old, provider), _feed(new, provider), other_feeds, [_Database(database)])
    assert [str(c) + ("" if c.decisive else " (not decisive)") for c in found] == changes


# -- the hostile pass's reproduction, through the command line -----------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_cli_refuses_the_forged_feed_that_hid_the_demo_violations(
    server: FeedServer, plain_server: FeedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from auditor.cli import cli

    monkeypatch.setitem(update.MIN_PREFIXES, "aws", 1)
    runner = CliRunner()
    demo = ["logs", str(EXAMPLES / "squid-access.log"), "--config", str(EXAMPLES / "auditor.toml")]

    def hong_kong_violations(db: str) -> int:
        result = runner.invoke(cli, [*demo, "--db", str(tmp_path / db), "--json"])
        return sum(r["calls"] for r in json.loads(result.stdout) if r["country"] == "HK" and r["verdict"] == "violation")

    assert hong_kong_violations("before.db") == 14

    # Plain HTTP: a usage error (exit 2) that says what to do.
    plain_server.serve("/ip-ranges.json", aws_with(FORGED_HK))
    refused = runner.invoke(cli, ["geoip", "update", "--base-url", plain_server.url, "--only", "aws", "-q"])
    assert refused.exit_code == 2
    assert "is plain HTTP; use an https:// URL, or pass --allow-http for a local mirror" in refused.output
    assert plain_server.requests == []

    # The forged feed over https: refused, its moves listed, exit 3; the verdicts stand.
    server.serve("/ip-ranges.json", aws_with(FORGED_HK))
    forged = runner.invoke(cli, ["geoip", "update", "--base-url", server.url, "--only", "aws", "-q"])
    assert forged.exit_code == 3, forged.output
    assert forged.stdout.startswith("failed\taws: refused: ")
    assert "\t  43.198.0.0/16: HK -> US (was cloud:aws:ap-east-1)\n" in forged.stdout
    assert "run again with --accept-changes" in forged.stdout
    assert hong_kong_violations("after-refusal.db") == 14

    # --accept-changes is the operator's decision, and installs it (this is what it protects).
    accepted = runner.invoke(cli, ["geoip", "update", "--base-url", server.url, "--only", "aws", "-q", "--accept-changes", "--json"])
    assert accepted.exit_code == 0, accepted.output
    [row] = json.loads(accepted.stdout)
    assert row["status"] == "ok" and row["changes"] == ["43.198.0.0/16: HK -> US (was cloud:aws:ap-east-1)"]
    assert hong_kong_violations("after-acceptance.db") == 0


def test_cli_refuses_a_forged_feed_of_another_provider_over_the_demo_egress(server: FeedServer, tmp_path: Path) -> None:
    """The second hostile pass: a Google Cloud feed claims AWS Hong Kong's 43.198.12.0/24 for
    us-central1. For GCP it is new space, not a move; but the most specific prefix across
    providers wins, so it would answer for the demo's egress 43.198.12.34. It is judged by what it
    changes in the whole locator's answers."""
    from click.testing import CliRunner

    from auditor.cli import cli

    runner = CliRunner()
    demo = ["logs", str(EXAMPLES / "squid-access.log"), "--config", str(EXAMPLES / "auditor.toml")]

    def verdicts(db: str) -> list[tuple[str, str, int, str]]:
        result = runner.invoke(cli, [*demo, "--db", str(tmp_path / db), "--json"])
        return sorted((r["country"], r["verdict"], r["calls"], r["basis"]) for r in json.loads(result.stdout))

    before = verdicts("before.db")
    assert ("HK", "violation", 14, "cloud:aws:ap-east-1") in before

    server.serve("/ipranges/cloud.json", gcp_with(FORGED_GCP))
    forged = runner.invoke(cli, ["geoip", "update", "--base-url", server.url, "--only", "gcp", "-q"])
    assert forged.exit_code == 3, forged.output
    assert forged.stdout.startswith(
        "failed\tgcp: refused: the download changes the country the locator gives in 1 of its prefixes, "
        "1 of them changing a verdict (first: 43.198.12.0/24: HK -> US (was cloud:aws:ap-east-1)), "
        f"against gcp:cloudip-db@{cloud.bundle_info().date}"
    )
    assert "\t  43.198.12.0/24: HK -> US (was cloud:aws:ap-east-1)\n" in forged.stdout
    assert "run again with --accept-changes" in forged.stdout
    assert "not updated: gcp" in forged.stderr
    assert verdicts("after-refusal.db") == before

    accepted = runner.invoke(cli, ["geoip", "update", "--base-url", server.url, "--only", "gcp", "-q", "--accept-changes", "--json"])
    assert accepted.exit_code == 0, accepted.output
    [row] = json.loads(accepted.stdout)
    assert row["status"] == "ok" and row["changes"] == ["43.198.12.0/24: HK -> US (was cloud:aws:ap-east-1)"]
    assert "; accepted: the download changes the country the locator gives in 1 of its prefixes" in row["message"]
    assert ("US", "allowed", 14, "cloud:gcp:us-central1") in verdicts("after-acceptance.db")


def test_cli_judges_feeds_against_the_database_given(server: FeedServer, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from auditor.cli import cli

    runner = CliRunner()
    server.serve("/ip-ranges.json", aws_with([{"ip_prefix": MMDB_HK, "region": "us-east-1"}]))
    update_aws = ["geoip", "update", "--base-url", server.url, "--only", "aws", "-q"]
    refused = runner.invoke(cli, [*update_aws, "--geoip-db", str(GOOD_MMDB)])
    assert refused.exit_code == 3, refused.output
    assert "the other feeds in use and mmdb:GeoLite2-Country@2026-02-04 > mmdb:IPFire-Location-Country@2026-06-25" in refused.stdout
    assert f"\t  {MMDB_HK}: HK -> US (was mmdb:IPFire-Location-Country@2026-06-25)\n" in refused.stdout
    missing = runner.invoke(cli, [*update_aws, "--geoip-db", str(tmp_path / "none.mmdb")])
    assert missing.exit_code == 3 and "no such GeoIP database" in missing.output
    assert server.requests[1:] == []  # nothing downloaded for a database that cannot be opened
