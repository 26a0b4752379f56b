"""The findings store on SQLAlchemy: SQLite by default, PostgreSQL for fleets (see auditor.store
for the interface and the schema's meaning). Imported only by what opens a database, so commands
that never do (`pcap --events`, `rules`, `geoip`) start without SQLAlchemy."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import stat
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from sqlite3 import sqlite_version_info
from types import TracebackType
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from auditor.events import Tally, tunnel_record
from auditor.redact import redact
from auditor.spans import Span, add_span
from auditor.store import (
    EVIDENCE_PER_OBSERVATION,
    VERDICT_ORDER,
    Activity,
    Checkpoint,
    CheckpointMoved,
    DayCount,
    Evidence,
    FindingStore,
    Fingerprinted,
    InputRead,
    InputRecord,
    Row,
    RowKey,
    RuleCount,
    RunRecord,
    Scope,
    StoreError,
    _naive_utc,
    recorded_name,
    to_url,
)
from rules.policy import PROVIDER_BLOCKED

REDACT_BYTES = 1 << 20
"""How much of an evidence record is redacted before its first 2,000 characters are kept."""
SCHEMA_VERSION = 2
MIGRATIONS = {
    # version reached: statements that take the previous version there
    2: (
        "ALTER TABLE evidence ADD COLUMN disagreements TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE observations ADD COLUMN blocked_calls BIGINT NOT NULL DEFAULT 0",
    ),
}
"""Schema upgrades, applied in order to databases written by earlier versions."""
metadata = sa.MetaData()
meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("geoip", sa.Text, nullable=False),
    sa.Column("policies", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("lines", sa.BigInteger, nullable=False, default=0),
    sa.Column("events", sa.BigInteger, nullable=False, default=0),
    sa.Column("findings", sa.BigInteger, nullable=False, default=0),
    sa.Column("skipped", sa.BigInteger, nullable=False, default=0),
)
sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, index=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, index=True),
    sa.Column("fp_len", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False, default=0),
    sa.Column("line", sa.BigInteger, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
prefixes = sa.Table(
    "prefixes",
    metadata,
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False, index=True),
    sa.Column("length", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False, index=True),
)
"""Fingerprints of an input's first bytes up to each line end in them, so that an earlier, shorter
copy of it (a few lines, the whole of it its fingerprint) is known as the same input. Added
without a schema version: a database without the rows is read as before."""
_KEY = ("source_id", "org", "provider", "host", "egress_ip", "country", "basis", "verdict", "day")
tunnels = sa.Table(
    "tunnels",
    metadata,
    sa.Column("uid", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("source_id", sa.Integer, index=True),
    sa.Column("counted", sa.Boolean, nullable=False),
    sa.Column("seen_at", sa.DateTime, nullable=False, index=True),
)
"""The records of calls a monitor may log twice (Tally.tunnels): a CONNECT (`connect`) and the TLS
session inside it (`tls`), one row each, `counted` for the first of the two stored. `source_id` is
the input the record was read from, NULL once that input is forgotten (`--rescan`): read again, it
is counted as it was. Rows go after TUNNEL_DAYS. Added without a schema version."""
TUNNEL_DAYS = 7
"""How long the record of one side of a tunnel waits for the other: the two are logged within
seconds, but audits of the two files may be days apart."""
proxies = sa.Table(
    "proxies",
    metadata,
    sa.Column("address", sa.String(64), primary_key=True),
    sa.Column("seen_at", sa.DateTime, nullable=False),
)
"""The addresses that took a CONNECT (the proxy of a tunnel record, auditor.events.tunnel_record):
a TLS session to port 443 of one of them may be inside a tunnel, and is paired; one to any other
public address on 443 is a direct call, and is not kept in `tunnels`. A handful of rows, kept. Added
without a schema version."""
ends = sa.Table(
    "ends",
    metadata,
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), primary_key=True),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("seen_at", sa.DateTime, nullable=False),
)
"""Where an input's content was last seen to end (FindingStore.saw_end): what tells whether a bzip2,
xz or zstd copy of it, whose size is not known without reading it whole, holds more. Added
without a schema version: a database without the rows reads such copies to their end once."""
contested = sa.Table(
    "contested",
    metadata,
    sa.Column("observation_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("layers", sa.Text, nullable=False),
)
"""Observations whose verdict another locator layer's answer would change
(Tally.locators_disagree), with the latest such answers; the rows say so (Row.locators_disagree).
Added without a schema version: a database without the rows reads as one without disagreements.
No foreign key: a region-auditor from before the table deletes observations without knowing of it
(`--rescan`), which a key would refuse; its rows are then left behind, under ids PostgreSQL never
gives again."""
input_reads = sa.Table(
    "input_reads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False, index=True),
    sa.Column("source_id", sa.Integer, nullable=False, index=True),
    sa.Column("format", sa.Text, nullable=False),
    sa.Column("compression", sa.String(16), nullable=False),
    sa.Column("lines", sa.BigInteger, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("calls", sa.BigInteger, nullable=False),
    sa.Column("malformed", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)
"""What each run read of each input (FindingStore.record_reads): format, compression, lines, calls
and malformed records by reason (`malformed`: a JSON object, reason -> count), for the report's
coverage. Added without a schema version: a database without the rows reports its inputs' formats
and malformed counts as not recorded. No foreign keys, as `contested`."""
input_spans = sa.Table(
    "input_spans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("source_id", sa.Integer, nullable=False, index=True),
    sa.Column("read_no", sa.Integer, nullable=False),
    sa.Column("first_record", sa.DateTime, nullable=False),
    sa.Column("last_record", sa.DateTime, nullable=False),
)
"""When the records each run read of each input were written (SourceStats.spans, UTC): stretches of
days with records, for the report's coverage (a day no input has records of is "no input", not "no
calls"). Stored with each batch (FindingStore.add_batch), in place of the read's earlier rows
(`read_no`: the run's number for its read of the input). Added without a schema version, as
`input_reads`: an input without rows has its time range not recorded."""
observations = sa.Table(
    "observations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
    sa.Column("org", sa.Text, nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("egress_ip", sa.String(64), nullable=False),
    sa.Column("country", sa.String(8), nullable=False),
    sa.Column("basis", sa.Text, nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("policy_version", sa.Text, nullable=False),
    sa.Column("rule_id", sa.Text, nullable=False),
    sa.Column("calls", sa.BigInteger, nullable=False),
    sa.Column("first_seen", sa.DateTime, nullable=False),
    sa.Column("last_seen", sa.DateTime, nullable=False),
    sa.Column("evidence_count", sa.Integer, nullable=False, default=0),
    sa.Column("blocked_calls", sa.BigInteger, nullable=False, default=0),
    sa.UniqueConstraint(*_KEY, name="observation_key"),
)
READ_INDEXES = (
    sa.Index(
        "observations_by_row",
        observations.c.org,
        observations.c.provider,
        observations.c.host,
        observations.c.egress_ip,
        observations.c.country,
        observations.c.basis,
        observations.c.verdict,
        observations.c.day,
        observations.c.evidence_count,
        observations.c.calls,
        observations.c.blocked_calls,
        observations.c.first_seen,
        observations.c.last_seen,
        observations.c.source_id,
    ),
    sa.Index(
        "observations_by_day",
        observations.c.org,
        observations.c.day,
        observations.c.verdict,
        observations.c.provider,
        observations.c.policy_version,
        observations.c.rule_id,
        observations.c.calls,
        observations.c.blocked_calls,
    ),
    sa.Index(
        "observations_by_input",
        observations.c.source_id,
        observations.c.calls,
        observations.c.first_seen,
        observations.c.last_seen,
        observations.c.org,
        observations.c.provider,
        observations.c.day,
    ),
)
"""Covering indexes for the report's reads, in the order of their GROUP BY: SQLite then reads one
index in order instead of sorting or reading the table (a 1M-observation report: 13 s of queries
-> about 3). Added without a schema version (FindingStore opens build them on an older database, once; a
read-only one is read without them, more slowly)."""
evidence = sa.Table(
    "evidence",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("observation_id", sa.Integer, sa.ForeignKey("observations.id"), nullable=False, index=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("ts", sa.DateTime, nullable=False),
    sa.Column("orig_h", sa.String(64), nullable=False),
    sa.Column("egress_basis", sa.Text, nullable=False),
    sa.Column("rule_id", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("disagreements", sa.Text, nullable=False, default=""),
)


def _prepare_sqlite_file(path: str, *, follow_link: bool) -> list[str]:
    """Create the database file owner-only (and the directories to it owner-only) before SQLite
    does; refuse a symbolic link unless `follow_link` (the user named it as a URL), and a SQLite
    file of another application; tighten an existing database readable by others. Returns what
    the user should be told (the tightening)."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return []
    if not follow_link and os.path.islink(path):
        raise StoreError(f"{path}: is a symbolic link; pass the file it points to, or sqlite:///{path} to follow it")
    notices = []
    try:
        _private_dirs(os.path.dirname(os.path.abspath(path)))
        fd = os.open(path, os.O_CREAT | os.O_RDWR | (0 if follow_link else os.O_NOFOLLOW), 0o600)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(f"{path}: is not a regular file; pass --db with a file path")
            for suffix in ("-wal", "-shm"):
                if os.path.islink(path + suffix):
                    raise StoreError(
                        f"{path + suffix}: is a symbolic link where SQLite keeps the database's journal; remove it, or pass another --db"
                    )
            if info.st_size:
                _refuse_foreign_sqlite(path)  # before anything about the file is changed
            if info.st_mode & 0o077:
                os.fchmod(fd, 0o600)
                notices.append(
                    f"{path}: the findings database was readable by others (mode {stat.S_IMODE(info.st_mode):04o}); made owner-only (0600)"
                )
        finally:
            os.close(fd)
        for suffix in ("-wal", "-shm"):  # links refused above
            companion = path + suffix
            if os.path.exists(companion) and os.lstat(companion).st_mode & 0o077:
                os.chmod(companion, 0o600)
    except OSError as e:
        raise StoreError(f"{path}: cannot create the findings database ({e.strerror}); pass --db with a writable path") from None
    return notices


def _require_sqlite_file(path: str, *, follow_link: bool) -> bool:
    """StoreError unless `path` is a SQLite file (not created: a command that only reads). True
    when this process may not write it (_not_writable); False for an in-memory database or a
    `file:` URI, opened as asked."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return False
    if not follow_link and os.path.islink(path):
        raise StoreError(f"{path}: is a symbolic link; pass the file it points to, or sqlite:///{path} to follow it")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise StoreError(f"{path}: no findings database here; audit something first (region-auditor logs FILE... --db {path}) or pass --db") from None
    except OSError as e:
        raise StoreError(f"{path}: cannot read the findings database ({e.strerror}); check --db") from None
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path}: is not a regular file; pass --db with a file path")
    if info.st_size == 0:
        raise StoreError(f"{path}: is an empty file, not a findings database (a copy that failed?); pass another --db")
    read_only = _not_writable(path)
    _refuse_foreign_sqlite(path, immutable=read_only)
    return read_only


def _not_writable(path: str) -> bool:
    """True when this process could not write the SQLite file at `path` or create its journal beside it."""
    return not (os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK | os.X_OK))


def _read_only_url(path: str) -> str:
    """The URL that opens `path` read-only and, since nothing may write it, immutable: SQLite then
    needs no -shm file beside it (a database in WAL mode in a read-only directory)."""
    return f"sqlite:///file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro&immutable=1&uri=true"


def _private_dirs(directory: str) -> None:
    """Create `directory` and every missing parent owner-only (os.makedirs gives the parents the
    umask's mode: 0777 under umask 000)."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for path in reversed(missing):
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)


CORE_TABLES = frozenset({"meta", "runs", "sources", "observations", "evidence"})
"""Tables every region-auditor database has had."""


def _foreign(tables: set[str]) -> bool:
    """True for a database's tables that are another application's: not region-auditor's core
    tables (a newer region-auditor's extra ones allowed), nor some of ours (a database another
    region-auditor is creating)."""
    return bool(tables) and not CORE_TABLES <= tables and not tables <= set(metadata.tables)


def _refuse_foreign_sqlite(path: str, *, immutable: bool = False) -> None:
    """StoreError when the SQLite file at `path` holds tables but not region-auditor's (checked
    read-only, before anything is created in it or its journal mode is changed). Tables that are
    all ours but no schema version yet are another region-auditor creating the database (SQLite
    commits each CREATE TABLE at once): looked at again for up to 2 s. Ours means a schema version
    in `meta` and the core tables (CORE_TABLES): a `meta` alone proves nothing, and a newer
    region-auditor's extra tables do not make a database another application's."""
    import sqlite3

    for _ in range(20):
        try:
            flags = "mode=ro&immutable=1" if immutable else "mode=ro"  # immutable: no -shm beside a file nothing may write
            conn = sqlite3.connect(f"file:{urllib.parse.quote(os.path.abspath(path))}?{flags}", uri=True)
            try:
                tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
                try:
                    ours = "meta" in tables and conn.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone() is not None
                except sqlite3.OperationalError:  # a `meta` table of another shape
                    ours = False
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{path}: is not a SQLite database ({e}); pass another --db") from None
        ours = ours and CORE_TABLES <= set(tables)
        if not tables or ours or _foreign(set(tables)):
            break
        time.sleep(0.1)
    if tables and not ours:
        raise StoreError(f"{path}: is a database of another application (tables {', '.join(tables[:5])}); pass another --db")


class SqlStore(FindingStore):
    """FindingStore on any SQLAlchemy database."""

    def __init__(self, target: str, *, create: bool = True) -> None:
        """Open the findings database at `target` (a path or a SQLAlchemy URL). With `create`
        (commands that record), a missing database is made and an older one upgraded. Without it
        (commands that only read: report, findings), there must be a region-auditor database there
        already, and one this process may not write (a copy handed over read-only, in a read-only
        directory) is read as it is, never changed."""
        url = to_url(target)
        self.url = url
        self.read_only = False
        """Opened without write access: nothing is upgraded, indexed or checkpointed."""
        self._path = ""
        """The SQLite file, "" for a server."""
        self._snapshot: sa.Connection | None = None
        """The connection of `reading()`, while inside it."""
        try:
            parsed = sa.engine.make_url(url)
            self.notices: list[str] = []
            """What opening the database did that the user should be told."""
            if parsed.get_backend_name() == "sqlite":
                path = parsed.database or ""
                self._path = "" if path in ("", ":memory:") or path.startswith("file:") else path
                if not create and path.startswith("file:") and parsed.query.get("mode") == "ro":
                    self.read_only = True  # a URI asking for read-only: opened as asked, and nothing is written
                elif not create:
                    self.read_only = _require_sqlite_file(path, follow_link="://" in target)
                    if self.read_only:
                        url = _read_only_url(path)
                if not self.read_only:
                    self.notices = _prepare_sqlite_file(path, follow_link="://" in target)
            self.engine = sa.create_engine(url, future=True)
        except (NoSuchModuleError, ModuleNotFoundError) as e:
            raise StoreError(f"{target}: no driver for this database ({e}); for PostgreSQL install region-auditor[postgres]") from None
        except (ArgumentError, ValueError) as e:
            raise StoreError(f"{target}: not a database path or SQLAlchemy URL ({e})") from None
        self.dialect = self.engine.dialect.name
        insert: Callable[..., Any]  # the dialect's, which has on_conflict_do_update
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            insert = postgresql_insert
        elif self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            insert = sqlite_insert
        else:
            raise StoreError(f"{target}: {self.dialect} is not supported; use SQLite or PostgreSQL")
        self._upsert_stmt = _upsert_statement(insert)
        """Built once: building it took 2 ms a tally, most of a run over many small files."""
        contest = insert(contested)
        self._contest_stmt = contest.on_conflict_do_update(index_elements=["observation_id"], set_={"layers": contest.excluded.layers})
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_reading if self.read_only else _sqlite_pragmas)
        for attempt in range(5):
            try:
                self._migrate(create)
                break
            except SQLAlchemyError as e:
                # Two processes creating the same new database: the one that lost the race finds
                # the tables (or the schema_version row) made under it, and looks again.
                if attempt < 4 and (isinstance(e, IntegrityError) or "already exists" in str(e)):
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise StoreError(f"{parsed.render_as_string(hide_password=True)}: cannot open the findings database ({_first_line(e)})") from None
        if not self.read_only:
            self._index()

    def _migrate(self, create: bool) -> None:
        with self.engine.begin() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if _foreign(tables):
                raise StoreError(
                    f"the database holds tables of another application ({', '.join(sorted(tables)[:5])}); "
                    "pass another --db (an empty database, or one region-auditor made)"
                )
            if not create and not CORE_TABLES <= tables:
                raise StoreError(
                    "the database holds no findings (no region-auditor tables); audit something first "
                    "(region-auditor logs FILE... --db ...) or check --db"
                )
            if self.read_only:
                found = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
                if str(found) != str(SCHEMA_VERSION):
                    raise StoreError(
                        f"the findings database has schema {str(found)[:20]}, and this region-auditor reads schema "
                        f"{SCHEMA_VERSION}; it cannot be upgraded read-only: open a writable copy"
                    )
                return
            metadata.create_all(conn)
            found = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
            if found is None:
                conn.execute(sa.insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION)))
                return
            if not (str(found).isascii() and str(found).isdigit() and int(found) >= 1):
                raise StoreError(
                    f"the findings database's schema_version is {str(found)[:20]!r}: it is damaged, or not region-auditor's; pass another --db"
                )
            if int(found) > SCHEMA_VERSION:
                raise StoreError(
                    f"the findings database has schema {found}, newer than this region-auditor ({SCHEMA_VERSION}); upgrade region-auditor"
                )
            if int(found) < SCHEMA_VERSION:
                self.notices.append(
                    f"the findings database had schema {found}, written by an older region-auditor: "
                    f"upgraded to schema {SCHEMA_VERSION} (its findings kept)"
                )
                for version in range(int(found) + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[version]:
                        conn.execute(sa.text(statement))
                conn.execute(sa.update(meta_table).where(meta_table.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))

    def _index(self) -> None:
        """The read indexes a database made before them lacks; a database this process may not write
        is read without them."""
        try:
            with self.engine.begin() as conn:
                for index in READ_INDEXES:
                    index.create(conn, checkfirst=True)
        except SQLAlchemyError:
            pass  # read-only, or another process holds a write lock for longer than busy_timeout: a later open builds them

    def files(self) -> list[str]:
        if not self._path:
            return []
        real = os.path.realpath(self._path)
        return [real, *(real + suffix for suffix in ("-wal", "-shm", "-journal"))]

    def close(self) -> None:
        """Close every connection; a SQLite database's write-ahead log is moved into the file
        first, so that the file alone (copied, handed over as evidence) holds everything."""
        if self.dialect == "sqlite" and not self.read_only:
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except SQLAlchemyError:
                pass  # another process holds it: its own close moves the log in
        self.engine.dispose()

    def start_run(self, command: str, geoip: str, policies: str) -> int:
        with self._begin() as conn:
            result = conn.execute(
                sa.insert(runs).values(command=command, geoip=geoip, policies=policies, started_at=_now(), lines=0, events=0, findings=0, skipped=0)
            )
            return int(result.inserted_primary_key[0])

    def finish_run(self, run_id: int, *, lines: int, events: int, findings: int, skipped: int) -> None:
        with self._begin() as conn:
            conn.execute(
                sa.update(runs).where(runs.c.id == run_id).values(finished_at=_now(), lines=lines, events=events, findings=findings, skipped=skipped)
            )

    def checkpoint(self, source: Fingerprinted) -> Checkpoint:
        with self._begin() as conn:
            _serialize(conn)
            for c in self._same_input(conn, source):
                if c.fp_len < len(source.prefix):  # the input grew: identify it by more bytes
                    conn.execute(sa.update(sources).where(sources.c.id == c.id).values(fingerprint=source.fingerprint, fp_len=len(source.prefix)))
                    conn.execute(sa.delete(prefixes).where(prefixes.c.source_id == c.id))
                    _record_prefixes(conn, c.id, source)
                return Checkpoint(c.id, c.offset, c.line)
            return self._new_source(conn, source)

    def _same_input(self, conn: sa.Connection, source: Fingerprinted) -> list[Any]:
        """The `sources` rows of checkpoints taken on this content (their first bytes match), furthest first.

        A checkpoint taken while the input was shorter than its fingerprint is identified by all of
        it: an input that starts with those bytes is the same one, grown, under any name (a file
        rotated while small and audited as `access.log.1`); an empty one only under its own name."""
        n = len(source.prefix)
        shorter = conn.execute(sa.select(sources.c.fp_len).where(sources.c.fp_len > 0, sources.c.fp_len < n).distinct()).scalars()
        prints = {source.fingerprint, *(source.prefix_fingerprint(k) for k in shorter)}
        candidates = conn.execute(
            sa.select(sources)
            .where(sa.or_(sources.c.fingerprint.in_(prints), sources.c.name.in_(_names(source.name))))
            .order_by(sources.c.offset.desc())
        ).all()
        found = [c for c in candidates if c.fp_len <= len(source.prefix) and source.prefix_fingerprint(c.fp_len) == c.fingerprint]
        # A small input that is the start of a longer one (an earlier copy), as far as it is read as
        # lines (a copy taken mid-line, its last line left unread, is one too).
        whole = getattr(source, "whole_lines", 0)
        if whole:
            longer = sa.select(prefixes.c.source_id).where(prefixes.c.fingerprint == source.prefix_fingerprint(whole), prefixes.c.length == whole)
            known = {c.id for c in found}
            found += [c for c in conn.execute(sa.select(sources).where(sources.c.id.in_(longer))).all() if c.id not in known]
        return sorted(found, key=lambda c: -c.offset)

    def known(self, source: Fingerprinted) -> Checkpoint | None:
        with self._begin() as conn:
            found = self._same_input(conn, source)
        return Checkpoint(found[0].id, found[0].offset, found[0].line) if found else None

    def restart(self, source: Fingerprinted) -> Checkpoint:
        with self._begin() as conn:
            _serialize(conn)
            return self._new_source(conn, source)

    def forget(self, source: Fingerprinted, keep: Collection[int] = ()) -> Checkpoint:
        with self._begin() as conn:
            _serialize(conn)
            found = self._same_input(conn, source)
            kept = next((c for c in found if c.id in keep), None)
            if kept is not None:
                return Checkpoint(kept.id, kept.offset, kept.line)
            ids = [c.id for c in found]
            if ids:
                conn.execute(sa.update(tunnels).where(tunnels.c.source_id.in_(ids)).values(source_id=None))
                conn.execute(sa.delete(prefixes).where(prefixes.c.source_id.in_(ids)))
                conn.execute(sa.delete(ends).where(ends.c.source_id.in_(ids)))
                conn.execute(sa.delete(input_reads).where(input_reads.c.source_id.in_(ids)))
                conn.execute(sa.delete(input_spans).where(input_spans.c.source_id.in_(ids)))
                audited = sa.select(observations.c.id).where(observations.c.source_id.in_(ids))
                conn.execute(sa.delete(evidence).where(evidence.c.observation_id.in_(audited)))
                conn.execute(sa.delete(contested).where(contested.c.observation_id.in_(audited)))
                conn.execute(sa.delete(observations).where(observations.c.source_id.in_(ids)))
                conn.execute(sa.delete(sources).where(sources.c.id.in_(ids)))
            return self._new_source(conn, source)

    def _new_source(self, conn: sa.Connection, source: Fingerprinted) -> Checkpoint:
        result = conn.execute(
            sa.insert(sources).values(
                name=recorded_name(source.name), fingerprint=source.fingerprint, fp_len=len(source.prefix), offset=0, line=0, updated_at=_now()
            )
        )
        key = result.inserted_primary_key
        assert key is not None  # one row inserted, with a primary key
        source_id = int(key[0])
        _record_prefixes(conn, source_id, source)
        return Checkpoint(source_id, 0, 0)

    def last_read(self, name: str) -> tuple[Checkpoint, dt.datetime] | None:
        s = sources.c
        with self._begin() as conn:
            try:
                last = conn.execute(
                    sa.select(s.id, s.offset, s.line, s.updated_at)
                    .where(s.name.in_(_names(name)))
                    .order_by(s.updated_at.desc(), s.id.desc())
                    .limit(1)
                ).one_or_none()
            except (ValueError, TypeError) as e:  # a hand edit (see rows)
                raise StoreError(
                    f"the findings database holds a checkpoint time region-auditor did not write ({_first_line(e)}); "
                    "restore it from a backup or point --db at a new file and audit again"
                ) from None
        if last is None:
            return None
        if not isinstance(last.updated_at, dt.datetime):
            raise StoreError(
                f"the findings database holds a checkpoint time region-auditor did not write ({str(last.updated_at)[:60]}); "
                "restore it from a backup or point --db at a new file and audit again"
            )
        return Checkpoint(last.id, last.offset, last.line), last.updated_at.replace(tzinfo=dt.UTC)

    def saw_end(self, checkpoint: Checkpoint, at: dt.datetime) -> None:
        with self._begin() as conn:
            _serialize(conn)  # two processes ending the same input: one after the other, not two inserts
            conn.execute(sa.delete(ends).where(ends.c.source_id == checkpoint.source_id))
            conn.execute(sa.insert(ends).values(source_id=checkpoint.source_id, offset=checkpoint.offset, seen_at=_naive_utc(at)))

    def seen_end(self, source_id: int) -> tuple[int, dt.datetime] | None:
        with self._begin() as conn:
            row = conn.execute(sa.select(ends.c.offset, ends.c.seen_at).where(ends.c.source_id == source_id)).one_or_none()
        if row is None or not isinstance(row.seen_at, dt.datetime):
            return None
        return row.offset, row.seen_at.replace(tzinfo=dt.UTC)

    def read_as(self, name: str) -> set[int]:
        with self._begin() as conn:
            return set(conn.execute(sa.select(sources.c.id).where(sources.c.name.in_(_names(name)))).scalars())

    def add_batch(
        self,
        run_id: int,
        checkpoint: Checkpoint,
        tallies: Sequence[Tally],
        offset: int,
        line: int,
        spans: Sequence[Span] | None = None,
        read: int = 0,
    ) -> tuple[Checkpoint, int]:
        s = sources.c
        with self._begin() as conn:
            paired = any(t.tunnels for t in tallies)
            if paired:
                _serialize(conn)  # two processes storing the two records of one tunnel: one after the other (locks in checkpoint()'s order)
            # Compare and set, first: it takes the row's write lock (PostgreSQL) or the database's
            # (SQLite), so of two processes auditing the same lines only the first stores them.
            moved = conn.execute(
                sa.update(sources)
                .where(s.id == checkpoint.source_id, s.offset == checkpoint.offset, s.line == checkpoint.line)
                .values(offset=offset, line=line, updated_at=_now())
            ).rowcount
            if moved != 1:
                now = conn.execute(sa.select(s.offset, s.line).where(s.id == checkpoint.source_id)).one_or_none()
                raise CheckpointMoved(Checkpoint(checkpoint.source_id, *(now or (0, 0))))
            repeated = 0
            known: set[str] = set()
            if paired:
                conn.execute(sa.delete(tunnels).where(tunnels.c.seen_at < _now() - dt.timedelta(days=TUNNEL_DAYS)))
                known = _proxies(conn, tallies)
            for t in tallies:
                records = [r for r in t.tunnels if r[1] == "connect" or not r[2] or r[2] in known]  # TLS to 443 of no proxy: direct
                left_out = _repeated(conn, checkpoint.source_id, records) if records else []
                repeated += len(left_out)
                if len(left_out) < t.calls:
                    if left_out:  # neither counted nor evidence
                        samples = tuple(f for f in t.samples if tunnel_record(f.event) not in set(left_out))
                        t = dataclasses.replace(t, calls=t.calls - len(left_out), samples=samples)
                    self._upsert(conn, run_id, checkpoint.source_id, t)
            if spans is not None:
                p = input_spans.c
                conn.execute(sa.delete(input_spans).where(p.run_id == run_id, p.source_id == checkpoint.source_id, p.read_no == read))
                if spans:
                    conn.execute(
                        sa.insert(input_spans),
                        [
                            dict(run_id=run_id, source_id=checkpoint.source_id, read_no=read, first_record=_naive_utc(a), last_record=_naive_utc(z))
                            for a, z in spans
                        ],
                    )
        return Checkpoint(checkpoint.source_id, offset, line), repeated

    def _upsert(self, conn: sa.Connection, run_id: int, source_id: int, tally: Tally) -> None:
        values = _stored(
            dict(
                source_id=source_id,
                org=tally.org,
                provider=tally.provider,
                host=tally.host,
                egress_ip=tally.egress[:64],
                country=tally.country,
                basis=tally.basis,
                verdict=tally.verdict,
                day=tally.day,
                policy_version=tally.policy_version,
                rule_id=tally.rule_id,
                calls=tally.calls,
                blocked_calls=tally.blocked_calls,
                first_seen=_naive_utc(tally.first_seen),
                last_seen=_naive_utc(tally.last_seen),
                evidence_count=0,
            )
        )
        obs_id, have = conn.execute(self._upsert_stmt, values).one()
        if tally.locators_disagree:
            conn.execute(self._contest_stmt, _stored({"observation_id": obs_id, "layers": tally.locators_disagree}))
        sample = tally.samples[: max(0, EVIDENCE_PER_OBSERVATION - have)]
        if not sample:  # full, or every sample was left out (a tunnel's other record counted): an empty insert is one row of NULLs
            return
        conn.execute(
            sa.insert(evidence),
            [
                _stored(
                    {
                        "observation_id": obs_id,
                        "run_id": run_id,
                        "location": _located(f.event.source),
                        "ts": _naive_utc(f.event.ts),
                        "orig_h": f.event.orig_h[:64],
                        "egress_basis": f.egress.basis,
                        # "raw" redacted, then cut: a cut key no longer looks like one.
                        "rule_id": f.verdict.rule_id,
                        "reason": f.verdict.reason,
                        "raw": redact(f.event.raw[:REDACT_BYTES])[:2000],
                        "disagreements": "; ".join(f.location.disagreements),
                    }
                )
                for f in sample
            ],
        )
        conn.execute(sa.update(observations).where(observations.c.id == obs_id).values(evidence_count=have + len(sample)))

    def rows(self, source_ids: Iterable[int] | None = None) -> list[Row]:
        return self._rows(source_ids, Scope())

    def _rows(self, source_ids: Iterable[int] | None, scope: Scope) -> list[Row]:
        t = observations.c
        group = (t.org, t.provider, t.host, t.egress_ip, t.country, t.basis, t.verdict)
        query = (
            sa.select(
                *group,
                sa.func.sum(t.calls),
                sa.func.min(t.first_seen),
                sa.func.max(t.last_seen),
                sa.func.sum(t.blocked_calls),
                sa.func.max(sa.func.coalesce(contested.c.layers, "")),  # any of the row's days and inputs
            )
            .select_from(observations.outerjoin(contested, contested.c.observation_id == t.id))
            .group_by(*group)
        )
        if source_ids is not None:
            query = query.where(t.source_id.in_(list(source_ids)))
        query = _scoped(query, scope)
        with self._begin() as conn:
            try:
                result = [_row(r) for r in conn.execute(query)]
            except (ValueError, TypeError) as e:  # SQLite keeps whatever a hand edit put in a column
                raise StoreError(
                    f"the findings database holds a value region-auditor did not write ({_first_line(e)}); "
                    "restore it from a backup or point --db at a new file and audit again"
                ) from None
        return sorted(result, key=lambda r: (VERDICT_ORDER.index(r.verdict), r.org, r.provider, r.host, r.egress_ip))

    def evidence(self, row: Row, limit: int = EVIDENCE_PER_OBSERVATION) -> list[Evidence]:
        t, e = observations.c, evidence.c
        query = (
            sa.select(e.location, e.ts, e.orig_h, e.egress_basis, e.rule_id, e.reason, e.raw, e.disagreements)
            .join(observations, observations.c.id == e.observation_id)
            .where(
                t.org == row.org,
                t.provider == row.provider,
                t.host == row.host,
                t.egress_ip == row.egress_ip,
                t.country == row.country,
                t.basis == row.basis,
                t.verdict == row.verdict,
            )
            .order_by(e.ts)
            .limit(limit)
        )
        with self._begin() as conn:
            return [Evidence(*r) for r in conn.execute(query)]

    # The read model's queries (auditor.report.model)

    def record_reads(self, run_id: int, reads: Sequence[InputRead]) -> None:
        if not reads:
            return
        now = _now()
        with self._begin() as conn:
            conn.execute(
                sa.insert(input_reads),
                [
                    _stored(
                        {
                            "run_id": run_id,
                            "source_id": r.source_id,
                            "format": r.format,
                            "compression": r.compression[:16],
                            "lines": r.lines,
                            "events": r.events,
                            "calls": r.calls,
                            "malformed": json.dumps(dict(r.malformed)),
                            "recorded_at": now,
                        }
                    )
                    for r in reads
                ],
            )

    def runs(self) -> list[RunRecord]:
        r = runs.c
        with self._begin() as conn:
            found = conn.execute(
                sa.select(r.id, r.command, r.geoip, r.policies, r.started_at, r.finished_at, r.lines, r.events, r.findings, r.skipped).order_by(r.id)
            ).all()
        return [RunRecord(*row) for row in found]

    def inputs(self, scope: Scope = Scope()) -> list[InputRecord]:
        s, t, i = sources.c, observations.c, input_reads.c
        calls = _scoped(
            sa.select(t.source_id, sa.func.sum(t.calls), sa.func.min(t.first_seen), sa.func.max(t.last_seen)).group_by(t.source_id), scope
        )
        p = input_spans.c
        with self._begin() as conn:
            present = set(sa.inspect(conn).get_table_names())  # a read-only database from before them may lack the last two
            found = conn.execute(sa.select(s.id, s.name, s.line).order_by(s.name, s.id)).all()
            counted = {row[0]: row[1:] for row in conn.execute(calls)}
            reads: dict[int, list[Any]] = {}
            if "input_reads" in present:
                for row in conn.execute(sa.select(i.source_id, i.format, i.compression, i.malformed).order_by(i.id)):
                    reads.setdefault(row.source_id, []).append(row)
            spans: dict[int, list[Span]] = {}
            if "input_spans" in present:
                for source_id, first, last in conn.execute(sa.select(p.source_id, p.first_record, p.last_record)):
                    if isinstance(first, dt.datetime) and isinstance(last, dt.datetime):  # SQLite keeps what a hand edit put there
                        add_span(spans.setdefault(source_id, []), first, last, limit=None)  # every row kept: the days between are not read
        result = []
        for source_id, name, line in found:
            total, first, last = counted.get(source_id, (0, None, None))
            mine = reads.get(source_id, [])
            malformed: dict[str, int] = {}
            for read in mine:
                for reason, count in _json_counts(read.malformed).items():
                    malformed[reason] = malformed.get(reason, 0) + count
            formats = tuple(dict.fromkeys(r.format for r in mine))
            result.append(
                InputRecord(
                    source_id=source_id,
                    name=name,
                    lines=int(line),
                    calls=int(total or 0),
                    first_seen=first,
                    last_seen=last,
                    formats=formats,
                    compression=mine[-1].compression if mine else "",
                    malformed=tuple(sorted(malformed.items(), key=lambda kv: (-kv[1], kv[0]))),
                    recorded=bool(mine),
                    spans=tuple(spans.get(source_id, ())),
                )
            )
        return result

    def scoped_rows(self, scope: Scope) -> list[Row]:
        return self._rows(None, scope)

    def activity(self, scope: Scope) -> Activity:
        t = observations.c
        group = (t.org, sa.type_coerce(t.day, sa.String), t.verdict, t.provider, t.policy_version, t.rule_id)  # observations_by_day's order
        query = _scoped(sa.select(*group, sa.func.sum(t.calls), sa.func.sum(t.blocked_calls)).group_by(*group), scope)
        days: dict[tuple[str, Any, str], list[int]] = {}
        rules: dict[tuple[str, str, str, str], int] = {}
        with self._begin() as conn:
            # Summed here, not by two GROUP BYs: one in the index's order needs no sort (162,000
            # groups of a 1M-observation store, 0.5 s); the day stays the driver's value (text on
            # SQLite) until the end.
            for org, day, verdict, provider, version, rule, calls, blocked in conn.execute(query):
                calls, blocked = int(calls), int(blocked)
                counts = days.get((org, day, verdict))
                if counts is None:
                    days[(org, day, verdict)] = [calls, blocked]
                else:
                    counts[0] += calls
                    counts[1] += blocked
                if blocked and not rule.endswith(PROVIDER_BLOCKED):  # an observation's refused calls have their own rule
                    refused = (provider, version, version + PROVIDER_BLOCKED, verdict)
                    rules[refused] = rules.get(refused, 0) + blocked
                    calls -= blocked
                if calls:
                    rules[(provider, version, rule, verdict)] = rules.get((provider, version, rule, verdict), 0) + calls
        dates: dict[Any, dt.date] = {}
        try:
            for day in {day for _, day, _ in days}:
                dates[day] = day if isinstance(day, dt.date) else dt.date.fromisoformat(day)
        except (TypeError, ValueError) as e:  # SQLite keeps whatever a hand edit put in a column
            raise StoreError(
                f"the findings database holds a value region-auditor did not write ({_first_line(e)}); "
                "restore it from a backup or point --db at a new file and audit again"
            ) from None
        return Activity(
            days=[DayCount(org, dates[day], verdict, calls, blocked) for (org, day, verdict), (calls, blocked) in days.items()],
            rules=[RuleCount(*key, calls) for key, calls in rules.items()],
        )

    def evidence_by_row(self, scope: Scope, limit: int = EVIDENCE_PER_OBSERVATION) -> dict[RowKey, list[Evidence]]:
        t, e = observations.c, evidence.c
        key = (t.org, t.provider, t.host, t.egress_ip, t.country, t.basis, t.verdict)
        # A row's first `limit` calls are in observations (one day of one input each) on or before
        # the day of its `limit`-th observation with evidence: one index seek a row finds that day,
        # a second the observations, and only their evidence is ranked (ranking every evidence row
        # of a 1M-observation store took 27 s, every observation 2.4 s; this takes 0.4 s).
        # (An observation left without evidence, its calls all counted through their tunnel's other
        # record, has evidence_count 0 and is not counted.)
        rows = _scoped(sa.select(*key).group_by(*key), scope).subquery()
        inner = observations.alias("inner")
        nth = _scoped(
            sa.select(inner.c.day)
            .where(*(inner.c[c.name] == rows.c[c.name] for c in key), inner.c.evidence_count > 0)
            .order_by(inner.c.day)
            .limit(1)
            .offset(limit - 1),
            scope,
            inner.c,
        ).scalar_subquery()
        cuts = sa.select(*rows.c, sa.func.coalesce(nth, dt.date.max).label("cut")).cte("cuts")
        if self.dialect == "postgresql" or sqlite_version_info >= (3, 35):
            cuts = cuts.prefix_with("MATERIALIZED")  # once a row, not once an observation joined to it
        fields = (e.location, e.ts, e.orig_h, e.egress_basis, e.rule_id, e.reason, e.raw, e.disagreements)
        if self.dialect == "sqlite":
            # Each row's first calls by a small sort of its own (SQLite has no LATERAL; its window
            # functions took 1.2 s over the 107,000 candidates of a 1M-observation store, this 0.3 s).
            first = evidence.alias("first")
            firsts = _scoped(
                sa.select(first.c.id)
                .select_from(observations.join(first, first.c.observation_id == t.id))
                .where(*(c == cuts.c[c.name] for c in key), t.day <= cuts.c.cut, t.evidence_count > 0)
                .order_by(first.c.ts, first.c.id)
                .limit(limit),
                scope,
            ).correlate(cuts)
            query = sa.select(*(cuts.c[c.name] for c in key), *fields).select_from(cuts.join(evidence, e.id.in_(firsts))).order_by(e.ts, e.id)
        else:  # PostgreSQL: one window over the candidates, which it plans well
            chosen = _scoped(
                sa.select(t.id, *key)
                .select_from(observations.join(cuts, sa.and_(*(c == cuts.c[c.name] for c in key))))
                .where(t.day <= cuts.c.cut, t.evidence_count > 0),
                scope,
            ).subquery()
            mine = tuple(chosen.c[c.name] for c in key)
            ranked = (
                sa.select(
                    *mine, *fields, e.id.label("eid"), sa.func.row_number().over(partition_by=mine, order_by=(e.ts, e.id)).label("n")
                ).select_from(evidence.join(chosen, chosen.c.id == e.observation_id))
            ).subquery()
            query = sa.select(*(c for c in ranked.c if c.name not in ("n", "eid"))).where(ranked.c.n <= limit).order_by(ranked.c.ts, ranked.c.eid)
        found: dict[RowKey, list[Evidence]] = {}
        with self._begin() as conn:
            for row in conn.execute(query):
                found.setdefault(tuple(row[:7]), []).append(Evidence(*row[7:]))
        return found

    def known_values(self) -> tuple[set[str], set[str]]:
        t = observations.c
        with self._begin() as conn:
            pairs = conn.execute(sa.select(t.org, t.provider).group_by(t.org, t.provider)).all()  # observations_by_row's order
        return {org for org, _ in pairs}, {provider for _, provider in pairs}

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Every read inside sees the database as it was at the first one (one transaction:
        a snapshot of SQLite's write-ahead log, PostgreSQL's REPEATABLE READ), so that a report
        made while a run records adds up."""
        if self._snapshot is not None:
            yield
            return
        options = {"isolation_level": "REPEATABLE READ"} if self.dialect == "postgresql" else {}
        try:
            with self.engine.connect().execution_options(**options) as conn, conn.begin():
                if self.dialect == "sqlite":
                    conn.exec_driver_sql("BEGIN")  # pysqlite begins only before a write: reads would each see the latest state
                self._snapshot = conn
                try:
                    yield
                finally:
                    self._snapshot = None
        except SQLAlchemyError as e:
            raise StoreError(f"cannot read the findings database ({_first_line(e)}); check --db") from None

    def _begin(self) -> Any:
        if self._snapshot is not None:
            return contextlib.nullcontext(self._snapshot)
        return _Transaction(self.engine)


class _Transaction:
    """engine.begin() whose database errors become StoreError with one readable line."""

    def __init__(self, engine: sa.Engine) -> None:
        self._cm = engine.begin()

    def __enter__(self) -> sa.Connection:
        try:
            return self._cm.__enter__()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot reach the findings database ({_first_line(e)}); check --db") from None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        try:
            handled = self._cm.__exit__(kind, exc, tb)
        except SQLAlchemyError as e:
            raise StoreError(f"the findings database refused a write ({_first_line(e)})") from None
        if isinstance(exc, SQLAlchemyError):  # a statement inside the transaction (rolled back)
            raise StoreError(
                f"the findings database refused a statement ({_first_line(exc)}); "
                "check that it is reachable and that --db names a region-auditor database"
            ) from None
        return handled


def _scoped(query: Any, scope: Scope, columns: Any = None) -> Any:
    """`query` (over observations, or the alias whose `columns` are given) narrowed to `scope`."""
    t = observations.c if columns is None else columns
    if scope.providers:
        query = query.where(t.provider.in_(list(scope.providers)))
    if scope.orgs:
        query = query.where(t.org.in_(list(scope.orgs)))
    if scope.since is not None:
        query = query.where(t.day >= scope.since)
    if scope.until is not None:
        query = query.where(t.day <= scope.until)
    return query


def _json_counts(text: Any) -> dict[str, int]:
    """`input_reads.malformed` as a dict; {} for what region-auditor did not write."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}


def _row(r: Any) -> Row:
    """One grouped observations row, refusing what no region-auditor writes."""
    texts, (calls, first, last, blocked, disagree) = r[:7], r[7:]
    for name, value in zip(("org", "provider", "host", "egress_ip", "country", "basis", "verdict"), texts, strict=True):
        if not isinstance(value, str):
            raise ValueError(f"{name} is {type(value).__name__}, not text")
    if texts[6] not in VERDICT_ORDER:
        raise ValueError(f"verdict {texts[6]!r} is not one of {', '.join(VERDICT_ORDER)}")
    counts = []
    for name, value in (("calls", calls), ("blocked_calls", blocked)):  # SUM: int on SQLite, Decimal on PostgreSQL
        try:
            counts.append(int(value))
        except (TypeError, ValueError, OverflowError):
            counts.append(-1)
        if isinstance(value, (str, bytes, bool)) or counts[-1] != value or counts[-1] < 0:
            raise ValueError(f"{name} {value!r} is not a count")
    for name, value in (("first_seen", first), ("last_seen", last)):
        if not isinstance(value, dt.datetime):
            raise ValueError(f"{name} {value!r} is not a time")
    if not isinstance(disagree, str):
        raise ValueError(f"layers is {type(disagree).__name__}, not text")
    org, provider, host, egress_ip, country, basis, verdict = texts
    return Row(org, provider, host, egress_ip, country, basis, verdict, counts[0], first, last, counts[1], disagree)


def _upsert_statement(insert: Any) -> Any:
    """Add a tally to its observation: a new row, or calls added and first/last seen widened."""
    stmt = insert(observations)
    t, new = observations.c, stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={
            "calls": t.calls + new.calls,
            "blocked_calls": t.blocked_calls + new.blocked_calls,
            "first_seen": sa.case((new.first_seen < t.first_seen, new.first_seen), else_=t.first_seen),
            "last_seen": sa.case((new.last_seen > t.last_seen, new.last_seen), else_=t.last_seen),
            # The rule of the calls the provider did not refuse, once there are any (Tally.rule_id):
            # the refused ones are counted in blocked_calls, under `<version>:provider-blocked`.
            "rule_id": sa.case(
                (
                    sa.and_(t.rule_id.endswith(PROVIDER_BLOCKED, autoescape=True), sa.not_(new.rule_id.endswith(PROVIDER_BLOCKED, autoescape=True))),
                    new.rule_id,
                ),
                else_=t.rule_id,
            ),
        },
    ).returning(t.id, t.evidence_count)


def _located(location: str) -> str:
    """An evidence location (`access.log:12`, `capture.pcap#40`) with its file's absolute path: the
    database is read elsewhere, and two inputs named `access.log` in two directories must not be
    told apart by nothing. The name is made absolute as the input's checkpoint name is
    (recorded_name); `<stdin>:3` and absolute paths stay as they are."""
    for separator in (":", "#"):
        name, found, where = location.rpartition(separator)
        if found and where.isdigit() and name and not name.startswith("/"):
            return recorded_name(name) + separator + where
    return location


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    """Values as the columns take them. Text read from input (or config) may hold NUL, which
    PostgreSQL refuses in text (one such line stopped the whole run); SQLite keeps it. Widths are
    cut where they are read (`egress_ip`, `orig_h`: varchar(64))."""
    return {k: v.replace("\x00", "\ufffd") if isinstance(v, str) and "\x00" in v else v for k, v in values.items()}


def _proxies(conn: sa.Connection, tallies: Sequence[Tally]) -> set[str]:
    """Record the proxies of the batch's CONNECTs; the proxies (as tunnel_record gives them) known
    among the responders of its TLS sessions to port 443, these included. Before the pairing, so
    that the order of the records within a batch does not matter."""
    connects = {r[2] for t in tallies for r in t.tunnels if r[1] == "connect" and r[2]}
    given = connects | {r[2] for t in tallies for r in t.tunnels if r[2]}
    keys = {_proxy_key(a) for a in given}
    asked = sorted(keys)
    known: set[str] = set()
    for i in range(0, len(asked), 500):  # within every backend's limit on bound parameters
        known.update(conn.execute(sa.select(proxies.c.address).where(proxies.c.address.in_(asked[i : i + 500]))).scalars())
    new = {_proxy_key(a) for a in connects} - known
    if new:
        conn.execute(sa.insert(proxies), [{"address": a, "seen_at": _now()} for a in sorted(new)])
    return {a for a in given if _proxy_key(a) in known or _proxy_key(a) in new}


def _repeated(conn: sa.Connection, source_id: int, records: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Record one tally's tunnel records (id, `connect`|`tls`); those whose call the other record
    of their tunnel counted already (or this same record, from another input), one per call, as
    given. The id is stored as the column takes it (`_tunnel_key`)."""
    t = tunnels.c
    keys = sorted({_tunnel_key(record[0]) for record in records})
    found: dict[tuple[str, str], _TunnelRow] = {}
    for i in range(0, len(keys), 500):  # within every backend's limit on bound parameters
        for r in conn.execute(sa.select(tunnels).where(t.uid.in_(keys[i : i + 500]))):
            found[(r.uid, r.kind)] = _TunnelRow(r.uid, r.kind, r.source_id, bool(r.counted))
    repeated: list[tuple[str, str, str]] = []
    new = []
    for record in records:
        key, kind = _tunnel_key(record[0]), record[1]
        mine = found.get((key, kind))
        if mine is not None:
            if mine.source_id is None:  # read again after --rescan forgot its input: counted as it was
                conn.execute(sa.update(tunnels).where(t.uid == key, t.kind == kind).values(source_id=source_id, seen_at=_now()))
                found[(key, kind)] = mine._replace(source_id=source_id)
                if not mine.counted:
                    repeated.append(record)
            else:  # the same record in another input (or twice in this one)
                repeated.append(record)
            continue
        other = found.get((key, "tls" if kind == "connect" else "connect"))
        counted = other is None or not other.counted
        new.append({"uid": key, "kind": kind, "source_id": source_id, "counted": counted, "seen_at": _now()})
        found[(key, kind)] = _TunnelRow(key, kind, source_id, counted)
        if not counted:
            repeated.append(record)
    if new:
        conn.execute(sa.insert(tunnels), new)
    return repeated


def _tunnel_key(tunnel: str) -> str:
    """A tunnel id as `tunnels.uid` takes it: within its width, no NUL (see _stored)."""
    return tunnel[:200].replace("\x00", "\ufffd")


def _proxy_key(address: str) -> str:
    """A proxy's address as `proxies.address` takes it (see _tunnel_key)."""
    return address[:64].replace("\x00", "\ufffd")


class _TunnelRow(NamedTuple):
    uid: str
    kind: str
    source_id: int | None
    counted: bool


def _record_prefixes(conn: sa.Connection, source_id: int, source: Fingerprinted) -> None:
    """The fingerprints of `source`'s first bytes up to each line end in its prefix but the last
    (that one is `sources.fingerprint`)."""
    ends = [i + 1 for i, byte in enumerate(source.prefix[:-1]) if byte == 0x0A]
    if ends:
        conn.execute(sa.insert(prefixes), [{"source_id": source_id, "length": n, "fingerprint": source.prefix_fingerprint(n)} for n in ends])


def _names(name: str) -> list[str]:
    """The names an input may be recorded under: its recorded_name, and the name as given (what
    versions before recorded_name wrote)."""
    return sorted({name, recorded_name(name)})


def _serialize(conn: sa.Connection) -> None:
    """Make the transaction wait for any other that looks up or creates an input's checkpoint: a
    write to one row first takes its lock (PostgreSQL) or the database's (SQLite). Two processes
    opening the same new input at once would otherwise each create a checkpoint and count it twice."""
    conn.execute(sa.update(meta_table).where(meta_table.c.key == "schema_version").values(value=meta_table.c.value))


def _first_line(e: Exception) -> str:
    text = str(getattr(e, "orig", None) or e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _sqlite_reading(dbapi_conn: Any, _record: Any) -> None:
    """A read-only connection's pragmas: no journal mode to set."""
    dbapi_conn.execute("PRAGMA busy_timeout=10000")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
