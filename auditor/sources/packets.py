"""Bytes of captured frames -> connection events. Only the bytes needed are parsed.

Link types: Ethernet (with 802.1Q/QinQ tags), Linux cooked SLL and SLL2, raw IP, BSD loopback
(null and loop). Network: IPv4 (first fragments only) and IPv6 (extension headers skipped).
What names a connection, from the client's first bytes: a TLS ClientHello's SNI (reassembled
when split over several TCP segments, also out of order), an HTTP CONNECT target or Host header,
a SOCKS5 CONNECT target;
and DNS answers, which name a connection whose ClientHello has no SNI (`name_source = "dns"`).

QUIC v1 and v2 Initial packets are decrypted (auditor.sources.quic) for the ClientHello's SNI.
Not yet: live capture (issue 4).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import struct
from collections import OrderedDict
from dataclasses import dataclass

from auditor.events import ConnectionEvent
from auditor.sources import quic

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276
LINKTYPE_RAW_ALT = 12  # DLT_RAW on some BSDs

MAX_FLOWS = 100_000
"""Flows whose first client bytes are being collected at once; the oldest is dropped beyond it."""
MAX_HELLO = 16_384 + 5
"""A ClientHello record is at most one TLS record: bytes kept per flow."""
MAX_DNS_NAMES = 200_000
"""Addresses remembered from DNS answers; the oldest is forgotten beyond it."""


class PacketError(Exception):
    """A frame that cannot be parsed; counted and skipped with its packet number."""


class NotAStart(Exception):
    """A flow's first bytes are neither a ClientHello nor an HTTP request: nothing to name."""


@dataclass(frozen=True)
class Segment:
    """The transport-level facts of one frame."""

    orig_h: str
    resp_h: str
    orig_p: int
    resp_p: int
    proto: str
    payload: bytes
    seq: int = 0
    syn: bool = False
    ack: bool = False


def _ip(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def link_payload(linktype: int, frame: bytes) -> tuple[int, bytes]:
    """(ethertype-like network protocol, network packet) of a frame."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            raise PacketError("truncated Ethernet header")
        etype, off = struct.unpack_from("!H", frame, 12)[0], 14
        while etype in (0x8100, 0x88A8, 0x9100):
            if len(frame) < off + 4:
                raise PacketError("truncated VLAN tag")
            etype, off = struct.unpack_from("!H", frame, off + 2)[0], off + 4
        return etype, frame[off:]
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            raise PacketError("truncated SLL header")
        return struct.unpack_from("!H", frame, 14)[0], frame[16:]
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            raise PacketError("truncated SLL2 header")
        return struct.unpack_from("!H", frame, 0)[0], frame[20:]
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_ALT, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not frame:
            raise PacketError("empty raw IP frame")
        return (0x0800 if frame[0] >> 4 == 4 else 0x86DD), frame
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 5:
            raise PacketError("truncated loopback header")
        return (0x0800 if frame[4] >> 4 == 4 else 0x86DD), frame[4:]
    raise PacketError(f"link type {linktype} is not supported")


def transport(etype: int, packet: bytes) -> Segment | None:
    """TCP or UDP facts of an IP packet; None for other protocols and later fragments."""
    if etype == 0x0800:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            raise PacketError("truncated IPv4 header")
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack_from("!H", packet, 2)[0]
        if struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:
            return None  # not the first fragment
        proto, src, dst = packet[9], packet[12:16], packet[16:20]
        body = packet[ihl : max(ihl, min(total, len(packet)))]
    elif etype == 0x86DD:
        if len(packet) < 40:
            raise PacketError("truncated IPv6 header")
        proto, src, dst, off = packet[6], packet[8:24], packet[24:40], 40
        while proto in (0, 43, 60, 51, 44):  # hop-by-hop, routing, destination, AH, fragment
            if len(packet) < off + 8:
                raise PacketError("truncated IPv6 extension header")
            if proto == 44 and struct.unpack_from("!H", packet, off + 2)[0] & 0xFFF8:
                return None
            nxt, length = packet[off], (packet[off + 1] + 2) * 4 if proto == 51 else (packet[off + 1] + 1) * 8
            proto, off = nxt, off + (8 if proto == 44 else length)
        body = packet[off:]
    else:
        return None
    if proto == 6:
        if len(body) < 20:
            raise PacketError("truncated TCP header")
        sport, dport, seq = struct.unpack_from("!HHI", body, 0)
        offset = (body[12] >> 4) * 4
        flags = body[13]
        return Segment(_ip(src), _ip(dst), sport, dport, "tcp", body[offset:], seq, bool(flags & 0x02), bool(flags & 0x10))
    if proto == 17:
        if len(body) < 8:
            raise PacketError("truncated UDP header")
        sport, dport = struct.unpack_from("!HH", body, 0)
        return Segment(_ip(src), _ip(dst), sport, dport, "udp", body[8:])
    return None


def client_hello_sni(record: bytes) -> tuple[bool, str, bool]:
    """(complete, sni, ech) for bytes starting a TLS record. complete=False: more bytes are needed.
    Raises PacketError when the bytes are not a TLS handshake at all."""
    if len(record) < 5:
        return False, "", False
    if record[0] != 0x16 or record[1] != 0x03:
        raise NotAStart("not a TLS handshake")
    length = struct.unpack_from("!H", record, 3)[0]
    if length > MAX_HELLO - 5:
        raise PacketError("TLS record longer than the protocol allows")
    if len(record) < 5 + length:
        return False, "", False
    body = record[5 : 5 + length]
    if len(body) < 4 or body[0] != 0x01:
        raise NotAStart("TLS handshake is not a ClientHello")
    hello_len = int.from_bytes(body[1:4], "big")
    # A ClientHello spread over several records (rare): what the first record holds is read.
    return (True, *hello_sni(body[4 : 4 + hello_len]))


ECH_EXTENSION = 0xFE0D
"""encrypted_client_hello: the server_name beside it is only the public (outer) name."""


def hello_sni(hello: bytes) -> tuple[str, bool]:
    """(server_name, has ECH) of a ClientHello message body (after type and length)."""
    name, ech = "", False
    try:
        off = 2 + 32
        off += 1 + hello[off]  # session id
        off += 2 + struct.unpack_from("!H", hello, off)[0]  # cipher suites
        off += 1 + hello[off]  # compression methods
        if off + 2 > len(hello):
            return "", False
        end = min(len(hello), off + 2 + struct.unpack_from("!H", hello, off)[0])
        off += 2
        while off + 4 <= end:
            ext_type, ext_len = struct.unpack_from("!HH", hello, off)
            data = hello[off + 4 : off + 4 + ext_len]
            if ext_type == 0 and len(data) >= 5 and data[2] == 0:
                name_len = struct.unpack_from("!H", data, 3)[0]
                name = data[5 : 5 + name_len].decode("ascii", "replace").lower()
            elif ext_type == ECH_EXTENSION:
                ech = True
            off += 4 + ext_len
    except (IndexError, struct.error):
        raise PacketError("malformed ClientHello") from None
    return name, ech


def http_host(data: bytes) -> tuple[bool, str, str, int]:
    """(complete, method, host, port) for bytes starting an HTTP request; PacketError if not one."""
    line_end = data.find(b"\r\n")
    if line_end < 0:
        if len(data) > 8192 or not data[:1].isalpha():
            raise NotAStart("not an HTTP request")
        return False, "", "", 0
    parts = data[:line_end].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/") or not parts[0].isalpha():
        raise NotAStart("not an HTTP request")
    method, target = parts[0].decode("ascii"), parts[1].decode("ascii", "replace")
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        return True, method, host.strip("[]").lower(), int(port) if port.isdigit() else 443
    header_end = data.find(b"\r\n\r\n")
    if header_end < 0 and len(data) < 8192:
        return False, "", "", 0
    for line in data[line_end + 2 : header_end if header_end >= 0 else len(data)].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            host, _, port = value.strip().decode("ascii", "replace").rpartition(":")
            if not port.isdigit():
                host, port = value.strip().decode("ascii", "replace"), "80"
            return True, method, host.strip("[]").lower(), int(port)
    return True, method, "", 0


def socks5_target(data: bytes) -> tuple[bool, str, int]:
    """(complete, host, port) from a SOCKS5 client's greeting followed by its CONNECT request."""
    if len(data) < 2:
        return False, "", 0
    if data[0] != 0x05 or not 1 <= data[1] <= 16:
        raise NotAStart("not a SOCKS5 greeting")
    off = 2 + data[1]
    if len(data) < off + 5:
        return False, "", 0
    ver, cmd, _rsv, atyp = data[off : off + 4]
    if ver != 0x05 or cmd != 0x01:
        raise NotAStart("not a SOCKS5 CONNECT")
    off += 4
    if atyp == 0x01:
        raw, off = data[off : off + 4], off + 4
        host = _ip(raw) if len(raw) == 4 else ""
    elif atyp == 0x04:
        raw, off = data[off : off + 16], off + 16
        host = _ip(raw) if len(raw) == 16 else ""
    elif atyp == 0x03:
        n = data[off]
        host, off = data[off + 1 : off + 1 + n].decode("ascii", "replace").lower(), off + 1 + n
    else:
        raise PacketError("SOCKS5 request with an unknown address type")
    if len(data) < off + 2 or not host:
        return False, "", 0
    return True, host, struct.unpack_from("!H", data, off)[0]


def dns_answers(payload: bytes) -> list[tuple[str, str]]:
    """(address, name) pairs from the A/AAAA answers of a DNS response (name = the question)."""
    if len(payload) < 12 or not payload[2] & 0x80:
        return []
    qd, an = struct.unpack_from("!HH", payload, 4)
    off = 12
    question = ""
    try:
        for _ in range(qd):
            name, off = _dns_name(payload, off)
            question = question or name
            off += 4
        found = []
        for _ in range(an):
            _, off = _dns_name(payload, off)
            rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", payload, off)
            off += 10
            rdata = payload[off : off + rdlen]
            if (rtype == 1 and rdlen == 4) or (rtype == 28 and rdlen == 16):
                found.append((_ip(rdata), question))
            off += rdlen
    except (IndexError, struct.error, UnicodeDecodeError, ValueError):
        raise PacketError("malformed DNS response") from None
    return found


def _dns_name(msg: bytes, off: int) -> tuple[str, int]:
    labels, jumps, end = [], 0, -1
    while True:
        length = msg[off]
        if length & 0xC0 == 0xC0:
            if jumps > 20:
                raise ValueError("DNS compression loop")
            if end < 0:
                end = off + 2
            off, jumps = ((length & 0x3F) << 8) | msg[off + 1], jumps + 1
            continue
        if length == 0:
            return ".".join(labels).lower(), (end if end >= 0 else off + 1)
        labels.append(msg[off + 1 : off + 1 + length].decode("ascii"))
        off += 1 + length


class _Flow:
    """First client bytes of one TCP connection, reassembled by sequence number."""

    __slots__ = ("start", "segments", "ts")

    def __init__(self, start: int, ts: dt.datetime) -> None:
        self.start = start
        self.segments: dict[int, bytes] = {}
        self.ts = ts

    def add(self, seq: int, data: bytes) -> bytes:
        self.segments.setdefault((seq - self.start) & 0xFFFFFFFF, data)
        out = b""
        for rel in sorted(self.segments):
            if rel > len(out) or rel > MAX_HELLO:
                break
            piece = self.segments[rel]
            out += piece[len(out) - rel :]
        return out[:MAX_HELLO]


class Extractor:
    """Turns frames into connection events; keeps bounded state across frames."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._flows: OrderedDict[tuple[str, int, str, int], _Flow] = OrderedDict()
        self._done: OrderedDict[tuple[str, int, str, int], None] = OrderedDict()
        self._dns: OrderedDict[str, str] = OrderedDict()
        self._quic_streams: OrderedDict[tuple[str, int, str, int], tuple[quic.CryptoStream, dt.datetime]] = OrderedDict()

    def frame(self, number: int, ts: dt.datetime, linktype: int, frame: bytes) -> ConnectionEvent | None:
        """One frame -> an event when it completes a connection's name; PacketError when bad."""
        seg = transport(*link_payload(linktype, frame))
        if seg is None:
            return None
        if seg.proto == "udp":
            if seg.payload and quic.is_initial(seg.payload):
                return self._quic(number, ts, seg)
            if seg.orig_p == 53 and seg.payload:
                for addr, name in dns_answers(seg.payload):
                    self._dns[addr] = name
                    self._dns.move_to_end(addr)
                    if len(self._dns) > MAX_DNS_NAMES:
                        self._dns.popitem(last=False)
            return None
        key = (seg.orig_h, seg.orig_p, seg.resp_h, seg.resp_p)
        if seg.syn:
            if seg.ack:
                return None  # the server's SYN-ACK
            self._done.pop(key, None)
            flow = self._flows[key] = _Flow((seg.seq + 1) & 0xFFFFFFFF, ts)
            self._bound()
            seq = (seg.seq + 1) & 0xFFFFFFFF  # data in a SYN (TCP Fast Open) follows its sequence number
        else:
            if key in self._done or not seg.payload:
                return None
            flow = self._flows.get(key)
            if flow is None:  # the capture started mid-connection: take this as the start
                flow = self._flows[key] = _Flow(seg.seq, ts)
                self._bound()
            seq = seg.seq
        if not seg.payload:
            return None
        data = flow.add(seq, seg.payload)
        if not data:
            return None
        try:
            ech = False
            if data[0] == 0x16:
                complete, name, ech = client_hello_sni(data)
                method, source = "", "sni"
            elif data[0] == 0x05:
                complete, name, _port = socks5_target(data)
                method, source = "", "socks5"
            else:
                complete, method, name, _port = http_host(data)
                source = "connect" if method == "CONNECT" else "http"
        except NotAStart:
            self._finish(key)
            return None
        except PacketError:
            self._finish(key)
            raise
        if not complete:
            if len(data) >= MAX_HELLO:
                self._finish(key)
            return None
        self._finish(key)
        name, source = self._resolve(name, source, seg.resp_h, ech)
        return ConnectionEvent(
            ts=flow.ts, orig_h=seg.orig_h, orig_p=seg.orig_p, resp_h=seg.resp_h, resp_p=seg.resp_p,
            server_name=name, source=f"{self.source}#{number}", method=method, name_source=source,
        )

    def _quic(self, number: int, ts: dt.datetime, seg: Segment) -> ConnectionEvent | None:
        key = (seg.orig_h, seg.orig_p, seg.resp_h, seg.resp_p)
        if key in self._done:
            return None
        try:
            _dcid, frames = quic.initial_crypto(seg.payload)
        except quic.QuicError as e:
            if "does not decrypt" in str(e):
                return None  # the server's Initial (other keys), or a retransmission we cannot read
            raise PacketError(f"QUIC: {e}") from None
        if not frames:
            return None
        stream = self._quic_streams.get(key)
        if stream is None:
            stream = self._quic_streams[key] = (quic.CryptoStream(), ts)
            if len(self._quic_streams) > MAX_FLOWS:
                self._quic_streams.popitem(last=False)
        data = stream[0].add(frames)
        if len(data) < 4:
            return None
        if data[0] != 0x01:
            self._quic_streams.pop(key, None)
            self._done[key] = None
            return None
        hello_len = int.from_bytes(data[1:4], "big")
        if len(data) < 4 + hello_len:
            return None
        self._quic_streams.pop(key, None)
        self._done[key] = None
        sni, ech = hello_sni(data[4 : 4 + hello_len])
        name, source = self._resolve(sni, "sni", seg.resp_h, ech)
        return ConnectionEvent(
            ts=stream[1], orig_h=seg.orig_h, orig_p=seg.orig_p, resp_h=seg.resp_h, resp_p=seg.resp_p,
            proto="udp", server_name=name, source=f"{self.source}#{number}", name_source=source,
        )

    def _resolve(self, name: str, source: str, resp_h: str, ech: bool) -> tuple[str, str]:
        """The name of a connection: the one it sent, unless it sent none or only an ECH outer
        name; then the latest DNS answer for its server address."""
        if name and not ech:
            return name, source
        answer = self._dns.get(resp_h, "")
        if answer:
            return answer, "dns"
        return (name, "ech-outer") if name else ("", "none")

    def _bound(self) -> None:
        if len(self._flows) > MAX_FLOWS:
            self._flows.popitem(last=False)

    def _finish(self, key: tuple[str, int, str, int]) -> None:
        self._flows.pop(key, None)
        self._done[key] = None
        if len(self._done) > MAX_FLOWS:
            self._done.popitem(last=False)
