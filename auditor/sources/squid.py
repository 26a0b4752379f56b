"""Squid native access.log (the default `squid` logformat).

    %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt

    1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -

The user name (`%un`) may hold spaces: Squid 3.2 and later encode it as they encode headers
(`Format::QuoteUrlEncodeUsername` calls `QuoteMimeBlob`, which %-encodes `%`, `[`, `]`, control and
non-ASCII bytes and doubles `\\`, but leaves spaces), so a Kerberos or NTLM user `DOMAIN\\John Smith`
is written with its space (Squid 3.1 and older wrote `%20`). The field after it is read at the first
word that is a hierarchy code with its peer (`HIER_DIRECT/...`); a line where a word of the user
name is one too cannot be read, and is malformed.

CONNECT lines carry `host:port`, other methods an absolute URL. With `log_mime_hdrs on` the
request and reply headers follow in brackets; they are kept (redacted) in the raw record only.
Intercepted TLS (`ssl_bump peek`/`splice`) is logged as a CONNECT to the server's address; a
format that appends `%ssl::>sni` names the server after the standard fields, and it is taken.
"""

from __future__ import annotations

import re

from auditor.events import ConnectionEvent
from auditor.sources.common import address, host_from_target, is_hostname, parse_epoch, small_int
from auditor.sources.interface import Ignored, Malformed

NAME = "squid"
_SNIFF = re.compile(r"^[0-9]{9,11}\.[0-9]{3}\s+-?[0-9]+\s+\S+\s+[A-Z_]+/[0-9]{3}\s+[0-9]+\s+\S+\s+\S+\s+\S+\s+\S+/\S+")
_SNIFF_HEAD = re.compile(r"^[0-9]{9,11}\.[0-9]{3}\s+-?[0-9]+\s+\S+\s+[A-Z_]+/[0-9]{3}\s+[0-9]+\s+\S+\s+\S+\s+\S")
"""The fields up to the user name, for a line whose user name holds spaces (`_user_with_spaces`)."""
_CODES = (
    "HIER_NONE|HIER_DIRECT|NONE|DIRECT|SIBLING_HIT|PARENT_HIT|DEFAULT_PARENT|SINGLE_PARENT|FIRSTUP_PARENT|FIRST_UP_PARENT|"
    "FIRST_PARENT_MISS|CLOSEST_PARENT_MISS|CLOSEST_PARENT|CLOSEST_DIRECT|NO_DIRECT_FAIL|SOURCE_FASTEST|ROUNDROBIN_PARENT|"
    "CACHE_DIGEST_HIT|NO_CACHE_DIGEST_DIRECT|CD_PARENT_HIT|CD_SIBLING_HIT|CARP|ANY_OLD_PARENT|ANY_PARENT|USERHASH_PARENT|SOURCEHASH_PARENT|PINNED|ORIGINAL_DST|STANDBY_POOL"
)
_HIER = re.compile(rf"(?:TIMEOUT_)?(?:{_CODES})/")
"""`%Sh/`: Squid's hierarchy codes (`hier_code.h`; Squid 2's names too), `TIMEOUT_` when the
ICP/HTCP query timed out."""
_USUAL = ("HIER_DIRECT/", "HIER_NONE/")
_HIER_WORD = re.compile(rf"(?<=\s)(?:TIMEOUT_)?(?:{_CODES})/\S*")
_SEVEN = re.compile(r"\s*(?:\S+\s+){7}")
_NOT_FORWARDED = ("NONE", "TAG_NONE", "NONE_NONE")
"""Result tags of requests Squid did not forward: denied, failed, invalid, or the CONNECT of an
ssl-bumped tunnel whose requests are logged on lines of their own."""


def not_forwarded(result: str, status: str) -> str:
    """Why a request Squid logged with this result tag (`TCP_DENIED`, `NONE_NONE`) and status
    was not a call; "" when it was one. Also used for Squid's `common`/`combined` emulation."""
    if result.startswith("TCP_DENIED"):
        return "denied by the proxy"
    if result in _NOT_FORWARDED:
        return "denied by the proxy" if status in ("403", "407") else "not forwarded by the proxy (NONE result)"
    return ""


def sniff(line: str) -> bool:
    """True when `line` looks like a Squid native record (its user name may hold spaces)."""
    if _SNIFF.match(line) is not None:
        return True
    head = _SNIFF_HEAD.match(line)
    return head is not None and _HIER_WORD.search(line, head.end() - 1) is not None


def parse(line: str, location: str) -> ConnectionEvent:
    """One record -> ConnectionEvent; Malformed or Ignored otherwise."""
    fields = line.split(None, 10)
    if len(fields) < 10:
        raise Malformed(f"squid: {len(fields)} fields, expected 10")
    ts = parse_epoch(fields[0])
    result, _, status_text = fields[3].partition("/")
    status = small_int(status_text, 3)
    if status is None:
        raise Malformed("squid: result code without /status")
    reason = not_forwarded(result, status_text)
    if reason:
        raise Ignored(reason, ts)
    hier = fields[8]
    if not (hier.startswith(_USUAL) or _HIER.match(hier)) or (len(fields) > 9 and "A" <= fields[9][:1] <= "Z" and _HIER.match(fields[9])):
        fields = _user_with_spaces(line, fields)  # a user name with spaces
    method, target = fields[5], fields[6]
    host, port = host_from_target(method, target)
    if not host:
        raise Ignored("request names no host", ts)
    if len(fields) == 11 and address(host):
        # An intercepted connection is logged by address (CONNECT 162.159.140.245:443); a format
        # that appends %ssl::>sni names the server after the standard fields.
        sni = fields[10].split(None, 1)[0].lower().rstrip(".")
        if is_hostname(sni):
            host = sni
    _, _, peer = fields[8].partition("/")
    return ConnectionEvent(
        ts=ts,
        orig_h=fields[2],
        server_name=host,
        source=location,
        resp_h=address(peer),
        resp_p=port,
        method=method,
        status=status,
        raw=line,
    )


def _user_with_spaces(line: str, fields: list[str]) -> list[str]:
    """The fields of a line whose user name holds spaces: the name runs from the eighth field to
    the first word that is a hierarchy code and peer (`%Sh/%<a`). `fields` as they are when no
    word is one (a code this reader does not know); Malformed when two are."""
    start = _SEVEN.match(line)
    found = _HIER_WORD.search(line, start.end()) if start else None
    if found is None:
        return fields
    if _HIER_WORD.search(line.split(" [", 1)[0], found.end()):  # before log_mime_hdrs' brackets
        raise Malformed(
            "squid: two hierarchy codes (%Sh/%<a) after the URL: a user name (%un) with spaces holds one, "
            "and the fields after it cannot be told apart"
        )
    user = line[start.end() : found.start()].strip()  # type: ignore[union-attr]
    return [*fields[:7], user, found.group(), *line[found.end() :].split(None, 1)]
