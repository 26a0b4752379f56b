"""vercel.json (and the legacy now.json): project `regions` and `functionFailoverRegions`, and
the same under `functions.<glob>`, judged against every pack. Vercel applies them to serverless
(Node.js) functions only; edge functions run where their own route config says."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from auditor.preflight.judge import Flags
from auditor.preflight.lexer import JsonNode, JsonPositions
from auditor.preflight.project import Files


@dataclass(frozen=True)
class VercelConfig:
    """The project `regions` of one vercel.json."""

    path: str
    regions: tuple[str, ...]
    """Project `regions` codes as configured (() when absent or "all")."""


class VercelConfigs:
    """The vercel.json / now.json files of a scan, each judged as it is read, then kept by
    directory: an edge route is pinned to its project's regions when every provider serves them."""

    def __init__(self, root: Path, files: Files, flags: Flags) -> None:
        self.root = root
        self.files = files
        self.flags = flags
        self.judge = flags.judge
        self.configs: dict[Path, VercelConfig] = {}

    def read(self, path: Path) -> None:
        """Judge one vercel.json or now.json and keep its project regions; a file that is not
        strict JSON (or not an object) is skipped with the reason."""
        rel = self.files.rel(path)
        src = self.files.text(path)
        if src is None:
            return
        try:
            json.loads(src, parse_constant=_not_json)
            tree = JsonPositions(src).parse()
        except _NotJson as e:
            self.files.skipped[rel] = f"not valid JSON ({e} is a JavaScript number, not JSON); Vercel refuses to deploy it"
            return
        except json.JSONDecodeError as e:
            self.files.skipped[rel] = (
                f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); Vercel reads {path.name} as "
                "strict JSON (no comments, no trailing commas) and refuses to deploy it either"
            )
            return
        except RecursionError:
            self.files.skipped[rel] = "arrays or objects nested too deeply to read; no Vercel configuration is that deep"
            return
        if not isinstance(tree.value, dict):
            self.files.skipped[rel] = "not a JSON object, so not a Vercel configuration"
            return
        top: dict[str, JsonNode] = tree.value
        project: tuple[str, ...] = ()
        if "regions" in top:
            project = self.json_regions(rel, top["regions"], "regions", "", "this project's serverless functions run there")
        if "functionFailoverRegions" in top:
            self.json_regions(rel, top["functionFailoverRegions"], "functionFailoverRegions", "", "functions fail over to it")
        functions = top.get("functions")
        if functions is not None and isinstance(functions.value, dict):
            for glob, conf in functions.value.items():
                if not isinstance(conf.value, dict):
                    continue
                where = f'functions["{glob}"].'
                if "regions" in conf.value:
                    self.json_regions(rel, conf.value["regions"], "regions", where, "functions matching it run there")
                if "functionFailoverRegions" in conf.value:
                    self.json_regions(
                        rel, conf.value["functionFailoverRegions"], "functionFailoverRegions", where, "functions matching it fail over to it"
                    )
        self.configs[path.parent] = VercelConfig(rel, project)

    def json_regions(self, rel: str, node: JsonNode, key: str, where: str, effect: str) -> tuple[str, ...]:
        """Judge one `regions`-like value of vercel.json against every pack; its codes, lower case."""
        what = f"{where}{key}"
        if isinstance(node.value, str) and node.value.strip().lower() == "all":
            risky = self.judge.risky_regions(self.judge.providers)
            if risky:
                against = self.judge.unsupported_by(risky[0], self.judge.providers)
                self.flags.flag(
                    rel,
                    node.line,
                    "all-regions",
                    node.value,
                    "",
                    against,
                    f'{what} is "all": every Vercel region, including {self.judge.describe(risky[0])}, which '
                    f"{self.judge.serve(against, negate=True)}; {effect}.",
                    f'"{key}": {_json_list([self.judge.default_region(self.judge.providers)])}',
                    self.judge.rules(risky[0], against),
                )
            return ()
        items = node.value if isinstance(node.value, list) else [node]
        # A list or object where a code belongs is flagged by its kind, not printed whole (it may be deep).
        codes = [("[...]" if isinstance(i.value, list) else "{...}" if isinstance(i.value, dict) else str(i.value), i.line) for i in items]
        self.flags.judge_codes(rel, codes, self.judge.providers, what, effect, lambda fixed, _: f'"{key}": {_json_list(fixed)}')
        return tuple(c.strip().lower() for c, _ in codes)

    def nearest(self, path: Path) -> VercelConfig | None:
        """The configuration of the closest directory above `path` that has one, up to the root."""
        d = path.parent
        while True:
            if d in self.configs:
                return self.configs[d]
            if d == self.root or d == d.parent:
                return None
            d = d.parent

    def pin_to(self, path: Path, providers: Sequence[str]) -> list[str]:
        """Regions to pin an edge route to: the project's vercel.json regions when every provider
        serves them all (functions stay together), else Vercel's default region."""
        config = self.nearest(path)
        if config is not None and config.regions and all(self.judge.supported_by_all(c, providers) for c in config.regions):
            return list(config.regions)
        return [self.judge.default_region(providers)]


class _NotJson(ValueError):
    pass


def _not_json(constant: str) -> None:
    """json.loads takes NaN and Infinity; JSON, and so Vercel, does not."""
    raise _NotJson(constant)


def _json_list(codes: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{c}"' for c in codes) + "]"
