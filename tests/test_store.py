"""The store on a real SQLite file and a real PostgreSQL server: aggregation, evidence,
checkpoints (re-auditing never double counts), redaction, permissions."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from auditor.attribution import Attributor
from auditor.config import parse_config
from auditor.events import tally
from auditor.pipeline import Auditor, Pipeline
from auditor.runner import audit_logs
from auditor.sqlstore import SqlStore
from auditor.store import EVIDENCE_PER_OBSERVATION, Checkpoint, StoreError, to_url
from geoip.chain import ChainLocator
from geoip.overrides import OverrideLocator
from rules.policy import load_policies
from tests.conftest import make_event

CONFIG = parse_config(
    {
        "site": [
            {"name": "hk-office", "networks": ["10.20.0.0/16"], "egress_ip": "203.0.113.10"},
            {"name": "sg-office", "networks": ["10.30.0.0/16"], "egress_ip": "198.51.100.10"},
        ],
        "org": [{"name": "acme", "networks": ["10.20.1.0/24"]}, {"name": "beta", "networks": ["10.30.0.0/16"]}],
        "override": [{"network": "203.0.113.0/24", "country": "HK"}, {"network": "198.51.100.0/24", "country": "SG"}],
    },
    "test.toml",
)


def _auditor() -> Auditor:
    return Auditor(load_policies(), ChainLocator([OverrideLocator(CONFIG.overrides)]), Attributor(CONFIG))


def squid(ts: float, client: str, host: str = "api.openai.com", auth: str = "") -> str:
    line = f"{ts:.3f} {1234:>6} {client} TCP_TUNNEL/200 5120 CONNECT {host}:443 - HIER_DIRECT/162.159.140.245 -"
    if auth:
        line += f" [Host: {host}\\r\\nAuthorization: Bearer {auth}\\r\\n] []"
    return line + "\n"


T0 = dt.datetime(2024, 7, 22, 9, 0, tzinfo=dt.UTC).timestamp()
LINES = [
    squid(T0 + 0, "10.20.1.5"),
    squid(T0 + 60, "10.20.1.6"),
    "1721638900.000 truncated CONNECT api.openai.com:4\n",
    squid(T0 + 120, "10.30.2.7"),
    squid(T0 + 180, "192.168.77.9"),
    squid(T0 + 240, "10.20.1.5", host="www.google.com"),
]


def run(store: SqlStore, *paths: Path | str) -> list[dict]:
    summary = audit_logs([str(p) for p in paths], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")
    return [r.as_dict() for r in store.rows(summary.source_ids)]


def calls(rows: list) -> dict[tuple[str, str], int]:
    dicts = [r if isinstance(r, dict) else r.as_dict() for r in rows]
    return {(r["org"], r["verdict"]): r["calls"] for r in dicts}


def test_audit_aggregates_and_reaudit_never_double_counts(db_target: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(LINES))
    store = SqlStore(db_target)
    first = run(store, log)
    assert calls(first) == {("acme", "violation"): 2, ("beta", "allowed"): 1, ("unattributed", "unknown"): 1}
    acme = next(r for r in first if r["org"] == "acme")
    assert acme["egress_ip"] == "203.0.113.10" and acme["country"] == "HK" and acme["basis"] == "override:203.0.113.0/24"
    assert acme["first_seen"] == "2024-07-22T09:00:00Z" and acme["last_seen"] == "2024-07-22T09:01:00Z"
    # Same file again, and a byte-identical copy under another name: nothing new.
    copy = tmp_path / "access.log.1"
    copy.write_bytes(log.read_bytes())
    assert run(store, log) == first
    assert run(store, copy) == first
    # A fresh store object on the same database sees the same checkpoint.
    assert run(SqlStore(db_target), log) == first


def test_grown_file_reads_only_new_lines(db_target: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(LINES[:2]))
    store = SqlStore(db_target)
    assert calls(run(store, log)) == {("acme", "violation"): 2}
    with log.open("a") as f:
        f.write("".join(LINES[2:]))
    summary = audit_logs([str(log)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")
    assert summary.inputs[0].resumed_at_line == 2
    assert summary.inputs[0].lines == 4
    assert summary.inputs[0].skipped == {"squid: 4 fields, expected 10": 1}
    assert summary.inputs[0].locations["squid: 4 fields, expected 10"] == [f"{log}:3"]
    assert calls(store.rows(summary.source_ids)) == {("acme", "violation"): 2, ("beta", "allowed"): 1, ("unattributed", "unknown"): 1}


def test_rotated_file_with_new_content_is_a_new_input(db_target: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(LINES[:2]))
    store = SqlStore(db_target)
    run(store, log)
    log.rename(tmp_path / "access.log.1")
    log.write_text(squid(T0 + 3600, "10.20.1.9"))
    assert calls(run(store, log)) == {("acme", "violation"): 1}
    assert calls(store.rows()) == {("acme", "violation"): 3}


def test_truncated_and_rewritten_file_starts_over(db_target: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(LINES))
    store = SqlStore(db_target)
    run(store, log)
    log.write_text(squid(T0 + 7200, "10.20.1.5"))  # copytruncate, then a new line
    summary = audit_logs([str(log)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")
    assert summary.inputs[0].resumed_at_line == 0 and summary.inputs[0].lines == 1
    assert calls(store.rows())[("acme", "violation")] == 3


@pytest.mark.parametrize("lines", [1, 3])
def test_an_earlier_copy_of_a_small_file_adds_nothing(db_target: str, tmp_path: Path, lines: int) -> None:
    """A file under 4 KiB is its own fingerprint, and the grown file's covers more: an earlier copy
    of it, read after the grown one, was a new input and counted again. Each line end of an
    input's first bytes is fingerprinted too, so the copy is found as the start of the grown one."""
    grown = tmp_path / "access.log"
    grown.write_text("".join(LINES))
    store = SqlStore(db_target)
    run(store, grown)
    copy = tmp_path / "access.log.bak"
    copy.write_text("".join(LINES[:lines]))
    summary = audit_logs([str(copy)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")
    assert summary.inputs[0].earlier_copy and summary.inputs[0].resumed_at_line == len(LINES)
    assert calls(store.rows()) == {("acme", "violation"): 2, ("beta", "allowed"): 1, ("unattributed", "unknown"): 1}
    # Also a copy taken in the middle of a line.
    cut = tmp_path / "cut.log"
    cut.write_text("".join(LINES[:2]) + LINES[2][:10])
    assert audit_logs([str(cut)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test").inputs[0].earlier_copy
    # Another file that merely starts with the same lines and goes on otherwise is its own input.
    other = tmp_path / "other.log"
    other.write_text("".join(LINES[:2]) + squid(T0 + 9000, "10.30.2.7"))
    summary = audit_logs([str(other)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")
    assert not summary.inputs[0].earlier_copy and summary.inputs[0].lines == 3


def test_compressed_copy_of_audited_file_is_not_counted_again(db_target: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(LINES))
    store = SqlStore(db_target)
    first = run(store, log)
    packed = tmp_path / "access.log.1.gz"
    packed.write_bytes(gzip.compress(log.read_bytes()))
    assert run(store, packed) == first


def test_evidence_is_bounded_sampled_and_redacted(db_target: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(squid(T0 + i, "10.20.1.5", auth="sk-proj-abcdefghijklmnop1234") for i in range(12)))
    store = SqlStore(db_target)
    rows = store.rows()
    assert rows == []
    run(store, log)
    (row,) = store.rows()
    assert row.calls == 12
    evidence = store.evidence(row, limit=100)
    assert len(evidence) == EVIDENCE_PER_OBSERVATION
    assert [e.location for e in evidence] == [f"{log}:{i}" for i in range(1, 6)]
    assert all(e.egress_basis == "site:hk-office" and e.rule_id == "openai@v188:not-listed:HK" for e in evidence)
    for e in evidence:
        assert "sk-proj" not in e.raw and "abcdefghijklmnop" not in e.raw
        assert "Authorization: [REDACTED]" in e.raw


def test_checkpoint_and_findings_commit_together(db_target: str, tmp_path: Path) -> None:
    """A batch whose write fails leaves neither its findings nor its checkpoint behind."""
    log = tmp_path / "access.log"
    log.write_text("".join(LINES))
    store = SqlStore(db_target)

    class Boom(Exception):
        pass

    original = store._upsert
    seen = []

    def failing(conn, run_id, key, group):  # type: ignore[no-untyped-def]
        original(conn, run_id, key, group)
        seen.append(key)
        if len(seen) == 2:
            raise Boom

    store._upsert = failing  # type: ignore[method-assign]
    with pytest.raises(Boom):
        run(store, log)
    store._upsert = original  # type: ignore[method-assign]
    assert store.rows() == []
    assert calls(run(store, log)) == {("acme", "violation"): 2, ("beta", "allowed"): 1, ("unattributed", "unknown"): 1}


def test_findings_on_different_days_are_separate_observations_but_one_row(db_target: str) -> None:
    store = SqlStore(db_target)
    auditor = _auditor()

    class Input:
        name = "synthetic"
        prefix = b"synthetic"
        fingerprint = "0" * 64

        def prefix_fingerprint(self, length: int) -> str:
            return self.fingerprint

    checkpoint = store.checkpoint(Input())
    assert checkpoint.offset == 0
    run_id = store.start_run("test", "x", "y")
    events = [make_event(ts=dt.datetime(2024, 7, d, 12, tzinfo=dt.UTC)) for d in (8, 9, 10)]
    store.add_batch(run_id, checkpoint, tally(auditor.audit(events, CONFIG.source("x"))), 100, 3)
    rows = {r.verdict: r for r in store.rows()}
    assert rows["at_risk"].calls == 1  # 2024-07-08, before the cutoff
    assert rows["violation"].calls == 2
    assert rows["violation"].first_seen == dt.datetime(2024, 7, 9, 12)
    assert store.checkpoint(Input()) == type(checkpoint)(checkpoint.source_id, 100, 3)


def test_sqlite_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "findings.db"
    old = os.umask(0o022)
    try:
        SqlStore(str(path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_store_errors_are_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot create the findings database"):
        SqlStore(str(tmp_path / "file" / "findings.db"))
    with pytest.raises(StoreError, match="cannot open the findings database"):
        SqlStore("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreError, match="no driver for this database"):
        SqlStore("mysql+nosuchdriver://x@localhost/db")
    notdb = tmp_path / "notes.txt"
    notdb.write_text("this is not a database\n" * 100)
    with pytest.raises(StoreError, match="is not a SQLite database"):
        SqlStore(str(notdb))


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    import sqlalchemy as sa

    path = tmp_path / "f.db"
    SqlStore(str(path))
    engine = sa.create_engine(to_url(str(path)))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE meta SET value = '99' WHERE key = 'schema_version'"))
    with pytest.raises(StoreError, match="newer than this region-auditor"):
        SqlStore(str(path))


@pytest.mark.parametrize(
    "target, url",
    [
        ("findings.db", "sqlite:///" + os.path.abspath("findings.db")),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_to_url(target: str, url: str) -> None:
    assert to_url(target) == url


def test_schema_1_database_is_migrated(db_target: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    log = tmp_path / "access.log"
    log.write_text("".join(LINES))
    store = SqlStore(db_target)
    first = run(store, log)
    store.close()
    # Make it a schema-1 database: without the columns schema 2 added, nor the read indexes.
    engine = sa.create_engine(to_url(db_target))
    with engine.begin() as conn:
        for name in ("observations_by_row", "observations_by_day", "observations_by_input"):
            conn.execute(sa.text(f"DROP INDEX {name}"))
        conn.execute(sa.text("ALTER TABLE evidence DROP COLUMN disagreements"))
        conn.execute(sa.text("ALTER TABLE observations DROP COLUMN blocked_calls"))
        conn.execute(sa.text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    engine.dispose()
    migrated = SqlStore(db_target)
    assert run(migrated, log) == first  # data kept, checkpoint kept
    with migrated.engine.begin() as conn:
        assert conn.execute(sa.text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar() == "2"
        assert conn.execute(sa.text("SELECT sum(blocked_calls) FROM observations")).scalar() == 0
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("observations")}
        assert {"observations_by_row", "observations_by_day", "observations_by_input"} <= indexes


def test_layer_disagreements_are_stored_with_evidence(db_target: str, tmp_path: Path) -> None:
    from geoip.mmdb import MmdbLocator
    from tests.conftest import asset

    config = parse_config(
        {
            "site": [{"name": "uk", "networks": ["10.1.0.0/16"], "egress_ip": "81.2.69.160"}],
            "override": [{"network": "81.2.69.0/24", "country": "SG"}],
        },
        "t.toml",
    )
    locator = ChainLocator([OverrideLocator(config.overrides), MmdbLocator(asset("maxmind/GeoIP2-Country-Test.mmdb"))])
    log = tmp_path / "a.log"
    log.write_text(squid(T0, "10.1.0.5"))
    store = SqlStore(db_target)
    audit_logs([str(log)], pipeline=Pipeline(config, Auditor(load_policies(), locator, Attributor(config))), store=store, fmt=None, command="t")
    (row,) = store.rows()
    assert (row.country, row.basis) == ("SG", "override:81.2.69.0/24")
    (ev,) = store.evidence(row)
    assert ev.disagreements == "mmdb:GeoIP2-Country@2026-02-04=GB"


def test_locators_disagree_survives_aggregation_and_rescan(db_target: str, tmp_path: Path) -> None:
    """One row from two inputs on two days: audited once with a later layer that places the HK
    egress in the US (the verdict rests on which layer is believed), once without. The row says so
    from either order of reading, also read back by another store; rescanned without that layer, it no
    longer does."""
    import ipaddress

    import sqlalchemy as sa

    from geoip.overrides import Override

    us = OverrideLocator([Override(ipaddress.ip_network("203.0.112.0/23"), "US")])

    def auditor(disagreeing: bool) -> Auditor:
        layers = [OverrideLocator(CONFIG.overrides), *([us] if disagreeing else [])]
        return Auditor(load_policies(), ChainLocator(layers), Attributor(CONFIG))

    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text(squid(T0, "10.20.1.5") + squid(T0 + 60, "10.20.1.6"))
    second.write_text(squid(T0 + 86400, "10.20.1.5"))
    store = SqlStore(db_target)
    for path, disagreeing in ((second, False), (first, True)):  # the row's first observation is the one without
        audit_logs([str(path)], pipeline=Pipeline(CONFIG, auditor(disagreeing)), store=store, fmt=None, command="t")
    (row,) = SqlStore(db_target).rows()
    assert (row.org, row.country, row.basis, row.verdict, row.calls) == ("acme", "HK", "override:203.0.113.0/24", "violation", 3)
    assert row.locators_disagree == "override:203.0.112.0/23=US"
    assert row.as_dict()["locators_disagree"] == "override:203.0.112.0/23=US"
    # Each input's own rows: only the one read with the disagreeing layer says so.
    for path, said in ((first, "override:203.0.112.0/23=US"), (second, "")):
        summary = audit_logs([str(path)], pipeline=Pipeline(CONFIG, auditor(False)), store=store, fmt=None, command="t")
        assert [r.locators_disagree for r in store.rows(summary.source_ids)] == [said]
    audit_logs([str(first)], pipeline=Pipeline(CONFIG, auditor(False)), store=store, fmt=None, command="t", rescan=True)
    (row,) = store.rows()
    assert (row.calls, row.locators_disagree) == (3, "")
    with store.engine.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM contested")).scalar() == 0


def test_forget_drops_what_an_input_recorded_and_rescan_counts_it_once(db_target: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(LINES))
    other = tmp_path / "other.log"
    other.write_text(squid(T0 + 9000, "10.30.2.8"))
    store = SqlStore(db_target)
    first = run(store, log, other)
    (row,) = [r for r in store.rows() if r.org == "acme"]
    assert len(store.evidence(row)) == 2
    # A renamed, compressed copy is the same input: forgetting it forgets the original's records.
    packed = tmp_path / "access.log.1.gz"
    packed.write_bytes(gzip.compress(log.read_bytes()))
    summary = audit_logs([str(packed)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test", rescan=True)
    assert summary.inputs[0].resumed_at_line == 0 and summary.inputs[0].lines == len(LINES)
    assert [r.as_dict() for r in store.rows()] == first  # counted once, not added to
    (row,) = [r for r in store.rows() if r.org == "acme"]
    assert len(store.evidence(row)) == 2
    # The other input was not touched, and the checkpoint is back at the end.
    assert calls(store.rows())[("beta", "allowed")] == 2
    again = audit_logs([str(log)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")
    assert again.inputs[0].resumed_at_line == len(LINES) and again.inputs[0].lines == 0


def test_forget_then_a_new_configuration_replaces_the_rows(db_target: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(LINES))
    store = SqlStore(db_target)
    run(store, log)
    moved = parse_config(
        {
            "site": [{"name": "sg", "networks": ["10.0.0.0/8"], "egress_ip": "198.51.100.10"}],
            "org": [{"name": "acme", "networks": ["10.0.0.0/8"]}],
            "override": [{"network": "198.51.100.0/24", "country": "SG"}],
        },
        "moved.toml",
    )
    auditor = Auditor(load_policies(), ChainLocator([OverrideLocator(moved.overrides)]), Attributor(moved))
    audit_logs([str(log)], pipeline=Pipeline(moved, auditor), store=store, fmt=None, command="test", rescan=True)
    assert calls(store.rows()) == {("acme", "allowed"): 3, ("unattributed", "unknown"): 1}


def test_small_input_checkpointed_then_grown_and_renamed_resumes(db_target: str, tmp_path: Path) -> None:
    """A checkpoint taken while the file was shorter than the fingerprint is found under another
    name (rotated while small): only the lines written since are counted."""
    log = tmp_path / "access.log"
    log.write_text("".join(LINES[:2]))
    store = SqlStore(db_target)
    run(store, log)
    with log.open("a") as f:
        f.write("".join(LINES[2:]))
    log.rename(tmp_path / "access.log.1")
    summary = audit_logs([str(tmp_path / "access.log.1")], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")
    assert summary.inputs[0].resumed_at_line == 2 and summary.inputs[0].lines == 4
    assert calls(store.rows()) == {("acme", "violation"): 2, ("beta", "allowed"): 1, ("unattributed", "unknown"): 1}
    # A file that merely starts like an empty one is not that one.
    empty = tmp_path / "empty.log"
    empty.write_text("")
    run(store, empty)
    fresh = tmp_path / "fresh.log"
    fresh.write_text(squid(T0 + 7200, "10.20.1.5"))
    fresh_summary = audit_logs([str(fresh)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")
    assert fresh_summary.inputs[0].resumed_at_line == 0 and fresh_summary.inputs[0].lines == 1


@pytest.mark.parametrize(
    "setup, message",
    [
        # Found by a hostile-input hunt: each used to end with a traceback.
        (
            "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR); INSERT INTO meta VALUES ('schema_version', 'abc')",
            "f.db: is a database of another application (tables meta); pass another --db",
        ),  # a meta alone is not ours
        (
            "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR); INSERT INTO meta VALUES ('schema_version', '0')",
            "f.db: is a database of another application (tables meta); pass another --db",
        ),
        (
            "CREATE TABLE runs (id INTEGER PRIMARY KEY, command VARCHAR)",
            "f.db: is a database of another application (tables runs); pass another --db",
        ),
    ],
)
def test_a_foreign_or_damaged_database_is_one_sentence(tmp_path: Path, setup: str, message: str) -> None:
    import sqlite3

    from click.testing import CliRunner

    from auditor.cli import cli

    db = tmp_path / "f.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(setup)
    log = tmp_path / "a.log"
    log.write_text("1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n")
    result = CliRunner().invoke(cli, ["logs", str(log), "--db", str(db)])
    assert result.exit_code == 3, result.output
    assert message in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    "edit, message",
    [
        # A hand-edited SQLite file (or a foreign tool writing to it) reached the output as a traceback.
        ("UPDATE observations SET first_seen = 'notadate'", "(Invalid isoformat string: 'notadate')"),
        ("UPDATE observations SET verdict = 'weird'", "(verdict 'weird' is not one of violation, at_risk, unknown, allowed)"),
        ("UPDATE observations SET org = x'41'", "(org is bytes, not text)"),
        ("UPDATE observations SET calls = -3", "(calls -3 is not a count)"),
    ],
)
def test_a_hand_edited_value_is_one_sentence(tmp_path: Path, edit: str, message: str) -> None:
    import sqlite3

    from click.testing import CliRunner

    from auditor.cli import cli

    db = tmp_path / "f.db"
    store = SqlStore(str(db))
    run(store, _log(tmp_path))
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute(edit)
    result = CliRunner().invoke(cli, ["findings", "--db", str(db)])
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("Error: the findings database holds a value region-auditor did not write ")
    assert message in result.stderr and "Traceback" not in result.output


def _log(tmp_path: Path) -> Path:
    log = tmp_path / "a.log"
    log.write_text(squid(T0, "10.20.1.5") + squid(T0 + 60, "10.30.0.9"))
    return log


# --- two processes auditing the same input into one database ------------------------------------


def _tallies(lines: list[str]) -> list:
    from auditor.events import tally
    from auditor.sources.squid import parse

    events = [parse(line.rstrip("\n"), f"a.log:{i}") for i, line in enumerate(lines, 1)]
    return tally(list(_auditor().audit(events, CONFIG.source("a.log"))))


def test_a_batch_from_a_checkpoint_another_process_moved_is_not_stored(db_target: str, tmp_path: Path) -> None:
    from auditor.sources.logfile import LogFile
    from auditor.store import CheckpointMoved
    from tests.sources.helpers import NEEDLES

    log_path = tmp_path / "a.log"
    log_path.write_text("".join(LINES[:2]))
    mine, theirs = SqlStore(db_target), SqlStore(db_target)  # two processes' stores
    log = LogFile.open(str(log_path), NEEDLES)
    at_mine, at_theirs = mine.checkpoint(log), theirs.checkpoint(log)
    assert at_mine == at_theirs
    run_id = theirs.start_run("test", "", "")
    after, _ = theirs.add_batch(run_id, at_theirs, _tallies(LINES[:2]), 200, 2)
    assert (after.offset, after.line) == (200, 2)
    with pytest.raises(CheckpointMoved) as moved:
        mine.add_batch(mine.start_run("test", "", ""), at_mine, _tallies(LINES[:2]), 200, 2)
    assert moved.value.checkpoint == after
    assert calls(mine.rows()) == {("acme", "violation"): 2}  # once
    assert theirs.add_batch(run_id, after, [], 260, 3)[0].line == 3  # the one that moved it goes on
    log.close()


def test_looking_up_a_checkpoint_waits_for_another_process_creating_it(db_target: str, tmp_path: Path) -> None:
    """Two processes opening the same new input at once: the second finds the checkpoint the first
    creates (it waits for it), instead of making its own and counting the input a second time."""
    import threading

    from auditor.sources.logfile import LogFile
    from auditor.sqlstore import _serialize
    from tests.sources.helpers import NEEDLES

    log_path = tmp_path / "a.log"
    log_path.write_text("".join(LINES))
    first, second = SqlStore(db_target), SqlStore(db_target)
    log = LogFile.open(str(log_path), NEEDLES)
    found: list = []
    with first.engine.begin() as conn:  # the first process, inside its checkpoint lookup
        _serialize(conn)
        waiting = threading.Thread(target=lambda: found.append(second.checkpoint(log)))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and not found
        created = first._new_source(conn, log)
    waiting.join(10)
    assert found == [created]
    log.close()


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_concurrent_audits_of_one_file_count_it_once(db: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Real processes, started together on a database none of them has created yet."""
    import subprocess
    import sys

    target = str(tmp_path / "f.db") if db == "sqlite" else request.getfixturevalue("pg_url")
    log = tmp_path / "access.log"
    with log.open("w") as f:
        for i in range(60_000):
            f.write(squid(T0 + i, f"10.20.{i % 200}.{i % 250 + 1}") if i % 3 == 0 else squid(T0 + i, "10.30.0.9", host="example.com"))
    os.utime(log, (T0, T0))  # settled: read to the end
    command = [sys.executable, "-m", "auditor", "logs", str(log), "--db", target, "--json"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    final = SqlStore(target).rows()
    assert sum(r.calls for r in final) == 20_000
    for _, err in outputs:
        assert "Traceback" not in err
        assert "counted twice" in err or "60000 lines" in err or "(audited before)" in err, err


def test_a_file_sharing_only_its_first_lines_with_an_audited_one_is_its_own_input(db_target: str, tmp_path: Path) -> None:
    """Only a file that is all the start of an audited one is an earlier copy. One that goes on
    otherwise (its last line unterminated but settled, so read) lost its own calls as 'nothing new'."""
    grown = tmp_path / "access.log"
    grown.write_text("".join(LINES))
    store = SqlStore(db_target)
    run(store, grown)
    other = tmp_path / "other.log"
    other.write_text("".join(LINES[:2]) + squid(T0 + 9000, "10.30.2.7").rstrip("\n"))
    os.utime(other, (T0, T0))  # settled: its last line is read without its newline
    summary = audit_logs([str(other)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")
    assert not summary.inputs[0].earlier_copy and summary.inputs[0].lines == 3 and summary.inputs[0].calls == 3


def test_last_read_is_the_checkpoint_of_that_name_moved_last(db_target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from auditor.sources.logfile import LogFile
    from auditor.store import StoreError
    from tests.sources.helpers import NEEDLES

    log_path = tmp_path / "a.log"
    log_path.write_text("".join(LINES[:2]))
    store = SqlStore(db_target)
    assert store.last_read(str(log_path)) is None
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    log = LogFile.open(str(log_path), NEEDLES)
    at = store.checkpoint(log)
    log.close()
    taken = store.last_read(str(log_path))
    assert taken is not None and taken[0] == at and before <= taken[1] <= dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    after, _ = store.add_batch(store.start_run("test", "", ""), at, _tallies(LINES[:2]), 200, 2)
    moved = store.last_read(str(log_path))
    assert moved is not None and moved[0] == after and moved[1] > taken[1]
    assert store.last_read(str(tmp_path / "other.log")) is None
    store.close()
    if "://" in db_target:
        return  # PostgreSQL refuses such an edit itself
    with sqlite3.connect(db_target) as conn:
        conn.execute("UPDATE sources SET name = 'a.log'")  # as versions before recorded_name wrote it: the name as typed
    monkeypatch.chdir(tmp_path)
    assert SqlStore(db_target).last_read("a.log") is not None
    with sqlite3.connect(db_target) as conn:
        conn.execute("UPDATE sources SET updated_at = 'notadate'")
    with pytest.raises(StoreError, match="holds a checkpoint time region-auditor did not write"):
        SqlStore(db_target).last_read("a.log")


def test_known_finds_a_checkpoint_without_writing_one(db_target: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    from auditor.sources.logfile import LogFile
    from tests.sources.helpers import NEEDLES

    log_path = tmp_path / "a.log"
    log_path.write_text("".join(LINES[:2]))
    store = SqlStore(db_target)
    log = LogFile.open(str(log_path), NEEDLES)
    with store.engine.connect() as conn:
        assert store.known(log) is None and conn.execute(sa.text("SELECT count(*) FROM sources")).scalar() == 0
    at = store.checkpoint(log)
    log.close()
    assert store.known(log) == at


def test_where_an_input_ended_is_kept_per_input_and_forgotten_with_it(db_target: str, tmp_path: Path) -> None:
    """audit_logs records where a file read to its end ended, and from when; a file whose last
    line has no newline (still being written) gets nothing; --rescan forgets it with the input.
    read_as names the inputs read under a name."""
    from auditor.sources.logfile import LogFile
    from tests.sources.helpers import NEEDLES

    done, open_line = tmp_path / "a.log", tmp_path / "b.log"
    done.write_text("".join(LINES[:2]))
    open_line.write_text(LINES[2] + LINES[3] + LINES[4].rstrip("\n"))  # written just now: its last line waits
    store = SqlStore(db_target)
    before = dt.datetime.now(dt.UTC)
    audit_logs([str(done), str(open_line)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")

    def checkpoint(path: Path) -> Checkpoint:
        log = LogFile.open(str(path), NEEDLES)
        try:
            found = store.known(log)
        finally:
            log.close()
        assert found is not None
        return found

    a, b = checkpoint(done), checkpoint(open_line)
    seen = store.seen_end(a.source_id)
    assert seen is not None and seen[0] == a.offset == done.stat().st_size
    assert before <= seen[1] <= dt.datetime.now(dt.UTC)
    assert store.seen_end(b.source_id) is None and b.offset == len(LINES[2] + LINES[3])
    assert store.read_as(str(done)) == {a.source_id} and store.read_as(str(tmp_path / "c.log")) == set()
    store.saw_end(Checkpoint(a.source_id, 7, 1), before)  # seen again: the last sighting is kept
    assert store.seen_end(a.source_id) == (7, before)
    audit_logs([str(done)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test", rescan=True)
    assert store.seen_end(a.source_id) is None  # forgotten with its input
    again = checkpoint(done)
    assert again.source_id != a.source_id and store.seen_end(again.source_id) is not None
    store.close()


def test_a_line_written_while_the_last_batch_is_stored_is_not_taken_as_read(tmp_path: Path) -> None:
    """The reader hit the end of the file, then its last batch was stored while the writer added a
    line. The end was recorded as of after the store: the new line's write looked older than that,
    and a compressed copy of the file was taken as holding nothing more."""
    from auditor.sources.logfile import LogFile
    from tests.sources.helpers import NEEDLES

    log_path = tmp_path / "a.log"
    log_path.write_text("".join(LINES[:2]))

    class WrittenMeanwhile(SqlStore):
        def add_batch(self, *args: Any, **kwargs: Any) -> tuple[Checkpoint, int]:
            stored = super().add_batch(*args, **kwargs)
            time.sleep(0.05)
            with log_path.open("a") as f:
                f.write(LINES[3])
            return stored

    store = WrittenMeanwhile(str(tmp_path / "f.db"))
    audit_logs([str(log_path)], pipeline=Pipeline(CONFIG, _auditor()), store=store, fmt=None, command="test")
    log = LogFile.open(str(log_path), NEEDLES)
    checkpoint = store.known(log)
    log.close()
    assert checkpoint is not None and checkpoint.offset == len("".join(LINES[:2]))
    seen = store.seen_end(checkpoint.source_id)
    assert seen is not None and seen[0] == checkpoint.offset and seen[1].timestamp() < log_path.stat().st_mtime
    store.close()


def test_an_input_is_recorded_under_one_name_however_it_is_spelled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor.store import recorded_name

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "dated-20240715.log").write_text("")
    (tmp_path / "real" / "access.log").symlink_to(tmp_path / "real" / "dated-20240715.log")
    monkeypatch.chdir(tmp_path / "real")
    want = str(tmp_path.resolve() / "real" / "access.log")  # the file's own link is kept: it moves to each day's file
    assert {recorded_name(n) for n in ("access.log", "./access.log", str(tmp_path / "link" / "access.log"), "../real/access.log")} == {want}
    assert recorded_name("<stdin>") == "<stdin>"


def test_a_nul_in_a_stored_value_does_not_stop_the_run(db_target: str, tmp_path: Path) -> None:
    # PostgreSQL refuses NUL in text: one such line (in the raw record, the client, a region
    # label, an org name from the config) stopped the whole run there, and every later one.
    import json

    from click.testing import CliRunner

    from auditor.cli import cli

    squid_log = tmp_path / "access.log"
    squid_log.write_bytes(b"1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\x00z\n")
    eve = tmp_path / "eve.json"
    eve.write_text(
        json.dumps(
            {
                "timestamp": "2024-07-15T09:10:11.000000+0000",
                "event_type": "tls",
                "src_ip": "10.0.0.1\u0000x",
                "src_port": 5,
                "dest_ip": "162.159.140.245",
                "dest_port": 443,
                "proto": "TCP",
                "tls": {"sni": "api.openai.com"},
            }
        )
        + "\n"
    )
    config = tmp_path / "c.toml"
    config.write_text('[[org]]\nname = "acme\\u0000corp"\nnetworks = ["10.0.0.0/8"]\n')
    result = CliRunner().invoke(cli, ["logs", str(squid_log), str(eve), "--db", db_target, "--config", str(config), "--json"])
    assert result.exit_code in (0, 1), result.output
    assert sum(r["calls"] for r in json.loads(result.stdout)) == 2


# --- the database path: links, other applications' files, permissions ------------------------


def test_a_symlink_as_db_is_refused_unless_named_as_a_url(tmp_path: Path) -> None:
    """A dangling link would make SQLite create its target wherever it points."""
    target = tmp_path / "elsewhere" / "target.db"
    target.parent.mkdir()
    link = tmp_path / "findings.db"
    link.symlink_to(target)
    with pytest.raises(StoreError, match=r"findings.db: is a symbolic link; pass the file it points to, or sqlite:///"):
        SqlStore(str(link))
    assert not target.exists()
    SqlStore(f"sqlite:///{link}").close()  # named as a URL: followed, on purpose
    assert target.exists()


def test_another_applications_sqlite_file_is_left_untouched(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE TABLE meta (k TEXT, v TEXT)")  # a table of the same name, not ours
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"app.db: is a database of another application \(tables meta, users\); pass another --db"):
        SqlStore(str(path))
    assert path.read_bytes() == before  # no table added, journal mode not switched to WAL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_an_existing_database_readable_by_others_is_tightened_and_said(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from auditor.cli import cli

    path = tmp_path / "f.db"
    SqlStore(str(path)).close()
    os.chmod(path, 0o644)
    result = CliRunner().invoke(cli, ["findings", "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: the findings database was readable by others (mode 0644); made owner-only (0600)" in result.stderr
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {
        name: "0o600" for name in ("f.db", "f.db-wal", "f.db-shm") if (tmp_path / name).exists()
    }


def test_directories_made_for_the_database_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        SqlStore(str(tmp_path / "a" / "b" / "findings.db")).close()
    finally:
        os.umask(old)
    assert oct((tmp_path / "a").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "a" / "b").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "a" / "b" / "findings.db").stat().st_mode & 0o777) == "0o600"


def test_a_postgresql_database_of_another_application_is_refused(pg_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"the database holds tables of another application \(invoices\); pass another --db"):
        SqlStore(pg_url)


def test_a_database_with_our_meta_but_other_tables_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """Found by a hostile pass: `meta(key, value)` with a schema_version row made another
    application's file ours (9 tables added, WAL on); a refused file's mode was tightened first."""
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    os.chmod(path, 0o664)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"is a database of another application \(tables customers, meta\)"):
        SqlStore(str(path))
    assert path.read_bytes() == before
    assert oct(path.stat().st_mode & 0o777) == "0o664"


def test_a_symlink_where_sqlite_keeps_the_journal_is_refused_not_followed(tmp_path: Path) -> None:
    """chmod followed a `-wal` link: run as root, any file could be made 0600."""
    SqlStore(str(tmp_path / "f.db")).close()
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    os.chmod(victim, 0o644)
    for name in ("f.db-wal", "f.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    (tmp_path / "f.db-wal").symlink_to(victim)
    with pytest.raises(StoreError, match=r"f.db-wal: is a symbolic link where SQLite keeps the database's journal"):
        SqlStore(str(tmp_path / "f.db"))
    assert oct(victim.stat().st_mode & 0o777) == "0o644"


def test_a_newer_region_auditors_extra_table_does_not_make_a_database_foreign(tmp_path: Path) -> None:
    """A fleet upgraded piecemeal: an older build opens a database a newer one added a table to."""
    import sqlite3

    path = tmp_path / "f.db"
    SqlStore(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE added_by_a_newer_version (id INTEGER PRIMARY KEY)")
    SqlStore(str(path)).close()


def test_the_sqlite_file_alone_holds_everything_after_a_command(tmp_path: Path) -> None:
    """The database is the evidence file people copy and hand over: a copied findings.db without
    its -wal read back empty when the command left the data in the write-ahead log."""
    import shutil
    import sqlite3

    from click.testing import CliRunner

    from auditor.cli import cli

    log = tmp_path / "a.log"
    log.write_text("1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n")
    db = tmp_path / "f.db"
    result = CliRunner().invoke(
        cli, ["logs", str(log), "--db", str(db), "--config", str(Path(__file__).resolve().parents[1] / "examples" / "auditor.toml")]
    )
    assert result.exit_code == 1, result.output  # a violation: the store is closed on that way out too
    copy = tmp_path / "handed-over.db"
    shutil.copyfile(db, copy)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT sum(calls) FROM observations").fetchone()[0] == 1


def test_a_postgresql_database_with_a_meta_table_of_another_application_is_refused(pg_url: str) -> None:
    """The same rule as for SQLite files: a `meta` table alone does not make a database ours."""
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)"))
        conn.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"the database holds tables of another application \(invoices, meta\)"):
        SqlStore(pg_url)


def test_evidence_by_row_is_each_rows_first_calls(db_target: str) -> None:
    """The report's evidence read (a row's first calls, found through the day of its fifth
    observation with evidence) against a brute-force ranking of every evidence row, on a store of
    rows spread over inputs and days, with observations sharing a day, observations left without
    evidence, and scopes that cut the days and the orgs."""
    import random

    import sqlalchemy as sa

    from auditor import sqlstore
    from auditor.store import Scope

    rng = random.Random(5)
    store = SqlStore(db_target)
    keys = [
        (f"org-{o}", p, f"api.{p}.com", f"203.0.113.{e}", "HK", "cloud:aws:ap-east-1", v)
        for o in range(4)
        for p in ("openai", "anthropic")
        for e in range(2)
        for v in ("violation", "at_risk")
    ]
    obs, ev, evidence_of = [], [], {}
    start = dt.date(2024, 7, 1)
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(sqlstore.runs).values(
                id=1, command="logs", geoip="", policies="", started_at=dt.datetime(2024, 8, 1), lines=0, events=0, findings=0, skipped=0
            )
        )
        for source in (1, 2, 3):
            conn.execute(
                sa.insert(sqlstore.sources).values(
                    id=source, name=f"/log/{source}", fingerprint=f"{source:064x}", fp_len=4096, offset=0, line=0, updated_at=dt.datetime(2024, 8, 1)
                )
            )
        for key in keys:
            for source in (1, 2, 3):
                for day in sorted(rng.sample(range(20), rng.randrange(0, 6))):
                    when = start + dt.timedelta(days=day)
                    count = rng.choice((0, 1, 2, 5))  # 0: every call counted through a tunnel's other record
                    obs_id = len(obs) + 1
                    first = dt.datetime.combine(when, dt.time(rng.randrange(24), rng.randrange(60)))
                    obs.append(
                        dict(
                            id=obs_id,
                            source_id=source,
                            org=key[0],
                            provider=key[1],
                            host=key[2],
                            egress_ip=key[3],
                            country=key[4],
                            basis=key[5],
                            verdict=key[6],
                            day=when,
                            policy_version=f"{key[1]}@v1",
                            rule_id=f"{key[1]}@v1:x",
                            calls=max(count, 1),
                            first_seen=first,
                            last_seen=first,
                            evidence_count=count,
                            blocked_calls=0,
                        )
                    )
                    for _n in range(count):
                        ts = first + dt.timedelta(minutes=rng.randrange(0, 60 * 24 - first.hour * 60 - first.minute))
                        ev.append(
                            dict(
                                id=len(ev) + 1,
                                observation_id=obs_id,
                                run_id=1,
                                location=f"/log/{source}:{len(ev) + 1}",
                                ts=ts,
                                orig_h="10.0.0.1",
                                egress_basis="site:x",
                                rule_id="r",
                                reason="",
                                raw=f"line {len(ev) + 1}",
                                disagreements="",
                            )
                        )
                        evidence_of.setdefault(obs_id, []).append(ev[-1])
        conn.execute(sa.insert(sqlstore.observations), obs)
        conn.execute(sa.insert(sqlstore.evidence), ev)
    by_id = {o["id"]: o for o in obs}
    scopes = [
        Scope(),
        Scope(since=start + dt.timedelta(days=7)),
        Scope(until=start + dt.timedelta(days=9), orgs=("org-1", "org-2")),
        Scope(providers=("anthropic",), since=start + dt.timedelta(days=3), until=start + dt.timedelta(days=15)),
    ]
    for scope in scopes:
        expected: dict[tuple[str, ...], list[tuple[dt.datetime, int]]] = {}
        for e in ev:
            o = by_id[e["observation_id"]]
            if (
                (scope.orgs and o["org"] not in scope.orgs)
                or (scope.providers and o["provider"] not in scope.providers)
                or (scope.since and o["day"] < scope.since)
                or (scope.until and o["day"] > scope.until)
            ):
                continue
            key = (o["org"], o["provider"], o["host"], o["egress_ip"], o["country"], o["basis"], o["verdict"])
            expected.setdefault(key, []).append((e["ts"], e["id"]))
        want = {key: [f"line {i}" for _, i in sorted(found)[:EVIDENCE_PER_OBSERVATION]] for key, found in expected.items()}
        got = {key: [e.raw for e in found] for key, found in store.evidence_by_row(scope).items()}
        assert got == want, scope
        assert sum(map(len, got.values())) > 40  # the data spans enough rows and days to tell
    store.close()


def test_reads_inside_reading_see_one_state_while_another_run_records(db_target: str, tmp_path: Path) -> None:
    """The report's reads (store.reading()) add up while another process records: a run that
    commits between two of them is seen by neither, and by the next report."""
    from auditor.store import Scope

    log = tmp_path / "access.log"
    log.write_text("".join(LINES))
    store = SqlStore(db_target)
    run(store, log)
    more = tmp_path / "more.log"
    more.write_text("".join(squid(T0 + 3600 * 30 + i, "10.20.1.5") for i in range(7)))  # the next day
    writer = SqlStore(db_target)
    with store.reading():
        before = sum(r.calls for r in store.scoped_rows(Scope()))
        run(writer, more)  # commits
        days = store.activity(Scope()).days
        assert sum(d.calls for d in days) == before
        assert len({d.day for d in days}) == 1
    after = store.activity(Scope()).days
    assert sum(d.calls for d in after) == before + 7 and len({d.day for d in after}) == 2
    writer.close()
    store.close()


def test_evidence_names_its_file_by_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two logs named `access.log` in two directories, each audited from inside its own: their
    evidence says which file (the names as typed were both `access.log:1`)."""
    from click.testing import CliRunner

    from auditor.cli import cli

    db = tmp_path / "f.db"
    for site, client in (("hk", "10.20.1.5"), ("sg", "10.30.2.7")):
        (tmp_path / site).mkdir()
        (tmp_path / site / "access.log").write_text(squid(T0, client))
        monkeypatch.chdir(tmp_path / site)
        CliRunner().invoke(cli, ["logs", "access.log", "--db", str(db)])
    import sqlite3

    with sqlite3.connect(db) as conn:
        locations = sorted(r[0] for r in conn.execute("SELECT location FROM evidence"))
    assert locations == [f"{tmp_path / 'hk' / 'access.log'}:1", f"{tmp_path / 'sg' / 'access.log'}:1"]
