"""The compliance report (`region-auditor report`): the read model, each format on the demo data
and on hostile data, the JSON schema, --fail-on, and the HTML in a real browser (headless Chromium)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.events import Egress, Finding, Tally
from auditor.report.csv import COLUMNS, neutral
from auditor.report.interface import ReportChoice
from auditor.report.markdown import md
from auditor.report.model import SCHEMA, Filters, Report, to_data
from geoip.interface import Location
from rules.policy import Outcome, Verdict, load_policies
from tests.conftest import make_event

ROOT = Path(__file__).resolve().parents[1]
DEMO_INPUTS = (ROOT / "examples" / "squid-access.log", ROOT / "examples" / "vercel-drain.ndjson")
DEMO_CONFIG = ROOT / "examples" / "auditor.toml"
SCHEMA_FILE = ROOT / "auditor" / "report" / "schema" / "report-1.json"
CHROMIUM = shutil.which("chromium")
HOSTILE_ORG = "<script>alert(1)</script>"
MARKER_SCRIPT = "<script>document.documentElement.setAttribute('data-pwned','script')</script>"
MARKER_IMG = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">"
FORMULA = "=cmd|' /C calc'!A0"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def validate(document: dict[str, Any]) -> None:
    """Validate a JSON report against the schema in the repository (jsonschema, test extra)."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra: pip install -e '.[test]'")
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)


def audit_demo(db: str) -> None:
    result = invoke("logs", *map(str, DEMO_INPUTS), "--config", str(DEMO_CONFIG), "--db", db)
    assert result.exit_code == 1, result.output  # the demo has violations on purpose


@pytest.fixture
def demo_db(tmp_path: Path) -> str:
    db = str(tmp_path / "demo.db")
    audit_demo(db)
    return db


# The read model and every format on the demo data ------------------------------------------------


def test_demo_every_format_from_one_read(demo_db: str, tmp_path: Path) -> None:
    outputs = {fmt: tmp_path / f"report.{fmt}" for fmt in ("html", "md", "json", "csv")}
    result = invoke("report", "--db", demo_db, "--as-of", "2024-07-01", *(a for p in outputs.values() for a in ("-o", str(p))))
    assert result.exit_code == 1, result.output  # violations, --fail-on violation by default
    assert result.stdout == ""
    for fmt, path in outputs.items():
        assert f"wrote {path} ({fmt})" in result.stderr

    report = json.loads(outputs["json"].read_text())
    validate(report)
    assert report["schema"] == SCHEMA
    s = report["summary"]
    assert (s["orgs_audited"], s["orgs_blocked"], s["orgs_violation"], s["orgs_at_risk"], s["orgs_unknown"], s["orgs_compliant"]) == (
        5,
        1,
        1,
        0,
        1,
        2,
    )
    assert (s["calls"], s["blocked_calls"], s["violation_calls"], s["unknown_calls"], s["allowed_calls"]) == (50, 3, 29, 1, 20)
    assert s["deadlines"] == [{"provider": "openai", "name": "OpenAI API", "cutoff": "2024-07-09", "days_left": 8, "basis": "openai@v188"}]
    assert [p["version"] for p in s["policies"]] == ["openai@v188"]
    assert any(d["name"].startswith("mmdb:") for d in s["data"])
    statuses = {o["org"]: o["status"] for o in report["orgs"]}
    assert statuses == {
        "chat-team": "blocked",
        "acme-research": "violation",
        "unattributed": "unknown",
        "beta-labs": "compliant",
        "docs-team": "compliant",
    }
    acme = next(o for o in report["orgs"] if o["org"] == "acme-research")
    assert acme["egresses"] == [
        {"egress": "43.198.12.34", "country": "HK", "basis": "cloud:aws:ap-east-1", "verdicts": ["violation"], "calls": 14, "locators_disagree": ""}
    ]
    assert acme["calls_per_day"] == [{"day": "2024-07-22", "verdict": "violation", "calls": 14, "blocked_calls": 0}]
    evidence = acme["rows"][0]["evidence"]
    assert len(evidence) == 5
    assert evidence[0]["source"].endswith("squid-access.log:3") and evidence[0]["rule_id"] == "openai@v188:not-listed:HK"
    assert "CONNECT api.openai.com:443" in evidence[0]["raw"]
    kinds = {r["kind"]: r for r in report["remediation"]}
    assert set(kinds) == {"vercel-region", "cloud-region", "unknown-egress"}
    assert kinds["vercel-region"]["orgs"] == ["chat-team"] and '"regions": [' in kinds["vercel-region"]["setting"]
    assert "preferredRegion" in kinds["vercel-region"]["setting"]
    assert "ap-east-1" in kinds["cloud-region"]["action"]
    assert "egress_ip" in kinds["unknown-egress"]["setting"]
    inputs = {Path(i["name"]).name: i for i in report["coverage"]["inputs"]}
    assert (inputs["squid-access.log"]["formats"], inputs["squid-access.log"]["lines"], inputs["squid-access.log"]["calls"]) == (["squid"], 40, 23)
    assert (inputs["vercel-drain.ndjson"]["formats"], inputs["vercel-drain.ndjson"]["lines"]) == (["vercel"], 63)
    assert inputs["squid-access.log"]["first_call"].startswith("2024-07-22T")
    assert report["coverage"]["unknown_calls"] == 1 and report["coverage"]["days_without_calls"] == []

    rows = list(csv.DictReader(io.StringIO(outputs["csv"].read_text())))
    assert tuple(rows[0]) == COLUMNS
    assert [dict(r.items()) for r in rows] == [{k: str(v) for k, v in r.items() if k != "evidence"} for r in report["rows"]]
    assert {(r["org"], r["verdict"], r["calls"], r["blocked_calls"]) for r in rows} >= {("chat-team", "violation", "15", "3")}

    markdown = outputs["md"].read_text()
    assert markdown.startswith("# AI provider region compliance report")
    for heading in ("## Summary", "## Per organization", "## Remediation", "## Coverage", "### chat-team: BLOCKED"):
        assert heading in markdown
    assert "OpenAI API: cutoff 2024-07-09, 8 days left (openai@v188)" in markdown

    page = outputs["html"].read_text()
    assert 'id="orgs-audited">5<' in page and 'id="orgs-blocked">1<' in page
    assert "<script" not in page.lower() and 'id="chart-days"' in page and 'id="chart-countries"' in page
    assert "@media print" in page and "http://" not in page.replace("http://www.w3.org", "")


def test_markdown_on_stdout_by_default_and_format_choice(demo_db: str) -> None:
    result = invoke("report", "--db", demo_db, "--fail-on", "unknown")
    assert result.exit_code == 1
    assert result.stdout.startswith("# AI provider region compliance report")
    as_json = invoke("report", "--db", demo_db, "--format", "json")
    validate(json.loads(as_json.stdout))


def test_output_format_errors(demo_db: str, tmp_path: Path) -> None:
    unknown = invoke("report", "--db", demo_db, "-o", str(tmp_path / "report.txt"))
    assert unknown.exit_code == 2 and "names no report format" in unknown.output
    given = invoke("report", "--db", demo_db, "-o", str(tmp_path / "report.txt"), "--format", "csv", "--fail-on", "violation")
    assert given.exit_code == 1 and (tmp_path / "report.txt").read_text().startswith("org,provider,host,")
    clash = invoke("report", "--db", demo_db, "-o", str(tmp_path / "report.json"), "--format", "html")
    assert clash.exit_code == 2 and "drop one of them" in clash.output
    missing = invoke("report", "--db", str(tmp_path / "none.db"))
    assert missing.exit_code == 3 and "no findings database here" in missing.output
    assert not (tmp_path / "none.db").exists()
    unwritable = invoke("report", "--db", demo_db, "-o", str(tmp_path / "no" / "such" / "dir" / "r.md"))
    assert unwritable.exit_code == 3 and "cannot write the report" in unwritable.output


def test_report_files_are_written_whole_owner_only_and_never_over_the_evidence(demo_db: str, tmp_path: Path) -> None:
    db = Path(demo_db)
    evidence = db.read_bytes()
    for target in (db, Path(f"{db}-wal"), tmp_path / "link-to-db.md"):
        if target.name == "link-to-db.md":
            target.symlink_to(db)
        refused = invoke("report", "--db", demo_db, "-o", str(target), "--format", "md")
        assert refused.exit_code == 2 and "is the findings database" in refused.output, target
    assert db.read_bytes() == evidence and not Path(f"{db}-wal").exists()
    twice = invoke("report", "--db", demo_db, "-o", str(tmp_path / "r.json"), "-o", str(tmp_path / "." / "r.json"))
    assert twice.exit_code == 2 and "named twice" in twice.output and not (tmp_path / "r.json").exists()
    # A link at the destination is replaced, not followed; the file is 0600 whatever the umask.
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "report.html").symlink_to(victim)
    old = os.umask(0o022)
    try:
        result = invoke("report", "--db", demo_db, "-o", str(tmp_path / "report.html"), "-o", str(tmp_path / "report.csv"))
    finally:
        os.umask(old)
    assert result.exit_code == 1, result.output  # the demo's violations
    assert victim.read_text() == "keep me" and not (tmp_path / "report.html").is_symlink()
    for name in ("report.html", "report.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    # All or none: a later -o that cannot be written leaves the earlier one as it was, and no temporary files.
    before = (tmp_path / "report.csv").read_bytes()
    failed = invoke(
        "report", "--db", demo_db, "--since", "2024-07-23", "-o", str(tmp_path / "report.csv"), "-o", str(tmp_path / "missing" / "r.json")
    )
    assert failed.exit_code == 3 and "no report was written" in failed.output
    assert (tmp_path / "report.csv").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    # -o - is stdout, in --format.
    stdout = invoke("report", "--db", demo_db, "-o", "-", "--format", "json")
    assert json.loads(stdout.stdout)["schema"] == SCHEMA and not (tmp_path / "-").exists()
    both = invoke("report", "--db", demo_db, "-o", "-", "-o", str(tmp_path / "also.json"))
    assert both.stdout.startswith("# ") and json.loads((tmp_path / "also.json").read_text())["schema"] == SCHEMA


def test_filters_narrow_and_unknown_values_are_said(demo_db: str) -> None:
    only = json.loads(invoke("report", "--db", demo_db, "--format", "json", "--org", "beta-labs", "--org", "docs-team").stdout)
    validate(only)
    assert {o["org"] for o in only["orgs"]} == {"beta-labs", "docs-team"} and only["summary"]["calls"] == 20
    assert only["notices"] == []
    unknown = invoke("report", "--db", demo_db, "--format", "json", "--org", "nobody", "--provider", "anthropic")
    assert unknown.exit_code == 0, unknown.output
    document = json.loads(unknown.stdout)
    validate(document)
    assert document["orgs"] == [] and document["summary"]["audited"] is True
    assert any(n.startswith("--org nobody: the database holds no call of this organization") for n in document["notices"])
    assert "acme-research" not in unknown.stdout  # an org-scoped report names no other org
    assert "--provider anthropic: the database holds no call to this provider" in document["notices"]
    assert "--org nobody" in unknown.stderr
    misspelt = invoke("report", "--db", demo_db, "--provider", "OpenAI", "--fail-on", "violation")
    assert misspelt.exit_code == 2 and "--provider OpenAI: no policy pack has this id (known: anthropic, gemini, openai)" in misspelt.output
    last = json.loads(invoke("report", "--db", demo_db, "--format", "json", "--since", "9999-12-01", "--until", "9999-12-31").stdout)
    assert last["coverage"]["days_without_calls"] == [{"first": "9999-12-01", "last": "9999-12-31", "days": 31, "cause": "no_input"}]
    later = json.loads(invoke("report", "--db", demo_db, "--format", "json", "--since", "2024-07-23").stdout)
    assert later["rows"] == [] and later["coverage"]["period_first"] == "2024-07-23"
    window = json.loads(invoke("report", "--db", demo_db, "--format", "json", "--since", "2024-07-20", "--until", "2024-07-24").stdout)
    assert window["summary"]["calls"] == 50
    assert [(g["first"], g["last"], g["days"], g["cause"]) for g in window["coverage"]["days_without_calls"]] == [
        ("2024-07-20", "2024-07-21", 2, "no_input"),  # the demo logs hold 2024-07-22 only
        ("2024-07-23", "2024-07-24", 2, "no_input"),
    ]
    cut = json.loads(invoke("report", "--db", demo_db, "--format", "json", "--cutoff", "2027-01-01", "--as-of", "2026-12-01").stdout)
    assert cut["summary"]["deadlines"][0] | {"name": ""} == {
        "provider": "openai",
        "name": "",
        "cutoff": "2027-01-01",
        "days_left": 31,
        "basis": "--cutoff",
    }


def test_empty_database_says_nothing_was_audited(tmp_path: Path) -> None:
    from auditor.sqlstore import SqlStore

    db = str(tmp_path / "empty.db")
    SqlStore(db).close()
    outputs = [tmp_path / f"empty.{fmt}" for fmt in ("html", "md", "json", "csv")]
    result = invoke("report", "--db", db, "--fail-on", "unknown", *(a for p in outputs for a in ("-o", str(p))))
    assert result.exit_code == 0, result.output
    document = json.loads(outputs[2].read_text())
    validate(document)
    assert document["summary"]["audited"] is False and document["orgs"] == [] and document["coverage"]["inputs"] == []
    assert "**Nothing was audited**" in outputs[1].read_text()
    assert 'id="nothing-audited"' in outputs[0].read_text()
    assert outputs[3].read_bytes() == (",".join(COLUMNS) + "\r\n").encode()


# --fail-on ---------------------------------------------------------------------------------------

AT_RISK_LOG = (
    # 2024-07-01, before OpenAI's cutoff: the HK office is at risk, the lab (no site) unknown.
    "1719820800.000 100 10.20.3.8 TCP_TUNNEL/200 100 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n"
    "1719820860.000 100 192.168.77.4 TCP_TUNNEL/200 100 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n"
    "1719820920.000 this line names api.openai.com but is no squid record\n"
)


@pytest.mark.parametrize("fail_on, exit_code", [("violation", 0), ("at_risk", 1), ("unknown", 1)])
def test_fail_on_at_risk_and_unknown(tmp_path: Path, fail_on: str, exit_code: int) -> None:
    log = tmp_path / "before-cutoff.log"
    log.write_text(AT_RISK_LOG)
    db = str(tmp_path / "f.db")
    audited = invoke("logs", str(log), "--config", str(DEMO_CONFIG), "--db", db, "--fail-on", fail_on)
    assert audited.exit_code == exit_code, audited.output
    assert invoke("findings", "--db", db, "--fail-on", fail_on).exit_code == exit_code
    assert invoke("report", "--db", db, "--fail-on", fail_on).exit_code == exit_code
    document = json.loads(invoke("report", "--db", db, "--format", "json", "--as-of", "2024-07-01").stdout)
    validate(document)
    assert document["summary"]["orgs_at_risk"] == 1 and document["summary"]["orgs_unknown"] == 1
    (read,) = document["coverage"]["inputs"]
    assert read["lines"] == 3 and read["recorded"] is True
    assert sum(m["records"] for m in read["malformed"]) == 1


def test_only_unknown_fails_on_unknown_only(tmp_path: Path) -> None:
    log = tmp_path / "lab.log"
    log.write_text(AT_RISK_LOG.splitlines(keepends=True)[1])
    db = str(tmp_path / "f.db")
    assert invoke("logs", str(log), "--config", str(DEMO_CONFIG), "--db", db, "--fail-on", "at_risk").exit_code == 0
    assert invoke("logs", str(log), "--config", str(DEMO_CONFIG), "--db", db, "--fail-on", "unknown").exit_code == 1


def test_findings_json_has_blocked_calls(demo_db: str) -> None:
    rows = json.loads(invoke("findings", "--db", demo_db, "--json").stdout)
    assert {r["org"]: r["blocked_calls"] for r in rows}["chat-team"] == 3


# Both databases -----------------------------------------------------------------------------------


def test_report_reads_the_same_from_sqlite_and_postgresql(db_target: str, tmp_path: Path) -> None:
    from auditor.sqlstore import SqlStore

    audit_demo(db_target)
    store = SqlStore(db_target)
    try:
        now = dt.datetime(2024, 7, 1, tzinfo=dt.UTC)
        report = Report.from_store(store, Filters(as_of=dt.date(2024, 7, 1)), load_policies(), now=now)
        document = to_data(report)
        validate(document)
        assert (report.summary.calls, report.summary.blocked_calls, report.summary.orgs_audited) == (50, 3, 5)
        assert [len(r.evidence) for o in report.orgs for r in o.rows] == [5, 5, 1, 5, 5]  # up to 5 a row; the unknown row has 1 call
        assert {i.formats for i in report.coverage.inputs} == {("squid",), ("vercel",)}
        scoped = Report.from_store(
            store, Filters(orgs=("chat-team",), since=dt.date(2024, 7, 22), until=dt.date(2024, 7, 22)), load_policies(), now=now
        )
        assert [o.org for o in scoped.orgs] == ["chat-team"] and scoped.summary.calls == 15
        assert [i.calls for i in scoped.coverage.inputs if i.name.endswith("ndjson")] == [15]
        for choice in ReportChoice:
            assert choice.to_renderer().render(report)
    finally:
        store.close()
    through_cli = invoke("report", "--db", db_target, "--format", "json", "--as-of", "2024-07-01")
    assert through_cli.exit_code == 1
    assert json.loads(through_cli.stdout)["rows"] == document["rows"]


# Hostile data ----------------------------------------------------------------------------------


def _tally(org: str, host: str, egress: str, raw: str, source: str, verdict: Outcome = Outcome.VIOLATION) -> Tally:
    event = make_event(server_name=host, raw=raw, source=source)
    location = Location(country_code="HK", basis="override:203.0.113.0/24")
    judged = Verdict(verdict, "openai", "openai@v188", "openai@v188:not-listed:HK", "HK is not listed by OpenAI API")
    finding = Finding(event, org, Egress(egress, "event"), location, judged, host)
    return Tally(
        org=org,
        provider="openai",
        host=host,
        egress=egress,
        country="HK",
        basis=location.basis,
        verdict=verdict.value,
        day=event.ts.date(),
        calls=2,
        blocked_calls=0,
        first_seen=event.ts,
        last_seen=event.ts,
        policy_version="openai@v188",
        rule_id=judged.rule_id,
        samples=(finding,),
    )


class _Input:
    """Just enough of an input for a checkpoint (auditor.store.Fingerprinted)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = name.encode()
        self.whole_lines = 0

    @property
    def fingerprint(self) -> str:
        return self.prefix_fingerprint(len(self.prefix))

    def prefix_fingerprint(self, length: int) -> str:
        import hashlib

        return hashlib.sha256(self.prefix[:length]).hexdigest()


@pytest.fixture
def hostile_db(tmp_path: Path) -> str:
    """A database holding markup and formulas where names go (as a foreign or hand-edited database
    could: the parsers refuse such host names)."""
    from auditor.sqlstore import SqlStore

    db = str(tmp_path / "hostile.db")
    store = SqlStore(db)
    run = store.start_run("logs", "mmdb:Test-Country@2024-06-30", "openai@v188")
    checkpoint = store.checkpoint(_Input(MARKER_IMG + ".log"))
    tallies = [
        _tally(HOSTILE_ORG, "api.openai.com", "203.0.113.9", "CONNECT " + MARKER_SCRIPT, f"{MARKER_IMG}:1"),
        _tally(MARKER_SCRIPT, MARKER_IMG, FORMULA, "</pre>" + MARKER_SCRIPT, "x.log:2"),
        _tally(FORMULA, "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3", "+cmd", "x.log:3", Outcome.AT_RISK),
    ]
    store.add_batch(run, checkpoint, tallies, 10, 3)
    store.finish_run(run, lines=3, events=3, findings=6, skipped=0)
    store.close()
    return db


def test_hostile_values_are_inert_in_every_format(hostile_db: str, tmp_path: Path) -> None:
    outputs = {fmt: tmp_path / f"hostile.{fmt}" for fmt in ("html", "md", "json", "csv")}
    result = invoke("report", "--db", hostile_db, "--as-of", "2024-07-01", *(a for p in outputs.values() for a in ("-o", str(p))))
    assert result.exit_code == 1, result.output
    document = json.loads(outputs["json"].read_text())
    validate(document)
    assert {o["org"] for o in document["orgs"]} == {HOSTILE_ORG, MARKER_SCRIPT, FORMULA}  # JSON keeps values as they are
    (read,) = document["coverage"]["inputs"]
    assert read["recorded"] is False and read["formats"] == []  # no run recorded how it was read: said, not invented

    page = outputs["html"].read_text()
    assert "<script" not in page.lower() and "<img" not in page.lower() and "</pre>" + "&lt;" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=" in page

    markdown = outputs["md"].read_text()
    # Code (fenced blocks, spans) renders as text; everything else must hold no markup.
    outside_code = re.sub(r"(?ms)^ *(`{3,})text\n.*?^ *\1$", "", markdown)
    outside_code = re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", outside_code)
    assert "<script" not in outside_code and "<img" not in outside_code
    assert "&lt;script&gt;alert\\(1\\)" in outside_code or "&lt;script&gt;alert(1)" in outside_code
    assert "| not recorded |" in markdown

    rows = list(csv.DictReader(io.StringIO(outputs["csv"].read_text())))
    by_org = {r["org"]: r for r in rows}
    assert "'" + FORMULA in by_org and by_org["'" + FORMULA]["host"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert by_org["'" + FORMULA]["egress"] == "'-2+3"
    assert by_org[HOSTILE_ORG]["calls"] == "2"  # numbers stay numbers
    for row in rows:
        assert not any(str(v).startswith(("=", "+", "-", "@")) for v in row.values())


def test_escapers() -> None:
    assert neutral("=1+1") == "'=1+1" and neutral("\t=x") == "'\t=x" and neutral("a=b") == "a=b" and neutral(-3) == -3
    assert md("<b>|x|</b>") == "&lt;b&gt;\\|x\\|&lt;/b&gt;"
    assert md("a\nb") == "a\\\\nb" and md("[link](http://x)") == "\\[link\\](http://x)"
    from auditor.report.html import e

    assert e('<a href="x">\u202egpj.exe</a>') == "&lt;a href=&quot;x&quot;&gt;\\u202egpj.exe&lt;/a&gt;"
    assert e("line\x1b[31m\nnext\t") == "line\\x1b[31m\nnext\t"


# The HTML in a real browser ------------------------------------------------------------------------


def chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; .ci/run installs it, so CI never skips this)")
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.slow
def test_html_in_chromium_demo_numbers(demo_db: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    invoke("report", "--db", demo_db, "--as-of", "2024-07-01", "-o", str(page))
    dom = chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path).stdout
    assert '<div class="v" id="orgs-audited">5</div>' in dom
    assert '<div class="v" id="orgs-blocked">1</div>' in dom and '<div class="v" id="orgs-violation">1</div>' in dom
    assert '<div class="v" id="orgs-unknown">1</div>' in dom and '<div class="v" id="orgs-compliant">2</div>' in dom
    assert 'data-provider="openai" data-days-left="8"' in dom
    assert re.search(r'<section class="org" data-org="chat-team" data-status="blocked">', dom)
    assert dom.count("<rect ") >= 4  # the charts' bars were parsed as SVG
    assert '<ul id="days-without-calls"><li>Every day of the period has calls.</li></ul>' in dom  # the demo logs are of one day
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri(), tmp_path=tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_html_in_chromium_runs_no_script(hostile_db: str, tmp_path: Path) -> None:
    page = tmp_path / "hostile.html"
    invoke("report", "--db", hostile_db, "-o", str(page))
    dom = chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path).stdout
    assert 'data-pwned="' not in dom  # neither the <script> nor the onerror handler set its attribute
    assert "<script" not in dom.lower() and "<img" not in dom.lower()  # no element was made of them
    assert '<span class="org-name">&lt;script&gt;alert(1)&lt;/script&gt;</span>' in dom  # shown as text
    assert '<div class="v" id="orgs-audited">3</div>' in dom


def test_schema_reference_is_up_to_date() -> None:
    """docs/report-schema.md is generated from the schema and the model's docstrings."""
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "tools" / "report-schema-doc.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_schema_matches_the_model() -> None:
    """Every dataclass of the report is an object of the schema with exactly its fields."""
    import dataclasses

    import auditor.report.model as model

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    objects = {"Report": schema, **schema["$defs"]}
    for name, value in vars(model).items():
        if dataclasses.is_dataclass(value) and value.__module__ == model.__name__:
            assert name in objects, f"{name} is not in the schema"
            fields = [f.name for f in dataclasses.fields(value)]
            assert list(objects[name]["properties"]) == fields == objects[name]["required"], name
            assert objects[name]["additionalProperties"] is False


def test_capture_evidence_names_its_packet(tmp_path: Path) -> None:
    """A capture's input is recorded as read (format pcap) and its evidence names the packet."""
    from scapy.layers.l2 import Ether

    from tests.sources.test_pcap import MAC_A, MAC_B, client_hello, tcp_session, write

    capture = write(tmp_path / "border.pcap", [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"))])
    db = str(tmp_path / "f.db")
    assert invoke("pcap", str(capture), "--db", db).exit_code in (0, 1)
    document = json.loads(invoke("report", "--db", db, "--format", "json").stdout)
    validate(document)
    (read,) = document["coverage"]["inputs"]
    assert read["formats"] == ["pcap"] and read["lines"] == 4 and read["calls"] == 1
    (org,) = document["orgs"]
    assert org["rows"][0]["evidence"][0]["source"].startswith(str(capture))


# A database handed over read-only -----------------------------------------------------------------


@pytest.mark.parametrize("locked", ["file", "directory"])
def test_report_from_a_read_only_copy(demo_db: str, locked: str) -> None:
    """A copy of the findings database that the reader may not write (the file, or the directory it
    is in) is reported on as it is: same report, the file unchanged, nothing created beside it.
    As root, the command runs as nobody (root may write anything)."""
    import hashlib
    import tempfile

    nobody = 65534
    as_nobody = os.geteuid() == 0
    if as_nobody and not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) runs the command as nobody; root may write any file")
    base = Path(tempfile.mkdtemp(prefix="ra-readonly-"))
    try:
        copy = base / "handed-over.db"
        shutil.copyfile(demo_db, copy)
        os.chmod(base, 0o755)
        if locked == "file":
            os.chmod(copy, 0o444)
            if as_nobody:
                os.chown(base, nobody, nobody)  # the directory is the reader's; the file is not writable
        else:
            os.chmod(copy, 0o600)
            if as_nobody:
                os.chown(copy, nobody, nobody)  # the file is the reader's; the directory (root's, 0755) is not
            else:
                os.chmod(base, 0o555)
        before = hashlib.sha256(copy.read_bytes()).hexdigest()
        command = [sys.executable, "-m", "auditor", "report", "--db", str(copy), "--format", "json"]
        if as_nobody:
            command = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, cwd=base, env={**os.environ, "HOME": str(base), "PYTHONDONTWRITEBYTECODE": "1"}
        )
        assert done.returncode == 1, done.stderr  # the demo's violations, read from the copy
        expected = json.loads(invoke("report", "--db", demo_db, "--format", "json").output)
        got = json.loads(done.stdout)
        for document in (expected, got):
            document.pop("generated_at")
        assert got == expected
        assert (got["summary"]["orgs_blocked"], got["summary"]["orgs_violation"]) == (1, 1)
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == before
        assert sorted(p.name for p in base.iterdir()) == ["handed-over.db"]  # no -wal, -shm or journal
    finally:
        os.chmod(base, 0o755)
        shutil.rmtree(base)


@pytest.mark.parametrize("command", ["report", "findings"])
@pytest.mark.parametrize("where", ["url-typo", "empty-file", "empty-postgresql"])
def test_reading_commands_never_create_a_database(command: str, where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A CI gate pointed at the wrong database fails (exit 3), rather than reading a new empty one
    as "nothing audited" and passing; and nothing is created where it pointed."""
    import sqlalchemy as sa

    if where == "url-typo":
        target = f"sqlite:///{tmp_path / 'typo.db'}"
    elif where == "empty-file":
        (tmp_path / "copy.db").write_bytes(b"")
        target = str(tmp_path / "copy.db")
    else:
        target = request.getfixturevalue("pg_url")
    result = CliRunner().invoke(cli, [command, "--db", target, "--fail-on", "unknown"])
    assert result.exit_code == 3, result.output
    assert "audit something first" in result.output or "not a findings database" in result.output
    if where == "url-typo":
        assert not (tmp_path / "typo.db").exists()
    elif where == "empty-file":
        assert (tmp_path / "copy.db").read_bytes() == b""
    else:
        engine = sa.create_engine(target)
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
        engine.dispose()


def test_rules_count_refused_calls_under_their_own_rule(demo_db: str, tmp_path: Path) -> None:
    """An observation holds calls the provider refused beside calls it did not: the refused ones
    are counted under `...:provider-blocked` and the others under their own rule, whichever came
    first, in one run or across runs."""

    def rules(db: str) -> dict[str, int]:
        document = json.loads(invoke("report", "--db", db, "--format", "json").stdout)
        return {r["rule_id"]: r["calls"] for r in document["rules"] if r["verdict"] == "violation"}

    assert rules(demo_db) == {"openai@v188:not-listed:HK": 26, "openai@v188:provider-blocked": 3}  # 14 squid + 12 drain; 3 refused
    drain = DEMO_INPUTS[1].read_text().splitlines(keepends=True)
    (tmp_path / "refused.ndjson").write_text(drain[1])  # line 2: a call OpenAI refused (403) from hkg1
    (tmp_path / "served.ndjson").write_text(drain[2])  # line 3: the same project, same day, not refused
    db = str(tmp_path / "order.db")
    for name in ("refused.ndjson", "served.ndjson"):
        done = invoke("logs", str(tmp_path / name), "--config", str(DEMO_CONFIG), "--db", db)
        assert done.exit_code == 1, done.output
    assert rules(db) == {"openai@v188:not-listed:HK": 1, "openai@v188:provider-blocked": 1}
    together = str(tmp_path / "together.db")
    (tmp_path / "both.ndjson").write_text(drain[1] + drain[2])
    invoke("logs", str(tmp_path / "both.ndjson"), "--config", str(DEMO_CONFIG), "--db", together)
    assert rules(together) == {"openai@v188:not-listed:HK": 1, "openai@v188:provider-blocked": 1}


def test_data_a_run_used_when_already_stale_is_said(tmp_path: Path) -> None:
    """The data behind the calls is named at every date a run used it: a run that located with a
    database already months old is a warning even when a later run used fresh data."""
    import sqlalchemy as sa

    from auditor import sqlstore

    db = str(tmp_path / "stale.db")
    store = sqlstore.SqlStore(db)
    with store.engine.begin() as conn:
        for started, data in ((dt.datetime(2026, 12, 1), "2019-01-01"), (dt.datetime(2026, 12, 2), "2026-12-01")):
            conn.execute(
                sa.insert(sqlstore.runs).values(
                    command="logs",
                    geoip=f"override:0 networks > mmdb:GeoLite2-Country@{data}",
                    policies="",
                    started_at=started,
                    finished_at=started,
                    lines=0,
                    events=0,
                    findings=0,
                    skipped=0,
                )
            )
    store.close()
    document = json.loads(invoke("report", "--db", db, "--format", "json", "--as-of", "2026-12-06").stdout)
    validate(document)
    data = {(d["name"], d["date"]): (d["runs"], d["runs_stale"], d["stale"]) for d in document["summary"]["data"]}
    assert data == {("mmdb:GeoLite2-Country", "2019-01-01"): (1, 1, True), ("mmdb:GeoLite2-Country", "2026-12-01"): (1, 0, False)}
    warnings = document["summary"]["warnings"]
    assert any(
        w.startswith("Calls located with data already older than 30 days when the run used it: mmdb:GeoLite2-Country@2019-01-01 by 1 run")
        for w in warnings
    )
    assert not any(w.startswith("GeoIP and cloud-range data older") for w in warnings)  # the newest is 5 days old
