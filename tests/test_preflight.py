"""Pre-flight config scan: vercel.json and Next.js route segment config against the policy packs.

Fixture repositories live in tests/data/repos/<name>/ (see the README there); cases that need
symlinks, binary files or gitignored directories (dist/, build/) are built in tmp_path.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.preflight import (
    SDK_MODULES,
    Flag,
    PreflightError,
    ScanResult,
    render_json,
    render_text,
    scan,
    strip_comments,
)
from auditor.preflight.project import _sdk
from rules.policy import PolicySet, load_policies, parse_pack

REPOS = Path(__file__).parent / "data" / "repos"
TODAY = dt.date(2026, 11, 28)
OPENAI_ONLY = load_policies(["openai"])
FLAG_FIELDS = ["path", "line", "kind", "region", "country", "provider", "message", "fix", "rule"]


def repo(name: str) -> Path:
    """A fixture repository; fails loudly when it is missing."""
    path = REPOS / name
    if not path.is_dir():
        raise FileNotFoundError(f"fixture repository {name} is missing from {REPOS}")
    return path


def run(root: Path, policies: PolicySet = OPENAI_ONLY, today: dt.date = TODAY) -> ScanResult:
    return scan(root, policies, today)


def flags_for(result: ScanResult, path: str) -> list[Flag]:
    return [f for f in result.flags if f.path == path]


def line_text(root: Path, flag: Flag) -> str:
    return (root / flag.path).read_text(encoding="utf-8").splitlines()[flag.line - 1]


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def anthropic_pack_set() -> PolicySet:
    """OpenAI plus a minimal Anthropic pack, as rules/data/anthropic.toml would provide."""
    anthropic = parse_pack(
        {
            "provider": "anthropic",
            "name": "Anthropic API",
            "hosts": ["api.anthropic.com"],
            "version": [
                {
                    "id": "test",
                    "in_force_from": dt.date(2024, 1, 1),
                    "enforced_from": dt.date(2024, 1, 1),
                    "supported": {"US": "United States", "KR": "South Korea", "SG": "Singapore", "JP": "Japan"},
                }
            ],
        },
        "test anthropic pack",
    )
    return PolicySet([*OPENAI_ONLY.packs, anthropic])


# ------------------------------------------------------------------ vercel.json


def test_vercel_json_listing_hkg1_is_flagged_on_its_line_with_the_fix() -> None:
    root = repo("hkg1-vercel-json")
    result = run(root)
    top = [f for f in flags_for(result, "vercel.json") if f.line == 4]
    assert len(top) == 1
    flag = top[0]
    assert (flag.kind, flag.region, flag.country, flag.provider) == ("unsupported-region", "hkg1", "HK", "openai")
    assert line_text(root, flag).strip() == '"regions": ["hkg1", "iad1"],'
    # hkg1 -> icn1: the nearest region (great-circle, 2,093 km) whose country OpenAI serves.
    assert flag.fix == '"regions": ["icn1", "iad1"]'
    assert "icn1 (Seoul, South Korea, KR), 2,093 km away" in flag.message
    assert "HK is not listed by OpenAI API; blocked since 2024-07-09" in flag.message
    assert flag.rule.startswith("openai@") and flag.rule.endswith(":not-listed:HK")


def test_functions_globs_are_judged_per_glob_and_failover_regions_too() -> None:
    root = repo("hkg1-vercel-json")
    result = run(root)
    by_line = {f.line: f for f in flags_for(result, "vercel.json")}
    assert sorted(by_line) == [4, 13, 15]  # the sin1 glob (line 8) passes
    glob = by_line[13]
    assert line_text(root, glob).strip() == '"hkg1"'
    assert glob.message.startswith('functions["app/api/legacy/**/*.ts"].regions lists hkg1')
    assert glob.fix == '"regions": ["fra1", "icn1"]'
    failover = by_line[15]
    assert "functionFailoverRegions" in line_text(root, failover)
    assert failover.fix == '"functionFailoverRegions": ["icn1"]'
    # The Node.js route calling OpenAI runs in the vercel.json regions: flagged there, not again.
    assert flags_for(result, "app/api/report/route.ts") == []
    assert result.vercel_configs == ("vercel.json",)


def test_line_is_the_region_value_not_the_first_mention_of_the_code(tmp_path: Path) -> None:
    write(
        tmp_path, {"vercel.json": '{\n  "build": {"env": {"REGION_HINT": "hkg1"}},\n  "name": "x",\n\n  "regions": [\n    "iad1", "hkg1"\n  ]\n}\n'}
    )
    (flag,) = run(tmp_path).flags
    assert flag.line == 6
    assert flag.fix == '"regions": ["iad1", "icn1"]'


def test_vercel_json_regions_all_is_flagged(tmp_path: Path) -> None:
    write(tmp_path, {"vercel.json": '{\n  "regions": "all"\n}\n'})
    (flag,) = run(tmp_path).flags
    assert (flag.kind, flag.line, flag.region, flag.provider) == ("all-regions", 2, "all", "openai")
    assert "hkg1 (Hong Kong, HK)" in flag.message
    assert flag.fix == '"regions": ["iad1"]'


def test_invalid_json_vercel_json_is_skipped_with_one_clear_sentence() -> None:
    result = run(repo("invalid-json"))
    assert result.flags == ()
    assert result.vercel_configs == ()
    (skipped,) = result.skipped
    assert skipped.path == "vercel.json"
    assert skipped.reason.startswith("not valid JSON (line 2, column 3: ")
    assert "no comments" in skipped.reason and "\n" not in skipped.reason


def test_unknown_region_codes_are_flagged_with_the_known_codes() -> None:
    root = repo("edge-variants")
    result = run(root)
    (route,) = flags_for(result, "app/api/unknown/route.ts")
    assert (route.kind, route.region, route.line, route.provider, route.country) == ("unknown-region", "xyz1", 4, "", "")
    assert route.fix == "export const preferredRegion = ['iad1']"
    assert "Known codes: arn1, bom1," in route.message and route.message.rstrip(".").endswith("yul1")
    (vercel,) = flags_for(result, "vercel.json")
    assert (vercel.kind, vercel.region, vercel.line) == ("unknown-region", "bru1", 3)
    assert vercel.fix == '"functionFailoverRegions": ["pdx1"]'


# ------------------------------------------------------------------ edge routes


def test_unpinned_edge_route_calling_openai_is_flagged() -> None:
    root = repo("unpinned-edge")
    result = run(root)
    (flag,) = result.flags
    assert (flag.path, flag.line, flag.kind, flag.provider) == ("app/api/chat/route.ts", 3, "unpinned-edge", "openai")
    assert line_text(root, flag) == "export const runtime = 'edge';"
    assert flag.fix == "export const preferredRegion = ['iad1']"
    assert "import 'openai' on line 1" in flag.message
    assert "a user near hkg1 (Hong Kong, HK) makes the call from there" in flag.message
    assert flag.rule.endswith(":not-listed:HK")


def test_repository_pinned_to_supported_regions_passes() -> None:
    result = run(repo("pinned-supported"), load_policies())
    assert result.flags == ()
    routes = {r.path: r for r in result.routes}
    chat = routes["src/app/api/chat/route.ts"]
    assert (chat.runtime, chat.regions, chat.regions_from) == ("edge", ("iad1", "sfo1"), "preferredRegion")
    # The call was found (through the @/ alias), so the pass is not vacuous.
    assert [(a.provider, a.path, a.via_line) for a in chat.apis] == [("openai", "src/lib/openai.ts", 2)]
    page = routes["src/app/dashboard/page.tsx"]
    assert (page.runtime, page.regions, page.regions_from) == ("edge", ("fra1",), "src/app/dashboard/layout.tsx:2")
    assert page.apis and page.apis[0].path == "src/lib/openai.ts"
    complete = routes["src/pages/api/complete.ts"]
    assert (complete.kind, complete.runtime, complete.regions) == ("pages", "edge", ("iad1",))
    assert routes["src/middleware.ts"].runtime == "edge"


def test_pinned_route_is_flagged_once_a_region_becomes_hkg1(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(repo("pinned-supported"), root, symlinks=True)
    route = root / "src/app/api/chat/route.ts"
    route.write_text(route.read_text(encoding="utf-8").replace('"sfo1"', '"hkg1"'), encoding="utf-8")
    (flag,) = run(root).flags
    assert (flag.path, flag.line, flag.kind, flag.region) == ("src/app/api/chat/route.ts", 8, "unsupported-region", "hkg1")
    assert flag.fix == 'export const preferredRegion = ["iad1", "icn1"]'


def test_preferred_region_hkg1_is_flagged() -> None:
    root = repo("edge-variants")
    (flag,) = flags_for(run(root), "app/api/hk/route.ts")
    assert (flag.kind, flag.line, flag.region, flag.country) == ("unsupported-region", 4, "hkg1", "HK")
    assert line_text(root, flag) == "export const preferredRegion = 'hkg1';"
    assert flag.fix == "export const preferredRegion = 'icn1'"


@pytest.mark.parametrize(
    "path, line, value",
    [("app/api/auto/route.ts", 2, "auto"), ("app/api/global/route.js", 5, "global")],
)
def test_preferred_region_auto_or_global_on_edge_is_unpinned(path: str, line: int, value: str) -> None:
    (flag,) = flags_for(run(repo("edge-variants")), path)
    assert (flag.kind, flag.line, flag.region, flag.provider) == ("unpinned-edge", line, value, "openai")
    # Pinned to the project's vercel.json regions (sfo1), which OpenAI serves.
    assert flag.fix == "export const preferredRegion = ['sfo1']"
    assert f"Replace line {line} with the fix." in flag.message


def test_host_mention_counts_as_a_governed_call() -> None:
    routes = {r.path: r for r in run(repo("edge-variants")).routes}
    (use,) = routes["app/api/auto/route.ts"].apis
    assert (use.provider, use.evidence, use.line) == ("openai", "host api.openai.com", 6)


def test_nodejs_route_without_regions_is_not_flagged() -> None:
    # Vercel Functions default to iad1 (Washington, D.C.), which every pack serves.
    result = run(repo("edge-variants"))
    assert flags_for(result, "app/api/node/route.ts") == []
    node = next(r for r in result.routes if r.path == "app/api/node/route.ts")
    assert node.runtime == "nodejs" and [a.provider for a in node.apis] == ["openai"]


def test_pages_router_config_edge_calling_ai_sdk_openai_is_flagged() -> None:
    root = repo("edge-variants")
    (flag,) = flags_for(run(root), "pages/api/complete.ts")
    assert (flag.kind, flag.line, flag.provider) == ("unpinned-edge", 5, "openai")
    assert line_text(root, flag).strip() == "runtime: 'edge',"
    assert flag.fix == "regions: ['sfo1'],"
    assert "export const config (line 4)" in flag.message
    assert "import '@ai-sdk/openai' on line 1" in flag.message
    assert 'vercel.json "regions" do not apply to edge functions' in flag.message


def test_edge_route_calling_no_governed_api_is_not_flagged() -> None:
    result = run(repo("edge-variants"))
    assert flags_for(result, "app/api/weather/route.ts") == []
    weather = next(r for r in result.routes if r.path == "app/api/weather/route.ts")
    assert (weather.runtime, weather.apis) == ("edge", ())


def test_commented_out_runtime_edge_is_ignored() -> None:
    result = run(repo("edge-variants"))
    assert flags_for(result, "app/api/commented/route.ts") == []
    route = next(r for r in result.routes if r.path == "app/api/commented/route.ts")
    assert route.runtime == "nodejs" and route.apis  # it does call OpenAI: only the runtime is Node.js


def test_type_only_import_is_not_a_call() -> None:
    result = run(repo("edge-variants"))
    assert flags_for(result, "app/api/typeonly/route.ts") == []
    assert next(r for r in result.routes if r.path == "app/api/typeonly/route.ts").apis == ()


def test_multi_line_array_flags_the_line_of_the_code() -> None:
    root = repo("edge-variants")
    (flag,) = flags_for(run(root), "app/api/multi/route.ts")
    assert flag.line == 7 and "'hkg1'" in line_text(root, flag)
    assert flag.fix == "export const preferredRegion = ['sin1', 'icn1', 'hnd1']"


def test_expression_regions_are_judged_by_their_code_literals() -> None:
    root = repo("edge-variants")
    result = run(root)
    (flag,) = flags_for(result, "app/api/ternary/route.ts")  # 'production' is not judged as a code
    assert (flag.kind, flag.line, flag.region, flag.fix) == ("unsupported-region", 6, "hkg1", "'icn1'")
    (unresolved,) = flags_for(result, "app/api/expr/route.ts")
    assert (unresolved.kind, unresolved.line) == ("unresolved-region", 4)
    assert "(REGIONS)" in unresolved.message


def test_governed_call_in_a_directly_imported_module_is_found() -> None:
    (flag,) = flags_for(run(repo("edge-variants")), "app/api/via-lib/route.ts")
    assert (flag.kind, flag.line) == ("unpinned-edge", 4)
    assert "import '@ai-sdk/openai' in lib/ai.ts:1, imported on line 2" in flag.message


def test_imports_are_followed_one_level_only(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/api/x/route.ts": "import { a } from './a';\nexport const runtime = 'edge';\nexport const GET = a;\n",
            "app/api/x/a.ts": "export { b as a } from './b';\n",
            "app/api/x/b.ts": "import OpenAI from 'openai';\nexport const b = () => new OpenAI();\n",
        },
    )
    result = run(tmp_path)
    assert result.flags == ()
    assert "app/api/x/b.ts" not in result.files_read


def test_only_providers_with_a_pack_are_judged_and_new_packs_need_no_code() -> None:
    root = repo("edge-variants")
    openai_only = run(root)
    assert flags_for(openai_only, "app/api/claude/route.ts") == []
    claude = next(r for r in openai_only.routes if r.path == "app/api/claude/route.ts")
    assert [(a.provider, a.judged) for a in claude.apis] == [("anthropic", False)]
    (flag,) = flags_for(run(root, anthropic_pack_set()), "app/api/claude/route.ts")
    assert (flag.kind, flag.provider, flag.line) == ("unpinned-edge", "anthropic", 3)
    assert "Anthropic API" in flag.message


def test_governed_hosts_come_from_the_packs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/api/m/route.ts": (
                "export const runtime = 'edge';\n"
                "export const POST = (r: Request) => fetch('https://api.anthropic.com/v1/messages', { method: 'POST', body: r.body });\n"
            )
        },
    )
    assert run(tmp_path).flags == ()
    (flag,) = run(tmp_path, anthropic_pack_set()).flags
    assert (flag.provider, flag.kind) == ("anthropic", "unpinned-edge")
    assert "host api.anthropic.com on line 2" in flag.message


def test_region_judged_against_every_provider_a_route_calls(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/api/both/route.ts": (
                "import OpenAI from 'openai';\nimport Anthropic from '@anthropic-ai/sdk';\n"
                "export const runtime = 'edge';\nexport const preferredRegion = ['hkg1', 'fra1'];\n"
            )
        },
    )
    fra1, hkg1 = run(tmp_path, anthropic_pack_set()).flags  # sorted by region on the same line
    assert (hkg1.region, hkg1.provider, hkg1.country) == ("hkg1", "openai,anthropic", "HK")
    assert "OpenAI API and Anthropic API do not serve" in hkg1.message
    assert hkg1.rule.endswith(":not-listed:HK; anthropic@test:not-listed:HK")
    # fra1 (DE) is served by OpenAI but not by the test Anthropic pack; every replacement must
    # be served by both, and each flag carries the same fully corrected value.
    assert (fra1.region, fra1.provider) == ("fra1", "anthropic")
    assert fra1.fix == hkg1.fix == "export const preferredRegion = ['icn1', 'iad1']"
    # Judged against only the providers a route calls: with OpenAI alone, fra1 passes.
    assert [f.region for f in run(tmp_path).flags] == ["hkg1"]


def test_layout_runtime_is_inherited_by_pages(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/layout.tsx": "export const runtime = 'edge';\nexport default function L({ children }) { return children; }\n",
            "app/chat/page.tsx": "import OpenAI from 'openai';\nexport default async function P() { return (await new OpenAI().models.list()).data[0].id; }\n",
            "app/api/r/route.ts": "import OpenAI from 'openai';\nexport const GET = () => new OpenAI().models.list();\n",
        },
    )
    result = run(tmp_path)
    (flag,) = result.flags  # the route handler does not inherit the layout's runtime
    assert (flag.path, flag.line, flag.kind) == ("app/chat/page.tsx", 1, "unpinned-edge")
    assert "runtime inherited from app/layout.tsx:1" in flag.message


def test_home_region_is_the_project_region_and_not_flagged(tmp_path: Path) -> None:
    write(tmp_path, {"app/api/h/route.ts": "import OpenAI from 'openai';\nexport const runtime = 'edge';\nexport const preferredRegion = 'home';\n"})
    result = run(tmp_path)
    assert result.flags == ()
    assert result.routes[0].regions == ("home",)


@pytest.mark.parametrize(
    "config, flagged",
    [
        ("", True),  # middleware is edge by default
        ("export const config = { matcher: ['/api/:path*'] };\n", True),
        ("export const config = { matcher: ['/api/:path*'], runtime: 'nodejs' };\n", False),
        ("export const config = { matcher: ['/api/:path*'], regions: ['iad1'] };\n", False),
    ],
)
def test_middleware_runs_on_the_edge_unless_configured(tmp_path: Path, config: str, flagged: bool) -> None:
    write(
        tmp_path,
        {
            "package.json": "{}",
            "middleware.ts": "export async function middleware(req: Request) {\n"
            "  await fetch('https://api.openai.com/v1/moderations', { method: 'POST', body: await req.text() });\n}\n" + config,
        },
    )
    result = run(tmp_path)
    assert [f.kind for f in result.flags] == (["unpinned-edge"] if flagged else [])
    if flagged and not config:
        assert result.flags[0].fix == "export const config = { regions: ['iad1'] }"
    if flagged and config:
        assert result.flags[0].fix == "regions: ['iad1'],"


def test_vercel_functions_outside_next_use_config_regions(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "package.json": "{}",
            "api/proxy.mjs": "export const config = {\n  runtime: 'edge',\n  regions: ['sin1', 'hkg1'],\n};\nexport default (r) => fetch('https://api.openai.com/v1/chat/completions', r);\n",
        },
    )
    (flag,) = run(tmp_path).flags
    assert (flag.path, flag.line, flag.region) == ("api/proxy.mjs", 3, "hkg1")
    assert flag.fix == "regions: ['sin1', 'icn1'],"


# ------------------------------------------------------------------ what is read and what is not


def test_node_modules_is_ignored() -> None:
    result = run(repo("pinned-supported"))
    assert result.ignored_dirs == ("node_modules",)
    assert not any(p.startswith("node_modules/") for p in result.files_read)
    assert not any(r.path.startswith("node_modules/") for r in result.routes)


def test_build_output_and_vcs_dirs_are_ignored(tmp_path: Path) -> None:
    shutil.copytree(repo("unpinned-edge"), tmp_path, dirs_exist_ok=True)
    bad_route = "import OpenAI from 'openai';\nexport const runtime = 'edge';\nexport const preferredRegion = 'hkg1';\n"
    for d in (".next/server", "dist", "build", ".git", ".vercel/output", "node_modules/x"):
        write(tmp_path / d, {"app/api/y/route.ts": bad_route, "vercel.json": '{"regions": ["hkg1"]}'})
    result = run(tmp_path)
    assert [f.path for f in result.flags] == ["app/api/chat/route.ts"]
    assert set(result.ignored_dirs) == {".next", "dist", "build", ".git", ".vercel", "node_modules"}


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    outside = tmp_path / "outside"
    write(outside, {"route.ts": "import OpenAI from 'openai';\nexport const runtime = 'edge';\n", "vercel.json": '{"regions": ["hkg1"]}'})
    (root / "app" / "api" / "file").mkdir(parents=True)
    (root / "app" / "api" / "linked").symlink_to(outside, target_is_directory=True)
    (root / "app" / "api" / "file" / "route.ts").symlink_to(outside / "route.ts")
    (root / "vercel.json").symlink_to(outside / "vercel.json")
    result = run(root)
    assert result.flags == () and result.routes == ()
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons == {
        "app/api/linked": "symbolic link to a directory, not followed",
        "app/api/file/route.ts": "symbolic link, not followed",
        "vercel.json": "symbolic link, not followed",
    }


def test_unreadable_binary_and_oversized_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "app/api/big").mkdir(parents=True)
    (tmp_path / "app/api/big/route.ts").write_text("export const runtime = 'edge';\n" + "//" + "x" * (2 * 1024 * 1024) + "\n")
    (tmp_path / "app/api/bin").mkdir(parents=True)
    (tmp_path / "app/api/bin/route.js").write_bytes(b"export const runtime = 'edge';\x00\x01\x02")
    (tmp_path / "app/api/latin").mkdir(parents=True)
    (tmp_path / "app/api/latin/route.ts").write_bytes(b"// caf\xe9\nexport const runtime = 'edge';\n")
    result = run(tmp_path)
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons["app/api/big/route.ts"].startswith("larger than 2 MB (")
    assert reasons["app/api/bin/route.js"] == "binary file (NUL bytes), not read"
    assert reasons["app/api/latin/route.ts"] == "not UTF-8 text (invalid byte at offset 6)"
    assert result.routes == () and result.files_read == ()


def test_vercel_json_nested_too_deeply_is_skipped_with_a_reason(tmp_path: Path) -> None:
    # json.loads raises RecursionError, not JSONDecodeError, past about a thousand levels.
    write(tmp_path, {"vercel.json": '{"regions": ' + "[" * 100_000 + "]" * 100_000 + "}"})
    result = run(tmp_path)
    assert [(s.path, s.reason) for s in result.skipped] == [
        ("vercel.json", "arrays or objects nested too deeply to read; no Vercel configuration is that deep")
    ]
    assert result.flags == ()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_vercel_json_with_a_javascript_number_is_skipped_as_not_json(tmp_path: Path, constant: str) -> None:
    # json.loads takes these; the position reader did not and stopped with an AssertionError.
    write(tmp_path, {"vercel.json": '{"regions": ["hkg1"], "x": ' + constant + "}"})
    result = run(tmp_path)
    assert [(s.path, s.reason) for s in result.skipped] == [
        ("vercel.json", f"not valid JSON ({constant} is a JavaScript number, not JSON); Vercel refuses to deploy it")
    ]
    assert result.flags == ()


ROUTE = "import OpenAI from 'openai';\n{}\nexport async function GET() {{ return new OpenAI().chat.completions.create({{}}); }}\n"


@pytest.mark.slow
def test_a_route_nested_too_deeply_is_skipped_and_the_others_still_judged(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "package.json": "{}",
            "app/api/deep/route.ts": ROUTE.format("export const preferredRegion = " + "(" * 20_000 + "'hkg1'" + ")" * 20_000 + ";"),
            "app/api/hk/route.ts": ROUTE.format("export const preferredRegion = 'hkg1';"),
        },
    )
    result = run(tmp_path)
    assert [(s.path, s.reason) for s in result.skipped] == [
        ("app/api/deep/route.ts", "expressions nested too deeply to read; check its region exports by hand")
    ]
    assert [(f.path, f.region) for f in result.flags] == [("app/api/hk/route.ts", "hkg1")]


def test_an_import_too_long_for_the_file_system_is_not_a_local_module(tmp_path: Path) -> None:
    # Path.is_file raises ENAMETOOLONG instead of answering False.
    write(
        tmp_path,
        {
            "package.json": "{}",
            "app/api/hk/route.ts": ROUTE.format(
                f"import a from './{'a' * 6000}';\nimport b from '@/{'b' * 6000}';\nexport const preferredRegion = 'hkg1';"
            ),
        },
    )
    result = run(tmp_path)
    assert [(f.path, f.line, f.region) for f in result.flags] == [("app/api/hk/route.ts", 4, "hkg1")]
    assert result.skipped == ()


def test_a_list_where_a_region_code_belongs_is_an_unknown_code_not_printed_whole(tmp_path: Path) -> None:
    write(tmp_path, {"vercel.json": '{"regions": ["hkg1", ' + "[" * 800 + "]" * 800 + ', {"a": 1}]}'})
    flags = run(tmp_path).flags
    assert sorted((f.kind, f.region) for f in flags) == [("unknown-region", "[...]"), ("unknown-region", "{...}"), ("unsupported-region", "hkg1")]


def test_programmatic_vercel_config_is_reported_as_not_evaluated(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": "{}", "vercel.ts": "export const config = { regions: ['hkg1'] };\n"})
    result = run(tmp_path)
    assert [(s.path, s.reason.split(";")[0]) for s in result.skipped] == [("vercel.ts", "programmatic Vercel configuration is not evaluated")]


def test_not_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(PreflightError, match="not a directory"):
        scan(tmp_path / "f", OPENAI_ONLY)
    with pytest.raises(PreflightError):
        scan(tmp_path / "missing", OPENAI_ONLY)


def test_before_the_enforcement_date_hkg1_is_still_flagged_as_will_be_blocked() -> None:
    result = run(repo("unpinned-edge"), today=dt.date(2024, 7, 1))
    (flag,) = result.flags
    assert flag.kind == "unpinned-edge"
    assert result.date == dt.date(2024, 7, 1)
    top = run(repo("hkg1-vercel-json"), today=dt.date(2024, 7, 1)).flags[0]
    assert "blocking starts 2024-07-09" in top.message


# ------------------------------------------------------------------ output


def test_json_output_has_flags_and_a_scanned_summary() -> None:
    result = run(repo("unpinned-edge"))
    doc = json.loads(render_json(result))
    assert list(doc) == ["flags", "scanned"]
    assert [list(f) for f in doc["flags"]] == [FLAG_FIELDS]
    assert doc["flags"][0]["fix"] == "export const preferredRegion = ['iad1']"
    scanned = doc["scanned"]
    assert scanned["date"] == "2026-11-28" and scanned["policies"].startswith("openai@")
    assert scanned["files_read"] == ["app/api/chat/route.ts"]
    assert scanned["routes"][0]["runtime"] == "edge" and scanned["routes"][0]["apis"][0]["provider"] == "openai"
    assert scanned["skipped"] == [] and scanned["ignored_dirs"] == []


def test_text_output_is_path_line_message_then_fix() -> None:
    text = render_text(run(repo("hkg1-vercel-json")))
    lines = text.splitlines()
    assert len(lines) == 6
    assert lines[0].startswith("vercel.json:4: regions lists hkg1 (Hong Kong, HK)")
    assert lines[1] == '  fix: "regions": ["icn1", "iad1"]'
    assert all(line.startswith("  fix: ") for line in lines[1::2])
    assert render_text(run(repo("pinned-supported"))) == ""


def test_summary_counts() -> None:
    summary = run(repo("pinned-supported")).summary()
    assert summary.startswith("scanned 8 files: 1 Vercel configs, 6 routes (5 edge, 4 calling a governed API); 0 skipped; 0 flagged")


def test_cli_scan_config_when_wired() -> None:
    from auditor.cli import cli

    if "scan-config" not in cli.commands:
        pytest.skip("scan-config is not wired into auditor/cli.py yet")
    runner = CliRunner()
    flagged = runner.invoke(cli, ["scan-config", str(repo("unpinned-edge"))])
    assert flagged.exit_code == 1, flagged.output
    assert flagged.stdout.startswith("app/api/chat/route.ts:3: ")
    clean = runner.invoke(cli, ["scan-config", str(repo("pinned-supported")), "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["flags"] == []
    missing = runner.invoke(cli, ["scan-config", str(REPOS / "no-such-repo")])
    assert missing.exit_code == 2


# ------------------------------------------------------------------ scanner pieces


@pytest.mark.parametrize(
    "source, kept, dropped",
    [
        ("a // export const runtime = 'edge'\nb", "a", "runtime"),
        ("x /* export\nconst runtime = 'edge' */ y", "y", "runtime"),
        ("const s = 'http://api.openai.com'; // c", "http://api.openai.com", "// c"),
        ("const t = `a ${b} // not a comment`;", "// not a comment", None),
        ("const r = /\\/\\* no comment/; const k = 'edge';", "'edge'", None),
        ("const d = a / b; // tail", "a / b", "tail"),
    ],
)
def test_strip_comments(source: str, kept: str, dropped: str | None) -> None:
    stripped = strip_comments(source)
    assert len(stripped) == len(source) and stripped.count("\n") == source.count("\n")
    assert kept in stripped
    if dropped is not None:
        assert dropped not in stripped


@pytest.mark.parametrize(
    "spec, provider",
    [
        ("openai", "openai"),
        ("openai/resources/chat", "openai"),
        ("openai-edge", "openai"),
        ("@ai-sdk/openai", "openai"),
        ("@langchain/openai", "openai"),
        ("@anthropic-ai/sdk", "anthropic"),
        ("@ai-sdk/anthropic", "anthropic"),
        ("@google/generative-ai", "gemini"),
        ("@google/genai", "gemini"),
        ("@ai-sdk/google", "gemini"),
        ("@ai-sdk/google-vertex", None),
        ("@anthropic-ai/bedrock-sdk", None),
        ("@azure/openai", None),
        ("@ai-sdk/azure", None),
        ("ai", None),
        ("openai-compatible-thing", None),
    ],
)
def test_sdk_table(spec: str, provider: str | None) -> None:
    found = _sdk(spec)
    assert (found.provider if found else None) == provider


def test_sdk_table_names_only_known_provider_ids() -> None:
    assert {m.provider for m in SDK_MODULES} == {"openai", "anthropic", "gemini"}


def test_special_files_are_not_read(tmp_path: Path) -> None:
    import os

    (tmp_path / "app/api/pipe").mkdir(parents=True)
    os.mkfifo(tmp_path / "app/api/pipe/route.ts")  # reading it would block the scan
    result = run(tmp_path)
    assert [(s.path, s.reason) for s in result.skipped] == [("app/api/pipe/route.ts", "not a regular file, not read")]


def test_imports_through_symlinks_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write(tmp_path / "outside", {"ai.ts": "import OpenAI from 'openai';\nexport const ai = new OpenAI();\n"})
    write(root, {"app/api/x/route.ts": "import { ai } from '../../../lib/ai';\nexport const runtime = 'edge';\n"})
    (root / "lib").symlink_to(tmp_path / "outside", target_is_directory=True)
    result = run(root)
    assert result.routes[0].apis == ()
    assert ("lib/ai.ts", "reached through a symbolic link, not followed") in [(s.path, s.reason) for s in result.skipped]
