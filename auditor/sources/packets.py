"""Bytes of captured frames -> connection events. Only the bytes needed are parsed.

Link types: Ethernet (802.1Q/QinQ tags, PPPoE sessions, MPLS), Linux cooked SLL and SLL2, raw
IP, BSD loopback (null and loop), PPP (with and without HDLC framing, PPPoE), Cisco HDLC.
Network: IPv4 (first fragments only) and IPv6 (extension headers skipped).

What names a connection, from the client's first bytes: a TLS ClientHello's SNI (reassembled
when split over several TCP segments, also out of order), an HTTP CONNECT target or Host header,
a SOCKS4/4a or SOCKS5 CONNECT target. When a CONNECT or SOCKS target is only an IP address, the
ClientHello sent through the tunnel names the connection (`connect+sni`, `socks5+sni`).
A WebSocket upgrade (`Upgrade: websocket`) is a tunnel too: a ClientHello in the client's first
frames (unmasked) names the connection (`websocket+sni`, wstunnel and the like); otherwise the
Host header does. QUIC v1 and v2 Initial packets are decrypted (auditor.sources.quic) for the
ClientHello's SNI.

How a hello's name is chosen (`Extractor._resolve`; the rule is the event's `name_source`):
- `sni`: the server_name of a hello without an encrypted_client_hello (ECH) extension.
- `sni+ech`: the hello carries an ECH extension, but its server_name stands. Chrome and Firefox
  send a GREASE ECH extension on every connection to a server that publishes no ECH config; it
  cannot be told from real ECH on the wire, so the outer name is taken as the real one unless
  the evidence below says otherwise.
- `ech-dns`: real ECH, shown by this client's own DNS: it resolved a name to the server's address
  and got, for that name, an HTTPS/SVCB answer whose ECH config has the outer name as its
  public_name. The connection is named by that name (the latest such, when there are several).
- `ech-outer`: the outer name is a known ECH public name (ECH_PUBLIC_NAMES) but this client's DNS
  does not show which name is inside: the outer name is kept.
- `dns`: a hello without SNI (or a tunnel to an address that sent none), named by the latest
  name this client resolved to the server's address; `none` when it resolved none.
Weaker evidence of real ECH is not used, because every guess names a browser visit as an API call
somewhere: "a name the client resolved to that address" (a CDN address serves thousands of names,
and names resolved before the capture began are cached, missing from it: headless Chromium does
exactly this in tests/sources/test_pcap.py), or a public name another client's DNS gave.
DNS answers are remembered per client (the response's destination address), never shared
between clients: another client's lookup says nothing of what this one meant.

State is bounded: at most MAX_FLOWS flows being read, MAX_FIRST_BYTES kept per flow and
MAX_HELD_BYTES for all of them (TCP and QUIC; the least recently active flows are forgotten first
beyond it, and counted), flows idle for IDLE_SECONDS (capture time) forgotten, MAX_DNS_NAMES
pairs remembered from DNS.
"""

from __future__ import annotations

import datetime as dt
import socket
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from auditor.events import ConnectionEvent
from auditor.sources import quic
from auditor.sources.common import NOT_A_HOST, is_host, small_int
from auditor.sources.interface import SourceStats

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_PPP, LINKTYPE_RAW_ALT, LINKTYPE_PPP_HDLC = 0, 1, 9, 12, 50
LINKTYPE_PPP_ETHER, LINKTYPE_RAW, LINKTYPE_C_HDLC, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL = 51, 101, 104, 108, 113
LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 228, 229, 276
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_VLAN = (0x8100, 0x88A8, 0x9100)
_PPP_TO_ETHERTYPE = {0x0021: ETH_IPV4, 0x0057: ETH_IPV6}
TCP_SYN, TCP_ACK = 0x02, 0x10

MAX_FLOWS = 100_000
"""Flows whose first client bytes are being collected at once; the least recently active is dropped beyond it."""
MAX_HELLO = 16_384 + 5
"""A ClientHello record is at most one TLS record."""
MAX_PREAMBLE = 8_192
"""Bytes a proxy request (CONNECT headers, SOCKS handshake) may take before a tunnelled ClientHello."""
MAX_FIRST_BYTES = MAX_HELLO + MAX_PREAMBLE
"""Bytes kept per flow."""
MAX_AHEAD = 64
"""Segments kept per flow beyond a gap (out of order); later ones are dropped until it fills."""
MAX_DNS_NAMES = 200_000
"""(client, address) pairs and (client, name) pairs remembered from DNS answers; the oldest is
forgotten beyond it."""
NAMES_PER_ADDRESS = 4
"""Names remembered per (client, address), the latest last."""
ECH_PUBLIC_NAMES = frozenset({"cloudflare-ech.com"})
"""Public names of ECH client-facing servers known without DNS evidence (Cloudflare's, used for
every zone it serves with ECH): a hello with one of them as its outer name is real ECH."""
IDLE_SECONDS = 60.0
"""A flow whose first bytes are incomplete and that sees no packet for this long is forgotten."""
DONE_SECONDS = 900.0
"""How long a named flow's later packets are recognised and skipped without parsing."""


MAX_HELD_BYTES = 32 << 20
"""First bytes held for all unnamed flows together, each flow's bookkeeping counted as FLOW_COST."""
FLOW_COST = 512
"""What one flow being read costs besides its bytes (objects, table entries), for MAX_HELD_BYTES."""

FORGOTTEN = "connections forgotten before they were named (idle 60 s, or more than 100,000 at once)"
"""The not-counted reason for flows dropped by the bounds above."""
SHED = "connections forgotten before they were named, to keep memory bounded (32 MiB of unfinished first bytes)"
"""The not-counted reason for flows dropped, oldest first, when MAX_HELD_BYTES is reached."""


class PacketError(Exception):
    """A frame that cannot be parsed; counted and skipped with its packet number."""


class NotAStart(Exception):
    """A flow's first bytes are neither a ClientHello nor a proxy or HTTP request: nothing to name."""


def ip_text(raw: bytes) -> str:
    """Packed IPv4 or IPv6 address -> text."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _by_version(frame: bytes, off: int) -> tuple[int, int]:
    if len(frame) <= off:
        raise PacketError("empty IP packet")
    version = frame[off] >> 4
    return (ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else 0), off


def _ppp(frame: bytes, off: int) -> tuple[int, int]:
    """A PPP frame from `off`: optional HDLC address/control bytes, then the protocol field."""
    if frame[off : off + 2] == b"\xff\x03":
        off += 2
    if len(frame) < off + 1:
        raise PacketError("truncated PPP header")
    if frame[off] & 1:  # protocol field compressed to one byte
        return _PPP_TO_ETHERTYPE.get(frame[off], 0), off + 1
    if len(frame) < off + 2:
        raise PacketError("truncated PPP header")
    return _PPP_TO_ETHERTYPE.get((frame[off] << 8) | frame[off + 1], 0), off + 2


def link_payload(linktype: int, frame: bytes) -> tuple[int, int]:
    """(ethertype of the network packet, its offset in the frame); ethertype 0 when not IP."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            raise PacketError("truncated Ethernet header")
        etype, off = (frame[12] << 8) | frame[13], 14
        while etype in _VLAN:
            if len(frame) < off + 4:
                raise PacketError("truncated VLAN tag")
            etype, off = (frame[off + 2] << 8) | frame[off + 3], off + 4
        if etype == 0x8864:  # PPPoE session: 6-byte header, then PPP
            if len(frame) < off + 8:
                raise PacketError("truncated PPPoE header")
            return _ppp(frame, off + 6)
        if etype in (0x8847, 0x8848):  # MPLS: labels down to the bottom of the stack
            while True:
                if len(frame) < off + 4:
                    raise PacketError("truncated MPLS label")
                bottom, off = frame[off + 2] & 1, off + 4
                if bottom:
                    return _by_version(frame, off)
        return etype, off
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            raise PacketError("truncated SLL header")
        return (frame[14] << 8) | frame[15], 16
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            raise PacketError("truncated SLL2 header")
        return (frame[0] << 8) | frame[1], 20
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_ALT, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return _by_version(frame, 0)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 5:
            raise PacketError("truncated loopback header")
        return _by_version(frame, 4)
    if linktype in (LINKTYPE_PPP, LINKTYPE_PPP_HDLC):
        return _ppp(frame, 0)
    if linktype == LINKTYPE_PPP_ETHER:
        if len(frame) < 8:
            raise PacketError("truncated PPPoE header")
        return _ppp(frame, 6)
    if linktype == LINKTYPE_C_HDLC:
        if len(frame) < 4:
            raise PacketError("truncated Cisco HDLC header")
        return (frame[2] << 8) | frame[3], 4
    raise PacketError(f"link type {linktype} is not supported")


Transport = tuple[int, bytes, bytes, int, int, bytes, int, int]
"""(IP protocol 6 or 17, source address, destination address, source port, destination port,
payload, TCP sequence number, TCP flags), addresses packed."""


def transport(etype: int, frame: bytes, off: int = 0) -> Transport | None:
    """TCP or UDP facts of the IP packet at `off`; None for other protocols and later fragments."""
    if etype == ETH_IPV4:
        if len(frame) < off + 20 or frame[off] >> 4 != 4:
            raise PacketError("truncated IPv4 header")
        if ((frame[off + 6] << 8) | frame[off + 7]) & 0x1FFF:
            return None  # not the first fragment
        proto = frame[off + 9]
        if proto != 6 and proto != 17:
            return None
        src, dst = frame[off + 12 : off + 16], frame[off + 16 : off + 20]
        end = off + max((frame[off + 2] << 8) | frame[off + 3], 20)  # frames may carry padding
        off += (frame[off] & 0x0F) * 4
    elif etype == ETH_IPV6:
        if len(frame) < off + 40:
            raise PacketError("truncated IPv6 header")
        proto, src, dst = frame[off + 6], frame[off + 8 : off + 24], frame[off + 24 : off + 40]
        end = off + 40 + ((frame[off + 4] << 8) | frame[off + 5])
        off += 40
        while proto in (0, 43, 60, 51, 44):  # hop-by-hop, routing, destination, AH, fragment
            if len(frame) < off + 8:
                raise PacketError("truncated IPv6 extension header")
            if proto == 44 and ((frame[off + 2] << 8) | frame[off + 3]) & 0xFFF8:
                return None
            length = 8 if proto == 44 else (frame[off + 1] + 2) * 4 if proto == 51 else (frame[off + 1] + 1) * 8
            proto, off = frame[off], off + length
        if proto != 6 and proto != 17:
            return None
    else:
        return None
    if proto == 6:
        if len(frame) < off + 20:
            raise PacketError("truncated TCP header")
        sport, dport, seq = struct.unpack_from("!HHI", frame, off)
        return 6, src, dst, sport, dport, frame[off + (frame[off + 12] >> 4) * 4 : end], seq, frame[off + 13]
    if len(frame) < off + 8:
        raise PacketError("truncated UDP header")
    sport, dport = struct.unpack_from("!HH", frame, off)
    return 17, src, dst, sport, dport, frame[off + 8 : end], 0, 0


def client_hello_sni(record: bytes) -> tuple[bool, str, bool]:
    """(complete, sni, ech) for bytes starting a TLS record. complete=False: more bytes are needed.
    NotAStart when the bytes are not a ClientHello; PacketError when they are a broken one."""
    if len(record) < 5:
        return False, "", False
    if record[0] != 0x16 or record[1] != 0x03:
        raise NotAStart("not a TLS handshake")
    length = (record[3] << 8) | record[4]
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
                if name and not is_host(name):
                    raise PacketError(f"ClientHello server_name: {NOT_A_HOST}")
            elif ext_type == ECH_EXTENSION:
                ech = True
            off += 4 + ext_len
    except (IndexError, struct.error):
        raise PacketError("malformed ClientHello") from None
    return name, ech


def http_host(data: bytes) -> tuple[bool, str, str, int, int]:
    """(complete, method, host, port, header length) for bytes starting an HTTP request; NotAStart
    if not one. The header length (-1 until the blank line is seen) is where a CONNECT tunnel's
    own bytes begin."""
    line_end = data.find(b"\r\n")
    if line_end < 0:
        if len(data) > 8192 or not data[:1].isalpha():
            raise NotAStart("not an HTTP request")
        return False, "", "", 0, -1
    parts = data[:line_end].split(b" ")
    # `METHOD target HTTP/1.1`; clients that put more between (`CONNECT host:25 / HTTP/1.0`) are
    # read as proxies read them: the target is the second word.
    if len(parts) < 3 or not parts[-1].startswith(b"HTTP/") or not parts[0].isalpha():
        raise NotAStart("not an HTTP request")
    method, target = parts[0].decode("ascii"), parts[1].decode("ascii", "replace")
    header_end = data.find(b"\r\n\r\n")
    header_len = header_end + 4 if header_end >= 0 else -1
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        return True, method, host.strip("[]").lower(), small_int(port) or 443, header_len
    if header_end < 0 and len(data) < 8192:
        return False, "", "", 0, -1
    for line in data[line_end + 2 : header_end if header_end >= 0 else len(data)].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            host, _, port = value.strip().decode("ascii", "replace").rpartition(":")
            if small_int(port) is None:
                host, port = value.strip().decode("ascii", "replace"), "80"
            return True, method, host.strip("[]").lower(), int(port), header_len
    return True, method, "", 0, header_len


def socks5_target(data: bytes) -> tuple[bool, str, int, int]:
    """(complete, host, port, length) from a SOCKS5 client's greeting, its username/password
    sub-negotiation when it offered one (RFC 1929), and its CONNECT request."""
    if len(data) < 2:
        return False, "", 0, 0
    if data[0] != 0x05 or not 1 <= data[1] <= 16:
        raise NotAStart("not a SOCKS5 greeting")
    off = 2 + data[1]
    if len(data) < off + 1:
        return False, "", 0, 0
    if data[off] == 0x01 and 0x02 in data[2 : 2 + data[1]]:  # username/password, never kept
        if len(data) < off + 2 or len(data) < off + 3 + data[off + 1]:
            return False, "", 0, 0
        off += 2 + data[off + 1]
        off += 1 + data[off]
    if len(data) < off + 5:
        return False, "", 0, 0
    ver, cmd, _rsv, atyp = data[off : off + 4]
    if ver != 0x05 or cmd != 0x01:
        raise NotAStart("not a SOCKS5 CONNECT")
    off += 4
    if atyp == 0x01:
        raw, off = data[off : off + 4], off + 4
        host = ip_text(raw) if len(raw) == 4 else ""
    elif atyp == 0x04:
        raw, off = data[off : off + 16], off + 16
        host = ip_text(raw) if len(raw) == 16 else ""
    elif atyp == 0x03:
        n = data[off]
        host, off = data[off + 1 : off + 1 + n].decode("ascii", "replace").lower(), off + 1 + n
    else:
        raise PacketError("SOCKS5 request with an unknown address type")
    if len(data) < off + 2 or not host:
        return False, "", 0, 0
    return True, host, struct.unpack_from("!H", data, off)[0], off + 2


def socks4_target(data: bytes) -> tuple[bool, str, int, int]:
    """(complete, host, port, length) from a SOCKS4 or SOCKS4a CONNECT request."""
    if len(data) < 2:
        return False, "", 0, 0
    if data[1] != 0x01:
        raise NotAStart("not a SOCKS4 CONNECT")
    user_end = data.find(b"\x00", 8)
    if len(data) < 9 or user_end < 0:
        if len(data) > 1024:
            raise NotAStart("not a SOCKS4 request")
        return False, "", 0, 0
    port, address = struct.unpack_from("!H", data, 2)[0], data[4:8]
    if address[:3] == b"\x00\x00\x00" and address[3]:  # SOCKS4a: the host name follows
        name_end = data.find(b"\x00", user_end + 1)
        if name_end < 0:
            return False, "", 0, 0
        return True, data[user_end + 1 : name_end].decode("ascii", "replace").lower(), port, name_end + 1
    return True, ip_text(address), port, user_end + 1


class DnsAnswer(NamedTuple):
    """What a DNS response tells about names: addresses and ECH public names, per question."""

    addresses: list[tuple[bytes, str]]
    """(packed address, name) from A/AAAA answers and HTTPS/SVCB address hints (name = the question)."""
    ech: list[tuple[str, str]]
    """(name, ECH public name) from the ech parameter of HTTPS/SVCB answers."""


def _upgrades_to_websocket(header: bytes) -> bool:
    """True when an HTTP request's header block asks for a WebSocket (`Upgrade: websocket`)."""
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


MAX_FRAMES = 64
"""WebSocket frames read for a ClientHello; a tunnel's hello is in its first one or two."""


def websocket_payload(data: bytes) -> bytes:
    """The unmasked payload of the data frames (text, binary, continuation) at the start of a
    WebSocket client's byte stream (RFC 6455 section 5.2); control frames are passed over, and
    a frame cut short gives what it holds so far."""
    out = bytearray()
    off = 0
    for _ in range(MAX_FRAMES):
        if off + 2 > len(data):
            break
        opcode, length = data[off] & 0x0F, data[off + 1] & 0x7F
        masked = data[off + 1] & 0x80
        off += 2
        if length == 126:
            if off + 2 > len(data):
                break
            length, off = struct.unpack_from("!H", data, off)[0], off + 2
        elif length == 127:
            if off + 8 > len(data):
                break
            length, off = struct.unpack_from("!Q", data, off)[0], off + 8
        key = data[off : off + 4] if masked else b"\x00\x00\x00\x00"
        if len(key) < 4:
            break
        off += 4 if masked else 0
        piece = data[off : off + length]
        off += length
        if opcode <= 2 and piece:
            mask = (key * (len(piece) // 4 + 1))[: len(piece)]
            out += (int.from_bytes(piece, "big") ^ int.from_bytes(mask, "big")).to_bytes(len(piece), "big")
    return bytes(out)


def dns_answers(payload: bytes) -> DnsAnswer:
    """The A/AAAA and HTTPS/SVCB (RFC 9460) answers of a DNS response."""
    found = DnsAnswer([], [])
    if len(payload) < 12 or not payload[2] & 0x80:
        return found
    qd, an = struct.unpack_from("!HH", payload, 4)
    off = 12
    question = ""
    try:
        for _ in range(qd):
            name, off = _dns_name(payload, off)
            question = question or name
            off += 4
        if not question:
            return found  # nothing to name connections with
        for _ in range(an):
            off = _skip_name(payload, off)
            rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", payload, off)
            off += 10
            rdata = payload[off : off + rdlen]
            if len(rdata) != rdlen:
                raise ValueError("truncated answer")
            if (rtype == 1 and rdlen == 4) or (rtype == 28 and rdlen == 16):
                found.addresses.append((rdata, question))
            elif rtype in (64, 65):
                _svcb(rdata, question, found)
            off += rdlen
    except (IndexError, struct.error, UnicodeDecodeError, ValueError):
        raise PacketError("malformed DNS response") from None
    return found


def _svcb(rdata: bytes, question: str, found: DnsAnswer) -> None:
    """An HTTPS/SVCB record's address hints and ECH configs' public names into `found`; a damaged
    record gives what it holds before the damage (the response's other answers still count)."""
    try:
        _svcb_params(rdata, question, found)
    except (IndexError, struct.error, UnicodeDecodeError, ValueError):
        pass


def _svcb_params(rdata: bytes, question: str, found: DnsAnswer) -> None:
    off = _skip_name(rdata, 2)  # SvcPriority, then TargetName (never compressed)
    while off + 4 <= len(rdata):
        key, length = struct.unpack_from("!HH", rdata, off)
        value = rdata[off + 4 : off + 4 + length]
        off += 4 + length
        if key == 4:  # ipv4hint
            found.addresses.extend((value[i : i + 4], question) for i in range(0, len(value) - 3, 4))
        elif key == 6:  # ipv6hint
            found.addresses.extend((value[i : i + 16], question) for i in range(0, len(value) - 15, 16))
        elif key == 5:  # ech: an ECHConfigList
            found.ech.extend((question, public) for public in ech_public_names(value))


def ech_public_names(config_list: bytes) -> list[str]:
    """The public_name of each ECHConfig (version 0xfe0d) in an ECHConfigList
    (draft-ietf-tls-esni-22 section 4); other versions are passed over."""
    names = []
    end = min(len(config_list), 2 + struct.unpack_from("!H", config_list, 0)[0])
    off = 2
    while off + 4 <= end:
        version, length = struct.unpack_from("!HH", config_list, off)
        body, off = config_list[off + 4 : off + 4 + length], off + 4 + length
        if version != ECH_EXTENSION:
            continue
        at = 1 + 2  # config_id, kem_id
        at += 2 + struct.unpack_from("!H", body, at)[0]  # public_key
        at += 2 + struct.unpack_from("!H", body, at)[0]  # cipher_suites
        at += 1  # maximum_name_length
        size = body[at]
        name = body[at + 1 : at + 1 + size]
        if len(name) == size and size:
            names.append(name.decode("ascii").lower())
    return names


MAX_NAME = 255
"""Octets of a DNS name in wire form at most (RFC 1035 section 2.3.4); a longer one is malformed."""


def _dns_name(msg: bytes, off: int) -> tuple[str, int]:
    """(name, offset after it) of the name at `off`, compression pointers followed."""
    labels: list[str]
    labels, jumps, end, size = [], 0, -1, 1
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
        size += 1 + length
        if size > MAX_NAME or length & 0xC0:
            raise ValueError("DNS name too long")
        labels.append(msg[off + 1 : off + 1 + length].decode("ascii"))
        off += 1 + length


def _skip_name(msg: bytes, off: int) -> int:
    """The offset after the name at `off`, not decoded (an answer's owner name: the question
    names the answers)."""
    for _ in range(128):
        length = msg[off]
        if length & 0xC0 == 0xC0:
            return off + 2
        if length == 0:
            return off + 1
        off += 1 + length
    raise ValueError("DNS name too long")


def _packed(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)


def _is_address(host: str) -> bool:
    try:
        _packed(host)
    except (OSError, ValueError):  # ValueError: a NUL inside the name
        return False
    return True


FlowKey = bytes
"""Source address, destination address, source port, destination port, packed: 12 bytes for
IPv4, 36 for IPv6. Frames give it as one slice."""


_KEY4, _KEY6 = struct.Struct("12s").unpack_from, struct.Struct("36s").unpack_from


def _key_parts(key: FlowKey) -> tuple[bytes, bytes, int, int]:
    n = (len(key) - 4) // 2
    return key[:n], key[n : 2 * n], (key[-4] << 8) | key[-3], (key[-2] << 8) | key[-1]


_STARTS = frozenset(b"\x16\x05\x04ABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""First bytes a connection's first client segment can have: TLS handshake, SOCKS5, SOCKS4, an HTTP method."""


class _Flow:
    """First client bytes of one TCP connection, reassembled by sequence number."""

    __slots__ = ("ahead", "data", "held", "last", "start", "ts", "tunnel")

    def __init__(self, start: int, ts: float) -> None:
        self.start = start
        self.data = bytearray()
        """The first bytes, contiguous from the connection's start (at most MAX_FIRST_BYTES)."""
        self.ahead: dict[int, bytes] = {}
        """Segments beyond a gap, by offset from the start (at most MAX_AHEAD of them)."""
        self.held = FLOW_COST
        """What the flow holds, for MAX_HELD_BYTES."""
        self.ts = ts
        self.last = ts
        self.tunnel: tuple[str, int, str, str, int, int] | None = None
        """(target address, port, name source, method, where the tunnel's bytes start, packet
        number) once a CONNECT or SOCKS request to an IP address has been read."""

    def add(self, seq: int, payload: bytes) -> bytes:
        """The first bytes once `payload` (at sequence number `seq`) is in; b"" when they did
        not grow (a retransmission, a segment beyond a gap, bytes past MAX_FIRST_BYTES)."""
        rel = (seq - self.start) & 0xFFFFFFFF
        have = len(self.data)
        if rel > have:
            if rel < MAX_FIRST_BYTES and rel not in self.ahead and len(self.ahead) < MAX_AHEAD:
                piece = payload[: MAX_FIRST_BYTES - rel]
                self.ahead[rel] = piece
                self.held += len(piece)
            return b""
        if rel + len(payload) <= have or have >= MAX_FIRST_BYTES:
            return b""
        self.data += payload[have - rel : MAX_FIRST_BYTES - rel]
        while self.ahead:
            rel = min(self.ahead)
            if rel > len(self.data):
                break
            piece = self.ahead.pop(rel)
            self.held -= len(piece)
            self.data += piece[len(self.data) - rel :]
        self.held += len(self.data) - have
        return bytes(self.data)


class Extractor:
    """Turns frames into connection events; keeps bounded state across frames."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._flows: OrderedDict[FlowKey, _Flow] = OrderedDict()
        """Flows being read, least recently active first."""
        self._done: OrderedDict[FlowKey, float] = OrderedDict()
        """Flows named or given up on, by when; oldest first."""
        self._dns: OrderedDict[bytes, list[str]] = OrderedDict()
        """Names each client resolved to each address, keyed by client + address packed; the latest last."""
        self._resolved: OrderedDict[bytes, str] = OrderedDict()
        """Names each client resolved, keyed by client + name: the ECH public name DNS gave for it, or ""."""
        self._quic: OrderedDict[FlowKey, tuple[quic.CryptoStream, float]] = OrderedDict()
        self._next_sweep = 0.0
        self.pending: list[ConnectionEvent] = []
        """Events completed other than by a frame (a tunnel whose own bytes never came): the
        caller takes them after each frame and after `finish()`."""
        self.expired = 0
        """Flows forgotten before they were named: idle too long, or beyond MAX_FLOWS."""
        self.shed = 0
        """Flows forgotten before they were named because MAX_HELD_BYTES was reached."""
        self._held = 0
        """What the flows in `_flows` and `_quic` hold (their `held`)."""

    def frame(self, number: int, ts: float, linktype: int, frame: bytes) -> ConnectionEvent | None:
        """One frame -> an event when it completes a connection's name; PacketError when bad."""
        etype, off = link_payload(linktype, frame)
        seg = transport(etype, frame, off)
        if seg is None:
            return None
        if ts >= self._next_sweep:
            self._sweep(ts)
        proto, src, dst, sport, dport, payload, seq, flags = seg
        key = src + dst + struct.pack("!HH", sport, dport)
        if proto == 17:
            if not payload:
                return None
            if quic.is_initial(payload):
                return self._quic_initial(number, ts, key, payload)
            if sport == 53:
                self._remember(dst, dns_answers(payload))
            return None
        flow: _Flow | None
        if flags & TCP_SYN:
            if flags & TCP_ACK:
                return None  # the server's SYN-ACK
            self._done.pop(key, None)
            flow = self._track(key, _Flow((seq + 1) & 0xFFFFFFFF, ts))
            seq = (seq + 1) & 0xFFFFFFFF  # data in a SYN (TCP Fast Open) follows its sequence number
            if not payload:
                return None
        else:
            if not payload or key in self._done:
                return None
            flow = self._flows.get(key)
            if flow is None:  # the capture started mid-connection: take this as the start, if it can be one
                if payload[0] not in _STARTS:
                    return None
                flow = self._track(key, _Flow(seq, ts))
            else:
                flow.last = ts
                self._flows.move_to_end(key)
        held = flow.held
        data = flow.add(seq, payload)
        if flow.held != held:
            self._held += flow.held - held
            if self._held > MAX_HELD_BYTES:
                self._shed(key)
        if not data:
            return None
        try:
            return self._name(number, key, flow, data)
        except NotAStart:
            self._finish(key, ts)
            return None
        except PacketError:
            self._finish(key, ts)
            raise

    def uninteresting(self, buf: bytes | bytearray, s: int, end: int, linktype: int) -> bool:
        """True for the frame `buf[s:end]` when it cannot change anything, told from a few bytes:
        the cheap path for the bulk of a capture (Ethernet; IPv4 without options or IPv6 without
        extension headers): a TCP segment without data, or with data on a flow already named, or
        with data that cannot start a flow; a UDP datagram neither a QUIC long-header packet nor
        DNS. Written for speed: it runs on every packet of a capture file."""
        if linktype != LINKTYPE_ETHERNET or end - s < 54:
            return False
        kind = buf[s + 12]
        if kind == 0x08:
            if buf[s + 13] or buf[s + 14] != 0x45 or buf[s + 20] & 0x1F or buf[s + 21]:
                return False
            proto = buf[s + 23]
            if proto == 6:
                if buf[s + 47] & TCP_SYN:
                    return False
                start = s + 34 + (buf[s + 46] >> 4) * 4
                if s + 14 + ((buf[s + 16] << 8) | buf[s + 17]) <= start:
                    return True  # no data
                key = _KEY4(buf, s + 26)[0]
            elif proto == 17:
                return s + 42 < end and not buf[s + 42] & 0x80 and not (buf[s + 34] == 0 and buf[s + 35] == 53)
            else:
                return False
        elif kind == 0x86:
            if buf[s + 13] != 0xDD or end - s < 74:
                return False
            proto = buf[s + 20]
            if proto == 6:
                if buf[s + 67] & TCP_SYN:
                    return False
                start = s + 54 + (buf[s + 66] >> 4) * 4
                if s + 54 + ((buf[s + 18] << 8) | buf[s + 19]) <= start:
                    return True
                key = _KEY6(buf, s + 22)[0]
            elif proto == 17:
                return s + 62 < end and not buf[s + 62] & 0x80 and not (buf[s + 54] == 0 and buf[s + 55] == 53)
            else:
                return False
        else:
            return False
        if key in self._done:
            return True  # a flow already named
        return key not in self._flows and start < end and buf[start] not in _STARTS

    def _name(self, number: int, key: FlowKey, flow: _Flow, data: bytes) -> ConnectionEvent | None:
        """The event for a flow whose first bytes are `data`, once they are complete."""
        if flow.tunnel is not None:
            return self._tunnelled(number, key, flow, data)
        ech, method, port, length = False, "", 0, 0
        first = data[0]
        if first == 0x16:
            complete, name, ech = client_hello_sni(data)
            source = "sni"
        elif first == 0x05:
            complete, name, port, length = socks5_target(data)
            source = "socks5"
        elif first == 0x04:
            complete, name, port, length = socks4_target(data)
            source = "socks4"
        else:
            complete, method, name, port, length = http_host(data)
            source = "connect" if method == "CONNECT" else "http"
        if not complete:
            if len(data) >= MAX_FIRST_BYTES:
                self._finish(key, flow.last)
            return None
        if name and not is_host(name):
            raise PacketError(f"{source}: {NOT_A_HOST}")
        if source != "sni" and source != "http" and _is_address(name):
            # A tunnel to an address: the ClientHello sent through it names the connection.
            if length < 0:  # CONNECT headers not finished
                return None
            flow.tunnel = (name, port, source, method, length, number)
            return self._tunnelled(number, key, flow, data)
        if source == "http" and length > 0 and _upgrades_to_websocket(data[:length]):
            # A WebSocket: a ClientHello in its first frames (wstunnel) names the connection.
            flow.tunnel = (name, port, "websocket", method, length, number)
            return self._tunnelled(number, key, flow, data)
        self._finish(key, flow.last)
        client, server = _key_parts(key)[:2]
        named, rule = self._resolve(name, client, server, ech)
        if source == "sni" or rule != "sni":  # a proxy request or HTTP Host names as it is
            source = rule
        return self._event(number, key, flow.ts, named, source, method, sent=name)

    def _tunnelled(self, number: int, key: FlowKey, flow: _Flow, data: bytes) -> ConnectionEvent | None:
        target, _port, source, method, start, _number = flow.tunnel  # type: ignore[misc]
        inner = data[start:]
        if source == "websocket":
            inner = websocket_payload(inner)
        if not inner:
            if len(data) >= MAX_FIRST_BYTES:
                self._finish(key, flow.last)
                return self._unnamed_tunnel(key, flow)
            return None
        try:
            complete, sni, ech = client_hello_sni(inner)
        except NotAStart:
            complete, sni, ech = True, "", False
        if not complete and len(data) < MAX_FIRST_BYTES:
            return None
        self._finish(key, flow.last)
        if not sni:
            return self._unnamed_tunnel(key, flow)
        client = _key_parts(key)[0]
        server = _packed(target) if source != "websocket" else _key_parts(key)[1]
        name, rule = self._resolve(sni, client, server, ech)
        return self._event(number, key, flow.ts, name, f"{source}+{rule}", method, sent=sni)

    def _event(
        self, number: int, key: FlowKey, ts: float, name: str, source: str, method: str, proto: str = "tcp", sent: str = ""
    ) -> ConnectionEvent:
        """The event of a named connection; its `raw` (the evidence kept) says how it was named and,
        when that is another name, what the hello sent."""
        src, dst, sport, dport = _key_parts(key)
        orig_h, resp_h = ip_text(src), ip_text(dst)
        raw = f"{proto} {orig_h} port {sport} -> {resp_h} port {dport}: {name or '-'} ({source}"
        raw += f"; the hello named {sent})" if sent and sent != name else ")"
        return ConnectionEvent(
            ts=dt.datetime.fromtimestamp(ts, tz=dt.UTC),
            orig_h=orig_h,
            orig_p=sport,
            resp_h=resp_h,
            resp_p=dport,
            proto=proto,
            server_name=name,
            source=f"{self.source}#{number}",
            method=method,
            name_source=source,
            raw=raw,
        )

    def _quic_initial(self, number: int, ts: float, key: FlowKey, payload: bytes) -> ConnectionEvent | None:
        if key in self._done:
            return None
        src, dst, sport, dport = _key_parts(key)
        reply = dst + src + struct.pack("!HH", dport, sport)
        if reply in self._done or reply in self._quic:
            return None  # the server's side of a connection whose client was seen: other keys
        try:
            _dcid, frames = quic.initial_crypto(payload)
        except quic.QuicError as e:
            if "does not decrypt" in str(e):
                return None  # the server's Initial (other keys), or a retransmission we cannot read
            raise PacketError(f"QUIC: {e}") from None
        if not frames:
            return None
        stream = self._quic.get(key)
        if stream is None:
            stream = self._quic[key] = (quic.CryptoStream(), ts)
            self._held += stream[0].held
            if len(self._quic) > MAX_FLOWS:
                self._held -= self._quic.popitem(last=False)[1][0].held
                self.expired += 1
        held = stream[0].held
        data = stream[0].add(frames)
        if stream[0].held != held:
            self._held += stream[0].held - held
            if self._held > MAX_HELD_BYTES:
                self._shed(key)
        if len(data) < 4:
            return None
        if data[0] != 0x01:
            self._drop_quic(key)
            self._finish(key, ts)
            return None
        hello_len = int.from_bytes(data[1:4], "big")
        if len(data) < 4 + hello_len:
            return None
        self._drop_quic(key)
        self._finish(key, ts)
        sni, ech = hello_sni(data[4 : 4 + hello_len])
        client, server = _key_parts(key)[:2]
        name, rule = self._resolve(sni, client, server, ech)
        return self._event(number, key, stream[1], name, rule, "", proto="udp", sent=sni)

    def _drop_quic(self, key: FlowKey) -> None:
        stream = self._quic.pop(key, None)
        if stream is not None:
            self._held -= stream[0].held

    def _remember(self, client: bytes, answer: DnsAnswer) -> None:
        """What `client` learnt from one DNS response."""
        for addr, name in answer.addresses:
            pair = client + addr
            names = self._dns.get(pair)
            if names is None:
                names = self._dns[pair] = []
                if len(self._dns) > MAX_DNS_NAMES:
                    self._dns.popitem(last=False)
            else:
                self._dns.move_to_end(pair)
                if name in names:
                    names.remove(name)
            names.append(name)
            del names[:-NAMES_PER_ADDRESS]
            key = client + name.encode()
            self._note_resolved(key, self._resolved.get(key, ""))
        for name, public in answer.ech:
            self._note_resolved(client + name.encode(), public)

    def _note_resolved(self, key: bytes, public: str) -> None:
        self._resolved[key] = public
        self._resolved.move_to_end(key)
        if len(self._resolved) > MAX_DNS_NAMES:
            self._resolved.popitem(last=False)

    def _resolve(self, name: str, client: bytes, server: bytes, ech: bool) -> tuple[str, str]:
        """(name, rule) of a connection from `client` to `server` that sent `name` (its SNI, or
        its outer SNI when `ech`): see the module's docstring for the rules."""
        if name and not ech:
            return name, "sni"
        names = self._dns.get(client + server)
        if not name:
            return (names[-1], "dns") if names else ("", "none")
        for candidate in reversed(names or ()):  # a name whose ECH config (this client's DNS) names it
            if self._resolved.get(client + candidate.encode()) == name:
                return candidate, "ech-dns"
        if name in ECH_PUBLIC_NAMES:
            return name, "ech-outer"
        return name, "sni+ech"  # GREASE ECH, or ECH not shown: the outer name is the name

    def _track(self, key: FlowKey, flow: _Flow) -> _Flow:
        old = self._flows.pop(key, None)
        if old is not None:
            self._held -= old.held
        self._flows[key] = flow
        self._held += flow.held
        if len(self._flows) > MAX_FLOWS:
            self._forget(*self._flows.popitem(last=False))
        elif self._held > MAX_HELD_BYTES:
            self._shed(key)
        return flow

    def _shed(self, keep: FlowKey) -> None:
        """Forget the least recently active flows (TCP and QUIC, oldest first), but `keep`, until
        what they hold is under 7/8 of MAX_HELD_BYTES."""
        target = MAX_HELD_BYTES - MAX_HELD_BYTES // 8
        while self._held > target:
            flow_key = next(iter(self._flows), None)
            quic_key = next(iter(self._quic), None)
            if flow_key == keep:
                self._flows.move_to_end(keep)
                flow_key = next(iter(self._flows))
                if flow_key == keep:
                    flow_key = None
            if quic_key == keep:
                self._quic.move_to_end(keep)
                quic_key = next(iter(self._quic))
                if quic_key == keep:
                    quic_key = None
            if flow_key is None and quic_key is None:
                return
            if flow_key is not None and (quic_key is None or self._flows[flow_key].last <= self._quic[quic_key][1]):
                flow = self._flows.pop(flow_key)
                if flow.tunnel is None:
                    self.shed += 1
                    self._held -= flow.held
                else:
                    self._forget(flow_key, flow)
            else:
                assert quic_key is not None  # both None returned above
                stream, _ts = self._quic.pop(quic_key)
                self._held -= stream.held
                self.shed += 1

    def _forget(self, key: FlowKey, flow: _Flow) -> None:
        """A flow dropped (already out of `_flows`) before it was named: a tunnel to an address is
        still a call to it."""
        self._held -= flow.held
        if flow.tunnel is None:
            self.expired += 1
        else:
            self.pending.append(self._unnamed_tunnel(key, flow))

    def _unnamed_tunnel(self, key: FlowKey, flow: _Flow) -> ConnectionEvent:
        """The event of a tunnel to an address that sent no server name: named by the latest DNS
        answer for the address, else by the address."""
        target, _port, source, method, _start, number = flow.tunnel  # type: ignore[misc]
        if source == "websocket":  # no TLS inside: the Host header names it, as any HTTP request
            return self._event(number, key, flow.ts, target, "http", method)
        name, how = self._resolve("", _key_parts(key)[0], _packed(target), False)
        if how == "none":
            name, how = target, source
        return self._event(number, key, flow.ts, name, how, method)

    def take(self) -> list[ConnectionEvent]:
        """The events completed other than by a frame since the last call (see `pending`)."""
        events, self.pending = self.pending, []
        return events

    def finish(self, stats: SourceStats) -> list[ConnectionEvent]:
        """The input ended: tunnels whose own bytes never came become events (returned, with any
        still pending); connections forgotten before they were named are counted in `stats`."""
        while self._flows:
            self._forget(*self._flows.popitem(last=False))
        if self.expired:
            stats.ignored[FORGOTTEN] += self.expired
        if self.shed:
            stats.ignored[SHED] += self.shed
        return self.take()

    def _finish(self, key: FlowKey, ts: float) -> None:
        flow = self._flows.pop(key, None)
        if flow is not None:
            self._held -= flow.held
        self._done[key] = ts
        self._done.move_to_end(key)
        if len(self._done) > MAX_FLOWS:
            self._done.popitem(last=False)

    def _sweep(self, now: float) -> None:
        """Forget flows idle for IDLE_SECONDS and finished flows older than DONE_SECONDS."""
        self._next_sweep = now + IDLE_SECONDS / 4
        tables: tuple[tuple[OrderedDict[FlowKey, Any], float, Callable[[Any], float]], ...] = (
            (self._flows, IDLE_SECONDS, lambda f: f.last),
            (self._quic, IDLE_SECONDS, lambda s: s[1]),
            (self._done, DONE_SECONDS, lambda t: t),
        )
        for table, age, last in tables:
            cutoff = now - age
            while table:
                key = next(iter(table))
                if last(table[key]) >= cutoff:
                    break
                value = table.pop(key)
                if table is self._flows:
                    self._forget(key, value)
                elif table is self._quic:
                    self._held -= value[0].held
                    self.expired += 1
