"""Shared fixtures: test assets, an event factory, tiny MMDB files, real SQLite and PostgreSQL stores."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from auditor.events import ConnectionEvent

# Property tests (tests/properties): `ci`, the default, replays the same examples on every run
# (derandomized), sized to keep the suite under a minute on two cores; `dev` draws new ones each
# run; `long` draws a hundred times more (HYPOTHESIS_PROFILE=long, for a hostile pass by hand).
# The tests size themselves from max_examples (tests/properties/__init__.py `budget`).
_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, deadline=None, suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("long", max_examples=10_000, deadline=None, suppress_health_check=_QUIET, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ASSETS = Path(__file__).parent / "data"
PG_ADMIN_URL = os.environ.get("AUDITOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` run first (in their order): `make test-all` spreads the suite over
    processes (pytest-xdist), which hand out tests in this order, so the long ones start early
    and none is left running alone at the end. Tests marked `root` are skipped without root."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if os.geteuid() != 0:
        needs_root = pytest.mark.skip(reason="needs root (network namespaces, capture on an interface)")
        for item in items:
            if item.get_closest_marker("root") is not None:
                item.add_marker(needs_root)


def asset(name: str) -> Path:
    """A file under tests/data; fails loudly when it is missing."""
    path = ASSETS / name
    if not path.is_file():
        raise FileNotFoundError(f"test asset {name} is missing from {ASSETS}")
    return path


def make_event(**fields: Any) -> ConnectionEvent:
    """A ConnectionEvent with plausible defaults; override any field."""
    defaults: dict[str, Any] = {
        "ts": dt.datetime(2024, 7, 22, 9, 0, tzinfo=dt.UTC),
        "orig_h": "10.20.1.5",
        "server_name": "api.openai.com",
        "source": "test.log:1",
        "resp_h": "162.159.140.245",
        "resp_p": 443,
        "method": "CONNECT",
        "status": 200,
    }
    defaults.update(fields)
    return ConnectionEvent(**defaults)


@pytest.fixture
def write_mmdb(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a tiny MMDB with mmdb-writer: write_mmdb({"198.51.100.0/24": record}, ...) -> path."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    def write(networks: dict[str, dict[str, Any]], *, ip_version: int = 6, database_type: str = "Test-Country", name: str = "test.mmdb") -> Path:
        writer = MMDBWriter(ip_version=ip_version, database_type=database_type, languages=["en"], description="test", ipv4_compatible=ip_version == 6)
        for network, record in networks.items():
            writer.insert_network(IPSet([network]), record)
        path = tmp_path / name
        writer.to_db_file(str(path))
        return path

    return write


def _pg_available() -> bool:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure to connect means no server for these tests
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (dropped afterwards).

    CI (.ci/run) makes sure the server runs; set AUDITOR_TEST_PG to use another one. Missing
    PostgreSQL fails the tests rather than skipping them, unless AUDITOR_SKIP_PG=1.
    """
    import sqlalchemy as sa

    if not _pg_available():
        if os.environ.get("AUDITOR_SKIP_PG") == "1":
            pytest.skip("PostgreSQL not reachable and AUDITOR_SKIP_PG=1")
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; start it (see .ci/run) or set AUDITOR_TEST_PG")
    name = f"ra_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the default database and the GeoIP cache out of the real home directory, and ignore
    GeoIP databases installed on the machine (tests name theirs explicitly)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setattr("geoip.mmdb.SYSTEM_DIRS", ())


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A findings database target: a fresh SQLite file path, or a fresh PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "findings.db")
    return request.getfixturevalue("pg_url")
