"""The repository on disk: which files are read (bounded, text only, never through a symlink),
which of them are Vercel configurations and routes, the local modules a route imports, and
the SDK imports and hosts that show a route calls a governed API."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from auditor.preflight.lexer import Module, analyse
from auditor.preflight.result import ApiUse
from rules.policy import PolicySet

MAX_BYTES = 2 * 1024 * 1024
"""Files larger than this are skipped (with a reason), never read."""

SKIP_DIRS = frozenset({"node_modules", ".git", ".next", "dist", "build", ".vercel"})
"""Directories never entered: dependencies, VCS data, build output (`.vercel/output` included)."""

JS_SUFFIXES = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
"""Source files that can be routes or imported modules (`.d.ts` excluded)."""

VERCEL_CONFIGS = ("vercel.json", "now.json")
"""Static project configuration files (now.json is the legacy name the Vercel CLI still reads)."""

PROGRAMMATIC_CONFIGS = ("vercel.ts", "vercel.mts", "vercel.js", "vercel.mjs", "vercel.cjs", "vercel.toml")
"""Configuration that is not evaluated here: reported as skipped so the gap is visible."""


@dataclass(frozen=True)
class SdkModule:
    """An npm module whose use means calls to a provider's governed API."""

    module: str
    """Import specifier; also matches its subpaths (`openai` matches `openai/resources`)."""
    provider: str
    """Policy pack id it calls (`openai`, `anthropic`, `gemini`)."""


SDK_MODULES: tuple[SdkModule, ...] = (
    SdkModule("openai", "openai"),
    SdkModule("openai-edge", "openai"),
    SdkModule("@ai-sdk/openai", "openai"),
    SdkModule("@langchain/openai", "openai"),
    SdkModule("langchain/llms/openai", "openai"),
    SdkModule("langchain/chat_models/openai", "openai"),
    SdkModule("langchain/embeddings/openai", "openai"),
    SdkModule("@openai/agents", "openai"),
    SdkModule("@anthropic-ai/sdk", "anthropic"),
    SdkModule("@ai-sdk/anthropic", "anthropic"),
    SdkModule("@langchain/anthropic", "anthropic"),
    SdkModule("langchain/chat_models/anthropic", "anthropic"),
    SdkModule("@google/generative-ai", "gemini"),
    SdkModule("@google/genai", "gemini"),
    SdkModule("@ai-sdk/google", "gemini"),
    SdkModule("@langchain/google-genai", "gemini"),
)
"""SDK imports -> provider. Deliberately absent: cloud-hosted variants under other rules
(`@azure/openai`, `@ai-sdk/azure`, `@anthropic-ai/bedrock-sdk`, `@anthropic-ai/vertex-sdk`,
`@ai-sdk/amazon-bedrock`, `@ai-sdk/google-vertex`) and the provider-neutral `ai` package."""


def _sdk(spec: str) -> SdkModule | None:
    for sdk in SDK_MODULES:
        if spec == sdk.module or spec.startswith(sdk.module + "/"):
            return sdk
    return None


class Files:
    """Reads files once, bounded and text-only, and records what was read or skipped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.read: dict[str, str | None] = {}
        self.skipped: dict[str, str] = {}

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def text(self, path: Path) -> str | None:
        rel = self.rel(path)
        if rel in self.read:
            return self.read[rel]
        content = None
        try:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                self.skipped[rel] = "symbolic link, not followed"
            elif not stat.S_ISREG(st.st_mode):
                self.skipped[rel] = "not a regular file, not read"
            elif st.st_size > MAX_BYTES:
                self.skipped[rel] = f"larger than {MAX_BYTES // (1024 * 1024)} MB ({st.st_size} bytes), not read"
            else:
                data = path.read_bytes()
                if b"\x00" in data[:8192]:
                    self.skipped[rel] = "binary file (NUL bytes), not read"
                else:
                    content = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            self.skipped[rel] = f"not UTF-8 text (invalid byte at offset {e.start})"
        except OSError as e:
            self.skipped[rel] = f"unreadable ({e.strerror or e.__class__.__name__})"
        self.read[rel] = content
        return content

    def files_read(self) -> tuple[str, ...]:
        return tuple(sorted(r for r, c in self.read.items() if c is not None))


_PROJECT_MARKERS = ("package.json", "next.config.js", "next.config.mjs", "next.config.ts", "next.config.cjs", *VERCEL_CONFIGS)


def _js_stem(name: str) -> str | None:
    """`route` for `route.ts`; None for other files and for declarations (`x.d.ts`)."""
    if name.endswith(".d.ts"):
        return None
    for suffix in JS_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


class Layout:
    """Where route files are, given the directories that hold a project (package.json, vercel.json...)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._projects: dict[Path, bool] = {}

    def is_project(self, d: Path) -> bool:
        if d not in self._projects:
            self._projects[d] = d == self.root or any((d / n).is_file() for n in _PROJECT_MARKERS)
        return self._projects[d]

    def _hosts_router(self, d: Path) -> bool:
        """`d` (an `app` or `pages` directory) sits in a project, or in its `src/`."""
        base = d.parent
        if self.is_project(base):
            return True
        return base.name == "src" and base != self.root and self.is_project(base.parent)

    def route_kind(self, path: Path) -> tuple[str, Path | None] | None:
        """(kind, app directory) for a route file, else None."""
        stem = _js_stem(path.name)
        if stem is None:
            return None
        rel_parts = path.relative_to(self.root).parts[:-1]
        d = self.root
        for part in rel_parts:  # outermost directory first
            d = d / part
            if part == "app" and self._hosts_router(d):
                return (f"app-{stem}", d) if stem in ("route", "page", "layout") else None
            if part == "pages" and self._hosts_router(d):
                return "pages", None
            if part == "api" and self.is_project(d.parent):
                return "vercel-function", None
        if stem == "middleware":
            parent = path.parent
            if self.is_project(parent) or (parent.name == "src" and parent != self.root and self.is_project(parent.parent)):
                return "middleware", None
        return None


def walk(root: Path, files: Files, ignored: list[str]) -> Iterator[Path]:
    """Every file under `root`, sorted; SKIP_DIRS are pruned (added to `ignored`), and directories
    that are symbolic links or cannot be read are recorded in `files.skipped`."""

    def onerror(e: OSError) -> None:
        files.skipped[files.rel(Path(e.filename))] = f"unreadable directory ({e.strerror})"

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=onerror):
        here = Path(dirpath)
        kept = []
        for d in sorted(dirnames):
            p = here / d
            if d in SKIP_DIRS:
                ignored.append(files.rel(p))
            elif p.is_symlink():
                files.skipped[files.rel(p)] = "symbolic link to a directory, not followed"
            else:
                kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            yield here / name


def _is_file(path: Path) -> bool:
    """Path.is_file, false also for a name the file system refuses (too long: an import
    specifier can be any string)."""
    try:
        return path.is_file()
    except OSError:
        return False


class Project:
    """The repository under scan: its files (each read once), where its routes are, the local
    modules a route imports, and the evidence in them that a route calls a governed API."""

    def __init__(self, root: Path, policies: PolicySet) -> None:
        self.root = root
        self.policies = policies
        self.files = Files(root)
        self.layout = Layout(root)
        self.modules: dict[str, Module | None] = {}
        self.real_root = Path(os.path.realpath(root))

    def module(self, path: Path) -> Module | None:
        rel = self.files.rel(path)
        if rel not in self.modules:
            src = self.files.text(path)
            try:
                self.modules[rel] = None if src is None else analyse(rel, src, self.policies)
            except RecursionError:
                self.files.skipped[rel] = "expressions nested too deeply to read; check its region exports by hand"
                self.modules[rel] = None
        return self.modules[rel]

    def resolve(self, importer: Path, spec: str) -> Path | None:
        """A local module imported by `importer` (`./`, `../`, or the `@/`/`~/` alias resolved to
        the project directory or its `src/`), inside the root and not a symlink."""
        if spec.startswith(("./", "../")):
            bases = [importer.parent / spec]
        elif spec.startswith(("@/", "~/")):
            project = importer.parent
            while project != self.root and not any(_is_file(project / n) for n in ("tsconfig.json", "jsconfig.json", "package.json")):
                project = project.parent
            bases = [project / spec[2:], project / "src" / spec[2:]]
        else:
            return None
        for base in bases:
            stem = base.with_suffix("") if base.suffix in (".js", ".mjs", ".cjs", ".jsx") else base
            candidates = [base, *(stem.with_name(stem.name + s) for s in JS_SUFFIXES), *(base / f"index{s}" for s in JS_SUFFIXES)]
            for candidate in candidates:
                resolved = Path(os.path.normpath(candidate))
                if not resolved.is_relative_to(self.root):
                    return None
                if _js_stem(resolved.name) is not None and _is_file(resolved):
                    return resolved
        return None

    def apis(self, path: Path, module: Module) -> tuple[ApiUse, ...]:
        judged = {p.provider for p in self.policies.packs}
        uses: dict[tuple[str, int, str], ApiUse] = {}

        def collect(mod: Module, via: int) -> None:
            for imp in mod.imports:
                sdk = _sdk(imp.spec)
                if sdk is not None:
                    use = ApiUse(sdk.provider, f"import '{imp.spec}'", mod.path, imp.line, via, sdk.provider in judged)
                    uses.setdefault((mod.path, imp.line, use.evidence), use)
            for host, provider, line in mod.hosts:
                use = ApiUse(provider, f"host {host}", mod.path, line, via, True)
                uses.setdefault((mod.path, line, use.evidence), use)

        collect(module, 0)
        for imp in module.imports:
            target = self.resolve(path, imp.spec)
            if target is not None and target != path:
                if Path(os.path.realpath(target)) != self.real_root / target.relative_to(self.root):
                    self.files.skipped[self.files.rel(target)] = "reached through a symbolic link, not followed"
                    continue
                sub = self.module(target)
                if sub is not None:
                    collect(sub, imp.line)
        return tuple(uses.values())
