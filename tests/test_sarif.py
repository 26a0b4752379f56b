"""`scan-config --format sarif`: SARIF 2.1.0 logs validated against the OASIS schema
(tests/data/sarif/, see its README for where it came from)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from urllib.parse import unquote_to_bytes

import jsonschema
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.preflight import scan
from auditor.report.sarif import RULE_IDS, render_sarif, to_sarif
from rules.policy import load_policies

REPOS = Path(__file__).parent / "data" / "repos"
SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
TODAY = dt.date(2026, 11, 28)
BEFORE_BLOCKING = dt.date(2024, 7, 1)
OPENAI_ONLY = load_policies(["openai"])
FIXTURES = sorted(p.name for p in REPOS.iterdir() if p.is_dir())


def valid(doc: dict) -> dict:
    errors = sorted(VALIDATOR.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])
    return doc


def sarif_of(root: Path, today: dt.date = TODAY) -> dict:
    text = render_sarif(scan(root, OPENAI_ONLY, today))
    return valid(json.loads(text))


def results(doc: dict) -> list[tuple[str, str, str, int | None]]:
    out = []
    for r in doc["runs"][0]["results"]:
        loc = r["locations"][0]["physicalLocation"]
        out.append((r["ruleId"], r["level"], loc["artifactLocation"]["uri"], loc.get("region", {}).get("startLine")))
    return out


def test_the_schema_is_the_oasis_one_and_rejects_a_broken_log() -> None:
    assert SCHEMA["id"].endswith("/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    doc = sarif_of(REPOS / "hkg1-vercel-json")
    doc["runs"][0]["results"][0]["level"] = "fatal"
    assert list(VALIDATOR.iter_errors(doc))
    del doc["runs"][0]["tool"]["driver"]["name"]
    assert len(list(VALIDATOR.iter_errors(doc))) >= 2


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("today", [TODAY, BEFORE_BLOCKING])
def test_every_fixture_repository_gives_a_valid_log_with_one_result_per_flag(name: str, today: dt.date) -> None:
    result = scan(REPOS / name, OPENAI_ONLY, today)
    doc = valid(to_sarif(result))
    assert doc["version"] == "2.1.0" and len(doc["runs"]) == 1
    run = doc["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "region-auditor" and driver["version"]
    assert [r["id"] for r in driver["rules"]] == list(RULE_IDS)
    assert len(run["results"]) == len(result.flags)
    for res, flag in zip(run["results"], result.flags, strict=True):
        assert res["ruleId"] == flag.kind and driver["rules"][res["ruleIndex"]]["id"] == flag.kind
        assert res["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": flag.path, "uriBaseId": "%SRCROOT%"}
        assert res["locations"][0]["physicalLocation"]["region"] == {"startLine": flag.line}
        assert res["message"]["text"] == f"{flag.message} Fix: {flag.fix}"
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert [n["message"]["text"].split(": skipped: ")[0] for n in notes] == [s.path for s in result.skipped]


def test_hkg1_in_vercel_json_is_an_error_once_blocked_and_a_warning_before() -> None:
    expected = [
        ("unsupported-region", "error", "vercel.json", 4),
        ("unsupported-region", "error", "vercel.json", 13),
        ("unsupported-region", "error", "vercel.json", 15),
    ]
    assert results(sarif_of(REPOS / "hkg1-vercel-json")) == expected
    assert results(sarif_of(REPOS / "hkg1-vercel-json", BEFORE_BLOCKING)) == [(k, "warning", u, line) for k, _, u, line in expected]


def test_levels_by_kind_in_the_edge_variants() -> None:
    levels = {(rule, uri): level for rule, level, uri, _ in results(sarif_of(REPOS / "edge-variants"))}
    assert levels[("unsupported-region", "app/api/hk/route.ts")] == "error"
    assert levels[("unpinned-edge", "app/api/auto/route.ts")] == "warning"
    assert levels[("unresolved-region", "app/api/expr/route.ts")] == "note"
    assert levels[("unknown-region", "vercel.json")] == "note"


def test_every_rule_has_help_naming_the_setting() -> None:
    rules = {r["id"]: r for r in sarif_of(REPOS / "pinned-supported")["runs"][0]["tool"]["driver"]["rules"]}
    assert "preferredRegion" in rules["unsupported-region"]["help"]["text"]
    assert "`regions`" in rules["unsupported-region"]["help"]["text"]
    assert "export const preferredRegion" in rules["unpinned-edge"]["help"]["text"]
    assert '"regions": "all"' in rules["all-regions"]["help"]["text"]
    assert all(r["shortDescription"]["text"] and r["defaultConfiguration"]["level"] for r in rules.values())


def test_fingerprints_do_not_move_with_the_line(tmp_path: Path) -> None:
    (tmp_path / "vercel.json").write_text('{"regions": ["hkg1"]}\n')
    before = sarif_of(tmp_path)["runs"][0]["results"][0]
    (tmp_path / "vercel.json").write_text('{\n\n  "regions": ["hkg1"]\n}\n')
    after = sarif_of(tmp_path)["runs"][0]["results"][0]
    assert before["locations"] != after["locations"]
    assert before["partialFingerprints"] == after["partialFingerprints"]


ODD = '<script>alert(1)</script> #1?a=%20&b="x" ü'


def test_markup_and_odd_characters_in_paths_and_messages_stay_valid(tmp_path: Path) -> None:
    route = tmp_path / "app" / "api" / ODD / "route.ts"
    route.parent.mkdir(parents=True)
    route.write_text("import OpenAI from 'openai';\nexport const runtime = 'edge';\nexport const preferredRegion = 'hkg1';\n")
    (tmp_path / "vercel.json").write_text(json.dumps({"regions": ['<img src=x onerror=alert(1)>\u2028"\\']}))
    doc = sarif_of(tmp_path)
    by_uri = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: r for r in doc["runs"][0]["results"]}
    path = f"app/api/{ODD}/route.ts"
    uri = next(u for u in by_uri if u.startswith("app/api/"))
    assert all(c not in uri for c in ' <>#?"&') and unquote_to_bytes(uri).decode() == path
    assert by_uri[uri]["ruleId"] == "unsupported-region"
    assert "<img src=x onerror=alert(1)>" in by_uri["vercel.json"]["message"]["text"]
    # The CLI's bytes are ASCII JSON whatever the characters.
    out = CliRunner().invoke(cli, ["scan-config", str(tmp_path), "--format", "sarif", "--date", "2026-11-28"])
    assert out.exit_code == 1
    assert out.stdout.isascii()
    cli_doc = valid(json.loads(out.stdout))  # every shipped pack, not only OpenAI's
    assert {(r, u) for r, _, u, _ in results(cli_doc)} == {(r, u) for r, _, u, _ in results(doc)}


@pytest.mark.skipif(os.name != "posix", reason="needs a file system that takes any bytes in a name")
def test_a_file_name_that_is_not_utf8_gives_a_valid_log(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9")
    try:
        route = tmp_path / "app" / "api" / name / "route.ts"
        route.parent.mkdir(parents=True)
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses a name that is not UTF-8")
    route.write_text("import OpenAI from 'openai';\nexport const runtime = 'edge';\n")
    doc = json.loads(render_sarif(scan(tmp_path, OPENAI_ONLY, TODAY)))
    valid(doc)
    (res,) = doc["runs"][0]["results"]
    uri = res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "app/api/caf%E9/route.ts"
    assert unquote_to_bytes(uri) == b"app/api/caf\xe9/route.ts"


def test_cli_formats_and_exit_codes_are_unchanged() -> None:
    runner = CliRunner()
    flagged = runner.invoke(cli, ["scan-config", str(REPOS / "unpinned-edge"), "--format", "sarif"])
    assert flagged.exit_code == 1, flagged.output
    assert results(valid(json.loads(flagged.stdout)))[0] == ("unpinned-edge", "warning", "app/api/chat/route.ts", 3)
    clean = runner.invoke(cli, ["scan-config", str(REPOS / "pinned-supported"), "--format", "sarif"])
    assert clean.exit_code == 0, clean.output
    assert valid(json.loads(clean.stdout))["runs"][0]["results"] == []
    assert runner.invoke(cli, ["scan-config", str(REPOS / "no-such-repo"), "--format", "sarif"]).exit_code == 2
    skipped = runner.invoke(cli, ["scan-config", str(REPOS / "invalid-json"), "--format", "sarif"])
    assert skipped.exit_code == 0 and "skipped" in skipped.stderr
    assert valid(json.loads(skipped.stdout))["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    # --json is --format json; text stays the default.
    as_json = runner.invoke(cli, ["scan-config", str(REPOS / "unpinned-edge"), "--json"])
    as_format = runner.invoke(cli, ["scan-config", str(REPOS / "unpinned-edge"), "--format", "json"])
    assert as_json.exit_code == as_format.exit_code == 1 and as_json.stdout == as_format.stdout
    assert list(json.loads(as_json.stdout)) == ["flags", "scanned"]
    text = runner.invoke(cli, ["scan-config", str(REPOS / "unpinned-edge"), "--format", "text"])
    assert text.stdout == runner.invoke(cli, ["scan-config", str(REPOS / "unpinned-edge")]).stdout
    assert text.stdout.startswith("app/api/chat/route.ts:3: ")
    both = runner.invoke(cli, ["scan-config", str(REPOS / "unpinned-edge"), "--json", "--format", "sarif"])
    assert both.exit_code == 2 and "--format json" in both.output
