"""No secret reaches the database: every log format, with secrets planted wherever it can carry one.

For each format: a governed call (api.openai.com) written the way its sample in tests/data/logs is,
once per (kind of secret, place): the URL's query or fragment, the Referer, the User-Agent or
message text, the headers the format logs, extra JSON members. Every line is dated a day apart, so
each is an observation of its own and its evidence is kept (the store keeps a few per observation).
All files are audited by the real CLI into one SQLite database; then every text value of every
table, and the database's bytes on disk, must hold no planted secret: not whole, not
percent-encoded, not any 10 characters of it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.redact import MARK
from auditor.sources.logfile import LogFile
from tests.conftest import asset
from tests.sources.helpers import NEEDLES

RNG = random.Random(16)
B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def tok(n: int, alphabet: str = B62) -> str:
    """A random secret of `n` characters (seeded: the same every run)."""
    return "".join(RNG.choice(alphabet) for _ in range(n))


def jwt() -> tuple[str, list[str]]:
    """A JWT and its secret parts (the header is the same in every HS256 token)."""

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    payload, sig = b64({"sub": tok(12), "exp": 1722500000}), tok(43, B62 + "-_")
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{payload}.{sig}", [payload, sig]


@dataclass(frozen=True)
class Kind:
    """One kind of secret and how it is written; `secrets` are what must not reach the database."""

    id: str
    secrets: list[str]
    query: str = ""
    """A query string or fragment, appended to the call's path (and to a Referer)."""
    text: str = ""
    """Free text: a User-Agent, a message."""
    header: tuple[str, str] | None = None
    """A request (or, for Set-Cookie, response) header."""
    member: str = ""
    """Raw JSON text of one member, added to a JSON record."""
    shaped: bool = field(default=True)
    """Whether the header's value alone shows it is a secret (HAProxy captures log values, no names)."""


def kinds() -> list[Kind]:
    k: list[Kind] = []
    s = tok(24)
    k.append(Kind("query-api_key", [s], query=f"?api_key={s}"))
    s = tok(24)
    k.append(Kind("query-prefixed-name", [s], query=f"?model=gpt-4o&openai_api_key={s}"))
    s = tok(24)
    k.append(Kind("query-client_secret", [s], query=f"?client_id=chat&client_secret={s}"))
    s = tok(24)
    k.append(Kind("query-encoded-name", [s], query=f"?api%5Fkey={s}"))
    s = tok(24)
    k.append(Kind("query-double-encoded-name", [s], query=f"?api%255Fkey={s}&x=1"))
    s = tok(24)
    k.append(Kind("fragment-access_token", [s], query=f"#access_token={s}&token_type=bearer&expires_in=3600"))
    key_id, session, sig = "ASIA" + tok(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), tok(60, B62 + "+/"), tok(64, "0123456789abcdef")
    k.append(
        Kind(
            "query-aws-presigned",
            [key_id, session, sig],
            query=f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={key_id}%2F20240801%2Fus-east-1%2Fs3%2Faws4_request"
            f"&X-Amz-Date=20240801T091011Z&X-Amz-Expires=3600&X-Amz-Security-Token={quote(session, safe='')}"
            f"&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}",
        )
    )
    token, parts = jwt()
    k.append(Kind("query-jwt", parts, query=f"?state={token}"))
    s = tok(40)
    k.append(Kind("query-provider-key", [s], query=f"?k=sk-proj-{s}"))
    s = tok(32)
    k.append(Kind("query-random-value", [s], query=f"?ref={s}&page=2"))
    s = tok(24)
    k.append(Kind("query-url-in-a-parameter", [s], query=f"?next=https%3A%2F%2Fapp.example%2Fcb%3Faccess_token%3D{s}%26state%3D1"))
    s = tok(24)
    k.append(Kind("query-double-encoded-url", [s], query=f"?next=https%253A%252F%252Fapp.example%252Fcb%253Ftoken%253D{s}"))
    s = tok(16)
    k.append(Kind("query-password", [s], query=f"?user=bob&password={s}&remember=1"))
    s = tok(43, B62 + "+/") + "="
    k.append(Kind("query-azure-sas", [s.rstrip("=")], query=f"?sv=2022-11-02&sp=r&se=2024-08-02T09%3A10%3A11Z&sig={quote(s, safe='')}"))

    s = tok(40)
    k.append(Kind("text-openai-key", [s], text=f"app/1.0 (sk-proj-{s})"))
    s = tok(40)
    k.append(Kind("text-anthropic-key", [s], text=f"app/1.0 sk-ant-api03-{s}"))
    s = "AIza" + tok(35, B62 + "-_")
    k.append(Kind("text-google-key", [s[4:]], text=f"gcloud {s}"))
    key_id, secret = "AKIA" + tok(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), tok(40, B62 + "/+")
    k.append(Kind("text-aws-key-pair", [key_id, secret], text=f"boto3 {key_id} aws_secret_access_key={secret}"))
    s = tok(36)
    k.append(Kind("text-github-token", [s], text=f"gh ghp_{s}"))
    s = f"{RNG.randint(1000, 9999)}-{RNG.randint(1000, 9999)}-{tok(24)}"
    k.append(Kind("text-slack-token", [s], text=f"bot xoxb-{s}"))
    token, parts = jwt()
    k.append(Kind("text-jwt", parts, text=f"job {token}"))
    s = tok(30, B62 + "._~-")
    k.append(Kind("text-bearer", [s], text=f"Bearer {s}"))
    s = tok(12)
    k.append(Kind("text-url-userinfo", [s], text=f"fetch https://svc:{s}@api.openai.com/v1/models"))

    s = tok(32)
    k.append(Kind("header-authorization", [s], header=("Authorization", f"Bearer {s}")))
    s = base64.b64encode(f"alice:{tok(12)}".encode()).decode()
    k.append(Kind("header-basic", [s.rstrip("=")], header=("Proxy-Authorization", f"Basic {s}")))
    a, b = tok(28), tok(28)
    k.append(Kind("header-cookie", [a, b], header=("Cookie", f"__cf_bm={a}; session={b}")))
    s = tok(28)
    k.append(Kind("header-set-cookie", [s], header=("Set-Cookie", f"__Secure-sid={s}; Path=/; HttpOnly")))
    s = tok(32)
    k.append(Kind("header-x-api-key", [s], header=("x-api-key", s), shaped=False))
    s = tok(80, B62 + "+/")
    k.append(Kind("header-amz-security-token", [s], header=("X-Amz-Security-Token", s), shaped=False))
    key_id, sig = "AKIA" + tok(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), tok(64, "0123456789abcdef")
    k.append(
        Kind(
            "header-aws-sigv4",
            [key_id, sig],
            header=(
                "Authorization",
                (f"AWS4-HMAC-SHA256 Credential={key_id}/20240801/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"),
            ),
        )
    )

    s = tok(24)
    k.append(Kind("json-client_secret", [s], member=f'"client_secret":"{s}"'))
    s = tok(24)
    k.append(Kind("json-escaped-name", [s], member=f'"api\\u005fkey":"{s}"'))
    s = tok(12)
    k.append(Kind("json-password", [s], member=f'"password":"{s} two words"'))
    s = tok(24)
    k.append(Kind("json-cookies-object", [s], member=f'"Cookies":{{"sid":"{s}","theme":"dark"}}'))
    s = tok(24)
    k.append(Kind("json-inside-json", [s], member=json.dumps("body")[:-1] + '":' + json.dumps(json.dumps({"authorization": f"Token {s}"}))))
    s = tok(40)
    k.append(Kind("json-escaped-value", [s], member=f'"note":"sk\\u002dproj\\u002d{s}"'))
    return k


KINDS = kinds()
T0 = dt.datetime(2024, 8, 1, 9, 10, 11, 123456, tzinfo=dt.UTC)


@dataclass
class Call:
    """What one planted line carries; a format writes what it can of it."""

    day: int
    query: str = ""
    ref: str = "-"
    text: str = "curl/8.5.0"
    headers: list[tuple[str, str]] = field(default_factory=list)
    members: list[str] = field(default_factory=list)

    @property
    def t(self) -> dt.datetime:
        return T0 + dt.timedelta(days=self.day)

    @property
    def clf(self) -> str:
        return self.t.strftime("%d/%b/%Y:%H:%M:%S +0000")

    @property
    def iso(self) -> str:
        return self.t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.t.microsecond // 1000:03d}Z"


def nginx_escape(text: str) -> str:
    """nginx `escape=default`: `"` and `\\` as \\xXX."""
    return text.replace("\\", "\\x5C").replace('"', "\\x22")


def haproxy_escape(text: str) -> str:
    """HAProxy's `#XX` for the characters its captures and request line encode."""
    return "".join(f"#{ord(c):02X}" if c in '#"{|}' else c for c in text)


def squid_mime(headers: list[tuple[str, str]]) -> str:
    """Squid's log_mime_hdrs blocks (QuoteMimeBlob: %, [ and ] as %XX), request then reply."""

    def block(hs: list[tuple[str, str]]) -> str:
        return "".join(f"{n}: {v}".replace("%", "%25").replace("[", "%5B").replace("]", "%5D") + "\\r\\n" for n, v in hs)

    request = [("Host", "api.openai.com")] + [h for h in headers if h[0] != "Set-Cookie"]
    reply = [("Content-Type", "application/json")] + [h for h in headers if h[0] == "Set-Cookie"]
    return f" [{block(request)}] [HTTP/1.1 200 OK\\r\\n{block(reply)}]"


def with_members(record: dict[str, object], members: list[str]) -> str:
    """`record` as one compact JSON line, with raw member text added."""
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    return text[:-1] + "".join("," + m for m in members) + "}" if members else text


def squid(c: Call) -> str:
    return (
        f"{c.t.timestamp():.3f}   1204 10.30.2.7 TCP_MISS/200 1873 POST https://api.openai.com/v1/chat/completions{c.query} - "
        f"HIER_DIRECT/162.159.140.245 application/json" + (squid_mime(c.headers) if c.headers else "")
    )


def nginx(c: Call) -> str:
    return (
        f'10.20.1.5 - - [{c.clf}] "POST http://api.openai.com/v1/chat/completions{nginx_escape(c.query)} HTTP/1.1" 200 1820 '
        f'"{nginx_escape(c.ref)}" "{nginx_escape(c.text)}"'
    )


def apache_vhost(c: Call) -> str:
    return f'api.openai.com:443 10.20.1.5 - - [{c.clf}] "POST /v1/chat/completions{c.query} HTTP/1.1" 200 1820 "{c.ref}" "{c.text}"'


def squid_combined(c: Call) -> str:
    return (
        f'10.20.1.5 - - [{c.clf}] "POST https://api.openai.com/v1/chat/completions{c.query} HTTP/1.1" 200 2210 '
        f'"{c.ref}" "{c.text}" TCP_MISS:HIER_DIRECT'
    )


def squid_common(c: Call) -> str:
    return f'10.20.1.5 - - [{c.clf}] "POST https://api.openai.com/v1/chat/completions{c.query} HTTP/1.1" 200 2210 TCP_MISS:HIER_DIRECT'


def haproxy(c: Call) -> str:
    captures = "|".join(haproxy_escape(v) for v in ["api.openai.com", c.text] + [v for _, v in c.headers])
    return (
        f"{c.t.strftime('%b %d %H:%M:%S')} gw1 haproxy[2211]: 10.20.1.5:51012 [{c.t.strftime('%d/%b/%Y:%H:%M:%S')}.123] "
        f"egress-in egress/openai 0/0/1/140/141 200 2210 - - ---- 3/3/1/1/0 0/0 {{{captures}}} "
        f'"POST /v1/chat/completions{haproxy_escape(c.query)} HTTP/1.1"'
    )


def envoy(c: Call) -> str:
    return (
        f'[{c.iso}] "POST /v1/chat/completions{c.query} HTTP/1.1" 200 - 812 2210 141 140 "10.20.1.5" "{c.text}" '
        f'"4f2c1a9e-1b7d-4c1e-9a51-0c6e2f3d4b5a" "api.openai.com" "162.159.140.245:443"'
    )


def istio(c: Call) -> str:
    return (
        f'{c.t.strftime("%Y-%m-%dT%H:%M:%S")}.109456789Z stdout F [{c.iso}] "POST /v1/chat/completions{c.query} HTTP/1.1" 200 - '
        f'via_upstream - "-" 812 2210 141 140 "10.44.1.23" "{c.text}" "5e0f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b" "api.openai.com" '
        f'"162.159.140.245:443" outbound|443||api.openai.com 10.44.0.17:40124 10.44.0.17:8080 10.44.1.23:51013 - default'
    )


def envoy_json(c: Call) -> str:
    record: dict[str, object] = {
        "authority": "api.openai.com",
        "bytes_received": 812,
        "bytes_sent": 2210,
        "downstream_remote_address": "10.44.1.23:51012",
        "method": "POST",
        "path": f"/v1/chat/completions{c.query}",
        "protocol": "HTTP/1.1",
        "response_code": 200,
        "response_flags": "-",
        "start_time": c.iso,
        "upstream_host": "162.159.140.245:443",
        "user_agent": c.text,
        "x_forwarded_for": "10.20.1.5",
    }
    record.update({n.lower(): v for n, v in c.headers})
    return with_members(record, c.members)


ZEEK_HTTP_HEADER = [line for line in asset("logs/zeek-http.log").read_text().split("\n") if line.startswith("#") and not line.startswith("#close")]


def zeek_http(c: Call) -> str:
    return "\t".join(
        [
            f"{c.t.timestamp():.6f}",
            "ClEkJM2Vm5giqnMf4h",
            "10.20.1.6",
            "52523",
            "10.20.0.10",
            "3128",
            "1",
            "GET",
            "api.openai.com",
            f"http://api.openai.com/v1/models{c.query}",
            c.ref,
            "1.1",
            c.text,
            "-",
            "0",
            "812",
            "200",
            "OK",
            "-",
            "-",
            "(empty)",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
        ]
    )


def zeek_ssl_json(c: Call) -> str:
    return with_members(
        {
            "ts": c.t.timestamp(),
            "uid": "CHhAvVGS1DHFjwGM9",
            "id.orig_h": "10.20.1.5",
            "id.orig_p": 51012,
            "id.resp_h": "162.159.140.245",
            "id.resp_p": 443,
            "version": "TLSv13",
            "server_name": "api.openai.com",
            "resumed": False,
            "established": True,
        },
        c.members,
    )


def suricata(c: Call) -> str:
    http: dict[str, object] = {
        "hostname": "api.openai.com",
        "url": f"http://api.openai.com/v1/chat/completions{c.query}",
        "http_user_agent": c.text,
        "http_method": "POST",
        "protocol": "HTTP/1.1",
        "status": 200,
        "length": 211,
    }
    if c.ref != "-":
        http["http_refer"] = c.ref
    if c.headers:
        http["request_headers"] = [{"name": "Host", "value": "api.openai.com"}] + [{"name": n, "value": v} for n, v in c.headers if n != "Set-Cookie"]
        http["response_headers"] = [{"name": n, "value": v} for n, v in c.headers if n == "Set-Cookie"]
    return with_members(
        {
            "timestamp": c.t.strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
            "flow_id": 3321337812739103,
            "in_iface": "eth0",
            "event_type": "http",
            "src_ip": "10.20.1.6",
            "src_port": 40024,
            "dest_ip": "10.20.0.10",
            "dest_port": 3128,
            "proto": "TCP",
            "tx_id": 1,
            "http": http,
        },
        c.members,
    )


def vercel(c: Call) -> str:
    ms = int(c.t.timestamp() * 1000)
    return with_members(
        {
            "id": f"{ms}000000000000003",
            "deploymentId": "dpl_5Qw9vKcT2mJr8YbN3xLh7FgA1dEs",
            "source": "external",
            "host": "chat-web-git-main-acme.vercel.app",
            "timestamp": ms,
            "projectId": "prj_chat",
            "level": "info",
            "statusCode": 200,
            "message": c.text,
            "projectName": "chat-web",
            "destination": f"https://api.openai.com/v1/chat/completions{c.query}",
            "path": "/v1/chat/completions",
            "executionRegion": "hkg1",
            "proxy": {
                "timestamp": ms - 37,
                "method": "POST",
                "host": "chat.example.com",
                "path": "/api/chat",
                "userAgent": ["Mozilla/5.0"],
                "region": "hkg1",
                "referer": c.ref,
                "statusCode": 200,
                "clientIp": "203.0.113.24",
            },
        },
        c.members,
    )


def cloudflare(c: Call) -> str:
    record: dict[str, object] = {
        "ClientIP": "198.51.100.20",
        "ClientRequestHost": "api.openai.com",
        "ClientRequestMethod": "POST",
        "ClientRequestURI": f"/v1/chat/completions{c.query}",
        "ClientRequestReferer": c.ref,
        "ClientRequestUserAgent": c.text,
        "ClientRequestScheme": "https",
        "ClientRequestSource": "edgeWorkerFetch",
        "EdgeColoCode": "HKG",
        "EdgeResponseStatus": 200,
        "EdgeStartTimestamp": int(c.t.timestamp()) * 1_000_000_000,
        "OriginIP": "162.159.140.245",
        "RayID": "8a1b2c3d4f0a1b2c",
        "WorkerSubrequest": True,
        "ZoneName": "example.com",
    }
    for name, value in c.headers:
        if name == "Cookie":
            record["Cookies"] = dict(p.split("=", 1) for p in value.split("; "))
        else:
            record.setdefault("ResponseHeaders" if name == "Set-Cookie" else "RequestHeaders", {})[name.lower()] = value  # type: ignore[index]
    return with_members(record, c.members)


def aws_firewall(c: Call) -> str:
    return with_members(
        {
            "firewall_name": "egress-fw",
            "availability_zone": "ap-east-1a",
            "event_timestamp": str(int(c.t.timestamp())),
            "event": {
                "tx_id": 0,
                "app_proto": "http",
                "src_ip": "10.20.1.5",
                "src_port": 51100,
                "event_type": "alert",
                "alert": {"severity": 3, "signature_id": 100002, "rev": 1, "signature": "egress HTTP host", "action": "allowed", "category": ""},
                "flow_id": 2035518742265011,
                "dest_ip": "162.159.140.245",
                "proto": "TCP",
                "http": {
                    "hostname": "api.openai.com",
                    "url": f"/v1/models{c.query}",
                    "http_user_agent": c.text,
                    "http_method": "GET",
                    "protocol": "HTTP/1.1",
                    "length": 0,
                },
                "dest_port": 80,
                "timestamp": c.t.strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
            },
        },
        c.members,
    )


def gateway(c: Call) -> str:
    request: dict[str, object] = {"host": "api.openai.com", "method": "POST", "url": f"https://api.openai.com/v1/chat/completions{c.query}"}
    if c.headers:
        request["headers"] = dict(c.headers)
    return with_members(
        {
            "time": c.iso,
            "client": {"ip": "10.20.1.5", "port": 51012},
            "request": request,
            "response": {"code": 200, "body": c.text},
            "upstream": {"addr": "162.159.140.245", "port": 443},
        },
        c.members,
    )


def npm(c: Call) -> str:
    return (
        f'[{c.clf}] - 200 200 - POST https api.openai.com "/v1/chat/completions{nginx_escape(c.query)}" [Client 10.20.1.5] '
        f'[Length 1543] [Gzip -] [Sent-to 162.159.140.245] "{nginx_escape(c.text)}" "{nginx_escape(c.ref)}"'
    )


def nginx_stream(c: Call) -> str:
    return f'10.20.1.5 [{c.clf}] TCP 200 6120 2210 30.021 "162.159.140.245:443" "api.openai.com"'


@dataclass(frozen=True)
class Format:
    """A log format as the planted lines write it: its file name, a line maker, the places it carries."""

    file: str
    line: Callable[[Call], str]
    places: frozenset[str]
    header: list[str] = field(default_factory=list)
    """Lines before the records (Zeek's header)."""


FORMATS = [
    Format("squid-access.log", squid, frozenset({"query", "headers"})),
    Format("nginx-access.log", nginx, frozenset({"query", "ref", "text"})),
    Format("apache-vhost-access.log", apache_vhost, frozenset({"query", "ref", "text"})),
    Format("squid-combined.log", squid_combined, frozenset({"query", "ref", "text"})),
    Format("squid-common.log", squid_common, frozenset({"query"})),
    Format("haproxy-syslog.log", haproxy, frozenset({"query", "text", "captures"})),
    Format("envoy-access.log", envoy, frozenset({"query", "text"})),
    Format("envoy-istio.log", istio, frozenset({"query", "text"})),
    Format("envoy-access.json", envoy_json, frozenset({"query", "text", "headers", "members"})),
    Format("zeek-http.log", zeek_http, frozenset({"query", "ref", "text"}), ZEEK_HTTP_HEADER),
    Format("zeek-ssl.json", zeek_ssl_json, frozenset({"members"})),
    Format("suricata-eve.json", suricata, frozenset({"query", "ref", "text", "headers", "members"})),
    Format("vercel-drain.ndjson", vercel, frozenset({"query", "ref", "text", "members"})),
    Format("cloudflare-http_requests.ndjson", cloudflare, frozenset({"query", "ref", "text", "headers", "members"})),
    Format("aws-network-firewall.log", aws_firewall, frozenset({"query", "text", "members"})),
    Format("gateway.json", gateway, frozenset({"query", "text", "headers", "members"})),
    Format("nginx-proxy-manager.log", npm, frozenset({"query", "ref", "text"})),
    Format("nginx-stream.log", nginx_stream, frozenset()),
]


def plants(fmt: Format) -> list[tuple[Kind, Call]]:
    """Every (kind, call) that `fmt` can carry, one line each; a format with no place for a secret gets
    one plain call (so it is audited too)."""
    out: list[tuple[Kind, Call]] = []
    for kind in KINDS:
        calls: list[Call] = []
        if kind.query and "query" in fmt.places:
            calls.append(Call(0, query=kind.query))
        if kind.query and "ref" in fmt.places:
            calls.append(Call(0, ref="https://app.example/cb" + kind.query))
        if kind.text and "text" in fmt.places:
            calls.append(Call(0, text=kind.text))
        if kind.header and ("headers" in fmt.places or ("captures" in fmt.places and kind.shaped)):
            calls.append(Call(0, headers=[kind.header]))
        if kind.member and "members" in fmt.places:
            calls.append(Call(0, members=[kind.member]))
        out.extend((kind, c) for c in calls)
    for day, (_, call) in enumerate(out):
        call.day = day
    return out or [(Kind("none", []), Call(0))]


@cache  # asked for every value of every row: made once per secret
def variants(text: str) -> frozenset[str]:
    """`text`, and how it may be written when it reaches a record: percent-encoded (once, twice), JSON-escaped."""
    once = quote(text, safe="")
    return frozenset({text, once, quote(once, safe=""), json.dumps(text)[1:-1]})


@cache
def pieces(secret: str) -> tuple[str, ...]:
    """Every 10 characters of `secret`, in order."""
    return tuple(secret[i : i + 10] for i in range(len(secret) - 9))


def leaks(value: str, secret: str) -> list[str]:
    """The pieces of `secret` found in `value`: itself, an encoded form, or any 10 characters of it."""
    found = [v for v in variants(secret) if v in value]
    found += [piece for piece in pieces(secret) if piece in value]
    return found


def test_no_planted_secret_reaches_the_database(tmp_path: Path) -> None:
    files: list[Path] = []
    planted: dict[str, tuple[Kind, str]] = {}
    for fmt in FORMATS:
        path = tmp_path / fmt.file
        lines = list(fmt.header)
        for kind, call in plants(fmt):
            lines.append(fmt.line(call))
            planted[f"{path}:{len(lines)}"] = (kind, lines[-1])
        path.write_text("\n".join(lines) + "\n")
        files.append(path)
    gateway_map = (
        '{ ts = "time", orig_h = "client.ip", orig_p = "client.port", server_name = "request.host", url = "request.url", '
        'method = "request.method", status = "response.code", message = "response.body", resp_h = "upstream.addr", resp_p = "upstream.port" }'
    )
    config = tmp_path / "auditor.toml"
    config.write_text(f'[[source]]\npath = "{tmp_path / "gateway.json"}"\nformat = "json"\nfields = {gateway_map}\n')
    db = tmp_path / "findings.db"

    result = CliRunner().invoke(cli, ["logs", *map(str, files), "--config", str(config), "--db", str(db)])
    assert result.exit_code in (0, 1), result.output

    secrets = {s: k.id for k, _ in planted.values() for s in k.secrets}
    with sqlite3.connect(db) as conn:
        evidence = dict(conn.execute("SELECT location, raw FROM evidence").fetchall())
        # Every planted line was a governed call and its redacted record is the evidence: the test is not vacuous.
        assert sorted(set(planted) - set(evidence)) == []
        assert [
            (kind.id, evidence[location]) for location, (kind, _) in planted.items() if kind.id != "none" and MARK not in evidence[location]
        ] == []
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        found = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    text = value.decode("latin-1") if isinstance(value, bytes) else value if isinstance(value, str) else ""
                    found += [(table, secrets[s], piece, text[:300]) for s in secrets for piece in leaks(text, s)]
    assert found == []
    # Nor anywhere in the files on disk (free pages, the write-ahead log).
    for path in tmp_path.glob("findings.db*"):
        data = path.read_bytes().decode("latin-1")
        assert [(path.name, secrets[s]) for s in secrets if leaks(data, s)] == []


def test_every_kind_is_planted_in_some_format() -> None:
    carried = {kind.id for fmt in FORMATS for kind, _ in plants(fmt)}
    assert carried >= {k.id for k in KINDS}


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.file != "gateway.json"], ids=lambda f: f.file)  # json is never detected
def test_each_line_maker_writes_the_format_of_its_sample(fmt: Format, tmp_path: Path) -> None:
    path = tmp_path / fmt.file
    path.write_text("\n".join([*fmt.header, fmt.line(Call(0))]) + "\n")

    def name(p: Path) -> str | None:
        log = LogFile.open(str(p), NEEDLES, None)
        log.close()
        return log.format.name if log.format else None

    assert name(path) == name(asset(f"logs/{fmt.file}")) is not None


def test_secrets_in_malformed_records_and_at_the_evidence_cut_are_redacted(tmp_path: Path) -> None:
    """A malformed record's reason quotes it (`bad URL '...'`): printed, stored and reported
    redacted. A key where a long record is cut for evidence (4,000 characters in) is redacted
    before the cut, not left as a shorter string that no longer looks like a key."""
    head = "1721639039.776 100 10.20.1.5 TCP_TUNNEL/200 1000 POST "
    tail = " - HIER_DIRECT/162.159.140.245 -\n"
    malformed = head + "https://[api.openai.com/v1?api_key=sk-proj-LEAK5LEAK5LEAK5LEAK5" + tail
    padding = "https://api.openai.com/v1/chat?q=" + "y" * (3982 - len(head) - len("https://api.openai.com/v1/chat?q=")) + "%20"
    long_line = head + padding + "AKIAQWERTYUIOPASDFGH" + tail
    assert long_line.index("AKIA") < 4000 < long_line.index("AKIA") + 20
    log = tmp_path / "access.log"
    log.write_text(malformed + long_line)
    db = tmp_path / "f.db"
    audited = CliRunner().invoke(cli, ["logs", str(log), "--db", str(db)])
    assert audited.exit_code in (0, 1), audited.output
    assert f"skipped 1 malformed: bad URL 'https://[api.openai.com/v1?api_key={MARK}'" in audited.output
    reported = CliRunner().invoke(cli, ["report", "--db", str(db), "--format", "md"])
    for text in (audited.output, db.read_bytes().decode("utf-8", "replace"), reported.output):
        assert "LEAK5" not in text and "QWERTYUIOPASDF" not in text
    assert "REDACTED" in reported.output  # Markdown escapes the brackets
