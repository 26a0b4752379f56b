"""The command line, driven with click's CliRunner (and once as a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.runner import InputSummary
from rules.policy import load_policies
from tests.conftest import asset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_LOG = ROOT / "examples" / "squid-access.log"
EXAMPLE_CONFIG = ROOT / "examples" / "auditor.toml"
ROW_KEYS = [
    "org",
    "provider",
    "host",
    "egress_ip",
    "country",
    "basis",
    "verdict",
    "calls",
    "blocked_calls",
    "first_seen",
    "last_seen",
    "locators_disagree",
]


def invoke(*args: str, input: bytes | None = None):  # type: ignore[no-untyped-def]  # noqa: A002 - CliRunner.invoke's name
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_example_shows_violation_allowed_and_unknown_with_bases(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    result = invoke("logs", str(EXAMPLE_LOG), "--config", str(EXAMPLE_CONFIG), "--db", db, "--json")
    assert result.exit_code == 1, result.output
    rows = json.loads(result.stdout)
    assert all(list(r) == ROW_KEYS for r in rows)
    by_verdict = {r["verdict"]: r for r in rows}
    assert set(by_verdict) == {"violation", "allowed", "unknown"}
    assert by_verdict["violation"] | {"calls": 0} == {
        "org": "acme-research",
        "provider": "openai",
        "host": "api.openai.com",
        "egress_ip": "43.198.12.34",
        "country": "HK",
        "basis": "cloud:aws:ap-east-1",
        "verdict": "violation",
        "calls": 0,
        "blocked_calls": 0,
        "first_seen": by_verdict["violation"]["first_seen"],
        "last_seen": by_verdict["violation"]["last_seen"],
        "locators_disagree": "",
    }
    assert (by_verdict["allowed"]["org"], by_verdict["allowed"]["country"]) == ("beta-labs", "SG")
    assert (by_verdict["unknown"]["org"], by_verdict["unknown"]["basis"], by_verdict["unknown"]["egress_ip"]) == ("unattributed", "no-egress", "")
    governed = sum(1 for line in EXAMPLE_LOG.read_text().splitlines() if " CONNECT api.openai.com:443 " in line)
    assert sum(r["calls"] for r in rows) == governed
    assert f"{EXAMPLE_LOG} (squid): 40 lines, {governed} calls to governed hosts" in result.stderr

    # Again: same rows (nothing double counted), and `findings` reads the same back.
    again = invoke("logs", str(EXAMPLE_LOG), "--config", str(EXAMPLE_CONFIG), "--db", db, "--json")
    assert json.loads(again.stdout) == rows
    assert "0 lines after line 40 (audited before)" in again.stderr
    stored = invoke("findings", "--db", db, "--json")
    assert stored.exit_code == 1
    assert json.loads(stored.stdout) == rows


def test_table_output(tmp_path: Path) -> None:
    result = invoke("logs", str(EXAMPLE_LOG), "--config", str(EXAMPLE_CONFIG), "--db", str(tmp_path / "f.db"))
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ORG", "PROVIDER", "HOST", "EGRESS", "COUNTRY", "VERDICT", "CALLS", "FIRST", "SEEN", "LAST", "SEEN", "BASIS"]
    assert lines[1].split()[:6] == ["acme-research", "openai", "api.openai.com", "43.198.12.34", "HK", "violation"]
    assert lines[1].split()[-1] == "cloud:aws:ap-east-1"
    assert lines[2].split()[5] == "unknown" and lines[3].split()[5] == "allowed"


def test_clean_log_exits_zero_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "clean.log"
    log.write_text("1721638800.000    120 10.30.2.7 TCP_TUNNEL/200 5120 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n")
    result = invoke("logs", str(log), "--config", str(EXAMPLE_CONFIG), "--db", str(tmp_path / "f.db"))
    assert result.exit_code == 0
    assert "allowed" in result.stdout
    empty = tmp_path / "none.log"
    empty.write_text("1721638800.000    120 10.30.2.7 TCP_TUNNEL/200 5120 CONNECT github.com:443 - HIER_DIRECT/140.82.121.3 -\n")
    result = invoke("logs", str(empty), "--db", str(tmp_path / "g.db"))
    assert result.exit_code == 0
    assert result.stdout == "no calls to governed AI provider hosts found\n"
    assert invoke("logs", str(empty), "--db", str(tmp_path / "g.db"), "--json").stdout == "[]\n"


def test_stdin(tmp_path: Path) -> None:
    data = EXAMPLE_LOG.read_bytes()
    result = invoke("logs", "-", "--config", str(EXAMPLE_CONFIG), "--db", str(tmp_path / "f.db"), "--json", input=data)
    assert result.exit_code == 1
    assert {r["verdict"] for r in json.loads(result.stdout)} == {"violation", "allowed", "unknown"}
    assert "<stdin> (squid): 40 lines" in result.stderr


def test_user_geoip_database_and_override_come_first(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[site]]\nname = "uk"\nnetworks = ["10.1.0.0/16"]\negress_ip = "81.2.69.160"\n'
        '[[site]]\nname = "x"\nnetworks = ["10.2.0.0/16"]\negress_ip = "43.198.12.34"\n'
        '[[override]]\nnetwork = "43.198.0.0/15"\ncountry = "SG"\n'
    )
    log = tmp_path / "a.log"
    log.write_text(
        "1721638800.000    120 10.1.0.5 TCP_TUNNEL/200 5120 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n"
        "1721638801.000    120 10.2.0.5 TCP_TUNNEL/200 5120 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n"
    )
    result = invoke(
        "logs",
        str(log),
        "--config",
        str(config),
        "--db",
        str(tmp_path / "f.db"),
        "--geoip-db",
        str(asset("maxmind/GeoIP2-Country-Test.mmdb")),
        "--json",
    )
    rows = {r["egress_ip"]: r for r in json.loads(result.stdout)}
    assert (rows["81.2.69.160"]["country"], rows["81.2.69.160"]["basis"]) == ("GB", "mmdb:GeoIP2-Country@2026-02-04")
    assert (rows["43.198.12.34"]["country"], rows["43.198.12.34"]["basis"]) == ("SG", "override:43.198.0.0/15")
    assert result.exit_code == 0


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["logs", "{missing}"], 3, "{missing}: no such file"),
        (["pcap", "{tmp}"], 3, "is a directory"),  # `logs` reads the files in a directory (tests/test_inputs.py)
        (["logs", "{garbage}"], 3, "not a recognised log format"),
        (["logs", "{log}", "--config", "{missing}"], 2, "no such config file"),
        (["logs", "{log}", "--config", "{badconfig}"], 2, "'10.0.0.0/99' is not a network"),
        (["logs", "{log}", "--geoip-db", "{garbage}"], 3, "not a valid MMDB file"),
        (["logs", "{log}", "--geoip-db", str(asset("maxmind/GeoIP2-Anonymous-IP-Test.mmdb"))], 3, "has no country data"),
        (["logs", "{log}", "--db", "{tmp}/garbage/f.db"], 3, "cannot create the findings database"),
        (["logs", "{log}", "--format", "apache"], 2, "Invalid value for '--format': 'apache' is not a log format; known: aws-network-firewall,"),
        (["logs", "{log}", "--format", "squid+zip"], 2, "each also inside a wrapper (+docker/+ecs/+cri)"),
        (["logs"], 2, "Missing argument"),
        (["rules", "show", "nosuch"], 2, "no policy pack for 'nosuch'"),
        (["rules", "check", "openai", "Hong Kong"], 2, "is not an ISO 3166-1 country code"),
    ],
)
def test_errors_are_one_sentence_with_exit_code(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    (tmp_path / "garbage").write_bytes(b"\x00\x01binary junk\n" * 50)
    (tmp_path / "bad.toml").write_text('[[site]]\nname = "x"\nnetworks = ["10.0.0.0/99"]\negress_ip = "1.2.3.4"\n')
    subs = {
        "missing": str(tmp_path / "missing"),
        "tmp": str(tmp_path),
        "garbage": str(tmp_path / "garbage"),
        "badconfig": str(tmp_path / "bad.toml"),
        "log": str(EXAMPLE_LOG),
    }
    argv = [a.format(**subs) for a in args]
    if argv[0] == "logs" and "--db" not in argv and len(argv) > 1:
        argv += ["--db", str(tmp_path / "f.db")]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == code, result.output
    assert message.format(**subs) in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_rules_show() -> None:
    listing = invoke("rules", "show")
    assert [line.split("\t")[0] for line in listing.stdout.splitlines()] == ["anthropic", "gemini", "openai"]
    assert "\nopenai\tOpenAI API\tv2026-11-expanded" in listing.stdout
    result = invoke("rules", "show", "openai")
    assert "governed hosts: api.openai.com, us.api.openai.com" in result.stdout
    assert "version v188: 188-entry list" in result.stdout
    assert "  in force from 2024-07-09, enforced from 2024-07-09" in result.stdout
    assert "    SG  Singapore" in result.stdout
    assert "excluded: UA-43  Autonomous Republic of Crimea (inferred)" in result.stdout
    assert "HK  " not in result.stdout
    data = json.loads(invoke("rules", "show", "openai", "--json").stdout)
    assert len(data["versions"][0]["supported"]) == 188
    assert data["versions"][0]["excluded_subdivisions"][0]["code"] == "UA-43"


@pytest.mark.parametrize(
    "code, date, exit_code, says",
    [
        ("HK", None, 1, "HK: not supported by OpenAI API"),
        ("hk", "2024-07-01", 1, "blocking starts 2024-07-09"),
        ("JP", None, 0, "JP: supported by OpenAI API"),
        ("UA-43", None, 1, "UA-43 (Autonomous Republic of Crimea) is excluded from UA (inferred exclusion)"),
        ("AW", "2025-01-01", 1, "version v188 in force from 2024-07-09"),
        ("AW", "2026-11-20", 0, "version v2026-11-expanded in force from 2026-11-10"),
    ],
)
def test_rules_check(code: str, date: str | None, exit_code: int, says: str) -> None:
    args = ["rules", "check", "openai", code] + (["--date", date] if date else [])
    result = invoke(*args)
    assert result.exit_code == exit_code
    assert says in result.stdout
    assert "source: https://help.openai.com/" in result.stdout


def test_geoip_lookup(tmp_path: Path) -> None:
    result = invoke("geoip", "lookup", "43.198.12.34", "10.0.0.1", "not-an-ip", "--json")
    data = {r["ip"]: r for r in json.loads(result.stdout)}
    assert data["43.198.12.34"]["country"] == "HK"
    assert data["43.198.12.34"]["basis"] == "cloud:aws:ap-east-1"
    assert data["43.198.12.34"]["source_version"].startswith("aws:cloudip-db@")
    assert data["43.198.12.34"]["network"] == "43.198.0.0/15"
    assert data["10.0.0.1"]["country"] == "" and data["10.0.0.1"]["basis"].startswith("not-found:")
    assert data["not-an-ip"]["basis"].startswith("not-an-address")
    text = invoke("geoip", "lookup", "81.2.69.160", "--geoip-db", str(asset("maxmind/GeoIP2-Country-Test.mmdb")))
    assert text.stdout.split("\t")[:4] == ["81.2.69.160", "GB (registered US)", "81.2.69.160/27", "mmdb:GeoIP2-Country@2026-02-04"]
    config = tmp_path / "c.toml"
    config.write_text('[[override]]\nnetwork = "43.198.0.0/16"\ncountry = "SG"\n')
    over = json.loads(invoke("geoip", "lookup", "43.198.12.34", "--config", str(config), "--json").stdout)
    assert (over[0]["country"], over[0]["basis"]) == ("SG", "override:43.198.0.0/16")


def test_console_entry_point_runs_as_a_module(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "auditor", "logs", str(EXAMPLE_LOG), "--config", str(EXAMPLE_CONFIG), "--db", str(tmp_path / "f.db")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "violation" in proc.stdout and "allowed" in proc.stdout and "unknown" in proc.stdout


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in group.commands.items():
        out.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            out += _commands(command, f"{prefix}{name} ")
    return out


DOCS = ROOT / "docs"
REFERENCE = DOCS / "cli.md"


@pytest.fixture(scope="module")
def reference_html() -> str:
    """docs/cli.md as MkDocs renders it: its `::: mkdocs-click` blocks replaced by the reference
    mkdocs-click generates from the commands themselves."""
    import markdown

    return markdown.markdown(REFERENCE.read_text(encoding="utf-8"), extensions=["attr_list", "mkdocs-click"])


def _section(html: str, name: str) -> str:
    """The part of the rendered reference under one command's heading, up to the next command's."""
    anchor = f'id="region-auditor-{name.replace(" ", "-")}"'
    assert anchor in html, f"{name}: not in the command reference (docs/cli.md)"
    start = html.index(anchor)
    end = html.find('id="region-auditor-', start + len(anchor))
    return html[start : end if end != -1 else len(html)]


@pytest.mark.parametrize("name, command", _commands(cli))
def test_every_command_has_help_and_is_in_the_generated_reference(name: str, command: click.Command, reference_html: str) -> None:
    assert command.help and len(command.help) > 20
    section = _section(reference_html, name)
    assert f"region-auditor {name}" in section  # its usage line
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help"
            assert not param.hidden, f"{name} {param.opts} is hidden from the reference"
            for opt in param.opts:
                assert opt in section, f"{name} {opt} not in the generated reference"


@pytest.mark.parametrize("name", [name for name, command in _commands(cli) if not isinstance(command, click.Group)])
def test_every_command_is_explained_in_a_written_page(name: str) -> None:
    """The reference says what the options are; some page beside it says what the command is for."""
    pages = [p for p in DOCS.glob("*.md") if p != REFERENCE]
    assert any(f"region-auditor {name}" in p.read_text(encoding="utf-8") for p in pages), f"region-auditor {name}: in no page of docs/"


def test_every_page_is_in_the_site() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "module: auditor.cli" in REFERENCE.read_text(encoding="utf-8") and ":command: cli" in REFERENCE.read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        assert f" {page.name}" in nav, f"docs/{page.name} is not in mkdocs.yml's nav"


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150, "README.md: at most 150 lines; reference belongs in docs/"
    first_block = readme.split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line.strip()]
    assert commands == ["make demo", "make test"]  # .ci/run calls make test


HISTORY = ("this round", "last round", "this stop", "last stop", "no longer", "used to ", "as before")


@pytest.mark.parametrize("path", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_docs_describe_the_tool_not_its_history(path: Path) -> None:
    text = path.read_text(encoding="utf-8").lower()
    found = [phrase for phrase in HISTORY if phrase in text]
    assert not found, f"{path.name}: {found}: history belongs in CHANGELOG.md"


EXAMPLE_DRAIN = ROOT / "examples" / "vercel-drain.ndjson"


def test_vercel_drain_example(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    result = invoke("logs", str(EXAMPLE_DRAIN), "--config", str(EXAMPLE_CONFIG), "--db", db, "--json")
    assert result.exit_code == 1
    rows = {r["org"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"chat-team", "docs-team"}
    chat, docs = rows["chat-team"], rows["docs-team"]
    assert (chat["egress_ip"], chat["country"], chat["basis"], chat["verdict"]) == ("vercel:hkg1", "HK", "edge:vercel:hkg1", "violation")
    assert (docs["egress_ip"], docs["country"], docs["basis"], docs["verdict"]) == ("vercel:iad1", "US", "edge:vercel:iad1", "allowed")
    records = [json.loads(line) for line in EXAMPLE_DRAIN.read_text().splitlines()]
    blocked = sum("unsupported_country_region_territory" in r.get("message", "") for r in records if r["projectName"] == "chat-app")
    external = sum(r["source"] == "external" for r in records if r["projectName"] == "chat-app")
    assert chat["calls"] == blocked + external
    table = invoke("findings", "--db", db)
    assert f"{blocked + external} ({blocked} blocked)" in table.stdout
    # The evidence names the rule that says the provider already refused the calls.
    from auditor.sqlstore import SqlStore

    store = SqlStore(db)
    (chat_row,) = [r for r in store.rows() if r.org == "chat-team"]
    assert chat_row.blocked_calls == blocked
    rules = {e.rule_id for e in store.evidence(chat_row, limit=50)}
    assert rules == {"openai@v188:provider-blocked", "openai@v188:not-listed:HK"}


def test_geoip_lookup_shows_every_layer(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[override]]\nnetwork = "81.2.69.0/24"\ncountry = "SG"\n')
    result = invoke("geoip", "lookup", "81.2.69.160", "--config", str(config), "--geoip-db", str(asset("maxmind/GeoIP2-Country-Test.mmdb")), "--json")
    (data,) = json.loads(result.stdout)
    assert [(layer["basis"].split(":")[0], layer["country"]) for layer in data["layers"]] == [
        ("override", "SG"),
        ("not-found", ""),
        ("mmdb", "GB"),
        ("mmdb", "GB"),
    ]
    assert data["disagreements"] == ["mmdb:GeoIP2-Country@2026-02-04=GB", "mmdb:IPFire-Location-Country@2026-06-25=GB"]
    text = invoke("geoip", "lookup", "81.2.69.160", "--config", str(config), "--geoip-db", str(asset("maxmind/GeoIP2-Country-Test.mmdb")))
    assert "(other layers disagree: mmdb:GeoIP2-Country@2026-02-04=GB" in text.stdout
    hk = invoke("geoip", "lookup", "43.198.12.34").stdout
    # The cloud answer, with the country database's answer beside it.
    assert hk.startswith(
        "43.198.12.34\tHK\t43.198.0.0/15\tcloud:aws:ap-east-1\tlayers: cloud:aws:ap-east-1=HK, mmdb:IPFire-Location-Country@2026-06-25=HK"
    )


def test_provider_narrows_the_audit(tmp_path: Path) -> None:
    log = tmp_path / "mixed.log"
    log.write_text(
        "1721638800.000    120 10.20.1.5 TCP_TUNNEL/200 5120 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n"
        "1721638801.000    120 10.20.1.5 TCP_TUNNEL/200 5120 CONNECT api.anthropic.com:443 - HIER_DIRECT/160.79.104.10 -\n"
        "1721638802.000    120 10.20.1.5 TCP_TUNNEL/200 5120 CONNECT generativelanguage.googleapis.com:443 - HIER_DIRECT/142.250.66.74 -\n"
    )

    def providers(*extra: str) -> list[str]:
        db = tmp_path / f"{len(list(tmp_path.iterdir()))}.db"
        result = invoke("logs", str(log), "--config", str(EXAMPLE_CONFIG), "--db", str(db), "--json", *extra)
        return sorted(r["provider"] for r in json.loads(result.stdout))

    assert providers() == ["anthropic", "gemini", "openai"]
    assert providers("--provider", "anthropic") == ["anthropic"]
    assert providers("--provider", "anthropic", "--provider", "gemini") == ["anthropic", "gemini"]
    narrow = tmp_path / "narrow.toml"
    narrow.write_text(EXAMPLE_CONFIG.read_text() + '\n[policy]\nproviders = ["gemini"]\n')
    db = tmp_path / "n.db"
    result = invoke("logs", str(log), "--config", str(narrow), "--db", str(db), "--json")
    assert [r["provider"] for r in json.loads(result.stdout)] == ["gemini"]
    bad = CliRunner().invoke(cli, ["logs", str(log), "--db", str(tmp_path / "b.db"), "--provider", "mistral"])
    assert bad.exit_code == 2 and "no policy pack for 'mistral'" in bad.output


@pytest.mark.parametrize("calls, text", [(0, "0 calls"), (1, "1 call"), (2, "2 calls")])
def test_input_summary_counts_calls_in_words(calls: int, text: str) -> None:
    summary = InputSummary("a.log", "squid", "gzip", 0, 40, calls, Counter(), Counter({"denied by the proxy": 3}), {}, False)
    assert summary.describe() == f"a.log (squid, gzip): 40 lines, {text} to governed hosts\n  not counted 3: denied by the proxy"


def test_table_cells_escape_control_characters_from_logs(tmp_path: Path) -> None:
    """Found by a hostile-input hunt: a newline in a logged region printed a row of its own."""
    drain = tmp_path / "drain.ndjson"
    drain.write_text(
        json.dumps(
            {
                "id": "1",
                "deploymentId": "dpl_x",
                "source": "external",
                "host": "x.vercel.app",
                "timestamp": 1721005926412,
                "projectId": "prj_chat",
                "executionRegion": "x\nfake-org  openai  api.openai.com  1.1.1.1  us  allowed  999",
                "destination": "https://api.openai.com/v1/chat",
                "statusCode": 200,
            }
        )
        + "\n"
    )
    result = CliRunner().invoke(cli, ["logs", str(drain), "--db", str(tmp_path / "f.db")])
    rows = result.stdout.splitlines()
    assert len(rows) == 2, result.stdout  # the header and one row
    assert "vercel:x\\nfake-org" in rows[1]


def test_format_names_a_format_inside_a_wrapper(tmp_path: Path) -> None:
    # The summary names a container's log `squid+cri`; --format took only the plain names.
    log = tmp_path / "access.log"
    log.write_text("".join(f"2024-07-22T09:00:0{i}.1Z stdout F {line}\n" for i, line in enumerate(EXAMPLE_LOG.read_text().splitlines()[:3])))
    for fmt in ("squid+cri", "squid"):
        result = invoke("logs", str(log), "--format", fmt, "--db", str(tmp_path / f"{fmt}.db"), "--json")
        assert f"{log} (squid+cri):" in result.stderr, result.output
        assert sum(r["calls"] for r in json.loads(result.stdout)) > 0


HK_SITE = '[[site]]\nname = "hk-office"\nnetworks = ["10.1.0.0/16"]\negress_ip = "43.198.12.34"\n'  # AWS ap-east-1


def _hk_calls(tmp_path: Path) -> tuple[Path, Path]:
    """A Squid log of three calls to OpenAI on two days from a site whose egress is in AWS ap-east-1, and its config."""
    log, config = tmp_path / "hk.log", tmp_path / "hk.toml"
    log.write_text(
        "".join(
            f"{ts:.3f}    120 10.1.0.5 TCP_TUNNEL/200 5120 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n"
            for ts in (1721638800, 1721638860, 1721725200)
        )
    )
    config.write_text(HK_SITE)
    return log, config


def _mmdb_answer(mmdb: Path, ip: str) -> str:
    """The country database's own answer for `ip`, as layers are quoted (`basis=country`)."""
    (found,) = json.loads(invoke("geoip", "lookup", ip, "--geoip-db", str(mmdb), "--json").stdout)
    (layer,) = [layer for layer in found["layers"] if layer["layer"] == "mmdb"]
    return f"{layer['basis']}={layer['country']}"


def test_locators_disagree_on_a_verdict(db_target: str, tmp_path: Path, write_mmdb) -> None:  # type: ignore[no-untyped-def]
    mmdb = write_mmdb({"43.198.0.0/16": {"country": {"iso_code": "US"}}})
    answer = _mmdb_answer(mmdb, "43.198.12.34")
    assert answer.startswith("mmdb:Test-Country@") and answer.endswith("=US")
    log, config = _hk_calls(tmp_path)
    result = invoke("logs", str(log), "--config", str(config), "--geoip-db", str(mmdb), "--db", db_target, "--json")
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)
    assert list(row) == ROW_KEYS
    # The cloud layer wins (HK, a violation); the country database's US would make it allowed.
    assert (row["country"], row["basis"], row["verdict"], row["calls"]) == ("HK", "cloud:aws:ap-east-1", "violation", 3)
    assert row["locators_disagree"] == answer
    # Read back from the store, as JSON and as a table.
    assert json.loads(invoke("findings", "--db", db_target, "--json").stdout) == [row]
    table = invoke("findings", "--db", db_target).stdout.splitlines()
    assert "  violation (locators disagree)  3  " in table[1]
    again = invoke("logs", str(log), "--config", str(config), "--geoip-db", str(mmdb), "--db", db_target)
    assert "violation (locators disagree)" in again.stdout


def test_locators_disagree_on_a_verdict_in_a_capture(tmp_path: Path, write_mmdb) -> None:  # type: ignore[no-untyped-def]
    from scapy.layers.l2 import Ether

    from tests.sources.test_pcap import MAC_A, MAC_B, client_hello, tcp_session, write

    mmdb = write_mmdb({"43.198.0.0/16": {"country": {"iso_code": "US"}}})
    # A client with a public address in AWS ap-east-1: it is its own egress.
    capture = write(tmp_path / "hk.pcap", [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"), src="43.198.12.34")])
    result = invoke("pcap", str(capture), "--geoip-db", str(mmdb), "--db", str(tmp_path / "f.db"), "--json")
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)
    assert (row["egress_ip"], row["country"], row["verdict"]) == ("43.198.12.34", "HK", "violation")
    assert row["locators_disagree"] == _mmdb_answer(mmdb, "43.198.12.34")
    assert "violation (locators disagree)" in invoke("findings", "--db", str(tmp_path / "f.db")).stdout


def test_locators_disagreeing_on_no_verdict_are_not_flagged(db_target: str, tmp_path: Path, write_mmdb) -> None:  # type: ignore[no-untyped-def]
    mmdb = write_mmdb({"43.198.0.0/16": {"country": {"iso_code": "CN"}}})
    (found,) = json.loads(invoke("geoip", "lookup", "43.198.12.34", "--geoip-db", str(mmdb), "--json").stdout)
    assert found["disagreements"] == [_mmdb_answer(mmdb, "43.198.12.34")]  # the layers do disagree: HK and CN
    assert found["locators_disagree"] == []  # but no shipped policy serves either
    log, config = _hk_calls(tmp_path)
    result = invoke("logs", str(log), "--config", str(config), "--geoip-db", str(mmdb), "--db", db_target, "--json")
    (row,) = json.loads(result.stdout)
    assert (row["country"], row["verdict"], row["locators_disagree"]) == ("HK", "violation", "")
    assert "locators disagree" not in invoke("findings", "--db", db_target).stdout
    text = invoke("geoip", "lookup", "43.198.12.34", "--geoip-db", str(mmdb)).stdout
    assert "no verdict rests on it" in text and "locators disagree" not in text


def test_geoip_lookup_explains_the_layers_and_a_disagreement(write_mmdb) -> None:  # type: ignore[no-untyped-def]
    mmdb = write_mmdb({"43.198.0.0/16": {"country": {"iso_code": "US"}}})
    answer = _mmdb_answer(mmdb, "43.198.12.34")
    (found,) = json.loads(invoke("geoip", "lookup", "43.198.12.34", "--geoip-db", str(mmdb), "--json").stdout)
    assert [(layer["layer"], layer["country"], layer["won"]) for layer in found["layers"]] == [
        ("cloud", "HK", True),
        ("mmdb", "US", False),
        ("embedded", "HK", False),
    ]
    assert found["why"].startswith("cloud wins: the first layer that knows a country")
    providers = {p.provider for p in load_policies().packs}
    assert {d["provider"] for d in found["locators_disagree"]} <= providers
    assert {"answer": answer, "provider": "openai", "verdict": "violation", "other_verdict": "allowed"} in found["locators_disagree"]
    text = invoke("geoip", "lookup", "43.198.12.34", "--geoip-db", str(mmdb)).stdout.splitlines()
    assert text[0].startswith("43.198.12.34\tHK\t43.198.0.0/15\tcloud:aws:ap-east-1\t")
    assert text[1].split() == ["cloud", "HK", "cloud:aws:ap-east-1", "43.198.0.0/15", "<-", "wins"]
    assert text[2].split()[:3] == ["mmdb", "US", answer.rpartition("=")[0]]
    assert text[3].split()[:2] == ["embedded", "HK"]
    assert text[4].strip().startswith("cloud wins: the first layer that knows a country, in precedence order (override > cloud/edge region data")
    (said,) = [line for line in text if "locators disagree" in line]
    assert said.strip().startswith(f"locators disagree: {answer} would change the verdict (") and "openai violation -> allowed" in said
    # An address no layer knows: nothing wins, nothing disagrees.
    unknown = invoke("geoip", "lookup", "10.0.0.1", "--geoip-db", str(mmdb)).stdout
    assert "no layer knows a country" in unknown and "locators disagree" not in unknown


def test_the_collector_is_frozen_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run again in one process (tests, a daemon) do not freeze each run's garbage."""
    import gc

    from auditor import cli as cli_module

    calls = []
    monkeypatch.setattr(cli_module, "_frozen", False)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(1))
    log = tmp_path / "a.log"
    log.write_text("1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -\n")
    for n in range(3):
        result = CliRunner().invoke(cli, ["logs", str(log), "--db", str(tmp_path / f"{n}.db")])
        assert result.exit_code == 0, result.output
    assert calls == [1]


def test_log_format_json_writes_each_message_as_a_json_line(tmp_path: Path) -> None:
    """--log-format json: what is not the command's output (here each input's summary and a note)
    is one JSON object per message on stderr; the output on stdout and the exit code are those of
    the text format, whose messages read as they always did."""
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["logs", str(EXAMPLE_LOG), str(empty), "--config", str(EXAMPLE_CONFIG), "--json"]
    text = CliRunner().invoke(cli, [*args, "--db", str(tmp_path / "text.db")])
    as_json = CliRunner().invoke(cli, ["--log-format", "json", *args, "--db", str(tmp_path / "json.db")])
    assert as_json.exit_code == text.exit_code == 1 and as_json.stdout == text.stdout
    records = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert all(set(r) == {"ts", "level", "logger", "message"} and r["ts"].endswith("Z") for r in records)
    assert "\n".join(r["message"] for r in records) + "\n" == text.stderr
    assert [r["level"] for r in records] == ["warning", "info"]
    assert text.stderr.startswith(f"{empty}: no files in this directory\n{EXAMPLE_LOG} (squid): ")
    missing = CliRunner().invoke(cli, ["--log-format", "json", "logs", str(tmp_path / "none.log"), "--db", str(tmp_path / "json.db")])
    assert missing.exit_code == 3
    assert [(r["level"], r["message"]) for r in map(json.loads, missing.stderr.splitlines())] == [
        ("error", f"Error: {tmp_path / 'none.log'}: no such file")
    ]
