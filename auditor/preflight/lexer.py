"""Reading source text with line numbers: vercel.json as JSON that keeps the line of every value,
and JavaScript/TypeScript read with a tolerant scanner (comments blanked; `runtime`,
`preferredRegion` and `config` exports, imports, and governed hosts named in the code).

Never executes or fully parses JavaScript: a value the scanner cannot read is an `expression`,
which the checks report instead of guessing."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from typing import Any

from rules.policy import PolicySet


class _Lines:
    """Offset -> 1-based line number."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)


# --------------------------------------------------------------------------------------------
# vercel.json: JSON with the line of every string


@dataclass(frozen=True)
class JsonNode:
    value: Any
    """dict[str, JsonNode] | list[JsonNode] | str | int | float | bool | None."""
    line: int


class JsonPositions:
    """A small parser for text json.loads has already accepted, keeping the line of each value."""

    _WS = " \t\r\n"

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = _Lines(text)

    def parse(self) -> JsonNode:
        node, _ = self._value(self._ws(0))
        return node

    def _ws(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in self._WS:
            i += 1
        return i

    def _value(self, i: int) -> tuple[JsonNode, int]:
        c = self.text[i]
        line = self.lines.at(i)
        if c == "{":
            items: dict[str, JsonNode] = {}
            i = self._ws(i + 1)
            if self.text[i] == "}":
                return JsonNode(items, line), i + 1
            while True:
                key, i = self._value(self._ws(i))
                i = self._ws(i) + 1  # ':'
                val, i = self._value(self._ws(i))
                items[key.value] = val
                i = self._ws(i)
                if self.text[i] == "}":
                    return JsonNode(items, line), i + 1
                i += 1  # ','
        if c == "[":
            elems: list[JsonNode] = []
            i = self._ws(i + 1)
            if self.text[i] == "]":
                return JsonNode(elems, line), i + 1
            while True:
                val, i = self._value(self._ws(i))
                elems.append(val)
                i = self._ws(i)
                if self.text[i] == "]":
                    return JsonNode(elems, line), i + 1
                i = self._ws(i + 1)
        if c == '"':
            j = i + 1
            while self.text[j] != '"':
                j += 2 if self.text[j] == "\\" else 1
            return JsonNode(json.loads(self.text[i : j + 1]), line), j + 1
        m = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null").match(self.text, i)
        assert m is not None  # json.loads accepted the text
        return JsonNode(json.loads(m.group()), line), m.end()


# --------------------------------------------------------------------------------------------
# JavaScript / TypeScript: comments blanked, exports and imports read with a tolerant scanner


_REGEX_KEYWORDS = frozenset({"return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw", "yield", "await"})


def _skip_string(src: str, i: int) -> int:
    """Index after the string literal starting at `i` (unterminated: end of line / of text)."""
    quote = src[i]
    j = i + 1
    n = len(src)
    while j < n:
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == quote:
            return j + 1
        if c == "\n" and quote != "`":
            return j
        j += 1
    return n


def _skip_regex(src: str, i: int) -> int | None:
    """Index after a regex literal at `i`, or None when it is not one (division)."""
    j = i + 1
    n = len(src)
    in_class = False
    while j < n:
        c = src[j]
        if c == "\n":
            return None
        if c == "\\":
            j += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "/":
            j += 1
            while j < n and (src[j].isalpha()):
                j += 1
            return j
        j += 1
    return None


def strip_comments(src: str) -> str:
    """`src` with `//` and `/* */` comments replaced by spaces (newlines kept, so offsets and lines
    are unchanged). Strings, template literals and regex literals are left alone."""
    out = list(src)
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c in "'\"`":
            i = _skip_string(src, i)
            continue
        if c == "/" and i + 1 < n:
            nxt = src[i + 1]
            if nxt == "/":
                end = src.find("\n", i)
                end = n if end == -1 else end
                out[i:end] = " " * (end - i)
                i = end
                continue
            if nxt == "*":
                end = src.find("*/", i + 2)
                end = n if end == -1 else end + 2
                out[i:end] = ["\n" if ch == "\n" else " " for ch in src[i:end]]
                i = end
                continue
            if _regex_may_start(out, i):
                after = _skip_regex(src, i)
                if after is not None:
                    i = after
                    continue
        i += 1
    return "".join(out)


def _regex_may_start(out: list[str], i: int) -> bool:
    j = i - 1
    while j >= 0 and out[j].isspace():
        j -= 1
    if j < 0:
        return True
    prev = out[j]
    if prev.isalnum() or prev in "_$":
        k = j
        while k >= 0 and (out[k].isalnum() or out[k] in "_$"):
            k -= 1
        return "".join(out[k + 1 : j + 1]) in _REGEX_KEYWORDS
    return prev not in ")]}\"'`"


@dataclass(frozen=True)
class Lit:
    """A string literal inside an expression."""

    value: str
    line: int
    quote: str
    dynamic: bool
    """A template literal with `${...}`: its value is not known."""


@dataclass(frozen=True)
class Value:
    """A parsed export value."""

    kind: str
    """`string`, `list`, `object` or `expression`."""
    literals: tuple[Lit, ...]
    """Every string literal in it, in order."""
    keys: dict[str, Value | None] = field(default_factory=dict)
    """For objects: top-level keys (None for shorthand or computed values)."""
    key_lines: dict[str, int] = field(default_factory=dict)
    """For objects: line of each top-level key."""
    text: str = ""
    """The expression as written (comments blanked)."""


@dataclass(frozen=True)
class Export:
    name: str
    line: int
    value: Value


_EXPORT_RE = re.compile(
    r"(?:^|(?<=[;{}\s]))export\s+(?:const|let|var)\s+(runtime|preferredRegion|config)\b\s*(?::\s*[^=;]+?)?\s*=(?!=)",
)
_TRAILING_CAST_RE = re.compile(r"\s+(?:as\s+const|as\s+[\w.$<>\[\]|' \"]+|satisfies\s+[\w.$<>\[\]|' \"]+)\s*$")
_OPERATOR_END = "?:=|&+-*/,(<>!%^~"
_OPERATOR_START = "?:.|&+*/,=<>%^"


def _expression_end(text: str, start: int) -> int:
    """End offset of the expression starting at `start` (a `;`, a `,` or a statement-ending newline
    at depth 0, or a closing bracket of an enclosing scope)."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            i = _skip_string(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return i
        elif depth == 0 and c in ";,":
            return i
        elif depth == 0 and c == "\n":
            before = text[start:i].rstrip()
            after = text[i:].lstrip()
            if before and before[-1] not in _OPERATOR_END and not (after and after[0] in _OPERATOR_START):
                return i
        i += 1
    return n


def _literals(text: str, start: int, end: int, lines: _Lines) -> tuple[list[Lit], list[tuple[int, int]]]:
    lits: list[Lit] = []
    spans: list[tuple[int, int]] = []
    i = start
    while i < end:
        c = text[i]
        if c in "'\"`":
            j = min(_skip_string(text, i), end)
            raw = text[i + 1 : j - 1] if j - 1 > i and text[j - 1] == c else text[i + 1 : j]
            dynamic = c == "`" and "${" in raw
            lits.append(Lit(_unescape(raw), lines.at(i), c, dynamic))
            spans.append((i, j))
            i = j
            continue
        i += 1
    return lits, spans


def _unescape(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw)


def _parse_value(text: str, start: int, end: int, lines: _Lines) -> Value:
    expr = text[start:end]
    cast = _TRAILING_CAST_RE.search(expr)
    if cast:
        end = start + cast.start()
        expr = text[start:end]
    lead = len(expr) - len(expr.lstrip())
    start += lead
    expr = expr.strip()
    end = start + len(expr)
    if expr.startswith("(") and expr.endswith(")") and _expression_end(text, start + 1) == end - 1:
        return _parse_value(text, start + 1, end - 1, lines)
    lits, spans = _literals(text, start, end, lines)
    rest = list(expr)
    for a, b in spans:
        rest[a - start : b - start] = " " * (b - a)
    remainder = "".join(rest).strip()
    if len(lits) == 1 and not remainder:
        return Value("string", tuple(lits), text=expr)
    if expr.startswith("[") and expr.endswith("]") and set(remainder) <= set("[], \t\r\n"):
        return Value("list", tuple(lits), text=expr)
    if expr.startswith("{") and expr.endswith("}"):
        keys, key_lines = _object_keys(text, start + 1, end - 1, lines)
        return Value("object", tuple(lits), keys, key_lines, text=expr)
    return Value("expression", tuple(lits), text=expr)


_KEY_RE = re.compile(r"\s*(?:(['\"])([\w$-]+)\1|([A-Za-z_$][\w$]*))\s*(:?)")


def _object_keys(text: str, start: int, end: int, lines: _Lines) -> tuple[dict[str, Value | None], dict[str, int]]:
    keys: dict[str, Value | None] = {}
    key_lines: dict[str, int] = {}
    i = start
    while i < end:
        while i < end and text[i] in " \t\r\n,":
            i += 1
        if i >= end:
            break
        m = _KEY_RE.match(text, i, end)
        value_end = _expression_end(text, i)
        if (m and m.group(2)) or (m and m.group(3)):
            name = m.group(2) or m.group(3)
            key_lines[name] = lines.at(m.start(2) if m.group(2) else m.start(3))
            if m.group(4):
                vstart = m.end()
                value_end = min(_expression_end(text, vstart), end)
                keys[name] = _parse_value(text, vstart, value_end, lines)
            else:
                keys[name] = None
        i = max(value_end, i + 1)
    return keys, key_lines


_IMPORT_RES = (
    re.compile(r"\bfrom\s*(['\"])([^'\"\n]+)\1"),
    re.compile(r"(?:^|(?<=[;{}\s]))import\s*(['\"])([^'\"\n]+)\1"),
    re.compile(r"\bimport\s*\(\s*(['\"`])([^'\"`\n]+)\1\s*\)"),
    re.compile(r"\brequire\s*\(\s*(['\"`])([^'\"`\n]+)\1\s*\)"),
)
_STATEMENT_START_RE = re.compile(r"\b(import|export)\b")
_HOST_RE = re.compile(r"(?<![A-Za-z0-9-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9-])")


@dataclass(frozen=True)
class Import:
    spec: str
    line: int


@dataclass(frozen=True)
class Module:
    """What the scan reads from one JS/TS file."""

    path: str
    exports: dict[str, Export]
    imports: tuple[Import, ...]
    hosts: tuple[tuple[str, str, int], ...]
    """(host, provider, line) for each governed host named."""


def analyse(path: str, src: str, policies: PolicySet) -> Module:
    text = strip_comments(src)
    lines = _Lines(text)
    exports: dict[str, Export] = {}
    for m in _EXPORT_RE.finditer(text):
        start = m.end()
        value = _parse_value(text, start, _expression_end(text, start), lines)
        exports.setdefault(m.group(1), Export(m.group(1), lines.at(m.start()), value))
    imports: list[Import] = []
    seen: set[tuple[str, int]] = set()
    for pattern in _IMPORT_RES:
        for m in pattern.finditer(text):
            if pattern is _IMPORT_RES[0] and _type_only(text, m.start()):
                continue
            key = (m.group(2), m.start(2))
            if key not in seen:
                seen.add(key)
                imports.append(Import(m.group(2), lines.at(m.start(2))))
    imports.sort(key=lambda imp: imp.line)
    hosts: list[tuple[str, str, int]] = []
    lowered = text.lower()
    if any(n.decode() in lowered for n in policies.needles()):
        for m in _HOST_RE.finditer(text):
            pack = policies.for_host(m.group())
            if pack is not None:
                hosts.append((m.group().lower(), pack.provider, lines.at(m.start())))
    return Module(path, exports, tuple(imports), tuple(hosts))


def _type_only(text: str, at: int) -> bool:
    """True for `import type ... from` / `export type ... from` (erased by TypeScript)."""
    starts = list(_STATEMENT_START_RE.finditer(text, max(0, at - 2000), at))
    if not starts:
        return False
    return re.match(r"(?:import|export)\s+type\b", text[starts[-1].start() : at]) is not None
