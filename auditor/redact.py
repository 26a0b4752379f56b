"""Secrets seen in logs are never stored: API keys, Authorization headers, credentials in URLs."""

from __future__ import annotations

import re

MARK = "[REDACTED]"

_PATTERNS = (
    # Authorization / Proxy-Authorization header values (Squid log_mime_hdrs, custom formats).
    (re.compile(r"(?i)((?:proxy-)?authorization\s*[:=]\s*)(?:(?:bearer|basic|digest|token)\s+)?[^\s\]\"\\,]+"), r"\1" + MARK),
    # API key headers.
    (re.compile(r"(?i)((?:x-api-key|api-key|openai-api-key|x-goog-api-key)\s*[:=]\s*)[^\s\]\"\\,]+"), r"\1" + MARK),
    # Query parameters that carry secrets.
    (re.compile(r"(?i)([?&;](?:api[_-]?key|key|token|access[_-]?token|auth|password|passwd|secret|sig|signature)=)[^&\s\"]+"), r"\1" + MARK),
    # user:password@ in URLs.
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/@\s\"]+@"), r"\1" + MARK + "@"),
    # JSON members holding credentials (Envoy/Cloudflare/generic JSON logs, Zeek http.log JSON):
    # `"authorization":"..."`, `"x-api-key":"..."`, `"password":"..."`, `"cookie":"..."`, and a
    # Cloudflare `"Cookies":{...}` object.
    (
        re.compile(
            r'(?i)("(?:(?:proxy[-_])?authorization|x[-_]api[-_]key|api[-_]key|openai[-_]api[-_]key|x[-_]goog[-_]api[-_]key'
            r'|password|passwd|cookies?|set[-_]cookie)"\s*:\s*)(?:"(?:[^"\\]|\\.)*"|\{[^{}]*\})'
        ),
        r'\1"' + MARK + '"',
    ),
    # Headers logged as name/value objects (Suricata `dump-all-headers`).
    (
        re.compile(
            r'(?i)("name"\s*:\s*"(?:(?:proxy-)?authorization|x-api-key|api-key|cookie|set-cookie|x-goog-api-key)"\s*,\s*"value"\s*:\s*)"(?:[^"\\]|\\.)*"'
        ),
        r'\1"' + MARK + '"',
    ),
    # Provider key formats anywhere: OpenAI sk-..., Anthropic sk-ant-..., Google AIza...
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-" + MARK),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), MARK),
    # Bare bearer tokens.
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}"), r"\1" + MARK),
)


def redact(text: str) -> str:
    """`text` with every secret-looking value replaced by [REDACTED]."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
