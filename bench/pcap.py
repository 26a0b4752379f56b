#!/usr/bin/env python3
"""Throughput and peak memory of `region-auditor pcap --events` on a generated capture, next to tshark.

    .venv/bin/python bench/pcap.py [--packets 1200000] [--dir /tmp/ra-bench] [--no-tshark] [--no-floor]
                                   [--auditor PATH] [--generate-only]

Generates (once, then reuses) an Ethernet pcap of `--packets` packets: about 22k TCP and QUIC
flows interleaved as on a busy link, mostly ~1400-byte TLS application-data segments in both
directions and their ACKs; TLS ClientHellos (a third of them large post-quantum hellos, so split
over 2 TCP segments; some small ones split by hand) naming api.openai.com and other governed
hosts, look-alike decoys and a long tail of other names; flows the capture joins mid-connection;
QUIC v1 client Initials (one or two per hello, really encrypted with the keys of their
Destination Connection ID), the server's Initial and 1-RTT packets; DNS A/AAAA queries and
answers; about 15% IPv6. Frames are written with struct from a few templates patched per flow
(addresses, ports, sequence numbers); scapy only builds the DNS messages. Then it runs, each from
a cold process, on the same file in the same run:
  region-auditor pcap --events FILE
  tshark -r FILE -Y 'tls.handshake.type==1' -T fields -e tls.handshake.extensions_server_name -e udp.srcport
  (floors) a bare loop over scapy's RawPcapReader (the issue's reference) and over struct records
and prints wall and CPU time, packets/s (by wall time) and peak RSS for each command alone. It
checks that region-auditor and tshark found the same TLS-over-TCP SNI set and the same QUIC SNI
set (`-e udp.srcport` only tells QUIC lines from TCP ones), and that both equal the names of the
hellos the generator wrote whole. Exit 1 when a set differs, else 0; the speed and memory goal
(>= 10x tshark, < 100 MB) is printed, not enforced.

Without tshark on PATH it runs `apt-get install -y tshark` when root, else says how to install it
and reports region-auditor alone.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

GEN_VERSION = 1
"""Bump when the generator changes: the cached capture's name carries it."""

MAC_CLIENT, MAC_SERVER = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
T0 = 1721638800  # 2024-07-22 09:00:00 UTC
MSS = 1400
CONCURRENT = 1000
"""Flows open at once; each packet comes from one of them, picked at random."""

GOVERNED = ["api.openai.com", "eu.api.openai.com", "us.api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com"]
DECOYS = ["api.openai.com.evil.example", "notapi.openai.community", "api-openai.com", "api.openai.co"]
COMMON = ["www.google.com", "github.com", "pypi.org", "files.pythonhosted.org", "s3.amazonaws.com", "slack.com",
          "www.youtube.com", "login.microsoftonline.com", "outlook.office365.com", "registry.npmjs.org",
          "objects.githubusercontent.com", "update.googleapis.com", "api.github.com", "fonts.gstatic.com",
          "cdn.jsdelivr.net", "www.wikipedia.org", "dl.google.com", "teams.microsoft.com", "zoom.us", "api.stripe.com"]
TAIL = [f"{p}{i}.{d}" for i in range(600) for p, d in (("cdn", "example-cdn.net"), ("edge", "fastedge.example"),
                                                         ("img", "media.example.org"), ("api", "saas.example.com"),
                                                         ("static", "assets.example.io"))]
KINDS = ("syn", "synack", "ack3", "hello", "quic-initial", "data", "ack", "fin", "quic-1rtt", "dns")
HANDSHAKE = {"syn", "synack", "ack3", "hello", "quic-initial"}


def pick_name(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.03:
        return rng.choice(GOVERNED)
    if r < 0.04:
        return rng.choice(DECOYS)
    if r < 0.5:
        return rng.choice(COMMON)
    return rng.choice(TAIL)


def server_addresses(name: str) -> tuple[bytes, bytes]:
    """A stable public-looking IPv4 and IPv6 address per name."""
    h = hashlib.sha256(name.encode()).digest()
    if name == "api.openai.com":
        return bytes([162, 159, 140, 245]), bytes.fromhex("2606470000000000000000000000a29f")
    return bytes([104, 16 + h[0] % 16, h[1], 1 + h[2] % 254]), bytes.fromhex("2606470000") + h[3:14]


# --- TLS ------------------------------------------------------------------------------------

def _ext(kind: int, data: bytes) -> bytes:
    return struct.pack("!HH", kind, len(data)) + data


def _vec(data: bytes, size: int = 2) -> bytes:
    return len(data).to_bytes(size, "big") + data


def client_hello(name: str | None, *, big: bool, quic: bool) -> bytes:
    """A ClientHello handshake message (type 1, no record header) as a browser sends it: SNI,
    groups, signature algorithms, ALPN, TLS 1.3 key shares (with a 1216-byte X25519Kyber768 share
    when `big`, as Chrome sends since 2024), QUIC transport parameters when `quic`."""
    seed = hashlib.sha256(f"{name}/{big}/{quic}".encode()).digest()
    groups = [0x6399] * big + [0x001D, 0x0017, 0x0018]
    exts = b""
    if name is not None:
        exts += _ext(0, _vec(b"\x00" + _vec(name.encode())))
    exts += _ext(0x0017, b"") + _ext(0xFF01, b"\x00")  # extended_master_secret, renegotiation_info
    exts += _ext(10, _vec(b"".join(struct.pack("!H", g) for g in groups)))
    if not quic:
        exts += _ext(11, b"\x01\x00")  # ec_point_formats
    exts += _ext(35, b"")  # session_ticket
    exts += _ext(16, _vec(b"".join(_vec(p, 1) for p in ([b"h3"] if quic else [b"h2", b"http/1.1"]))))
    exts += _ext(5, b"\x01\x00\x00\x00\x00")  # status_request
    exts += _ext(13, _vec(bytes.fromhex("0403080404010503080505010806060102010201")))
    exts += _ext(18, b"")  # signed_certificate_timestamp
    shares = (struct.pack("!H", 0x6399) + _vec(seed * 38)) if big else b""
    shares += struct.pack("!H", 0x001D) + _vec(seed)
    exts += _ext(51, _vec(shares))
    exts += _ext(45, b"\x01\x01")  # psk_key_exchange_modes
    exts += _ext(43, _vec(b"\x03\x04" if quic else b"\x03\x04\x03\x03", 1))
    exts += _ext(27, b"\x02\x00\x02")  # compress_certificate: brotli
    if quic:
        params = b"\x01\x04\x80\x00\x75\x30" + b"\x04\x04\x80\xf0\x00\x00" + b"\x0f\x08" + seed[:8]
        exts += _ext(0x39, params)
    if not big and not quic and len(exts) < 400:
        exts += _ext(21, b"\x00" * (400 - len(exts)))  # padding, as BoringSSL pads to 512
    suites = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    body = b"\x03\x03" + seed + _vec(b"" if quic else seed, 1) + _vec(suites) + b"\x01\x00" + _vec(exts)
    return b"\x01" + len(body).to_bytes(3, "big") + body


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


Packet = tuple[str, bytes, str | None]
"""(kind, frame, name when this frame completes a ClientHello that names it)."""


class Generator:
    def __init__(self, seed: int = 42) -> None:
        self.rng = random.Random(seed)
        self.hellos: dict[tuple[str | None, bool, bool], bytes] = {}
        self.dns_templates: dict[tuple[str, bool], tuple[bytes, bytes]] = {}
        self.flow_id = 0
        self.clients4 = [bytes([10, 20 + i // 250, i % 250 // 10, 1 + i % 10 * 25]) for i in range(400)]
        self.clients6 = [bytes.fromhex("20010db8002000000000000000000000")[:14] + i.to_bytes(2, "big") for i in range(400)]

    def hello(self, name: str | None, big: bool, quic: bool) -> bytes:
        key = (name, big, quic)
        if key not in self.hellos:
            self.hellos[key] = client_hello(name, big=big, quic=quic)
        return self.hellos[key]

    def conn(self, proto: int, server: str, port: int, v6: bool) -> Conn:
        fid, self.flow_id = self.flow_id, self.flow_id + 1
        s4, s6 = server_addresses(server)
        c = (self.clients6 if v6 else self.clients4)[fid % 400]
        return Conn(v6, proto, c, s6 if v6 else s4, 32768 + (fid // 400) % 28000, port, self.rng)

    def new_flow(self) -> Iterator[Packet]:
        r = self.rng.random()
        if r < 0.25:
            return self.dns_flow()
        if r < 0.60:
            return self.tls_flow()
        if r < 0.92:
            return self.midstream_flow()
        return self.quic_flow()

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

    def tls_flow(self) -> Iterator[Packet]:
        rng = self.rng
        name = pick_name(rng) if rng.random() > 0.005 else None  # a few hellos without SNI
        big = rng.random() < 0.33
        conn = self.conn(6, name or rng.choice(COMMON), 443, rng.random() < 0.15)
        yield "syn", conn.tcp(True, 0x02), None
        yield "synack", conn.tcp(False, 0x12), None
        yield "ack3", conn.tcp(True, 0x10), None
        hello = record(0x16, self.hello(name, big, False), b"\x03\x01")
        if big:
            pieces = [hello[:MSS], hello[MSS:]]
        elif rng.random() < 0.05:
            cut = rng.randint(10, len(hello) - 10)
            pieces = [hello[:cut], hello[cut:]]
        else:
            pieces = [hello]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield "hello", conn.tcp(True, 0x18, piece), (name if last and name else None)
        prefix = record(0x16, server_hello(hello[11:43])) + record(0x14, b"\x01")
        yield from self._bulk(conn, 0, 0, prefix + stream_bytes(0, MSS - len(prefix)))

    def midstream_flow(self) -> Iterator[Packet]:
        """A connection that began before the capture: data only, starting mid-stream."""
        rng = self.rng
        conn = self.conn(6, pick_name(rng), 443, rng.random() < 0.15)
        yield from self._bulk(conn, rng.randrange(0, R, MSS), rng.randrange(0, R, MSS))

    def quic_flow(self) -> Iterator[Packet]:
        rng = self.rng
        name = pick_name(rng)
        conn = self.conn(17, name, 443, rng.random() < 0.15)
        dcid, scid, server_cid = rng.randbytes(8), rng.randbytes(8), rng.randbytes(8)
        hello = self.hello(name, rng.random() < 0.33, True)
        keys = initial_keys(dcid, "client")
        chunks = [(off, hello[off : off + 1100]) for off in range(0, len(hello), 1100)]
        if len(chunks) > 1 and rng.random() < 0.3:
            chunks.reverse()  # the second half first: CRYPTO frames out of order
        for pn, (off, data) in enumerate(chunks):
            frame = b"\x06" + _qvarint(off) + _qvarint(len(data)) + data
            last = pn == len(chunks) - 1
            yield "quic-initial", conn.udp(True, quic_initial(frame, dcid, scid, pn, keys)), (name if last else None)
        sh = server_hello(dcid * 4)
        frames = b"\x02\x00\x00\x00\x00" + b"\x06\x00" + _qvarint(len(sh)) + sh  # ACK, CRYPTO(ServerHello)
        yield "quic-initial", conn.udp(False, quic_initial(frames, scid, server_cid, 0, initial_keys(dcid, "server"))), None
        for i in range(1 + int(rng.expovariate(1 / 26))):
            yield "quic-1rtt", conn.udp(False, bytes([0x40 | rng.getrandbits(5)]) + scid + stream_bytes(i * 1350, 1350)), None
            if i % 2:
                yield "quic-1rtt", conn.udp(True, bytes([0x40 | rng.getrandbits(5)]) + server_cid + stream_bytes(i * 40, 40)), None

    def dns_flow(self) -> Iterator[Packet]:
        rng = self.rng
        name = pick_name(rng)
        v6 = rng.random() < 0.3  # AAAA
        conn = self.conn(17, name, 53, False)
        conn.s = bytes([10, 0, 0, 53])
        query, answer = self.dns_messages(name, v6)
        ident = struct.pack("!H", rng.getrandbits(16))
        s4, s6 = server_addresses(name)
        yield "dns", conn.udp(True, ident + query[2:]), None
        yield "dns", conn.udp(False, ident + answer[2:-16 if v6 else -4] + (s6 if v6 else s4)), None

    def dns_messages(self, name: str, v6: bool) -> tuple[bytes, bytes]:
        key = (name, v6)
        if key not in self.dns_templates:
            from scapy.layers.dns import DNS, DNSQR, DNSRR

            qtype, rdata = ("AAAA", "2001:db8::1") if v6 else ("A", "192.0.2.1")
            query = bytes(DNS(id=0, rd=1, qd=DNSQR(qname=name, qtype=qtype)))
            answer = bytes(DNS(id=0, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype=qtype),
                               an=DNSRR(rrname=name, type=qtype, ttl=300, rdata=rdata)))
            self.dns_templates[key] = (query, answer)
        return self.dns_templates[key]


def generate(path: Path, packets: int) -> dict:
    """Write the capture; return what the generator knows: mix, flows, the SNI sets written whole."""
    gen = Generator()
    rng = gen.rng
    pool = [gen.new_flow() for _ in range(CONCURRENT)]
    kinds: Counter[str] = Counter()
    names = {"tcp": set(), "udp": set()}
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))  # pcap, microseconds, Ethernet
        chunk: list[bytes] = []
        written = 0
        while written < packets:
            i = int(rng.random() * CONCURRENT)
            try:
                kind, frame, name = next(pool[i])
            except StopIteration:
                pool[i] = gen.new_flow()
                continue
            t = written * 9  # microseconds: ~110k packets/s on the wire
            chunk.append(struct.pack("<IIII", T0 + t // 1_000_000, t % 1_000_000, len(frame), len(frame)))
            chunk.append(frame)
            kinds[kind] += 1
            if name:
                names["udp" if kind == "quic-initial" else "tcp"].add(name)
            written += 1
            if len(chunk) >= 100_000:
                out.writelines(chunk)
                chunk = []
        out.writelines(chunk)
    tmp.replace(path)
    return {"packets": packets, "flows": gen.flow_id, "kinds": dict(kinds),
            "sni_tcp": sorted(names["tcp"]), "sni_quic": sorted(names["udp"])}


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


def compare(label: str, ours: set[str], theirs: set[str], them: str) -> bool:
    if ours == theirs:
        print(f"{label}: region-auditor and {them} found the same {len(ours):,} names")
        return True
    print(f"{label}: MISMATCH: region-auditor {len(ours):,} names, {them} {len(theirs):,}")
    for side, names in (("only region-auditor", ours - theirs), (f"only {them}", theirs - ours)):
        if names:
            shown = sorted(names)
            print(f"  {side} ({len(names)}): {', '.join(shown[:15])}{' ...' if len(shown) > 15 else ''}")
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_200_000)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "ra-bench")
    ap.add_argument("--no-tshark", action="store_true", help="measure region-auditor (and the floors) only")
    ap.add_argument("--no-floor", action="store_true", help="skip the RawPcapReader and struct loops")
    ap.add_argument("--auditor", help="region-auditor executable to measure (default: the one installed beside this Python)")
    ap.add_argument("--generate-only", action="store_true", help="write the capture (if not cached) and stop")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    capture = args.dir / f"capture-{args.packets}-v{GEN_VERSION}.pcap"
    meta_path = capture.with_suffix(".json")
    if args.generate_only:
        if not (capture.exists() and meta_path.exists()):
            print(f"generating {capture} ...", file=sys.stderr)
            start = time.perf_counter()
            meta_path.write_text(json.dumps(generate(capture, args.packets)))
            print(f"generated in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        print(capture)
        return
    if not (capture.exists() and meta_path.exists()):  # in a child, so that this process stays small
        subprocess.run([sys.executable, __file__, "--generate-only", "--packets", str(args.packets), "--dir", str(args.dir)],
                       stdout=subprocess.DEVNULL, check=True)
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

    subprocess.run(["cat", str(capture)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    work = Path(tempfile.mkdtemp(prefix="ra-bench-pcap-"))
    results: list[tuple[str, float, float, float]] = []
    ok = True
    try:
        wall, cpu, rss, rc, err = measure([auditor, "pcap", "--events", str(capture)], work / "ours.jsonl")
        if rc != 0:
            sys.exit(f"region-auditor pcap failed ({rc}): {err.strip()}")
        results.append(("region-auditor pcap --events", wall, cpu, rss))
        ours: dict[str, set[str]] = {"tcp": set(), "udp": set()}
        events = 0
        with (work / "ours.jsonl").open() as f:
            for line in f:
                e = json.loads(line)
                events += 1
                if e["name_source"] == "sni":
                    ours[e["proto"]].add(e["server_name"])
        for line in err.strip().splitlines()[:5]:
            print(f"  region-auditor: {line}")

        theirs: dict[str, set[str]] | None = None
        if tshark:
            argv = [tshark, "-r", str(capture), "-Y", "tls.handshake.type==1", "-T", "fields",
                    "-e", "tls.handshake.extensions_server_name", "-e", "udp.srcport"]
            wall, cpu, rss, rc, err = measure(argv, work / "tshark.tsv")
            if rc != 0:
                sys.exit(f"tshark failed ({rc}): {err.strip()}")
            results.append(("tshark -Y tls.handshake.type==1", wall, cpu, rss))
            theirs = {"tcp": set(), "udp": set()}
            for line in (work / "tshark.tsv").read_text().splitlines():
                sni, _, udp_port = line.partition("\t")
                for name in filter(None, sni.split(",")):
                    theirs["udp" if udp_port.strip() else "tcp"].add(name.lower())

        if not args.no_floor:
            for label, code in (("floor: scapy RawPcapReader loop", RAW_LOOP), ("floor: struct record loop", STRUCT_LOOP)):
                wall, cpu, rss, rc, err = measure([sys.executable, "-c", code, str(capture)], work / "floor.txt")
                if rc != 0:
                    sys.exit(f"{label} failed ({rc}): {err.strip()}")
                results.append((label, wall, cpu, rss))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = results[1][1] if tshark else None
    print(f"\n{'tool':34} {'packets':>10} {'seconds':>8} {'cpu s':>7} {'packets/s':>11} {'peak MB':>8} {'x tshark':>9}")
    for name, wall, cpu, rss in results:
        ratio = f"{base / wall:9.1f}" if base else f"{'-':>9}"
        print(f"{name:34} {total:>10,} {wall:8.2f} {cpu:7.2f} {total / wall:11,.0f} {rss:8.1f} {ratio}")
    _, our_wall, _, our_rss = results[0]
    speed = f"{base / our_wall:.2f}x tshark {'PASS' if base / our_wall >= 10 else 'FAIL'}" if base else "no tshark to compare"
    print(f"goal: >=10x tshark, <100 MB peak: {speed}; {our_rss:.0f} MB {'PASS' if our_rss < 100 else 'FAIL'}")
    print(f"region-auditor: {events:,} events, {len(ours['tcp']):,} TLS/TCP and {len(ours['udp']):,} QUIC SNI names\n")

    ok &= compare("TLS/TCP SNI", ours["tcp"], set(meta["sni_tcp"]), "the generator")
    ok &= compare("QUIC SNI", ours["udp"], set(meta["sni_quic"]), "the generator")
    if theirs is not None:
        ok &= compare("TLS/TCP SNI", ours["tcp"], theirs["tcp"], "tshark")
        if theirs["udp"]:
            ok &= compare("QUIC SNI", ours["udp"], theirs["udp"], "tshark")
        else:
            print("QUIC SNI: tshark gave no server_name for QUIC Initials (no Initial decryption?): not compared")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
