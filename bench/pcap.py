#!/usr/bin/env python3
"""Throughput, peak memory and naming of `region-auditor pcap --events` on a generated capture, next to tshark.

    .venv/bin/python bench/pcap.py [--packets 1200000] [--dir /tmp/ra-bench] [--doh-share 0.1] [--no-tshark]
                                   [--no-floor] [--auditor PATH] [--generate-only]

Generates (once, then reuses; about 20 s and 100 MB for the default size) an Ethernet pcap of
`--packets` packets: about 22k TCP and QUIC flows interleaved as on a busy link, mostly ~1400-byte
TLS application-data segments in both directions and their ACKs; flows the capture joins
mid-connection; QUIC v1 client Initials (one or two per hello, really encrypted with the keys of
their Destination Connection ID), the server's Initial and 1-RTT packets; about 15% IPv6; and
TLS ClientHellos as clients of five styles write them:
- Chrome (40% of TLS/TCP hellos, 80% of QUIC ones): GREASE values in cipher suites, extensions,
  groups, versions and key shares, the extensions shuffled between a leading and a trailing
  GREASE one, mostly an X25519MLKEM768 share (such hellos span 2 TCP segments or 2 QUIC
  Initials), and an encrypted_client_hello extension (0xfe0d) on every connection: GREASE (type
  outer, HPKE suite, random config_id, 32-byte enc, 144-240 random payload bytes) unless the name
  publishes an ECH config;
- Firefox (15%; 20% of QUIC): NSS's order and extensions, a GREASE ECH extension on half the
  clients (ECH on) and none on the others;
- Python's ssl and curl on OpenSSL, Go's crypto/tls (45%): no ECH; 2% of them send no SNI.
Names are drawn per style (browsers visit chatgpt.com, platform.openai.com, cdn.openai.com and
common sites, and call api.openai.com from the playground; libraries call the governed APIs) with
look-alike decoys and a long tail. Shared addresses: one CDN address (and one IPv6 address)
serves api.openai.com, platform.openai.com, cdn.openai.com and chatgpt.com, another four Google
names, a third three names of an ECH front. Real ECH: api.openai.com (ECH public_name
cloudflare-ech.com) and the ECH front's names (public_name public.ech-front.example, known only
from DNS) publish an ECHConfig in their DNS HTTPS record (RFC 9460, the ech SvcParam holding an
ECHConfigList per draft-ietf-tls-esni); an ECH-capable client's hello to them has that public name
as its outer SNI and an ECH extension with the config's config_id. DNS: each client (400 IPv4 and
400 IPv6 addresses) resolves a name (A or AAAA, and the HTTPS record when a browser asks) before
its first connection to it in the capture, the answers addressed to that client, and then uses its
cache; the browsers of `--doh-share` of the clients use DNS over HTTPS, so the capture shows none
of their lookups (their libraries' lookups it does show); other lookups no connection follows are
mixed in. DNS messages and all frames are written with struct (frames from a few templates
patched per flow). The generator keeps the ground truth of every connection whose hello it wrote
whole (client address and port, the true name, the SNI sent, client style, GREASE/real/no ECH,
DoH, and the names that client had resolved to the server's address by then).

Then it runs, each from a cold process, on the same file in the same run:
  region-auditor pcap --events FILE
  tshark -r FILE -d udp.port==443,quic -Y 'tls.handshake.type==1' -T fields
         -e ip.src -e ipv6.src -e tcp.srcport -e udp.srcport -e tls.handshake.extensions_server_name
  (floors) a bare loop over scapy's RawPcapReader (the issue's reference; needs the test extra) and over
  struct records
and prints wall and CPU time, packets/s (by wall time) and peak RSS for each command alone, the
ratios to tshark by wall and by CPU time, and the load average (the wall-time ratio moves with it).
The speed and memory goal (>= 10x tshark, < 100 MB) is printed, not enforced.

Checks (exit 1 when one fails, else 0):
- sets of names, as before: the `sni` names region-auditor gives equal the SNIs of the hellos
  without ECH the generator wrote whole, TLS/TCP and QUIC apart; tshark's SNIs equal all the SNIs
  the generator wrote whole (outer names of real ECH included);
- per connection, joined on (client address, client port): region-auditor's name against
  tshark's SNI. It prints the agreements by rule, the hellos without SNI that region-auditor names
  (from DNS), and the disagreements grouped by region-auditor's `name_source` with the names given
  and a few examples. Fails when a disagreement has a rule other than `ech-dns` (only real ECH may
  be named otherwise than its SNI) or when only one of them read a connection;
- per connection against the ground truth: fails when a name from DNS (`ech-dns`, or `dns` for a
  hello without SNI) is not the true name, or when a real-ECH call is not named by it although this
  client got, in the capture, the HTTPS record with the ECH config of its true name. A real-ECH
  call whose lookup the capture does not show (DoH, or a browser using a name another program on
  the client resolved without its HTTPS record) keeps its outer name; that is printed, not failed.

Without tshark on PATH it runs `apt-get install -y tshark` when root, else says how to install it
and reports region-auditor alone (and its ground-truth checks).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import importlib.util
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

GEN_VERSION = 3
"""Bump when the generator changes: the cached capture's name carries it."""

MAC_CLIENT, MAC_SERVER = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
T0 = 1721638800  # 2024-07-22 09:00:00 UTC
MSS = 1400
CONCURRENT = 1000
"""Flows open at once; each packet comes from one of them, picked at random."""

OPENAI_CDN = ["api.openai.com", "platform.openai.com", "cdn.openai.com", "chatgpt.com"]
"""Names one CDN address answers for: browser visits to the web app share it with API calls."""
GOOGLE_FRONT = ["www.google.com", "www.youtube.com", "fonts.gstatic.com", "update.googleapis.com"]
ECH_FRONT = ["blog.ech-front.example", "shop.ech-front.example", "docs.ech-front.example"]
SHARED = {name: group[0] for group in (OPENAI_CDN, GOOGLE_FRONT, ECH_FRONT) for name in group}
"""Name -> the name whose addresses it shares."""
ECH_SITES = {"api.openai.com": "cloudflare-ech.com", **{name: "public.ech-front.example" for name in ECH_FRONT}}
"""Names that publish an ECH config (in the ech parameter of their DNS HTTPS record), with its
public_name: an ECH-capable client's hello to them is real ECH, its outer SNI that public name."""
WEB_APP = ["chatgpt.com", "chatgpt.com", "platform.openai.com", "cdn.openai.com"]
GOVERNED = ["api.openai.com", "eu.api.openai.com", "us.api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com"]
DECOYS = ["api.openai.com.evil.example", "notapi.openai.community", "api-openai.com", "api.openai.co"]
COMMON = ["www.google.com", "github.com", "pypi.org", "files.pythonhosted.org", "s3.amazonaws.com", "slack.com",
          "www.youtube.com", "login.microsoftonline.com", "outlook.office365.com", "registry.npmjs.org",
          "objects.githubusercontent.com", "update.googleapis.com", "api.github.com", "fonts.gstatic.com",
          "cdn.jsdelivr.net", "www.wikipedia.org", "dl.google.com", "teams.microsoft.com", "zoom.us", "api.stripe.com"]
UNSHARED = [n for n in COMMON if n not in SHARED]
TAIL = [f"{p}{i}.{d}" for i in range(600) for p, d in (("cdn", "example-cdn.net"), ("edge", "fastedge.example"),
                                                         ("img", "media.example.org"), ("api", "saas.example.com"),
                                                         ("static", "assets.example.io"))]
KINDS = ("syn", "synack", "ack3", "hello", "quic-initial", "data", "ack", "fin", "quic-1rtt", "dns")
HANDSHAKE = {"syn", "synack", "ack3", "hello", "quic-initial"}
STYLES = {"chrome": 0.40, "firefox": 0.15, "python": 0.20, "go": 0.10, "curl": 0.15}
"""Client styles of TLS-over-TCP hellos and their shares; QUIC hellos are Chrome's (80%) and Firefox's."""
BROWSERS = ("chrome", "firefox")
RESOLVER4, RESOLVER6 = bytes([10, 0, 0, 53]), bytes.fromhex("20010db8005300000000000000000053")


def pick_name(rng: random.Random, style: str = "") -> str:
    """A server name as a client of `style` (a browser, a library, or "" for any) would ask for."""
    r = rng.random()
    if style in BROWSERS:
        if r < 0.12:
            return rng.choice(WEB_APP)
        if r < 0.14:
            return "api.openai.com"  # the playground calls the API from the browser
        if r < 0.155:
            return rng.choice(ECH_FRONT)
        if r < 0.16:
            return rng.choice(DECOYS)
        if r < 0.55:
            return rng.choice(COMMON)
        return rng.choice(TAIL)
    if style:
        if r < 0.30:
            return rng.choice(GOVERNED)
        if r < 0.32:
            return rng.choice(DECOYS)
        if r < 0.70:
            return rng.choice(COMMON)
        return rng.choice(TAIL)
    if r < 0.03:
        return rng.choice(GOVERNED)
    if r < 0.04:
        return rng.choice(DECOYS)
    if r < 0.5:
        return rng.choice(COMMON)
    return rng.choice(TAIL)


def server_addresses(name: str) -> tuple[bytes, bytes]:
    """A stable public-looking IPv4 and IPv6 address per name; one pair per SHARED group."""
    name = SHARED.get(name, name)
    h = hashlib.sha256(name.encode()).digest()
    if name == "api.openai.com":
        return bytes([162, 159, 140, 245]), bytes.fromhex("2606470000000000000000000000a29f")
    return bytes([104, 16 + h[0] % 16, h[1], 1 + h[2] % 254]), bytes.fromhex("2606470000") + h[3:14]


def ip_text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


# --- TLS ------------------------------------------------------------------------------------

def _ext(kind: int, data: bytes) -> bytes:
    return struct.pack("!HH", kind, len(data)) + data


def _vec(data: bytes, size: int = 2) -> bytes:
    return len(data).to_bytes(size, "big") + data


def _u16s(values: list[int]) -> bytes:
    return b"".join(struct.pack("!H", v) for v in values)


GREASE = [0x0A0A + 0x1010 * i for i in range(16)]
"""RFC 8701 values, as Chrome scatters them in suites, extensions, groups, versions and key shares."""
MLKEM, X25519, P256, P384, P521 = 0x11EC, 0x001D, 0x0017, 0x0018, 0x0019
ECH = 0xFE0D
SIGALGS_CHROME = _vec(bytes.fromhex("040308040401050308050501080606010201"))
SIGALGS_FIREFOX = _vec(bytes.fromhex("0403050306030804080508060401050106010203020105"))
SIGALGS_OPENSSL = _vec(bytes.fromhex("040305030603080708080809080a080b080408050806040105010601030303010302040205020602"))
SIGALGS_GO = _vec(bytes.fromhex("08040403080705030805060308060401050106010503060302010203"))


def ech_extension(rng: random.Random, config_id: int | None = None, payload: int = 0) -> bytes:
    """An outer encrypted_client_hello extension (draft-ietf-tls-esni section 5): type outer,
    HPKE suite (HKDF-SHA256 with AES-128-GCM or ChaCha20-Poly1305), config_id, a 32-byte X25519
    enc and a payload of random bytes. GREASE (config_id None) picks the config_id at random and
    a payload of 144-240 bytes as BoringSSL does; real ECH sends the server's config_id and the
    sealed inner hello."""
    cid = rng.getrandbits(8) if config_id is None else config_id
    size = payload or rng.choice((144, 176, 208, 240))
    return _ext(ECH, b"\x00" + struct.pack("!HH", 1, rng.choice((1, 3))) + bytes([cid]) + _vec(rng.randbytes(32))
                + _vec(rng.randbytes(size)))


def ech_config(public_name: str, config_id: int, public_key: bytes) -> bytes:
    """One ECHConfig, version 0xfe0d (draft-ietf-tls-esni section 4): HpkeKeyConfig (config_id,
    KEM X25519, public key, cipher suites), maximum_name_length, public_name, no extensions."""
    suites = _vec(struct.pack("!HHHH", 1, 1, 1, 3))
    contents = bytes([config_id]) + struct.pack("!H", 0x0020) + _vec(public_key) + suites + b"\x00" + _vec(public_name.encode(), 1) + _vec(b"")
    return struct.pack("!H", ECH) + _vec(contents)


def _message(random_: bytes, session_id: bytes, suites: list[int], exts: list[bytes]) -> bytes:
    body = b"\x03\x03" + random_ + _vec(session_id, 1) + _vec(_u16s(suites)) + b"\x01\x00" + _vec(b"".join(exts))
    return b"\x01" + len(body).to_bytes(3, "big") + body


def _padded(exts: list[bytes], fixed: int, target: int = 512) -> list[bytes]:
    """BoringSSL and NSS pad a hello whose record would be 256-511 bytes to 512."""
    size = fixed + sum(map(len, exts))
    if 256 <= size + 4 < target:
        exts.append(_ext(21, b"\x00" * max(1, target - size - 4 - 4)))
    return exts


def _alpn(protocols: list[bytes]) -> bytes:
    return _ext(16, _vec(b"".join(_vec(p, 1) for p in protocols)))


def _transport_params(rng: random.Random) -> bytes:
    return _ext(0x39, b"\x01\x04\x80\x00\x75\x30" + b"\x04\x04\x80\xf0\x00\x00" + b"\x0f\x08" + rng.randbytes(8))


def chrome_hello(rng: random.Random, sni: str | None, *, big: bool, quic: bool, ech: bytes) -> bytes:
    """Chrome since 2024: GREASE in suites, extensions, groups, versions and key shares; an ML-KEM
    hybrid share when `big`; the extensions but the GREASE ones shuffled (Chrome 110+); an ECH
    extension on every connection (`ech`: GREASE or real)."""
    g = rng.sample(GREASE, 5)
    suites = [g[0], 0x1301, 0x1302, 0x1303] + ([] if quic else [0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035])
    groups = [g[1]] + [MLKEM] * big + [X25519, P256, P384]
    shares = struct.pack("!H", g[1]) + _vec(b"\x00")
    if big:
        shares += struct.pack("!H", MLKEM) + _vec(rng.randbytes(1216))
    shares += struct.pack("!H", X25519) + _vec(rng.randbytes(32))
    exts = [_ext(0x0017, b""), _ext(0xFF01, b"\x00"), _ext(10, _vec(_u16s(groups))), _ext(35, b""),
            _alpn([b"h3"] if quic else [b"h2", b"http/1.1"]), _ext(5, b"\x01\x00\x00\x00\x00"), _ext(13, SIGALGS_CHROME),
            _ext(18, b""), _ext(51, _vec(shares)), _ext(45, b"\x01\x01"), _ext(43, _vec(_u16s([g[2], 0x0304] + [0x0303] * (not quic)), 1)),
            _ext(27, b"\x02\x00\x02"), _ext(0x44CD, _vec(_vec(b"h3" if quic else b"h2", 1))), ech]
    if sni is not None:
        exts.append(_ext(0, _vec(b"\x00" + _vec(sni.encode()))))
    if quic:
        exts.append(_transport_params(rng))
    else:
        exts.append(_ext(11, b"\x01\x00"))
    rng.shuffle(exts)
    exts = [_ext(g[3], b"")] + exts + [_ext(g[4], b"\x00")]
    return _message(rng.randbytes(32), b"" if quic else rng.randbytes(32), suites, exts)


def firefox_hello(rng: random.Random, sni: str | None, *, big: bool, quic: bool, ech: bytes) -> bytes:
    """Firefox (NSS): no GREASE, a fixed extension order, delegated_credentials and
    record_size_limit; an ECH extension when ECH is on (`ech`, GREASE or real), none when off."""
    groups = [MLKEM] * big + [X25519, P256, P384, P521, 0x0100, 0x0101]
    shares = (struct.pack("!H", MLKEM) + _vec(rng.randbytes(1216))) if big else b""
    shares += struct.pack("!H", X25519) + _vec(rng.randbytes(32)) + struct.pack("!H", P256) + _vec(b"\x04" + rng.randbytes(64))
    exts = [] if sni is None else [_ext(0, _vec(b"\x00" + _vec(sni.encode())))]
    exts += [_ext(0x0017, b""), _ext(0xFF01, b"\x00"), _ext(10, _vec(_u16s(groups)))]
    if not quic:
        exts += [_ext(11, b"\x01\x00"), _ext(35, b"")]
    exts += [_alpn([b"h3"] if quic else [b"h2", b"http/1.1"]), _ext(5, b"\x01\x00\x00\x00\x00"),
             _ext(34, _vec(bytes.fromhex("04030503060302030804"))), _ext(18, b""), _ext(51, _vec(shares)),
             _ext(43, _vec(_u16s([0x0304] + [0x0303] * (not quic)), 1)), _ext(13, SIGALGS_FIREFOX), _ext(45, b"\x01\x01"),
             _ext(28, b"\x40\x01"), _ext(27, b"\x06\x00\x01\x00\x02\x00\x03")]
    if quic:
        exts.append(_transport_params(rng))
    if ech:
        exts.append(ech)
    suites = [0x1301, 0x1303, 0x1302] + ([] if quic else [0xC02B, 0xC02F, 0xCCA9, 0xCCA8, 0xC02C, 0xC030, 0xC00A, 0xC009, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035])
    session = b"" if quic else rng.randbytes(32)
    if not quic and not big:
        exts = _padded(exts, 4 + 2 + 32 + 1 + len(session) + 2 + 2 * len(suites) + 2 + 2)
    return _message(rng.randbytes(32), session, suites, exts)


OPENSSL_SUITES = [0x1302, 0x1303, 0x1301, 0xC02C, 0xC030, 0x009F, 0xCCA9, 0xCCA8, 0xCCAA, 0xC02B, 0xC02F, 0x009E, 0xC024,
                  0xC028, 0x006B, 0xC023, 0xC027, 0x0067, 0xC00A, 0xC014, 0x0039, 0xC009, 0xC013, 0x0033, 0x009D, 0x009C,
                  0x003D, 0x003C, 0x0035, 0x002F, 0x00FF]


def openssl_hello(rng: random.Random, sni: str | None, *, alpn: list[bytes]) -> bytes:
    """Python's ssl or curl on OpenSSL 3: the long TLS 1.2 suite list, encrypt_then_mac, X25519 only."""
    exts = [] if sni is None else [_ext(0, _vec(b"\x00" + _vec(sni.encode())))]
    exts += [_ext(11, b"\x03\x00\x01\x02"), _ext(10, _vec(_u16s([X25519, P256, 0x001E, P521, P384, 0x0100, 0x0101, 0x0102, 0x0103, 0x0104]))),
             _ext(35, b"")]
    if alpn:
        exts.append(_alpn(alpn))
    exts += [_ext(22, b""), _ext(0x0017, b""), _ext(13, SIGALGS_OPENSSL), _ext(43, _vec(_u16s([0x0304, 0x0303]), 1)),
             _ext(45, b"\x01\x01"), _ext(51, _vec(struct.pack("!H", X25519) + _vec(rng.randbytes(32))))]
    return _message(rng.randbytes(32), rng.randbytes(32), OPENSSL_SUITES, exts)


def go_hello(rng: random.Random, sni: str | None, *, big: bool) -> bytes:
    """Go's crypto/tls (1.24: X25519MLKEM768 by default when `big`)."""
    groups = [MLKEM] * big + [X25519, P256, P384, P521]
    shares = (struct.pack("!H", MLKEM) + _vec(rng.randbytes(1216))) if big else b""
    shares += struct.pack("!H", X25519) + _vec(rng.randbytes(32))
    exts = [] if sni is None else [_ext(0, _vec(b"\x00" + _vec(sni.encode())))]
    exts += [_ext(5, b"\x01\x00\x00\x00\x00"), _ext(10, _vec(_u16s(groups))), _ext(11, b"\x01\x00"), _ext(13, SIGALGS_GO),
             _ext(0xFF01, b"\x00"), _alpn([b"h2", b"http/1.1"]), _ext(18, b""), _ext(43, _vec(_u16s([0x0304, 0x0303]), 1)),
             _ext(51, _vec(shares)), _ext(0x0017, b""), _ext(45, b"\x01\x01")]
    suites = [0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC009, 0xC013, 0xC00A, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035,
              0xC012, 0x000A, 0x1301, 0x1302, 0x1303]
    return _message(rng.randbytes(32), rng.randbytes(32), suites, exts)


def client_hello(rng: random.Random, style: str, sni: str | None, *, big: bool, quic: bool, ech: bytes = b"") -> bytes:
    """A ClientHello handshake message (type 1, no record header) as a client of `style` sends it."""
    if style == "chrome":
        return chrome_hello(rng, sni, big=big, quic=quic, ech=ech)
    if style == "firefox":
        return firefox_hello(rng, sni, big=big, quic=quic, ech=ech)
    if style == "go":
        return go_hello(rng, sni, big=big)
    return openssl_hello(rng, sni, alpn=[b"http/1.1"] if style == "python" else [b"h2", b"http/1.1"])


def server_hello(seed: bytes) -> bytes:
    exts = _ext(43, b"\x03\x04") + _ext(51, struct.pack("!H", 0x001D) + _vec(seed[:32].ljust(32, b"\x00")))
    body = b"\x03\x03" + seed[:32].ljust(32, b"\x01") + b"\x00" + b"\x13\x01" + b"\x00" + _vec(exts)
    return b"\x02" + len(body).to_bytes(3, "big") + body


def record(ctype: int, body: bytes, legacy: bytes = b"\x03\x03") -> bytes:
    return bytes([ctype]) + legacy + _vec(body)


def _payload_table() -> bytes:
    """Encrypted-looking bytes with no byte a reader could take for the start of a ClientHello,
    an HTTP request or a SOCKS5 greeting (0x16, 0x05, ASCII letters): a flow joined mid-connection
    must name nothing, for every reader."""
    table = bytearray(range(256))
    for b in range(256):
        if b in (0x05, 0x16) or bytes([b]).isalpha():
            table[b] = b ^ 0x80
    return bytes(table)


_BODY = random.Random(7).randbytes(14_000 - 5).translate(_payload_table())
APP_RECORD = record(0x17, _BODY)  # 14,000 bytes: 10 full segments
PERIODIC = APP_RECORD * 2
R = len(APP_RECORD)


def stream_bytes(offset: int, n: int) -> bytes:
    """`n` bytes at `offset` of an endless stream of application-data records."""
    o = offset % R
    return PERIODIC[o : o + n]


# --- QUIC (RFC 9001 section 5, written here independently of auditor/sources/quic.py) -------

QUIC_V1_SALT = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")


def _expand(secret: bytes, label: str, length: int) -> bytes:
    full = b"tls13 " + label.encode()
    info = struct.pack("!H", length) + bytes([len(full)]) + full + b"\x00" + b"\x01"
    return hmac.new(secret, info, hashlib.sha256).digest()[:length]


def initial_keys(dcid: bytes, side: str) -> tuple[bytes, bytes, bytes]:
    secret = _expand(hmac.new(QUIC_V1_SALT, dcid, hashlib.sha256).digest(), f"{side} in", 32)
    return _expand(secret, "quic key", 16), _expand(secret, "quic iv", 12), _expand(secret, "quic hp", 16)


def _qvarint(value: int) -> bytes:
    return struct.pack("!H", 0x4000 | value) if value >= 64 else bytes([value])


def quic_initial(frames: bytes, dcid: bytes, scid: bytes, pn: int, keys: tuple[bytes, bytes, bytes]) -> bytes:
    """A protected v1 Initial padded to a 1200-byte datagram (RFC 9000 14.1)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, iv, hp = keys
    start = bytes([0xC1]) + b"\x00\x00\x00\x01" + _vec(dcid, 1) + _vec(scid, 1) + b"\x00"  # 2-byte packet number
    plain_len = 1200 - len(start) - 2 - 2 - 16
    frames = frames.ljust(plain_len, b"\x00")
    header = start + struct.pack("!H", 0x4000 | (plain_len + 16 + 2)) + pn.to_bytes(2, "big")
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    sealed = AESGCM(key).encrypt(nonce, frames, header)
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(sealed[2:18]) + enc.finalize()
    out = bytearray(header + sealed)
    out[0] ^= mask[0] & 0x0F
    pn_at = len(header) - 2
    out[pn_at] ^= mask[1]
    out[pn_at + 1] ^= mask[2]
    return bytes(out)


# --- frames ---------------------------------------------------------------------------------

class Conn:
    """One TCP or UDP conversation: builds its frames with the right addresses, ports and numbers."""

    __slots__ = ("v6", "proto", "eth_c", "eth_s", "c", "s", "cp", "sp", "seq_c", "seq_s", "ident")

    def __init__(self, v6: bool, proto: int, c: bytes, s: bytes, cp: int, sp: int, rng: random.Random) -> None:
        self.v6, self.proto, self.c, self.s, self.cp, self.sp = v6, proto, c, s, cp, sp
        etype = b"\x86\xdd" if v6 else b"\x08\x00"
        self.eth_c, self.eth_s = MAC_SERVER + MAC_CLIENT + etype, MAC_CLIENT + MAC_SERVER + etype
        self.seq_c, self.seq_s = rng.getrandbits(32), rng.getrandbits(32)
        self.ident = rng.getrandbits(16)

    def _ip(self, from_client: bool, l4: bytes) -> bytes:
        src, dst = (self.c, self.s) if from_client else (self.s, self.c)
        if self.v6:
            return (self.eth_c if from_client else self.eth_s) + struct.pack("!IHBB", 0x60000000, len(l4), self.proto, 64) + src + dst + l4
        self.ident = (self.ident + 1) & 0xFFFF
        return (self.eth_c if from_client else self.eth_s) + struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), self.ident, 0x4000, 64, self.proto, 0, src, dst) + l4

    def tcp(self, from_client: bool, flags: int, payload: bytes = b"") -> bytes:
        if from_client:
            seq, ack, sport, dport = self.seq_c, self.seq_s, self.cp, self.sp
            self.seq_c = (seq + len(payload) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
        else:
            seq, ack, sport, dport = self.seq_s, self.seq_c, self.sp, self.cp
            self.seq_s = (seq + len(payload) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
        if flags == 0x02:
            ack = 0
        return self._ip(from_client, struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 502, 0, 0) + payload)

    def udp(self, from_client: bool, payload: bytes) -> bytes:
        sport, dport = (self.cp, self.sp) if from_client else (self.sp, self.cp)
        return self._ip(from_client, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


# --- DNS (written by hand: RFC 1035 messages, RFC 9460 HTTPS records) ---------------------

def _qname(name: str) -> bytes:
    return b"".join(_vec(label.encode(), 1) for label in name.split(".")) + b"\x00"


def dns_query(ident: int, name: str, qtype: int) -> bytes:
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + _qname(name) + struct.pack("!HH", qtype, 1)


def dns_response(ident: int, name: str, qtype: int, answers: list[bytes]) -> bytes:
    """A response whose answers (rdata of type `qtype`) all name the question (a pointer to it)."""
    head = struct.pack("!HHHHHH", ident, 0x8180, 1, len(answers), 0, 0) + _qname(name) + struct.pack("!HH", qtype, 1)
    return head + b"".join(b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 300, len(rdata)) + rdata for rdata in answers)


def https_rdata(name: str, ech_key: tuple[int, bytes] | None) -> bytes:
    """An HTTPS record (RFC 9460) as a CDN serves it: priority 1, target ".", alpn h3/h2, address
    hints and, for a name in ECH_SITES, an ech parameter holding an ECHConfigList of one config."""
    s4, s6 = server_addresses(name)
    params = [(1, _vec(b"h3", 1) + _vec(b"h2", 1)), (4, s4)]
    if ech_key is not None:
        params.append((5, _vec(ech_config(ECH_SITES[name], *ech_key))))
    params.append((6, s6))
    return b"\x00\x01\x00" + b"".join(struct.pack("!H", key) + _vec(value) for key, value in params)


# --- flows ----------------------------------------------------------------------------------

Packet = tuple[str, bytes, "dict | tuple | None"]
"""(kind, frame, info): info is the connection's ground truth (a dict) on the frame that completes
its ClientHello, ("dns", client, [addresses], name, ech) on a DNS answer addressed to a client
(ech: an HTTPS record carrying an ECH config for the name)."""


class Generator:
    """Flows from 400 IPv4 and 400 IPv6 client addresses. A client resolves a name (A or AAAA;
    a browser also asks for the HTTPS record) before its first connection to it in the capture
    and uses its cache afterwards; the browsers of `doh_share` of the clients use DNS over HTTPS,
    so the capture shows none of their lookups (their libraries' lookups it does show)."""

    def __init__(self, seed: int = 42, doh_share: float = 0.1) -> None:
        self.rng = random.Random(seed)
        self.flow_id = 0
        self.clients4 = [bytes([10, 20 + i // 250, i % 250 // 10, 1 + i % 10 * 25]) for i in range(400)]
        self.clients6 = [bytes.fromhex("20010db8002000000000000000000000")[:14] + i.to_bytes(2, "big") for i in range(400)]
        self.doh = set(random.Random(seed + 1).sample(range(400), int(400 * doh_share)))
        self.ports: dict[bytes, int] = {}
        self.cache: set[tuple[bytes, str, bool]] = set()
        """(client, name, by the browser) lookups the capture has shown."""
        self.ech_keys = {public: (h[0], h[1:33]) for public in set(ECH_SITES.values())
                         for h in [hashlib.sha256(public.encode()).digest()]}

    def port(self, client: bytes) -> int:
        """The client's next ephemeral port: (client address, port) names one connection."""
        port = self.ports.get(client, 32768 + int.from_bytes(client[-2:], "big") * 7 % 4000) + 1 + self.rng.getrandbits(1)
        self.ports[client] = port
        return port

    def client(self, v6: bool) -> tuple[int, bytes]:
        i = self.rng.randrange(400)
        return i, (self.clients6 if v6 else self.clients4)[i]

    def conn(self, proto: int, client: bytes, server: str, port: int) -> Conn:
        self.flow_id += 1
        s4, s6 = server_addresses(server)
        v6 = len(client) == 16
        return Conn(v6, proto, client, s6 if v6 else s4, self.port(client), port, self.rng)

    def new_flow(self) -> Iterator[Packet]:
        r = self.rng.random()
        if r < 0.25:
            return self.dns_flow()
        if r < 0.60:
            return self.tls_flow(quic=False)
        if r < 0.92:
            return self.midstream_flow()
        return self.tls_flow(quic=True)

    def _bulk(self, conn: Conn, c_off: int, s_off: int, first_server: bytes = b"") -> Iterator[Packet]:
        """Application data, mostly from the server (downloads), some uploads; an ACK every 2 segments."""
        rng = self.rng
        n = 1 + int(rng.expovariate(1 / 34))
        upload = rng.random() < 0.15
        if first_server:
            yield "data", conn.tcp(False, 0x18, first_server), None
        for i in range(n):
            if upload:
                yield "data", conn.tcp(True, 0x18, stream_bytes(c_off, MSS)), None
                c_off += MSS
            else:
                yield "data", conn.tcp(False, 0x18, stream_bytes(s_off, MSS)), None
                s_off += MSS
            if i % 2:
                yield "ack", conn.tcp(not upload, 0x10), None
        yield "fin", conn.tcp(True, 0x11), None
        yield "fin", conn.tcp(False, 0x11), None
        yield "fin", conn.tcp(True, 0x10), None

    def lookup(self, client: bytes, name: str, https: bool) -> Iterator[Packet]:
        """`client` asks the resolver for `name`: A (IPv4 client) or AAAA (IPv6), and the HTTPS
        record when `https` (browsers do); the answers are addressed to `client`."""
        rng = self.rng
        v6 = len(client) == 16
        conn = Conn(v6, 17, client, RESOLVER6 if v6 else RESOLVER4, self.port(client), 53, rng)
        address = server_addresses(name)[v6]
        qtype = 28 if v6 else 1
        ident = rng.getrandbits(16)
        yield "dns", conn.udp(True, dns_query(ident, name, qtype)), None
        yield "dns", conn.udp(False, dns_response(ident, name, qtype, [address])), ("dns", client, [address], name, False)
        if https:
            ident = rng.getrandbits(16)
            yield "dns", conn.udp(True, dns_query(ident, name, 65)), None
            if name in SHARED:  # a CDN's name: an HTTPS record with hints (and ECH configs for ECH_SITES)
                key = self.ech_keys[ECH_SITES[name]] if name in ECH_SITES else None
                yield "dns", conn.udp(False, dns_response(ident, name, 65, [https_rdata(name, key)])), ("dns", client, list(server_addresses(name)), name, key is not None)
            else:
                yield "dns", conn.udp(False, dns_response(ident, name, 65, [])), None

    def tls_flow(self, quic: bool) -> Iterator[Packet]:
        """A connection from a client of some style, after its DNS lookup if the capture shows one.
        Chrome sends an ECH extension always, Firefox on half the clients: real ECH (outer SNI the
        public name, the server's config_id) to ECH_SITES, GREASE elsewhere."""
        rng = self.rng
        if quic:
            style = "chrome" if rng.random() < 0.8 else "firefox"
        else:
            style = rng.choices(list(STYLES), weights=list(STYLES.values()))[0]
        browser = style in BROWSERS
        i, client = self.client(rng.random() < 0.15)
        no_sni = not browser and not quic and rng.random() < 0.02
        name = rng.choice(UNSHARED) if no_sni else pick_name(rng, style)
        ech_on = style == "chrome" or (style == "firefox" and i % 2 == 0)
        if not ech_on:
            kind, outer, ech = "none", name, b""
        elif name in ECH_SITES:
            outer = ECH_SITES[name]
            kind, ech = "real", ech_extension(rng, self.ech_keys[outer][0], rng.randrange(7, 12) * 32 + 16)
        else:
            kind, outer, ech = "grease", name, ech_extension(rng)
        sni = None if no_sni else outer
        big = rng.random() < {"chrome": 0.8, "firefox": 0.5, "go": 0.5}.get(style, 0.0)
        doh = browser and i in self.doh
        if not doh and (client, name, browser) not in self.cache:
            yield from self.lookup(client, name, browser)
            self.cache.add((client, name, browser))
        conn = self.conn(17 if quic else 6, client, name, 443)
        truth = {"client": ip_text(client), "port": conn.cp, "proto": "udp" if quic else "tcp", "name": name,
                 "sni": sni or "", "style": style, "ech": kind, "doh": doh, "_pair": client + conn.s}
        hello = client_hello(rng, style, sni, big=big, quic=quic, ech=ech)
        if quic:
            yield from self._quic(conn, hello, truth)
            return
        yield "syn", conn.tcp(True, 0x02), None
        yield "synack", conn.tcp(False, 0x12), None
        yield "ack3", conn.tcp(True, 0x10), None
        hello = record(0x16, hello, b"\x03\x01")
        if len(hello) > MSS:
            pieces = [hello[:MSS], hello[MSS:]]
        elif rng.random() < 0.05:
            cut = rng.randint(10, len(hello) - 10)
            pieces = [hello[:cut], hello[cut:]]
        else:
            pieces = [hello]
        for n, piece in enumerate(pieces):
            yield "hello", conn.tcp(True, 0x18, piece), (truth if n == len(pieces) - 1 else None)
        prefix = record(0x16, server_hello(hello[11:43])) + record(0x14, b"\x01")
        yield from self._bulk(conn, 0, 0, prefix + stream_bytes(0, MSS - len(prefix)))

    def midstream_flow(self) -> Iterator[Packet]:
        """A connection that began before the capture: data only, starting mid-stream."""
        rng = self.rng
        conn = self.conn(6, self.client(rng.random() < 0.15)[1], pick_name(rng), 443)
        yield from self._bulk(conn, rng.randrange(0, R, MSS), rng.randrange(0, R, MSS))

    def _quic(self, conn: Conn, hello: bytes, truth: dict) -> Iterator[Packet]:
        rng = self.rng
        dcid, scid, server_cid = rng.randbytes(8), rng.randbytes(8), rng.randbytes(8)
        keys = initial_keys(dcid, "client")
        chunks = [(off, hello[off : off + 1100]) for off in range(0, len(hello), 1100)]
        if len(chunks) > 1 and rng.random() < 0.3:
            chunks.reverse()  # the second half first: CRYPTO frames out of order
        for pn, (off, data) in enumerate(chunks):
            frame = b"\x06" + _qvarint(off) + _qvarint(len(data)) + data
            last = pn == len(chunks) - 1
            yield "quic-initial", conn.udp(True, quic_initial(frame, dcid, scid, pn, keys)), (truth if last else None)
        sh = server_hello(dcid * 4)
        frames = b"\x02\x00\x00\x00\x00" + b"\x06\x00" + _qvarint(len(sh)) + sh  # ACK, CRYPTO(ServerHello)
        yield "quic-initial", conn.udp(False, quic_initial(frames, scid, server_cid, 0, initial_keys(dcid, "server"))), None
        for i in range(1 + int(rng.expovariate(1 / 26))):
            yield "quic-1rtt", conn.udp(False, bytes([0x40 | rng.getrandbits(5)]) + scid + stream_bytes(i * 1350, 1350)), None
            if i % 2:
                yield "quic-1rtt", conn.udp(True, bytes([0x40 | rng.getrandbits(5)]) + server_cid + stream_bytes(i * 40, 40)), None

    def dns_flow(self) -> Iterator[Packet]:
        """A lookup no connection in the capture follows (prefetch, or a connection after its end)."""
        rng = self.rng
        yield from self.lookup(self.client(rng.random() < 0.3)[1], pick_name(rng), False)


def generate(path: Path, packets: int, doh_share: float = 0.1) -> dict:
    """Write the capture; return what the generator knows: mix, flows, the SNI sets written whole,
    and the ground truth of every connection whose ClientHello it wrote whole."""
    gen = Generator(doh_share=doh_share)
    rng = gen.rng
    pool = [gen.new_flow() for _ in range(CONCURRENT)]
    kinds: Counter[str] = Counter()
    names = {"tcp": set(), "udp": set()}
    plain = {"tcp": set(), "udp": set()}
    resolved: dict[bytes, list[str]] = {}
    """Names each client resolved to each address (client + address), in capture order."""
    ech_configs: set[bytes] = set()
    """client + name: the client got an HTTPS record with an ECH config for the name."""
    truths = []
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))  # pcap, microseconds, Ethernet
        chunk: list[bytes] = []
        written = 0
        while written < packets:
            i = int(rng.random() * CONCURRENT)
            try:
                kind, frame, info = next(pool[i])
            except StopIteration:
                pool[i] = gen.new_flow()
                continue
            t = written * 9  # microseconds: ~110k packets/s on the wire
            chunk.append(struct.pack("<IIII", T0 + t // 1_000_000, t % 1_000_000, len(frame), len(frame)))
            chunk.append(frame)
            kinds[kind] += 1
            if type(info) is tuple:
                _, client, addresses, name, with_ech = info
                if with_ech:
                    ech_configs.add(client + name.encode())
                for address in addresses:
                    seen = resolved.setdefault(client + address, [])
                    if name in seen:
                        seen.remove(name)
                    seen.append(name)
            elif info is not None:
                pair = info.pop("_pair")
                info["resolved"] = list(resolved.get(pair, ()))
                client = pair[: len(pair) // 2]
                info["ech_config"] = any(client + n.encode() in ech_configs for n in info["resolved"] if n == info["name"])
                truths.append(info)
                if info["sni"]:
                    names[info["proto"]].add(info["sni"])
                    if info["ech"] == "none":
                        plain[info["proto"]].add(info["sni"])
            written += 1
            if len(chunk) >= 100_000:
                out.writelines(chunk)
                chunk = []
        out.writelines(chunk)
    tmp.replace(path)
    return {"packets": packets, "flows": gen.flow_id, "kinds": dict(kinds), "doh_share": doh_share,
            "sni_tcp": sorted(names["tcp"]), "sni_quic": sorted(names["udp"]),
            "plain_tcp": sorted(plain["tcp"]), "plain_quic": sorted(plain["udp"]), "truth": truths}


# --- measuring ------------------------------------------------------------------------------

GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def measure(argv: list[str], out_path: Path) -> tuple[float, float, float, int, str]:
    """Run `argv` with stdout to `out_path`: (wall s, CPU s, peak RSS MB of that command alone,
    exit code, stderr). CPU time is steadier than wall time on a busy machine. Peak RSS from GNU time when present, else from wait4: Linux counts in a child's
    ru_maxrss the RSS of the process it was forked from, which this script keeps small (the
    capture is generated in a child process)."""
    with out_path.open("wb") as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as report:
        cmd = [GNU_TIME, "-f", "%M", "-o", report.name, *argv] if GNU_TIME else argv
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        rc = os.waitstatus_to_exitcode(status)
        kib = int(report.read().strip().splitlines()[-1]) if GNU_TIME else usage.ru_maxrss
        err.seek(0)
        return wall, usage.ru_utime + usage.ru_stime, kib / 1024, rc, err.read().decode(errors="replace")


def find_tshark() -> str | None:
    tshark = shutil.which("tshark")
    if tshark:
        return tshark
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("tshark is not installed: running apt-get install -y tshark ...", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "tshark"]
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
            subprocess.run(install, env=env, stdout=subprocess.DEVNULL)
        tshark = shutil.which("tshark")
        if tshark:
            return tshark
    print("tshark not found: install it (Debian/Ubuntu: sudo apt-get install tshark; Fedora: sudo dnf install wireshark-cli;"
          " macOS: brew install wireshark) to compare; reporting region-auditor alone.", file=sys.stderr)
    return None


RAW_LOOP = """
import sys
from scapy.utils import RawPcapReader
r, n = RawPcapReader(sys.argv[1]), 0
while True:
    try:
        data, meta = r._read_packet()
    except EOFError:
        break
    n += 1
print(n)
"""
STRUCT_LOOP = """
import struct, sys
n = 0
with open(sys.argv[1], "rb", buffering=1 << 20) as f:
    f.read(24)
    read, unpack = f.read, struct.Struct("<IIII").unpack
    while True:
        h = read(16)
        if len(h) < 16:
            break
        read(unpack(h)[2])
        n += 1
print(n)
"""


def compare(label: str, ours: set[str], theirs: set[str], them: str, us: str = "region-auditor") -> bool:
    if ours == theirs:
        print(f"{label}: {us} and {them} found the same {len(ours):,} names")
        return True
    print(f"{label}: MISMATCH: {us} {len(ours):,} names, {them} {len(theirs):,}")
    for side, names in ((f"only {us}", ours - theirs), (f"only {them}", theirs - ours)):
        if names:
            shown = sorted(names)
            print(f"  {side} ({len(names)}): {', '.join(shown[:15])}{' ...' if len(shown) > 15 else ''}")
    return False


Key = tuple[str, int]
"""A connection: (client address, client port)."""
FROM_DNS = {"dns", "ech-dns"}
"""Rules that name a connection from DNS rather than from its own bytes."""
EXAMPLES = 4


def _describe(key: Key, truth: dict | None) -> str:
    where = f"[{key[0]}]:{key[1]}" if ":" in key[0] else f"{key[0]}:{key[1]}"
    if truth is None:
        return where
    ech = "no ECH" if truth["ech"] == "none" else f"{truth['ech']} ECH"
    what = f"{truth['style']} {'QUIC' if truth['proto'] == 'udp' else 'TCP'}, {ech if truth['sni'] else 'no SNI'}"
    if truth["doh"]:
        what += ", browser on DoH"
    resolved = ", ".join(truth["resolved"][-3:]) or "nothing"
    return f"{where} ({what}; truly {truth['name'] or '?'}; this client had resolved to the address: {resolved})"


def _grouped(title: str, groups: dict[str, list[str]]) -> None:
    """Lines grouped by rule, each ending in `-> name`: counts, the names given most, examples."""
    total = sum(map(len, groups.values()))
    print(f"{title}: {total:,}" + (" (by region-auditor's rule)" if total else ""))
    for rule, lines in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        given = Counter(line.rpartition("-> ")[2] for line in lines)
        governed = sum(n for name, n in given.items() if name in GOVERNED)
        print(f"  {rule}: {len(lines):,}; named " + ", ".join(f"{name} {n:,}" for name, n in given.most_common(5))
              + (" ..." if len(given) > 5 else "") + (f"; {governed:,} as a governed API host" if governed else ""))
        for line in sorted(lines, key=lambda line: line.rpartition("-> ")[2] not in GOVERNED)[:EXAMPLES]:  # governed first
            print(f"    {line}")


def per_connection(ours: dict[Key, tuple[str, str, str]], theirs: dict[Key, str] | None, truth: dict[Key, dict],
                   tshark_quic: bool = True) -> bool:
    """Connection by connection, region-auditor's name against tshark's SNI and against the
    generator's ground truth; prints both; False when a difference is an error:
    - a name other than tshark's SNI under any rule but `ech-dns` (real ECH);
    - a connection one of them read and the other did not;
    - a name from DNS (`ech-dns`, or `dns` for a hello without SNI) that is not the true name;
    - a real-ECH call not named by it although this client got the HTTPS record with the ECH
      config of its true name (a missed call: the outer name is never a governed host)."""
    ok = True
    rules = Counter(rule for _, rule, _ in ours.values())
    print("\nper connection (client address, client port):")
    print("region-auditor rules: " + ", ".join(f"{rule} {n:,}" for rule, n in rules.most_common()))
    if theirs is not None:
        agree: Counter[str] = Counter()
        differ: dict[str, list[str]] = {}
        unnamed_by_tshark: dict[str, list[str]] = {}
        if not tshark_quic:
            print("tshark read no QUIC hello (no Initial decryption?): QUIC connections compared with the ground truth only")
            ours_compared = {key: v for key, v in ours.items() if v[2] != "udp"}
        else:
            ours_compared = ours
        for key, (name, rule, _) in ours_compared.items():
            if key not in theirs:
                continue
            sni = theirs[key]
            if name == sni:
                agree[rule] += 1
            elif not sni:
                unnamed_by_tshark.setdefault(rule, []).append(f"{_describe(key, truth.get(key))}: -> {name}")
            else:
                differ.setdefault(rule, []).append(f"{_describe(key, truth.get(key))}: tshark {sni} -> {name}")
        only_ours, only_theirs = ours_compared.keys() - theirs.keys(), theirs.keys() - ours.keys()
        print(f"tshark: {len(theirs):,} hellos; both read {len(ours_compared.keys() & theirs.keys()):,}; "
              f"only region-auditor {len(only_ours):,}, only tshark {len(only_theirs):,}")
        for side, keys in (("only region-auditor", only_ours), ("only tshark", only_theirs)):
            for key in sorted(keys)[:EXAMPLES]:
                print(f"    {side}: {_describe(key, truth.get(key))}")
        ok &= not only_ours and not only_theirs
        print(f"same name as tshark's SNI: {sum(agree.values()):,} (" + ", ".join(f"{r} {n:,}" for r, n in agree.most_common()) + ")")
        _grouped("hellos without SNI that region-auditor names (checked against the ground truth below)", unnamed_by_tshark)
        _grouped("DISAGREEMENTS with tshark's SNI", differ)
        bad = {rule: len(lines) for rule, lines in differ.items() if rule != "ech-dns"}
        if bad:
            print("  FAIL: only real ECH (ech-dns) may be named otherwise than its SNI: " + ", ".join(f"{r} {n:,}" for r, n in bad.items()))
            ok = False

    right: Counter[str] = Counter()
    wrong: dict[str, list[str]] = {}
    failing: Counter[str] = Counter()
    for key, (name, rule, _) in ours.items():
        t = truth.get(key)
        if t is None:
            continue
        if name == t["name"]:
            right[rule] += 1
            continue
        wrong.setdefault(f"{rule} on {t['ech']} ECH" + (" (no SNI)" if not t["sni"] else ""), []).append(
            f"{_describe(key, t)}: -> {name or '(none)'}")
        if (rule in FROM_DNS and name) or (t["ech"] == "real" and t.get("ech_config")):
            failing[rule] += 1
    missing = truth.keys() - ours.keys()
    print(f"\nground truth (the generator's): {len(truth):,} hellos written whole; region-auditor named "
          f"{sum(right.values()):,} truly (" + ", ".join(f"{r} {n:,}" for r, n in right.most_common()) + f"), missed {len(missing):,}")
    _grouped("named otherwise than the truth", wrong)
    print("  (a real-ECH call from a client whose lookup the capture does not show cannot be named: its outer name is kept)")
    if failing:
        print("  FAIL: wrong names from DNS, or real-ECH calls missed although this client got their ECH config: "
              + ", ".join(f"{r} {n:,}" for r, n in failing.most_common()))
        ok = False
    if missing:
        ok = False
    return ok


def read_tshark(path: Path) -> tuple[dict[str, set[str]], dict[Key, str]]:
    """tshark's fields (ip.src, ipv6.src, tcp.srcport, udp.srcport, SNI) -> the SNI sets by
    protocol, and the SNI per connection ("" for a hello without one)."""
    sets: dict[str, set[str]] = {"tcp": set(), "udp": set()}
    per: dict[Key, str] = {}
    with path.open() as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 5:
                continue
            src4, src6, tport, uport, sni = fields[:5]
            sni = sni.split(",")[0].lower()
            key = (src4 or src6, int(tport or uport or 0))
            if sni:
                sets["udp" if uport else "tcp"].add(sni)
            if sni or key not in per:  # a hello over several QUIC packets may show on more than one
                per[key] = sni
    return sets, per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_200_000)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "ra-bench")
    ap.add_argument("--doh-share", type=float, default=0.1,
                    help="share of clients whose browser resolves over DNS over HTTPS (the capture shows none of its lookups)")
    ap.add_argument("--no-tshark", action="store_true", help="measure region-auditor (and the floors) only")
    ap.add_argument("--no-floor", action="store_true", help="skip the RawPcapReader and struct loops")
    ap.add_argument("--auditor", help="region-auditor executable to measure (default: the one installed beside this Python)")
    ap.add_argument("--generate-only", action="store_true", help="write the capture (if not cached) and stop")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    doh = f"-doh{args.doh_share:g}" if args.doh_share != 0.1 else ""
    capture = args.dir / f"capture-{args.packets}{doh}-v{GEN_VERSION}.pcap"
    meta_path = capture.with_suffix(".json")
    if args.generate_only:
        if not (capture.exists() and meta_path.exists()):
            print(f"generating {capture} ...", file=sys.stderr)
            start = time.perf_counter()
            meta_path.write_text(json.dumps(generate(capture, args.packets, args.doh_share)))
            print(f"generated in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        print(capture)
        return
    if not (capture.exists() and meta_path.exists()):  # in a child, so that this process stays small
        subprocess.run([sys.executable, __file__, "--generate-only", "--packets", str(args.packets), "--dir", str(args.dir),
                        "--doh-share", str(args.doh_share)], stdout=subprocess.DEVNULL, check=True)
    meta = json.loads(meta_path.read_text())
    auditor = args.auditor or shutil.which("region-auditor", path=os.path.dirname(sys.executable)) or shutil.which("region-auditor")
    if not auditor:
        sys.exit("region-auditor is not installed in this environment; run make install first")
    tshark = None if args.no_tshark else find_tshark()

    kinds = Counter(meta["kinds"])
    total = sum(kinds.values())
    handshake = sum(kinds[k] for k in HANDSHAKE)
    size = capture.stat().st_size
    print(f"file: {capture} ({total:,} packets, {size / 1e6:,.0f} MB, {meta['flows']:,} flows)")
    print("mix: " + ", ".join(f"{k} {kinds[k] / total:.1%}" for k in KINDS if kinds[k]) + f"; handshake packets {handshake / total:.1%}")
    truth = {(t["client"], t["port"]): t for t in meta.pop("truth")}
    styles = Counter(f"{t['style']} {'QUIC' if t['proto'] == 'udp' else 'TCP'} "
                     f"{'no SNI' if not t['sni'] else 'no ECH' if t['ech'] == 'none' else t['ech'] + ' ECH'}" for t in truth.values())
    print(f"hellos written whole, by client ({len(truth):,}; browsers of {meta['doh_share']:.0%} of the clients on DoH): "
          + ", ".join(f"{k} {n:,}" for k, n in sorted(styles.items())))

    subprocess.run(["cat", str(capture)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="ra-bench-pcap-"))
    results: list[tuple[str, float, float, float]] = []
    ok = True
    try:
        wall, cpu, rss, rc, err = measure([auditor, "pcap", "--events", str(capture)], work / "ours.jsonl")
        if rc != 0:
            sys.exit(f"region-auditor pcap failed ({rc}): {err.strip()}")
        results.append(("region-auditor pcap --events", wall, cpu, rss))
        ours: dict[str, set[str]] = {"tcp": set(), "udp": set()}
        per_ours: dict[Key, tuple[str, str, str]] = {}
        events = 0
        with (work / "ours.jsonl").open() as f:
            for line in f:
                e = json.loads(line)
                events += 1
                if e["name_source"] == "sni":
                    ours[e["proto"]].add(e["server_name"])
                per_ours[(e["orig_h"], e["orig_p"])] = (e["server_name"], e["name_source"], e["proto"])
        for line in err.strip().splitlines()[:5]:
            print(f"  region-auditor: {line}")

        theirs: dict[str, set[str]] | None = None
        per_theirs: dict[Key, str] | None = None
        if tshark:
            # -d: QUIC on port 443 first; else a client port another dissector claims (34980, EtherCAT) wins
            argv = [tshark, "-r", str(capture), "-d", "udp.port==443,quic", "-Y", "tls.handshake.type==1", "-T", "fields",
                    "-e", "ip.src", "-e", "ipv6.src",
                    "-e", "tcp.srcport", "-e", "udp.srcport", "-e", "tls.handshake.extensions_server_name"]
            wall, cpu, rss, rc, err = measure(argv, work / "tshark.tsv")
            if rc != 0:
                sys.exit(f"tshark failed ({rc}): {err.strip()}")
            results.append(("tshark -Y tls.handshake.type==1", wall, cpu, rss))
            theirs, per_theirs = read_tshark(work / "tshark.tsv")

        if not args.no_floor:
            floors = [("floor: scapy RawPcapReader loop", RAW_LOOP), ("floor: struct record loop", STRUCT_LOOP)]
            if importlib.util.find_spec("scapy") is None:  # a test dependency since issue 18, not a run-time one
                print("scapy not installed (pip install -e '.[test]'): skipping its RawPcapReader floor.", file=sys.stderr)
                floors = floors[1:]
            for label, code in floors:
                wall, cpu, rss, rc, err = measure([sys.executable, "-c", code, str(capture)], work / "floor.txt")
                if rc != 0:
                    sys.exit(f"{label} failed ({rc}): {err.strip()}")
                results.append((label, wall, cpu, rss))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base, base_cpu = (results[1][1], results[1][2]) if tshark else (None, None)
    print(f"\n{'tool':34} {'packets':>10} {'seconds':>8} {'cpu s':>7} {'packets/s':>11} {'peak MB':>8} {'x tshark':>9} {'(cpu)':>6}")
    for name, wall, cpu, rss in results:
        ratio = f"{base / wall:9.1f} {base_cpu / cpu:6.1f}" if base else f"{'-':>9} {'-':>6}"
        print(f"{name:34} {total:>10,} {wall:8.2f} {cpu:7.2f} {total / wall:11,.0f} {rss:8.1f} {ratio}")
    _, our_wall, our_cpu, our_rss = results[0]
    speed = (f"{base / our_wall:.2f}x tshark {'PASS' if base / our_wall >= 10 else 'FAIL'} ({base_cpu / our_cpu:.2f}x by CPU time)"
             if base else "no tshark to compare")
    print(f"goal: >=10x tshark, <100 MB peak: {speed}; {our_rss:.0f} MB {'PASS' if our_rss < 100 else 'FAIL'}"
          f" (load average {load:.1f} on {os.cpu_count()} CPUs before the runs)")
    print(f"region-auditor: {events:,} events; rule sni: {len(ours['tcp']):,} TLS/TCP and {len(ours['udp']):,} QUIC names\n")

    ok &= compare("TLS/TCP SNI of hellos without ECH", ours["tcp"], set(meta["plain_tcp"]), "the generator")
    ok &= compare("QUIC SNI of hellos without ECH", ours["udp"], set(meta["plain_quic"]), "the generator")
    if theirs is not None:
        ok &= compare("TLS/TCP SNI of all hellos", theirs["tcp"], set(meta["sni_tcp"]), "the generator", "tshark")
        if theirs["udp"]:
            ok &= compare("QUIC SNI of all hellos", theirs["udp"], set(meta["sni_quic"]), "the generator", "tshark")
        else:
            print("QUIC SNI: tshark gave no server_name for QUIC Initials (no Initial decryption?): not compared")
    ok &= per_connection(per_ours, per_theirs, truth, bool(theirs and theirs["udp"]))
    print("\nresult: " + ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
