"""Secrets seen in logs are never stored: credentials found by their name, and by their shape.

`redact(text)` replaces each secret in a raw record with `[REDACTED]` and leaves everything else
as read (addresses, times, status codes, hosts, paths: the evidence). What counts as a secret:

- by name: the value of a header (`Authorization: ...`, `Cookie: ...`, `x-api-key: ...`, in
  Squid's `[...\\r\\n...]` blocks and inline), a query, fragment or form parameter
  (`?api_key=`, `&client_secret=`, `#access_token=`, `X-Amz-Signature=`, `Signature=` in an AWS
  `Authorization`), a JSON member (`"password": "..."`, a `"Cookies": {...}` object) or URL user
  info (`https://user:pass@`) whose name says it holds one (`_secret_name`);
- by shape, wherever it is: provider keys (OpenAI and Anthropic `sk-...`, Google `AIza...` and
  `ya29.`, AWS `AKIA...`/`ASIA...`, GitHub, GitLab, Slack, Hugging Face, Stripe), JWTs, the
  token after `Bearer`/`Basic`, and long random-looking values of any `name=value` (a query
  parameter, a cookie).

Every rule looks at the record as read and again at each round of its decoding (percent escapes
and `+`, then again for double encoding; JSON's `\\uXXXX`, `\\"`, `\\\\`, `\\/`). Each decoded
character remembers the span of the original it came from, and what a rule finds in a decoded
view is replaced in the original: the stored record stays the record as read (its quoting and
escapes, so no decoded control byte or quote is ever written), only without its secrets.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from urllib.parse import unquote

MARK = "[REDACTED]"

_ROUNDS = 4
"""Decoding rounds at most (a value percent-encoded three times still decodes)."""

_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}|\+|\\u[0-9A-Fa-f]{4}|\\[\"\\/]")
"""What one round of decoding undoes: `%XX` (one character per escape: secrets and names are ASCII),
`+` (a space in a form-encoded query), JSON's `\\uXXXX`, `\\"`, `\\\\` and `\\/`."""

# --- names -------------------------------------------------------------------------------------

_STRONG_PARTS = (
    "token",
    "secret",
    "passw",
    "apikey",
    "authoriz",
    "credential",
    "cookie",
    "session",
    "jwt",
    "bearer",
    "privatekey",
    "accesskey",
    "assertion",
    "samlresponse",
    "samlrequest",
    "passcode",
)
_STRONG_ENDS = ("key", "auth", "pwd", "sid")
_STRONG_NAMES = frozenset({"pass", "pw", "auth", "otp", "pin", "refresh", "totp", "mfa"})
_WEAK_ENDS = ("signature", "sig")
"""A `signature` or `sig` is redacted only when its value looks like one (one word, 16 characters or
more, a digit in it): Suricata's and AWS Network Firewall's `"signature": "ET POLICY ..."` or
`"test_tcp"` names an alert rule, and stays."""


def _secret_name(name: str) -> int:
    """2: the name says its value is a secret; 1: it is one when the value looks like a signature; 0: not."""
    if "%" in name:
        name = unquote(unquote(name))
    n = re.sub(r"[^a-z0-9]", "", name.lower())
    if not n or n.endswith(("tokens", "type", "count")):  # max_tokens, token_type, token_count: no secret
        return 0
    if n in _STRONG_NAMES or n.endswith(_STRONG_ENDS) or any(p in n for p in _STRONG_PARTS):
        return 2
    return 1 if n.endswith(_WEAK_ENDS) else 0


def _named(name: str, value: str) -> bool:
    """Whether `value`, held under `name`, is to be redacted."""
    if not value.strip() or value.startswith(MARK[:-1]):  # empty, or redacted already
        return False
    kind = _secret_name(name)
    if kind == 1:  # one word of 16 characters or more with a digit in it: hex, base64, `v0=...`
        value = value.strip()
        return len(value) >= 16 and not any(c.isspace() for c in value) and any(c.isdigit() for c in value)
    return kind == 2


def _random(value: str) -> bool:
    """A long value that looks like a key, token or signature rather than a word, id, time or address."""
    if len(value) < 20 or not _TOKEN.fullmatch(value):
        return False
    if len(value) >= 32 and _HEX.fullmatch(value):
        return True
    if not (any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value)):
        return False
    counts = Counter(value)
    entropy = -sum(k / len(value) * math.log2(k / len(value)) for k in counts.values())
    return entropy >= 3.5


_TOKEN = re.compile(r"[A-Za-z0-9+/=_\-.~]+")
_HEX = re.compile(r"[0-9A-Fa-f]+")

# --- rules: each finds spans (start, end) in one view of the text ---------------------------------

_HEADER_LINE = re.compile(
    r"(?:(?<=\[)|(?<=\\[rn])|(?<=[\r\n])|^)(?P<name>[A-Za-z][A-Za-z0-9_.-]{0,63})[ \t]*:[ \t]*(?P<value>[^\]\r\n]*?)(?=\\[rn]|\]|[\r\n]|$)"
)
"""A header on a line of its own: Squid's `log_mime_hdrs` block (`[Host: a\\r\\nCookie: b\\r\\n]`, where
`]` is always escaped inside, so the value runs to `\\r\\n` or `]`, quotes and spaces included)."""
_HEADER_INLINE = re.compile(r"(?:(?<=[\s{|\"',;(])|^)(?P<name>[A-Za-z][A-Za-z0-9_.-]{0,63})[ \t]*:[ \t]*(?P<value>[^\"|}\]\t\r\n\\]+)")
"""A header inside other text (a quoted log field, a HAProxy capture, a message): up to its field's end."""
_JSON_STRING = re.compile(r'(?="(?P<name>(?:[^"\\]|\\.){1,80})"\s*:\s*"(?P<value>(?:[^"\\]|\\.)*)")')
_JSON_CONTAINER = re.compile(r'(?="(?P<name>(?:[^"\\]|\\.){1,80})"\s*:\s*(?P<value>\{[^{}]*\}|\[[^\[\]]*\]))')
_JSON_HEADER = re.compile(r'(?="name"\s*:\s*"(?P<name>(?:[^"\\]|\\.){1,80})"\s*,\s*"value"\s*:\s*"(?P<value>(?:[^"\\]|\\.)*)")')
"""JSON members (found overlapping, inside a lookahead, so a JSON text inside a string is read too once
its quotes are decoded): a string, a header as a name/value object (Suricata's `dump-all-headers`),
or a flat object or array (`"Cookies": {...}`); members nested in an object whose name says nothing
are found on their own."""
_PARAM = re.compile(
    r"(?:(?<=[?&;#\s,|{(\"'\[])|^)(?P<name>[^=&\s\"'#?;|{}()<>\[\],:/]{1,80}(?:\[[^\[\]=&\s]{0,40}\]){0,3})=(?P<value>\"[^\"\r\n]*\"|[^&\s\"'#?;|}\]<>,\\]*)"
)
"""`name=value` after `?`, `&`, `;`, `#` (query, matrix, fragment) or after a space or comma (cookies,
`Credential=..., Signature=...` in an AWS `Authorization`); a form's bracketed names too
(`password[]=`, `user[password]=`)."""
_USERINFO = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://(?P<value>[^/@\s\"?#]+)@")

_AWS_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA", "ASCA")
_SHAPES = tuple(
    (re.compile(p), hints)
    for p, hints in (
        (r"(?<![A-Za-z0-9])sk-(?P<value>[A-Za-z0-9_\-]{8,})", ("sk-",)),  # OpenAI sk-, sk-proj-, sk-svcacct-; Anthropic sk-ant-
        (r"(?<![A-Za-z0-9])[rs]k_(?:live|test)_[A-Za-z0-9]{10,}", ("k_live_", "k_test_")),  # Stripe
        (r"AIza[0-9A-Za-z_\-]{20,}", ("AIza",)),  # Google API key
        (r"(?<![A-Za-z0-9])ya29\.[0-9A-Za-z_\-]{20,}", ("ya29.",)),  # Google OAuth access token
        (r"(?<![A-Z0-9])(?:" + "|".join(_AWS_PREFIXES) + r")[A-Z0-9]{16}(?![A-Z0-9])", _AWS_PREFIXES),  # AWS key ids
        (r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}", ("gh", "github_pat_")),  # GitHub
        (r"(?<![A-Za-z0-9])glpat-[A-Za-z0-9_\-]{20,}", ("glpat-",)),  # GitLab
        (r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9\-]{10,}|xapp-[0-9]-[A-Za-z0-9\-]{10,}", ("xox", "xapp-")),  # Slack
        (r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}", ("hf_",)),  # Hugging Face
        (r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*){0,3}", ("eyJ",)),  # JWT (JWS; JWE has 5 parts); also cut short
        (r"(?i:\bbearer)\s+(?P<value>[A-Za-z0-9._~+/=\-]{8,})", ("bearer",)),  # a bearer token anywhere
        (r"(?i:\bbasic)\s+(?P<value>(?=[a-z]*[A-Z0-9+/=])[A-Za-z0-9+/]{8,}={0,2})", ("basic",)),  # Basic credentials, not a lower-case word
    )
)
"""Each shape with the texts one of which it cannot match without (checked first, in the lower-cased
text for `bearer` and `basic`)."""


def _find(view: str) -> Iterator[tuple[int, int, int]]:
    """(start, end, kind) of every secret in `view`: kind 0 a value found by its name (replaced whole),
    1 one found by its shape, 2 the `sk-` that a key found by its shape keeps, 3 a JSON object or array
    found by its name (replaced by a JSON string)."""
    for m in _HEADER_LINE.finditer(view):
        if _named(m["name"], m["value"]):
            yield m.start("value"), m.end("value"), 0
    for m in _HEADER_INLINE.finditer(view):
        if _named(m["name"], m["value"]):
            yield m.start("value"), m.end("value"), 0
    for m in _JSON_STRING.finditer(view):
        if _named(m["name"], m["value"]):
            yield m.start("value"), m.end("value"), 0
    for m in _JSON_HEADER.finditer(view):
        if _named(m["name"], m["value"]):
            yield m.start("value"), m.end("value"), 0
    for m in _JSON_CONTAINER.finditer(view):
        if _secret_name(m["name"]):
            yield m.start("value"), m.end("value"), 3
    for m in _PARAM.finditer(view):
        value, start, end = m["value"], m.start("value"), m.end("value")
        if value[:1] == '"':
            value, start, end = value[1:-1], start + 1, end - 1
        if _named(m["name"], value) or _random(value):
            yield start, end, 0
    for m in _USERINFO.finditer(view):
        if not m["value"].startswith(MARK[:-1]):
            yield m.start("value"), m.end("value"), 0
    lowered = view.lower()
    for pattern, hints in _SHAPES:
        if not any(h in (lowered if h in ("bearer", "basic") else view) for h in hints):
            continue
        for m in pattern.finditer(view):
            if "value" in pattern.groupindex:
                yield m.start("value"), m.end("value"), 1
                if m.group().startswith("sk-"):
                    yield m.start(), m.start("value"), 2
            else:
                yield m.start(), m.end(), 1


def _decode(text: str) -> tuple[str, list[int], list[int]] | None:
    """`text` after one round of decoding, with each character's start and end in `text`; None when
    there is nothing to decode."""
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    at = 0
    for m in _ESCAPE.finditer(text):
        s, e = m.span()
        if s > at:
            pieces.append(text[at:s])
            starts.extend(range(at, s))
            ends.extend(range(at + 1, s + 1))
        token = m.group()
        if token == "+":  # noqa: S105 - an escape being decoded, not a password
            pieces.append(" ")
        elif token[0] == "%":
            pieces.append(chr(int(token[1:], 16)))
        elif token[1] == "u":
            pieces.append(chr(int(token[2:], 16)))  # noqa: FURB166 - the prefix cut is \u, not 0x
        else:
            pieces.append(token[1])
        starts.append(s)
        ends.append(e)
        at = e
    if not pieces:
        return None
    pieces.append(text[at:])
    starts.extend(range(at, len(text)))
    ends.extend(range(at + 1, len(text) + 1))
    return "".join(pieces), starts, ends


def _views(text: str) -> Iterator[tuple[str, list[int] | None, list[int] | None]]:
    """`text`, then each round of its decoding with the original span of every character."""
    yield text, None, None
    view, starts, ends = text, None, None
    for _ in range(_ROUNDS):
        decoded = _decode(view)
        if decoded is None:
            return
        view, s2, e2 = decoded
        if starts is None or ends is None:
            starts, ends = s2, e2
        else:
            starts, ends = [starts[i] for i in s2], [ends[i - 1] for i in e2]
        yield view, starts, ends


def redact(text: str) -> str:
    """`text` with every secret replaced by [REDACTED] (a JSON object or array by "[REDACTED]").

    A key found by its shape alone keeps its `sk-`, so the evidence still says an OpenAI-style key
    was sent; a value found by its name is replaced whole."""
    named: list[tuple[int, int]] = []
    shaped: list[tuple[int, int]] = []
    kept: list[tuple[int, int]] = []
    objects: set[tuple[int, int]] = set()
    for view, starts, ends in _views(text):
        for start, end, kind in _find(view):
            if end <= start:
                continue
            if starts is not None and ends is not None:
                start, end = starts[start], ends[end - 1]
            if kind == 1:
                shaped.append((start, end))
            elif kind == 2:
                kept.append((start, end))
            else:
                named.append((start, end))
                if kind == 3:
                    objects.add((start, end))
    if not named and not shaped:
        return text
    mask = bytearray(len(text))
    for start, end in shaped:
        mask[start:end] = b"\x01" * (end - start)
    for start, end in kept:
        mask[start:end] = bytes(end - start)
    for start, end in named:
        mask[start:end] = b"\x01" * (end - start)
    out: list[str] = []
    at = 0
    for m in re.finditer(rb"\x01+", mask):
        out.append(text[at : m.start()])
        out.append(f'"{MARK}"' if m.span() in objects else MARK)
        at = m.end()
    out.append(text[at:])
    return "".join(out)
