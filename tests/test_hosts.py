"""Server names that are no DNS name nor address: malformed wherever they come from, never a
governed host, never stored; and every line printed for people escapes what came from input."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.events import Egress, Finding
from auditor.report.table import NewRows
from auditor.sources.common import NOT_A_HOST, is_host
from geoip.interface import Location
from rules.policy import Outcome, Verdict
from tests.conftest import make_event

ESCAPE = "x\x1b]0;owned\x07.api.openai.com"
MARKUP = "<script>alert(1)</script>.api.openai.com"


@pytest.mark.parametrize(
    "text, ok",
    [
        ("api.openai.com", True),
        ("API.OpenAI.com.", True),
        ("localhost", True),
        ("_dmarc.example.com", True),
        ("xn--bcher-kva.example", True),
        ("162.159.140.245", True),
        ("2001:db8::1", True),
        (ESCAPE, False),
        (MARKUP, False),
        ("api openai.com", False),
        ("api..openai.com", False),
        ("-api.openai.com", False),
        ("a" * 64 + ".openai.com", False),
        (".".join(["a" * 63] * 4) + ".com", False),
        ("api.openai.com\x00.evil", False),
        ("bücher.example", False),
        ("", False),
        ("fe80::1%eth0", False),
        ("fe80::1%\x1b[2J.api.openai.com", False),
    ],
)
def test_is_host(text: str, ok: bool) -> None:
    assert is_host(text) is ok


# Squid native lines: a CONNECT target and a URL host, as Squid logs them (it writes the request's
# bytes as received: a control character or markup in the target reaches the log).
SQUID = "1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT {host}:443 - HIER_DIRECT/162.159.140.245 -\n"
COMBINED = '10.20.1.5 - - [15/Jul/2024:01:12:03 +0000] "CONNECT {host}:443 HTTP/1.1" 200 5120 "-" "python-httpx/0.27.0"\n'


@pytest.mark.parametrize("template", [SQUID, COMBINED], ids=["squid", "combined"])
@pytest.mark.parametrize("host", [ESCAPE, MARKUP], ids=["escape", "markup"])
def test_a_log_line_naming_no_dns_name_is_malformed_and_stores_nothing(tmp_path: Path, template: str, host: str) -> None:
    log = tmp_path / "access.log"
    log.write_text(template.format(host="api.openai.com") + template.format(host=host) + template.format(host="api.openai.com"))
    db = tmp_path / "f.db"
    result = CliRunner().invoke(cli, ["logs", str(log), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    assert f"skipped 1 malformed: {'squid' if template is SQUID else 'combined'}: {NOT_A_HOST} ({log}:2)" in result.stderr
    assert [(r["host"], r["calls"]) for r in __import__("json").loads(result.stdout)] == [("api.openai.com", 2)]
    with sqlite3.connect(db) as conn:
        stored = " ".join(str(v) for table in ("observations", "evidence") for row in conn.execute(f"SELECT * FROM {table}") for v in row)
    assert "\x1b" not in stored and "<script>" not in stored


def test_the_new_row_line_escapes_what_came_from_input() -> None:
    """The follower's and sniff's line for a new row: a file name or org from input cannot move the
    cursor or retitle the terminal."""
    event = make_event(server_name="api.openai.com", source="logs/\x1b]0;owned\x07access.log:3", ts=dt.datetime(2024, 7, 22, 9, 0, tzinfo=dt.UTC))
    verdict = Verdict(Outcome.VIOLATION, "openai", "v188", "openai@v188:country-not-listed:HK", "HK is not supported")
    finding = Finding(
        event,
        "acme\nresearch",
        Egress("43.198.12.34", "site:hk"),
        Location(country_code="HK", basis="cloud:aws:ap-east-1"),
        verdict,
        "api.openai.com",
    )
    rows = NewRows()
    line = rows.line(finding)
    assert line == (
        "2024-07-22 09:00:00 violation: acme\\nresearch -> api.openai.com from 43.198.12.34 (HK, cloud:aws:ap-east-1) "
        "at logs/\\x1b]0;owned\\x07access.log:3"
    )
    assert rows.line(finding) is None  # shown once
