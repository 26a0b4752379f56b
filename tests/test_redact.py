"""auditor.redact, as a table: each kind of secret a log record can carry, where it is found (by name,
by shape, after decoding), and what the evidence keeps around it."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from auditor.redact import MARK, redact

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMtY2hhdCIsImV4cCI6MTcyMTA0MDAwMH0.k3Zq9pLxW2mR7tYv4NcB8sHd1FgJ0aEoUiKy6TrQw5E"
JWT_PARTS = ["eyJzdWIiOiJzdmMtY2hhdCIsImV4cCI6MTcyMTA0MDAwMH0", "k3Zq9pLxW2mR7tYv4NcB8sHd1FgJ0aEoUiKy6TrQw5E"]
OPENAI = "sk-proj-Xk3v9QaZ8mT2LwR7pN4cY1uB6eHdJfGs"
ANTHROPIC = "sk-ant-api03-Qm8vT2xLp9Rz4Wk7Yc1Nb6Hd3Jf5Gs0A"
GOOGLE = "AIzaSyD3k9XqL2mP8vR7tW1zN4cB6hJ0fG5sY2e"
AWS_ID = "AKIAZ7QX3LMN4PRS8TVW"
AWS_TEMP_ID = "ASIAQ2WX4ER6TY8UI0OP"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY9Kq2Lm7Np4"
AWS_SESSION = "FwoGZXIvYXdzEJr//////////wEaDH7kQ2mN9pL4xR8vZyKrAT3bX6cW1"
SIG_HEX = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
GITHUB = "ghp_R4nd0mT0k3nV4lu3Xq9Lm2Pz8Wk5Yc1Nb6Hd3"
SLACK = "xoxb-2048-4096-Qm8vT2xLp9Rz4Wk7Yc1Nb6Hd"
RANDOM = "q9Lm2Pz8Wk5Yc1Nb6Hd3Jf7TrX4vB0aE"
BASIC = "YWxpY2U6czNjcmV0LXBhc3M="
SQUID = "1721005931.733   1204 10.30.2.7 TCP_MISS/200 1873 POST https://api.openai.com/v1/chat/completions{q} - HIER_DIRECT/162.159.140.245 application/json"
NGINX = '10.20.1.5 - - [15/Jul/2024:09:10:12 +0000] "POST http://api.openai.com/v1/chat/completions{q} HTTP/1.1" 200 1820 "{ref}" "{ua}"'


def squid(query: str = "", headers: str = "") -> str:
    """A Squid native line for an ssl-bumped call, with a query and `log_mime_hdrs` request headers."""
    line = SQUID.format(q=query)
    return line + (f" [Host: api.openai.com\\r\\n{headers}] [HTTP/1.1 200 OK\\r\\n\\r\\n]" if headers else "")


def nginx(query: str = "", ref: str = "-", ua: str = "curl/8.5.0") -> str:
    """An nginx combined line for a call through a forward proxy."""
    return NGINX.format(q=query, ref=ref, ua=ua)


# (record, secrets that must be gone, text the evidence keeps)
CASES = [
    # Found by name: query, fragment and form parameters.
    pytest.param(squid("?limit=5&api_key=Qm8vT2xLp9Rz"), ["Qm8vT2xLp9Rz"], ["?limit=5&api_key=[REDACTED] - HIER_DIRECT"], id="query-api_key"),
    pytest.param(squid("?openai_api_key=Qm8vT2xLp9Rz"), ["Qm8vT2xLp9Rz"], ["?openai_api_key=[REDACTED] "], id="query-prefixed-key-name"),
    pytest.param(
        squid("?client_id=chat&client_secret=Qm8vT2xLp9Rz"), ["Qm8vT2xLp9Rz"], ["?client_id=chat&client_secret=[REDACTED] "], id="query-client_secret"
    ),
    pytest.param(squid("?api%5Fkey=Qm8vT2xLp9Rz"), ["Qm8vT2xLp9Rz"], ["?api%5Fkey=[REDACTED] "], id="query-percent-encoded-name"),
    pytest.param(squid("?api%255Fkey=Qm8vT2xLp9Rz"), ["Qm8vT2xLp9Rz"], ["?api%255Fkey=[REDACTED] "], id="query-double-encoded-name"),
    pytest.param(squid("?x=1&api_key%3DQm8vT2xLp9Rz"), ["Qm8vT2xLp9Rz"], ["?x=1&api_key%3D[REDACTED] "], id="query-encoded-equals"),
    pytest.param(
        nginx(ref="https://app.example/cb#access_token=Qm8vT2xLp9Rz&token_type=bearer&expires_in=3600"),
        ["Qm8vT2xLp9Rz"],
        ["#access_token=[REDACTED]&token_type=bearer&expires_in=3600"],
        id="fragment-access_token",
    ),
    pytest.param(squid("?user=bob&password=hunter2%21&remember=1"), ["hunter2"], ["&password=[REDACTED]&remember=1"], id="query-password"),
    # Found by a hostile pass: bracketed form names, and names that say secret without a usual word.
    pytest.param(
        squid("?password[]=hunter2xyz&user[password]=hunter3xyz&user[name]=bob"),
        ["hunter2xyz", "hunter3xyz"],
        ["user[name]=bob"],
        id="query-bracketed-form-names",
    ),
    pytest.param(
        squid("?refresh=Rt9vQ2xLp&otp=493817&pin=7731&client_assertion=eyJhbGc.xyz&SAMLResponse=PHNhbWw6QXNzZXJ0aW9u"),
        ["Rt9vQ2xLp", "493817", "7731", "PHNhbWw6QXNzZXJ0aW9u"],
        ["?refresh=[REDACTED]&otp=[REDACTED]"],
        id="query-refresh-otp-pin-saml",
    ),
    pytest.param(nginx("?passwd=correct+horse+battery"), ["correct", "horse", "battery"], ["?passwd=[REDACTED] HTTP/1.1"], id="query-passwd-plus"),
    pytest.param(
        squid("?sv=2022-11-02&se=2024-07-16T09%3A10%3A11Z&sp=r&sig=Qm8vT2xLp9Rz%2BWk7Yc1N%3D"),
        ["Qm8vT2xLp9Rz", "Wk7Yc1N"],
        ["?sv=2022-11-02&se=2024-07-16T09%3A10%3A11Z&sp=r&sig=[REDACTED] "],
        id="query-azure-sas-sig",
    ),
    pytest.param(
        squid(
            f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AWS_TEMP_ID}%2F20240715%2Fus-east-1%2Fs3%2Faws4_request"
            f"&X-Amz-Date=20240715T091011Z&X-Amz-Expires=3600&X-Amz-Security-Token={quote(AWS_SESSION, safe='')}"
            f"&X-Amz-SignedHeaders=host&X-Amz-Signature={SIG_HEX}"
        ),
        [AWS_TEMP_ID, "FwoGZXIvYXdzEJr", "wEaDH7kQ2mN9pL4xR8vZyKrAT3bX6cW1", SIG_HEX],
        [
            (
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[REDACTED]&X-Amz-Date=20240715T091011Z&X-Amz-Expires=3600"
                "&X-Amz-Security-Token=[REDACTED]&X-Amz-SignedHeaders=host&X-Amz-Signature=[REDACTED] "
            )
        ],
        id="query-aws-presigned",
    ),
    pytest.param(
        squid("?next=https%3A%2F%2Fapp.example%2Fcb%3Faccess_token%3DQm8vT2xLp9Rz%26state%3D1"),
        ["Qm8vT2xLp9Rz"],
        ["?next=https%3A%2F%2Fapp.example%2Fcb%3Faccess_token%3D[REDACTED]%26state%3D1 "],
        id="query-url-inside-a-parameter",
    ),
    pytest.param(
        squid("?next=https%253A%252F%252Fapp.example%252Fcb%253Ftoken%253DQm8vT2xLp9Rz"),
        ["Qm8vT2xLp9Rz"],
        ["%253Ftoken%253D[REDACTED] "],
        id="query-double-encoded-url-inside-a-parameter",
    ),
    pytest.param(
        squid("?next=https%3A%2F%2Fsvc%3Apw0rd%40app.example%2F"),
        ["pw0rd", "svc%3A"],
        ["?next=https%3A%2F%2F[REDACTED]%40app.example%2F "],
        id="query-encoded-userinfo",
    ),
    pytest.param(
        squid().replace("https://api", "https://svc:pw0rd@api"), ["pw0rd", "svc:"], ["POST https://[REDACTED]@api.openai.com/v1/"], id="url-userinfo"
    ),
    # Found by shape in a parameter whose name says nothing.
    pytest.param(squid(f"?state={JWT}&x=1"), JWT_PARTS, ["?state=[REDACTED]&x=1 "], id="query-jwt"),
    pytest.param(squid(f"?q={JWT.replace('.', '%2E')}"), JWT_PARTS, ["?q=[REDACTED] "], id="query-jwt-encoded-dots"),
    pytest.param(squid(f"?x={OPENAI}"), [OPENAI, "Xk3v9QaZ8mT2"], ["?x=[REDACTED] "], id="query-openai-key"),
    pytest.param(squid(f"?ref={RANDOM}&page=2"), [RANDOM, "q9Lm2Pz8Wk5Y"], ["?ref=[REDACTED]&page=2 "], id="query-random-value"),
    pytest.param(squid(f"?h={SIG_HEX}"), [SIG_HEX], ["?h=[REDACTED] "], id="query-long-hex"),
    pytest.param(json.dumps({"signature": f"v0={SIG_HEX}", "note": "x"}), [SIG_HEX], ['"signature": "[REDACTED]"'], id="json-signature-by-name"),
    # Found by name: headers, in Squid's log_mime_hdrs block and inline.
    pytest.param(
        squid(headers=f"Authorization: Bearer {OPENAI}\\r\\nContent-Type: application/json\\r\\n"),
        [OPENAI, "Xk3v9QaZ8mT2"],
        [r"Authorization: [REDACTED]\r\nContent-Type: application/json\r\n"],
        id="squid-authorization",
    ),
    pytest.param(
        squid(headers="Cookie: __cf_bm=Zm9vYmFyYmF6; session=c2VjcmV0LXNlc3Npb24\\r\\n"),
        ["Zm9vYmFyYmF6", "c2VjcmV0LXNlc3Npb24"],
        [r"[Host: api.openai.com\r\nCookie: [REDACTED]\r\n]"],
        id="squid-cookie",
    ),
    pytest.param(
        squid(headers="Accept: */*\\r\\n") + " [HTTP/1.1 200 OK\\r\\nSet-Cookie: __Secure-sid=c2VjcmV0LXNlc3Npb24; Path=/; HttpOnly\\r\\n]",
        ["c2VjcmV0LXNlc3Npb24"],
        [r"Set-Cookie: [REDACTED]\r\n]"],
        id="squid-set-cookie",
    ),
    pytest.param(
        squid(headers=f"X-Amz-Security-Token: {AWS_SESSION}\\r\\n"),
        ["FwoGZXIvYXdzEJr", "wEaDH7kQ2mN9pL4xR8vZyKrAT3bX6cW1"],
        [r"X-Amz-Security-Token: [REDACTED]\r\n"],
        id="squid-amz-security-token",
    ),
    pytest.param(
        squid(
            headers=f"Authorization: AWS4-HMAC-SHA256 Credential={AWS_ID}/20240715/us-east-1/bedrock/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={SIG_HEX}\\r\\nX-Amz-Date: 20240715T091011Z\\r\\n"
        ),
        [AWS_ID, SIG_HEX],
        [r"Authorization: [REDACTED]\r\nX-Amz-Date: 20240715T091011Z\r\n"],
        id="squid-aws-sigv4",
    ),
    pytest.param(
        squid(
            headers='Proxy-Authorization: Digest username="alice", realm="proxy", nonce="dcd98b7102dd2f0e", '
            'response="6629fae49393a05397450978507c4ef1"\\r\\n'
        ),
        ["alice", "6629fae49393a05397450978507c4ef1"],
        [r"Proxy-Authorization: [REDACTED]\r\n"],
        id="squid-digest",
    ),
    pytest.param(
        squid(headers=f"x-goog-api-key: {GOOGLE}\\r\\nanthropic-version: 2023-06-01\\r\\n"),
        [GOOGLE],
        [r"x-goog-api-key: [REDACTED]\r\nanthropic-version: 2023-06-01\r\n"],
        id="squid-goog-api-key",
    ),
    pytest.param(
        nginx(ua="curl/8.5.0 Cookie: sid=c2VjcmV0LXNlc3Npb24; theme=dark"),
        ["c2VjcmV0LXNlc3Npb24"],
        ['"curl/8.5.0 Cookie: [REDACTED]"'],
        id="inline-cookie-header",
    ),
    # Found by shape anywhere.
    pytest.param(nginx(ua=f"app/1.0 key={ANTHROPIC}"), [ANTHROPIC, "Qm8vT2xLp9Rz"], ["key=[REDACTED]"], id="anthropic-key-by-name"),
    pytest.param(nginx(ua=f"app/1.0 ({ANTHROPIC})"), [ANTHROPIC, "api03-Qm8vT2xLp9Rz"], [f"app/1.0 (sk-{MARK})"], id="anthropic-key-by-shape"),
    pytest.param(nginx(ua=f"app/1.0 {GOOGLE}"), [GOOGLE, "SyD3k9XqL2mP"], [f"app/1.0 {MARK}"], id="google-key"),
    pytest.param(
        nginx(ua=f"boto3 {AWS_ID} aws_secret_access_key={AWS_SECRET}"),
        [AWS_ID, AWS_SECRET, "wJalrXUtnFEMI"],
        [f"boto3 {MARK} aws_secret_access_key={MARK}"],
        id="aws-key-pair",
    ),
    pytest.param(nginx(ua=f"gh {GITHUB}"), [GITHUB, "R4nd0mT0k3n"], [f"gh {MARK}"], id="github-token"),
    pytest.param(nginx(ua=f"bot {SLACK}"), [SLACK, "Qm8vT2xLp9Rz"], [f"bot {MARK}"], id="slack-token"),
    pytest.param(nginx(ua=f"job {JWT}"), JWT_PARTS, [f"job {MARK}"], id="jwt-bare"),
    pytest.param(
        nginx(
            ua="t ya29.a0AfH6SMBq9Lm2Pz8Wk5Yc1Nb6 glpat-q9Lm2Pz8Wk5Yc1Nb6Hd3J hf_q9Lm2Pz8Wk5Yc1Nb6Hd3Jf7TrX4vB0aEq "
            "xapp-1-A0Q9Lm2Pz8Wk5Yc1 sk_live_q9Lm2Pz8Wk5Yc1Nb6 github_pat_11AB2CD3E0q9Lm2Pz8Wk5Yc1Nb6Hd3"
        ),
        ["a0AfH6SMBq9Lm2Pz8Wk5", "q9Lm2Pz8Wk5Yc1Nb6Hd3J", "A0Q9Lm2Pz8Wk5Yc1", "live_q9Lm2Pz8Wk5Yc1Nb6", "11AB2CD3E0q9Lm2Pz8Wk5"],
        [f'"t {MARK} {MARK} {MARK} {MARK} {MARK} {MARK}"'],
        id="other-provider-tokens",
    ),
    pytest.param(
        squid(";jsessionid=A1B2C3D4E5?pass=hunter2&pw=hunter3"),
        ["A1B2C3D4E5", "hunter2", "hunter3"],
        [f";jsessionid={MARK}?pass={MARK}&pw={MARK} "],
        id="matrix-session-and-short-password-names",
    ),
    pytest.param(nginx(ua=f"job {JWT[:60]}"), [JWT[40:60]], [f"job {MARK}"], id="jwt-cut-short"),
    pytest.param(
        f"Jul 15 09:10:11 gw1 haproxy[2211]: 10.20.1.5:51012 [15/Jul/2024:09:10:11.123] egress-in egress/openai 0/0/1/140/141 200 "
        f'2210 - - ---- 3/3/1/1/0 0/0 {{api.openai.com|Basic {BASIC}}} "POST /v1/chat/completions HTTP/1.1"',
        [BASIC, "YWxpY2U6czNjcmV0"],
        [f"{{api.openai.com|Basic {MARK}}}", '"POST /v1/chat/completions HTTP/1.1"'],
        id="haproxy-basic",
    ),
    pytest.param(
        f"... {{api.openai.com|Bearer {OPENAI}}} ...",
        [OPENAI, "Xk3v9QaZ8mT2"],
        [f"{{api.openai.com|Bearer sk-{MARK}}}"],
        id="haproxy-bearer-keeps-sk",
    ),
    pytest.param(
        "... {api.openai.com|__Secure-sid=c2VjcmV0LXNlc3Npb24; Path=/} ...",
        ["c2VjcmV0LXNlc3Npb24"],
        [f"{{api.openai.com|__Secure-sid={MARK}; Path=/}}"],
        id="captured-cookie-by-its-name",
    ),
    pytest.param(f"... {{api.openai.com|__cf_bm={RANDOM}}} ...", [RANDOM], [f"{{api.openai.com|__cf_bm={MARK}}}"], id="captured-cookie-random-value"),
    # JSON members, escaped names and values, JSON inside JSON.
    pytest.param(
        json.dumps({"authority": "api.openai.com", "client_secret": "Qm8vT2xLp9Rz", "path": "/v1/chat/completions"}),
        ["Qm8vT2xLp9Rz"],
        ['"client_secret": "[REDACTED]"', '"authority": "api.openai.com"'],
        id="json-client_secret",
    ),
    pytest.param(
        '{"host":"api.openai.com","api\\u005fkey":"Qm8vT2xLp9Rz"}', ["Qm8vT2xLp9Rz"], ['"api\\u005fkey":"[REDACTED]"'], id="json-escaped-name"
    ),
    pytest.param(
        '{"host":"api.openai.com","note":"sk\\u002dproj\\u002dXk3v9QaZ8mT2LwR7pN4c"}',
        ["Xk3v9QaZ8mT2", "LwR7pN4c"],
        ['"note":"sk\\u002d[REDACTED]"'],
        id="json-escaped-key-shape",
    ),
    pytest.param(
        json.dumps({"message": json.dumps({"authorization": "Token Qm8vT2xLp9Rz", "host": "api.openai.com"})}),
        ["Qm8vT2xLp9Rz"],
        ['\\"host\\": \\"api.openai.com\\"'],
        id="json-inside-json",
    ),
    pytest.param(
        json.dumps({"Cookies": {"__cf_bm": "Zm9vYmFyYmF6", "sid": "c2VjcmV0"}, "RequestHeaders": {"x-api-key": ANTHROPIC}}),
        ["Zm9vYmFyYmF6", "c2VjcmV0", ANTHROPIC],
        ['"Cookies": "[REDACTED]"', '"RequestHeaders": {"x-api-key": "[REDACTED]"}'],
        id="json-cookie-object-and-nested-header",
    ),
    pytest.param(
        json.dumps({"request_headers": [{"name": "Host", "value": "api.openai.com"}, {"name": "Set-Cookie", "value": "sid=c2VjcmV0"}]}),
        ["c2VjcmV0"],
        ['{"name": "Set-Cookie", "value": "[REDACTED]"}', '{"name": "Host", "value": "api.openai.com"}'],
        id="json-name-value-header",
    ),
    pytest.param(
        json.dumps({"uri": f"/v1/models?token={RANDOM}", "password": "hunter2 with spaces"}),
        [RANDOM, "hunter2"],
        ['"uri": "/v1/models?token=[REDACTED]"', '"password": "[REDACTED]"'],
        id="json-uri-and-password",
    ),
]


@pytest.mark.parametrize("text, secrets, kept", CASES)
def test_secrets_are_gone_and_the_evidence_stays(text: str, secrets: list[str], kept: list[str]) -> None:
    cleaned = redact(text)
    for secret in secrets:
        assert secret in text or quote(secret, safe="") in text or secret in text.replace("\\u002d", "-").replace("%2E", ".")
        assert secret not in cleaned
        assert quote(secret, safe="") not in cleaned
    for piece in kept:
        assert piece in cleaned, cleaned
    assert redact(cleaned) == cleaned  # a second pass finds nothing more (and never redacts the mark)


@pytest.mark.parametrize("text, secrets, kept", [c for c in CASES if c.values[0].startswith("{")])
def test_json_stays_json(text: str, secrets: list[str], kept: list[str]) -> None:
    json.loads(redact(text))


EVIDENCE = [
    pytest.param(
        "1721005923.412 141516 10.20.1.5 TCP_TUNNEL/200 29012 CONNECT api.openai.com:443 - HIER_DIRECT/162.159.140.245 -", id="squid-connect"
    ),
    pytest.param(
        squid(
            "?model=gpt-4o-mini-2024-07-18&max_tokens=100&user=10.20.1.5&ts=1721034611"
            "&request_id=4f2c1a9e-1b7d-4c1e-9a51-0c6e2f3d4b5a&since=2024-07-15T09:10:11Z&file=/v1/files/report-2024.jsonl"
        ),
        id="query-of-ordinary-values",
    ),
    pytest.param(
        squid(headers="Host: api.openai.com\\r\\nOpenAI-Organization: org-acme\\r\\nUser-Agent: OpenAI/Python 1.35.3\\r\\n"),
        id="squid-ordinary-headers",
    ),
    pytest.param(
        '{"event":{"alert":{"action":"blocked","signature":"deny TLS to unlisted domains","signature_id":2},'
        '"tls":{"sni":"api.openai.com"},"src_ip":"10.20.1.6","timestamp":"2024-07-15T09:10:13.120004+0000"}}',
        id="alert-signature",
    ),
    pytest.param(
        '{"alert":{"action":"allowed","signature_id":5,"rev":0,"signature":"test_tcp","category":"","severity":1}}', id="alert-signature-one-word"
    ),
    pytest.param(
        '{":authority":"api.openai.com","authority":"api.openai.com","x-request-id":"3bbc0252-2d5c-49fe-bd89-104e9b61770b",'
        '"usage":{"prompt_tokens":12,"total_tokens":40}}',
        id="authority-and-counts",
    ),
    pytest.param(
        "1721034611.123456\tCHhAvVGS1DHFjwGM9\t10.20.1.5\t51012\t162.159.140.245\t443\tTLSv13\tTLS_AES_256_GCM_SHA384\tx25519\t"
        "api.openai.com\tF\t-\t-\tT\tCsiI\t7c4cb8ef8d84a20171b3ee521b2be4d973b5fcf9cfbd1786e5581c7fed14da47\t(empty)\tT\tok",
        id="zeek-ssl",
    ),
    pytest.param(
        '{"id":"1721005926412000000000000003","deploymentId":"dpl_5Qw9vKcT2mJr8YbN3xLh7FgA1dEs","ja3Digest":"769c83e5b5b8f7a3e1c2d4f6a8b0c2d4",'
        '"traceId":"1b02cd14bb8642fd092bc23f00000003","destination":"https://api.openai.com/v1/chat/completions","executionRegion":"hkg1"}',
        id="vercel-ids",
    ),
    pytest.param(nginx(ua="Mozilla/5.0 (basic authentication test; task-runner)"), id="prose"),
]


@pytest.mark.parametrize("text", EVIDENCE)
def test_evidence_without_secrets_is_kept_as_read(text: str) -> None:
    assert redact(text) == text
