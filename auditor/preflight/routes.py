"""Routes: Next.js route segment config (app router `runtime` / `preferredRegion`, inherited
from enclosing layouts; `export const config = { runtime, regions }` in the pages router,
middleware and Vercel functions under `api/`) and the flags for where a route calling a governed
API may run: listed regions a provider does not serve, edge routes that may run anywhere, and
values the scan cannot read."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from auditor.preflight.judge import Flags
from auditor.preflight.lexer import Lit, Module, Value
from auditor.preflight.project import JS_SUFFIXES, Project
from auditor.preflight.result import ApiUse, Route
from auditor.preflight.vercel_json import VercelConfigs

EDGE_RUNTIMES = frozenset({"edge", "experimental-edge"})
"""`runtime` values that mean the edge runtime (`experimental-edge`: Next.js before 15)."""

ANYWHERE = frozenset({"auto", "global", "all"})
"""Region values that pin nothing on the edge runtime: closest to the user, or every region."""

HOME = "home"
"""`preferredRegion = 'home'`: the project's function regions (vercel.json or dashboard)."""


@dataclass(frozen=True)
class _RouteConfig:
    """What decides where one route runs, and where that is written."""

    runtime: str
    """`edge`, `nodejs` or `unresolved`."""
    runtime_line: int
    """Line of the export that sets the runtime, in the route file (1 when inherited or default)."""
    runtime_how: str
    """For messages: `edge route`, `edge route (runtime from app/layout.tsx:3)`, `middleware (edge by default)`."""
    runtime_text: str
    """The runtime expression as written ("" when not set)."""
    regions: Value | None
    """The regions value (preferredRegion or config.regions), None when not set."""
    regions_line: int
    """Line of the regions export (in the route file; else the runtime line)."""
    regions_own: bool
    """The regions are written in the route file itself (not inherited from a layout)."""
    regions_from: str
    """`preferredRegion`, `config.regions` or `app/layout.tsx:4`; "" when not set."""
    config_style: bool
    """Regions go in `export const config = { regions }` (pages, middleware, api/), not preferredRegion."""
    config_line: int
    """Line of `export const config`; 0 when the file has none."""


_UNRESOLVED = Value("expression", ())
"""A shorthand or computed value (`{ runtime }`): present, but not readable."""


_REGION_LIKE_RE = re.compile(r"[a-z]{3}\d")


def _region_literals(value: Value) -> list[Lit]:
    """The literals of a regions value that name regions. In an expression
    (`env === 'production' ? ['iad1'] : ['sfo1']`) only code-shaped literals and keywords count."""
    lits = [lit for lit in value.literals if not lit.dynamic]
    if value.kind != "expression":
        return lits
    return [lit for lit in lits if _REGION_LIKE_RE.fullmatch(lit.value.strip().lower()) or lit.value.strip().lower() in ANYWHERE | {HOME}]


def _runtime_of(value: Value) -> str:
    values = [lit.value.strip() for lit in value.literals if not lit.dynamic]
    if any(v in EDGE_RUNTIMES for v in values):
        return "edge"
    return "nodejs" if values else "unresolved"


class Routes:
    """Route files read and checked: where each runs (runtime and regions, its own or inherited
    from the layouts above it), and flags for the governed calls it may make from an
    unsupported region."""

    def __init__(self, project: Project, flags: Flags, configs: VercelConfigs) -> None:
        self.project = project
        self.flags = flags
        self.judge = flags.judge
        self.configs = configs

    def route(self, path: Path, kind: str, app_dir: Path | None) -> Route | None:
        """Read and check one route file; None when it cannot be read (the reason is in `skipped`)."""
        module = self.project.module(path)
        if module is None:
            return None
        rel = module.path
        apis = self.project.apis(path, module)
        called = [p for p in self.judge.providers if any(a.provider == p and a.judged for a in apis)]
        cfg = self.route_config(path, kind, module, app_dir)
        if cfg.regions is not None and cfg.regions_own:
            self.route_codes(rel, cfg, called or self.judge.providers)
        if called and cfg.runtime == "edge":
            self.edge_exposure(rel, path, cfg, called, apis)
        elif called and cfg.runtime == "unresolved":
            risky = self.judge.risky_regions(called)
            self.flags.flag(
                rel,
                cfg.runtime_line,
                "unresolved-region",
                "",
                "",
                called,
                f"runtime is not a literal ({cfg.runtime_text}), so region-auditor cannot tell whether this route, "
                f"which calls {self.judge.names(called)} ({_evidence(apis)}), runs on the edge runtime "
                "(in the region closest to each user).",
                "export const runtime = 'nodejs'" if not cfg.config_style else "runtime: 'nodejs',",
                self.judge.rules(risky[0], self.judge.unsupported_by(risky[0], called)) if risky else "",
            )
        regions = tuple(lit.value for lit in cfg.regions.literals) if cfg.regions is not None else ()
        return Route(rel, kind, cfg.runtime, regions, cfg.regions_from, apis)

    def route_config(self, path: Path, kind: str, module: Module, app_dir: Path | None) -> _RouteConfig:
        """Where the route's runtime and regions are set: its `config` export (pages router,
        middleware, `api/`), or its own and its layouts' exports (app router)."""
        config = module.exports.get("config")
        config_line = config.line if config is not None else 0
        if not kind.startswith("app-"):
            keys: dict[str, Value | None] = config.value.keys if config is not None and config.value.kind == "object" else {}
            key_lines = config.value.key_lines if config is not None else {}
            if config is not None and config.value.kind != "object":
                keys = {"runtime": _UNRESOLVED, "regions": _UNRESOLVED}
                key_lines = {"runtime": config.line, "regions": config.line}
            runtime_value = (keys["runtime"] or _UNRESOLVED) if "runtime" in keys else None
            regions_value = (keys["regions"] or _UNRESOLVED) if "regions" in keys else None
            if runtime_value is not None:
                runtime, runtime_line, how = _runtime_of(runtime_value), key_lines.get("runtime", config_line), "edge route"
            elif kind == "middleware":
                runtime, runtime_line, how = "edge", config_line or 1, "middleware (edge runtime by default)"
            else:
                runtime, runtime_line, how = "nodejs", 1, ""
            return _RouteConfig(
                runtime=runtime,
                runtime_line=runtime_line,
                runtime_how=how,
                runtime_text=runtime_value.text.strip() if runtime_value is not None else "",
                regions=regions_value,
                regions_line=key_lines.get("regions", runtime_line),
                regions_own=True,
                regions_from="config.regions" if regions_value is not None else "",
                config_style=True,
                config_line=config_line,
            )
        # App router: the file's own exports, then (pages and layouts) the enclosing layouts'.
        chain = [module]
        if kind != "app-route" and app_dir is not None:
            d = path.parent
            while True:
                layout = next((d / f"layout{s}" for s in JS_SUFFIXES if (d / f"layout{s}").is_file()), None)
                if layout is not None and layout != path:
                    m = self.project.module(layout)
                    if m is not None:
                        chain.append(m)
                if d == app_dir:
                    break
                d = d.parent
        rt = next(((m, m.exports["runtime"]) for m in chain if "runtime" in m.exports), None)
        rg = next(((m, m.exports["preferredRegion"]) for m in chain if "preferredRegion" in m.exports), None)
        runtime, runtime_line, how, text = "nodejs", 1, "", ""
        if rt is not None:
            runtime, text = _runtime_of(rt[1].value), rt[1].value.text.strip()
            own = rt[0] is module
            runtime_line = rt[1].line if own else 1
            how = "edge route" if own else f"edge route (runtime inherited from {rt[0].path}:{rt[1].line})"
        regions_own = rg is not None and rg[0] is module
        return _RouteConfig(
            runtime=runtime,
            runtime_line=runtime_line,
            runtime_how=how,
            runtime_text=text,
            regions=rg[1].value if rg is not None else None,
            regions_line=rg[1].line if regions_own and rg is not None else runtime_line,
            regions_own=regions_own,
            regions_from=("preferredRegion" if regions_own else f"{rg[0].path}:{rg[1].line}") if rg is not None else "",
            config_style=False,
            config_line=config_line,
        )

    def route_codes(self, rel: str, cfg: _RouteConfig, providers: Sequence[str]) -> None:
        """Judge the region codes a route file names itself (inherited ones are judged in the layout)."""
        value = cfg.regions
        assert value is not None
        keywords = ANYWHERE | {HOME}
        codes = [(lit.value, lit.line) for lit in _region_literals(value) if lit.value.strip().lower() not in keywords]
        if not codes:
            return
        quote = next((lit.quote for lit in value.literals if lit.quote != "`"), "'")
        label = "regions" if cfg.config_style else "preferredRegion"
        note = (
            " (the value is an expression: every region it can name is judged; replace the flagged literal with the fix)"
            if value.kind == "expression"
            else ""
        )

        def render(fixed: list[str], replacement: str) -> str:
            quoted = [f"{quote}{c}{quote}" for c in fixed]
            if value.kind == "expression":
                return f"{quote}{replacement}{quote}"
            literal = quoted[0] if value.kind == "string" and len(fixed) == 1 else f"[{', '.join(quoted)}]"
            return f"regions: {literal}," if cfg.config_style else f"export const preferredRegion = {literal}"

        self.flags.judge_codes(rel, codes, providers, label, "this route runs there", render, note)

    def edge_exposure(self, rel: str, path: Path, cfg: _RouteConfig, called: list[str], apis: tuple[ApiUse, ...]) -> None:
        """An edge route calling a governed API: flag it when it may run in an unsupported region."""
        risky = self.judge.risky_regions(called)
        if not risky:
            return  # every Vercel region is served: running anywhere is fine
        example = risky[0]
        against = self.judge.unsupported_by(example, called)
        rules = self.judge.rules(example, against)
        evidence = _evidence(apis)
        exposure = f"so a user near {self.judge.describe(example)} makes the call from there, which {self.judge.serve(against, negate=True)}"
        pin = ", ".join(f"'{c}'" for c in self.configs.pin_to(path, called))
        if cfg.config_style:
            fix = f"regions: [{pin}]," if cfg.config_line else f"export const config = {{ regions: [{pin}] }}"
            where = f" Add the fix to export const config (line {cfg.config_line})." if cfg.config_line else " Add the fix to this file."
        else:
            fix = f"export const preferredRegion = [{pin}]"
            where = " Add the fix below export const runtime." if cfg.runtime_line > 1 else " Add the fix to this file."
        config = self.configs.nearest(path)
        vercel_note = f' The {config.path} "regions" do not apply to edge functions.' if config is not None and config.regions else ""
        value = cfg.regions
        label = "regions" if cfg.config_style else "preferredRegion"
        if value is None:
            self.flags.flag(
                rel,
                cfg.runtime_line,
                "unpinned-edge",
                "",
                "",
                against,
                f"{cfg.runtime_how} calls {self.judge.names(called)} ({evidence}) without pinned regions: it runs "
                f"in the region closest to each user, {exposure}.{vercel_note}{where}",
                fix,
                rules,
            )
            return
        values = [lit.value.strip().lower() for lit in _region_literals(value)]
        anywhere = next((v for v in values if v in ANYWHERE), None)
        line = cfg.regions_line
        if anywhere is not None:
            meaning = "the region closest to each user" if anywhere == "auto" else "every region"
            inherited = "" if cfg.regions_own else f" (inherited from {cfg.regions_from})"
            self.flags.flag(
                rel,
                line,
                "unpinned-edge",
                anywhere,
                "",
                against,
                f"{label} {anywhere!r}{inherited} on an {cfg.runtime_how} means {meaning}; this route calls "
                f"{self.judge.names(called)} ({evidence}), {exposure}. "
                + (f"Replace line {line} with the fix." if cfg.regions_own else "Add the fix to this file."),
                fix,
                rules,
            )
            return
        if not [v for v in values if v != HOME] and HOME not in values:
            self.flags.flag(
                rel,
                line,
                "unresolved-region",
                "",
                "",
                called,
                f"{label} is not a literal ({value.text.strip() or 'a shorthand or computed value'}), so region-auditor "
                f"cannot show that this {cfg.runtime_how}, which calls {self.judge.names(called)} ({evidence}), "
                "is pinned to supported regions.",
                fix,
                rules,
            )


def _evidence(apis: Sequence[ApiUse]) -> str:
    judged = [a for a in apis if a.judged]
    first = judged[0]
    more = f"; {len(judged) - 1} more" if len(judged) > 1 else ""
    if first.via_line:
        return f"{first.evidence} in {first.path}:{first.line}, imported on line {first.via_line}{more}"
    return f"{first.evidence} on line {first.line}{more}"
