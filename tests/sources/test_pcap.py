"""Captures written by scapy inside the tests -> connection events, through PcapFile and the CLI."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether, Loopback
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapWriter

from auditor.cli import cli
from auditor.sources.interface import SourceError
from auditor.sources.pcap import PcapFile

CLIENT, SERVER = "10.20.1.5", "162.159.140.245"
# Explicit addresses everywhere: scapy would otherwise resolve MACs (ARP/NDP) when building frames.
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "auditor.toml"


def client_hello(sni: str | None, padding: int = 0, ech: bool = False) -> bytes:
    """A TLS 1.2-style ClientHello record, with a server_name extension when `sni` is given and
    an encrypted_client_hello extension (opaque bytes here) when `ech`."""
    exts = b""
    if ech:
        exts += struct.pack("!HH", 0xFE0D, 12) + b"\x00" + b"\xaa" * 11
    if sni is not None:
        name = sni.encode()
        entry = b"\x00" + struct.pack("!H", len(name)) + name
        exts += struct.pack("!HH", 0, len(entry) + 2) + struct.pack("!H", len(entry)) + entry
    exts += struct.pack("!HH", 0x0015, padding) + b"\x00" * padding  # padding extension
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 4) + b"\x13\x01\x13\x02" + b"\x01\x00"
    body += struct.pack("!H", len(exts)) + exts
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def tcp_session(
    hello: bytes,
    *,
    src: str = CLIENT,
    dst: str = SERVER,
    sport: int = 50000,
    dport: int = 443,
    split: int = 0,
    order: list[int] | None = None,
    v6: bool = False,
    t0: float = 1721638800.0,
) -> list:
    """SYN, SYN-ACK, then the hello in `split`-byte segments (in `order`), then a server reply."""
    ip = (lambda s, d: IPv6(src=s, dst=d)) if v6 else (lambda s, d: IP(src=s, dst=d))
    seq = 1000
    pkts = [
        ip(src, dst) / TCP(sport=sport, dport=dport, flags="S", seq=seq),
        ip(dst, src) / TCP(sport=dport, dport=sport, flags="SA", seq=5000, ack=seq + 1),
    ]
    pieces = [hello[i : i + split] for i in range(0, len(hello), split)] if split else [hello]
    segs = []
    offset = 0
    for piece in pieces:
        segs.append(ip(src, dst) / TCP(sport=sport, dport=dport, flags="PA", seq=seq + 1 + offset, ack=5001) / Raw(piece))
        offset += len(piece)
    pkts.extend(segs[i] for i in order or range(len(segs)))
    pkts.append(
        ip(dst, src) / TCP(sport=dport, dport=sport, flags="PA", seq=5001, ack=seq + 1 + offset) / Raw(b"\x16\x03\x03\x00\x05\x02\x00\x00\x01\x00")
    )
    for i, p in enumerate(pkts):
        p.time = t0 + i * 0.01
    return pkts


def write(path: Path, packets: list, linktype: int | None = None, ng: bool = False, t0: float = 1721638800.0) -> Path:
    writer = PcapNgWriter(str(path)) if ng else PcapWriter(str(path), linktype=linktype, sync=True)
    for i, p in enumerate(packets):
        p.time = t0 + i * 0.01
        writer.write(p)
    writer.close()
    return path


def events(path: Path) -> tuple[PcapFile, list]:
    capture = PcapFile.open(str(path))
    try:
        return capture, [e for b in capture.batches() for e in b.events]
    finally:
        capture.close()


def names(path: Path) -> list[tuple[str, str]]:
    return [(e.server_name, e.name_source) for e in events(path)[1]]


def test_single_segment_hello(tmp_path: Path) -> None:
    capture, found = events(write(tmp_path / "a.pcap", [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"))]))
    assert [(e.orig_h, e.orig_p, e.resp_h, e.resp_p, e.server_name, e.name_source) for e in found] == [
        (CLIENT, 50000, SERVER, 443, "api.openai.com", "sni")
    ]
    assert found[0].ts.timestamp() == pytest.approx(1721638800.0)  # the SYN's time
    assert capture.kind == "pcap" and capture.stats.lines == 4


@pytest.mark.parametrize("split, order", [(50, None), (7, None), (100, [2, 0, 1]), (60, [0, 0, 2, 1, 1, 4, 3])])
def test_split_reordered_and_retransmitted_hello(tmp_path: Path, split: int, order: list[int] | None) -> None:
    hello = client_hello("api.openai.com", padding=180)
    pkts = [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(hello, split=split, order=order)]
    assert names(write(tmp_path / "s.pcap", pkts)) == [("api.openai.com", "sni")]


def test_link_types_and_ipv6(tmp_path: Path) -> None:
    hello = client_hello("eu.api.openai.com")
    v6 = tcp_session(hello, src="2001:db8::5", dst="2606:4700::6812:1a2b", v6=True)
    cases = {
        "vlan": write(tmp_path / "vlan.pcap", [Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=20) / p for p in tcp_session(hello)]),
        "qinq": write(tmp_path / "qinq.pcap", [Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=1) / Dot1Q(vlan=20) / p for p in tcp_session(hello)]),
        "sll": write(tmp_path / "sll.pcap", [CookedLinux(proto=0x0800) / p for p in tcp_session(hello)], linktype=113),
        "raw": write(tmp_path / "raw.pcap", tcp_session(hello), linktype=101),
        "loopback": write(tmp_path / "lo.pcap", [Loopback(type=2) / p for p in tcp_session(hello)], linktype=0),
        "ipv6": write(tmp_path / "v6.pcap", [Ether(src=MAC_A, dst=MAC_B) / p for p in v6]),
        "pcapng": write(tmp_path / "ng.pcapng", [Ether(src=MAC_A, dst=MAC_B) / p for p in v6], ng=True),
    }
    for name, path in cases.items():
        assert names(path) == [("eu.api.openai.com", "sni")], name
    _, (ev,) = events(cases["pcapng"])
    assert (ev.orig_h, ev.resp_h) == ("2001:db8::5", "2606:4700::6812:1a2b")


def test_tcp_fast_open_data_in_syn(tmp_path: Path) -> None:
    hello = client_hello("api.openai.com")
    pkts = [Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=SERVER) / TCP(sport=50001, dport=443, flags="S", seq=77) / Raw(hello)]
    assert names(write(tmp_path / "tfo.pcap", pkts)) == [("api.openai.com", "sni")]


def test_dns_answer_names_a_hello_without_sni(tmp_path: Path) -> None:
    answer = (
        IP(src="10.0.0.53", dst=CLIENT)
        / UDP(sport=53, dport=40000)
        / DNS(
            id=1,
            qr=1,
            qd=DNSQR(qname="api.openai.com"),
            an=[DNSRR(rrname="api.openai.com", type="A", rdata=SERVER), DNSRR(rrname="api.openai.com", type="A", rdata="104.18.7.192")],
        )
    )
    pkts = [Ether(src=MAC_A, dst=MAC_B) / answer] + [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello(None), dst="104.18.7.192")]
    pkts += [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello(None), dst="192.0.2.1", sport=50002)]
    assert names(write(tmp_path / "dns.pcap", pkts)) == [("api.openai.com", "dns"), ("", "none")]


def test_http_connect_and_host(tmp_path: Path) -> None:
    connect = b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n"
    plain = b"GET /v1/models HTTP/1.1\r\nUser-Agent: curl\r\nHost: API.OpenAI.com\r\n\r\n"
    pkts = [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(connect, dst="10.0.0.3", dport=3128)]
    pkts += [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(plain, dport=80, sport=50003)]
    found = events(write(tmp_path / "http.pcap", pkts))[1]
    assert [(e.server_name, e.name_source, e.method, e.resp_p) for e in found] == [
        ("api.openai.com", "connect", "CONNECT", 3128),
        ("api.openai.com", "http", "GET", 80),
    ]


def test_bad_packets_are_counted_with_their_number(tmp_path: Path) -> None:
    absurd = b"\x16\x03\x01\xff\xff" + b"\x01" * 40  # record longer than TLS allows
    # A complete record whose ClientHello claims a 255-byte session id it does not have.
    body = b"\x03\x03" + b"\x00" * 32 + b"\xff" + b"\x00" * 8
    broken = b"\x16\x03\x01" + struct.pack("!H", len(body) + 4) + b"\x01" + len(body).to_bytes(3, "big") + body
    pkts = [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(absurd)]
    pkts += [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(broken, sport=50010)]
    pkts += [Ether(src=MAC_A, dst=MAC_B, type=0x0800) / Raw(b"\x45\x00")]  # truncated IPv4 header
    pkts += [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"), sport=50011)]
    capture, found = events(write(tmp_path / "bad.pcap", pkts))
    assert [e.server_name for e in found] == ["api.openai.com"]
    assert capture.stats.locations == {
        "TLS record longer than the protocol allows": [f"{tmp_path / 'bad.pcap'}#3"],
        "malformed ClientHello": [f"{tmp_path / 'bad.pcap'}#7"],
        "truncated IPv4 header": [f"{tmp_path / 'bad.pcap'}#9"],
    }


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    pkts = [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"))]
    pkts += [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"), sport=50099)]
    good = write(tmp_path / "good.pcap", pkts)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(good.read_bytes()[:-8])  # the last record's data is cut short
    capture, found = events(cut)
    assert [e.orig_p for e in found] == [50000, 50099]
    assert capture.stats.lines == 7
    assert capture.stats.locations == {"capture ends in a record cut short": [f"{cut}#8"]}
    header_cut = tmp_path / "header-cut.pcap"
    header_cut.write_bytes(good.read_bytes() + b"\x00" * 10)  # half a record header after the last record
    capture, found = events(header_cut)
    assert len(found) == 2 and capture.stats.locations == {"capture ends in a truncated record header": [f"{header_cut}#9"]}
    absurd = tmp_path / "absurd.pcap"
    data = bytearray(good.read_bytes())
    first_len = struct.unpack_from("<I", data, 24 + 8)[0]
    struct.pack_into("<I", data, 24 + 16 + first_len + 8, 0x7FFFFFFF)  # the second record claims 2 GiB
    absurd.write_bytes(bytes(data))
    capture, found = events(absurd)
    assert found == [] and capture.stats.lines == 1
    assert list(capture.stats.locations) == ["damaged record header (claims 2147483647 bytes); the rest of the file was not read"]
    ng = write(tmp_path / "good.pcapng", pkts, ng=True)
    ng_cut = tmp_path / "cut.pcapng"
    ng_cut.write_bytes(ng.read_bytes()[:-30])
    capture, found = events(ng_cut)
    assert len(found) == 2 and capture.stats.locations == {"capture ends in a block cut short": [f"{ng_cut}#8"]}
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 20)
    with pytest.raises(SourceError, match="not a pcap or pcapng capture"):
        PcapFile.open(str(text))
    with pytest.raises(SourceError, match="no such file"):
        PcapFile.open(str(tmp_path / "missing.pcap"))


def test_cli_pcap_audit_and_events(tmp_path: Path) -> None:
    pkts = [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"))]
    pkts += [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"), src="10.30.2.7", sport=50100)]
    path = write(tmp_path / "c.pcap", pkts)
    runner = CliRunner()
    lines = runner.invoke(cli, ["pcap", str(path), "--events"]).stdout.splitlines()
    assert next(json.loads(line) for line in lines) == {
        "ts": "2024-07-22T09:00:00Z",
        "orig_h": CLIENT,
        "orig_p": 50000,
        "resp_h": SERVER,
        "resp_p": 443,
        "proto": "tcp",
        "server_name": "api.openai.com",
        "name_source": "sni",
    }
    db = str(tmp_path / "f.db")
    result = runner.invoke(cli, ["pcap", str(path), "--config", str(EXAMPLE_CONFIG), "--db", db, "--json"])
    assert result.exit_code == 1
    rows = {r["org"]: (r["verdict"], r["country"], r["calls"]) for r in json.loads(result.stdout)}
    assert rows == {"acme-research": ("violation", "HK", 1), "beta-labs": ("allowed", "SG", 1)}
    assert f"{path} (pcap): {len(pkts)} packets, 2 calls to governed hosts" in result.stderr
    one = write(tmp_path / "one.pcap", pkts[:1])
    assert f"{one} (pcap): 1 packet, 0 calls to governed hosts" in runner.invoke(cli, ["pcap", str(one), "--db", db]).stderr
    again = runner.invoke(cli, ["pcap", str(path), "--config", str(EXAMPLE_CONFIG), "--db", db, "--json"])
    assert {r["org"]: r["calls"] for r in json.loads(again.stdout)} == {"acme-research": 1, "beta-labs": 1}
    bad = runner.invoke(cli, ["pcap", str(EXAMPLE_CONFIG), "--db", db])
    assert bad.exit_code == 3 and "not a pcap or pcapng capture" in bad.output


@pytest.mark.parametrize(
    "request_bytes, host, port",
    [
        (b"\x05\x01\x00\x03\x0eapi.openai.com\x01\xbb", "api.openai.com", 443),
        (b"\x05\x01\x00\x01\xa2\x9f\x8c\xf5\x01\xbb", "162.159.140.245", 443),
        (b"\x05\x01\x00\x04" + bytes.fromhex("20010db8000000000000000000000001") + b"\x00\x50", "2001:db8::1", 80),
    ],
)
def test_socks5_connect(tmp_path: Path, request_bytes: bytes, host: str, port: int) -> None:
    """Greeting and request in separate segments, the server's method choice between them."""
    ip_c, ip_p = IP(src=CLIENT, dst="10.0.0.3"), IP(src="10.0.0.3", dst=CLIENT)
    greeting = b"\x05\x01\x00"
    pkts = [
        ip_c / TCP(sport=50200, dport=1080, flags="S", seq=10),
        ip_p / TCP(sport=1080, dport=50200, flags="SA", seq=90, ack=11),
        ip_c / TCP(sport=50200, dport=1080, flags="PA", seq=11, ack=91) / Raw(greeting),
        ip_p / TCP(sport=1080, dport=50200, flags="PA", seq=91, ack=14) / Raw(b"\x05\x00"),
        ip_c / TCP(sport=50200, dport=1080, flags="PA", seq=14, ack=93) / Raw(request_bytes),
    ]
    found = events(write(tmp_path / "socks.pcap", [Ether(src=MAC_A, dst=MAC_B) / p for p in pkts]))[1]
    assert [(e.server_name, e.name_source, e.resp_p) for e in found] == [(host, "socks5", 1080)]
    assert port == int.from_bytes(request_bytes[-2:], "big")


# --- QUIC -----------------------------------------------------------------------------------

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from auditor.sources import quic  # noqa: E402


@pytest.mark.parametrize(
    "version, key, iv, hp",
    [
        # RFC 9001 appendix A.1 and RFC 9369 appendix A.1, DCID 0x8394c8f03e515708.
        (quic.V1, "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2"),
        (quic.V2, "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9"),
    ],
)
def test_initial_keys_match_the_rfc_vectors(version: int, key: str, iv: str, hp: str) -> None:
    assert tuple(k.hex() for k in quic.client_keys(bytes.fromhex("8394c8f03e515708"), version)) == (key, iv, hp)


def _varint(value: int) -> bytes:
    return struct.pack("!H", 0x4000 | value) if value >= 64 else bytes([value])


def client_initial(crypto: list[tuple[int, bytes]], dcid: bytes, pn: int, version: int = quic.V1) -> bytes:
    """A protected client Initial carrying CRYPTO frames, padded like a real one (RFC 9001 5.3-5.4)."""
    key, iv, hp = quic.client_keys(dcid, version)
    frames = b"".join(b"\x06" + _varint(off) + _varint(len(data)) + data for off, data in crypto)
    frames += b"\x00" * (1100 - len(frames))
    type_bits = 0 if version == quic.V1 else 1
    first = 0xC0 | (type_bits << 4) | 0x01  # 2-byte packet number
    pn_bytes = pn.to_bytes(2, "big")
    length = len(frames) + 16 + 2
    header = bytes([first]) + version.to_bytes(4, "big") + bytes([len(dcid)]) + dcid + b"\x08" + b"\x55" * 8 + b"\x00"
    header += struct.pack("!H", 0x4000 | length) + pn_bytes
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big"), strict=True))
    sealed = AESGCM(key).encrypt(nonce, frames, header)
    pn_offset = len(header) - 2
    sample = sealed[2:18]  # 4 bytes past the start of the packet number
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    protected = bytearray(header + sealed)
    protected[0] ^= mask[0] & 0x0F
    for i in range(2):
        protected[pn_offset + i] ^= mask[1 + i]
    return bytes(protected)


@pytest.mark.parametrize("version", [quic.V1, quic.V2])
def test_quic_initial_sni_across_packets_out_of_order(tmp_path: Path, version: int) -> None:
    record = client_hello("api.openai.com", padding=600)
    hello = record[5:]  # QUIC carries the handshake message without the TLS record header
    dcid = bytes.fromhex("0011223344556677")
    cut = 300
    first = client_initial([(cut, hello[cut:])], dcid, 1, version)  # the second half arrives first
    second = client_initial([(0, hello[:cut])], dcid, 2, version)
    udp = lambda payload, i: IP(src=CLIENT, dst=SERVER) / UDP(sport=51000, dport=443) / Raw(payload)  # noqa: E731
    server = IP(src=SERVER, dst=CLIENT) / UDP(sport=443, dport=51000) / Raw(client_initial([(0, b"\x02\x00\x00\x00")], b"\x99" * 8, 1))
    pkts = [Ether(src=MAC_A, dst=MAC_B) / p for p in (udp(first, 0), server, udp(second, 1))]
    found = events(write(tmp_path / "quic.pcap", pkts))[1]
    assert [(e.proto, e.server_name, e.name_source, e.resp_p) for e in found] == [("udp", "api.openai.com", "sni", 443)]


def test_quic_garbage_is_counted(tmp_path: Path) -> None:
    bogus = b"\xc1\x00\x00\x00\x01\x08" + b"\x01" * 8 + b"\x00\x00\x7f\xff" + b"\x00" * 40  # length past the datagram
    pkts = [Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=SERVER) / UDP(sport=51001, dport=443) / Raw(bogus)]
    capture, found = events(write(tmp_path / "bad-quic.pcap", pkts))
    assert found == []
    assert capture.stats.locations == {"QUIC: Initial packet length beyond the datagram": [f"{tmp_path / 'bad-quic.pcap'}#1"]}


def test_ech_outer_name_stands_without_this_clients_ech_config(tmp_path: Path) -> None:
    """An A record alone does not show which name is inside a real-ECH hello (the address may
    serve thousands): the outer name stays."""
    answer = (
        IP(src="10.0.0.53", dst=CLIENT)
        / UDP(sport=53, dport=40000)
        / DNS(id=2, qr=1, qd=DNSQR(qname="api.openai.com"), an=[DNSRR(rrname="api.openai.com", type="A", rdata=SERVER)])
    )
    hello = client_hello("cloudflare-ech.com", ech=True)
    pkts = [Ether(src=MAC_A, dst=MAC_B) / answer] + [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(hello)]
    pkts += [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(hello, dst="192.0.2.9", sport=50300)]
    assert names(write(tmp_path / "ech.pcap", pkts)) == [("cloudflare-ech.com", "ech-outer"), ("cloudflare-ech.com", "ech-outer")]


def test_pcapng_with_interfaces_of_different_link_types(tmp_path: Path) -> None:
    eth = [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"))]
    sll = [CookedLinux(proto=0x0800) / p for p in tcp_session(client_hello("eu.api.openai.com"), sport=50400)]
    for p in eth:
        p.sniffed_on = "eth0"
    for p in sll:
        p.sniffed_on = "any"
    path = tmp_path / "multi.pcapng"
    writer = PcapNgWriter(str(path))
    for i, p in enumerate(x for pair in zip(eth, sll, strict=False) for x in pair):  # interleaved
        p.time = 1721638800.0 + i * 0.01
        writer.write(p)
    writer.close()
    capture, found = events(path)
    assert capture.kind == "pcapng"
    assert sorted((e.server_name, e.orig_p) for e in found) == [("api.openai.com", 50000), ("eu.api.openai.com", 50400)]
    assert capture.stats.skipped == {}


def capture_on_loopback(port: int) -> tuple[Any, threading.Event]:
    """A scapy AsyncSniffer on lo for TCP to or from `port`, started and capturing (not after a
    fixed wait, which a loaded machine outlasts), and an Event set once it has seen data sent to
    `port` (a client's hello)."""
    from scapy.sendrecv import AsyncSniffer

    started, hello = threading.Event(), threading.Event()

    def seen(p: Any) -> None:
        if p[TCP].dport == port and len(p[TCP].payload):
            hello.set()

    sniffer = AsyncSniffer(
        iface="lo", lfilter=lambda p: p.haslayer(TCP) and port in (p[TCP].sport, p[TCP].dport), prn=seen, started_callback=started.set
    )
    sniffer.start()
    assert started.wait(30), "the capture on lo did not start"
    return sniffer, hello


@pytest.mark.root
@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="capturing on loopback needs root (CAP_NET_RAW)")
def test_real_client_hello_captured_on_loopback(tmp_path: Path) -> None:
    """Python's own TLS client talks to a local socket; scapy captures it on lo; we name it."""
    import socket
    import ssl
    import time

    from scapy.utils import wrpcap

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def accept() -> None:
        conn, _ = server.accept()
        conn.recv(65536)  # read the ClientHello, then hang up: no certificate needed
        conn.close()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    sniffer, hello = capture_on_loopback(port)
    context = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, pytest.raises((ssl.SSLError, OSError)):
        context.wrap_socket(raw, server_hostname="api.openai.com").close()
    acceptor.join(5)
    hello.wait(30)  # the capture has caught up with the hello (the assertions below say if not)
    time.sleep(0.5)
    packets = sniffer.stop()
    server.close()
    path = tmp_path / "lo.pcap"
    wrpcap(str(path), packets)
    found = events(path)[1]
    assert [(e.orig_h, e.resp_h, e.resp_p, e.server_name, e.name_source) for e in found] == [
        ("127.0.0.1", "127.0.0.1", port, "api.openai.com", "sni")
    ]


# --- tunnels, more link types, bounded state -------------------------------------------------


@pytest.mark.slow
@pytest.mark.root  # captures on lo
def test_real_chromium_grease_ech_keeps_its_name(tmp_path: Path) -> None:
    """Headless Chromium (Debian's package) opens https://chatgpt.com/ against a local socket
    (every name mapped to 127.0.0.1, so nothing leaves the machine); its hellos carry GREASE ECH.
    A DNS answer giving api.openai.com and chatgpt.com the same address precedes them in the
    capture, as on a CDN: every connection keeps the name Chromium sent."""
    import shutil
    import socket
    import subprocess
    import time

    from scapy.utils import wrpcap

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                conn.settimeout(2)
                conn.recv(65536)  # the ClientHello; then hang up: no certificate needed
            except OSError:
                pass
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    sniffer, hello = capture_on_loopback(port)
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--host-resolver-rules=MAP * 127.0.0.1:{port}",
            "--dump-dom",
            "https://chatgpt.com/",
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    hello.wait(30)  # the capture has caught up with a hello (the assertions below say if not)
    time.sleep(0.5)
    packets = sniffer.stop()
    server.close()
    answers = [
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src="127.0.0.53", dst="127.0.0.1")
        / UDP(sport=53, dport=40000 + i)
        / DNS(id=i, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, type="A", rdata="127.0.0.1"))
        for i, name in enumerate(["chatgpt.com", "api.openai.com"])
    ]
    for answer in answers:
        answer.time = packets[0].time - 1
    path = tmp_path / "chromium.pcap"
    wrpcap(str(path), answers + list(packets))
    found = [e for e in events(path)[1] if e.resp_p == port]
    chatgpt = [(e.server_name, e.name_source) for e in found if e.name_source != "http"]
    assert ("chatgpt.com", "sni+ech") in chatgpt  # Chromium sent an ECH extension
    assert "api.openai.com" not in {e.server_name for e in found}
    assert all(source == "sni+ech" for _, source in chatgpt), chatgpt


def client_stream(
    chunks: list[bytes], *, dport: int, sport: int = 50600, src: str = CLIENT, dst: str = "10.0.0.3", gaps: list[float] | None = None
) -> list:
    """SYN, SYN-ACK, then each chunk as one client segment (a proxy reply between them)."""
    ip_c, ip_p = IP(src=src, dst=dst), IP(src=dst, dst=src)
    pkts = [ip_c / TCP(sport=sport, dport=dport, flags="S", seq=10), ip_p / TCP(sport=dport, dport=sport, flags="SA", seq=90, ack=11)]
    seq = 11
    for chunk in chunks:
        pkts.append(ip_c / TCP(sport=sport, dport=dport, flags="PA", seq=seq, ack=91) / Raw(chunk))
        pkts.append(ip_p / TCP(sport=dport, dport=sport, flags="A", seq=91, ack=seq + len(chunk)))
        seq += len(chunk)
    return [Ether(src=MAC_A, dst=MAC_B) / p for p in pkts]


@pytest.mark.parametrize(
    "chunks, dport, expected",
    [
        # SOCKS5 with username/password (RFC 1929) to an address, then TLS through the tunnel.
        (
            [b"\x05\x02\x00\x02", b"\x01\x05alice\x06s3cret", b"\x05\x01\x00\x01\xa2\x9f\x8c\xf5\x01\xbb", client_hello("api.openai.com")],
            1080,
            ("api.openai.com", "socks5+sni", ""),
        ),
        # The same in one segment.
        (
            [b"\x05\x01\x00" + b"\x05\x01\x00\x01\xa2\x9f\x8c\xf5\x01\xbb" + client_hello("api.anthropic.com")],
            1080,
            ("api.anthropic.com", "socks5+sni", ""),
        ),
        # HTTP CONNECT to an address, headers split, then TLS.
        (
            [b"CONNECT 162.159.140.245:443 HTTP/1.1\r\nHost: 162.159.140.245:443\r\n", b"\r\n", client_hello("api.openai.com", padding=400)],
            3128,
            ("api.openai.com", "connect+sni", "CONNECT"),
        ),
        # SOCKS4 to an address, then TLS; SOCKS4a names the host itself.
        ([b"\x04\x01\x01\xbb\xa2\x9f\x8c\xf5bob\x00", client_hello("api.openai.com")], 1080, ("api.openai.com", "socks4+sni", "")),
        ([b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00api.openai.com\x00"], 1080, ("api.openai.com", "socks4", "")),
        # A tunnel to an address whose bytes are not TLS: the address is the name.
        ([b"\x05\x01\x00\x05\x01\x00\x01\xa2\x9f\x8c\xf5\x00\x50", b"GET / HTTP/1.1\r\n\r\n"], 1080, ("162.159.140.245", "socks5", "")),
        # A tunnel to an address and nothing after it in the capture: named by the address at the end.
        ([b"\x05\x01\x00\x05\x01\x00\x01\xa2\x9f\x8c\xf5\x01\xbb"], 1080, ("162.159.140.245", "socks5", "")),
    ],
)
def test_tls_inside_a_tunnel_to_an_address(tmp_path: Path, chunks: list[bytes], dport: int, expected: tuple[str, str, str]) -> None:
    capture, found = events(write(tmp_path / "tunnel.pcap", client_stream(chunks, dport=dport)))
    assert [(e.server_name, e.name_source, e.method) for e in found] == [expected]
    assert (found[0].resp_h, found[0].resp_p) == ("10.0.0.3", dport)  # the proxy, as on the wire
    assert capture.stats.skipped == {}


def test_tunnel_without_sni_is_named_by_dns(tmp_path: Path) -> None:
    answer = (
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src="10.0.0.53", dst=CLIENT)
        / UDP(sport=53, dport=40000)
        / DNS(id=3, qr=1, qd=DNSQR(qname="api.openai.com"), an=[DNSRR(rrname="api.openai.com", type="A", rdata=SERVER)])
    )
    pkts = [answer, *client_stream([b"\x05\x01\x00\x05\x01\x00\x01\xa2\x9f\x8c\xf5\x01\xbb", client_hello(None)], dport=1080)]
    assert names(write(tmp_path / "t.pcap", pkts)) == [("api.openai.com", "dns")]


def test_ppp_pppoe_mpls_and_cisco_hdlc(tmp_path: Path) -> None:
    from scapy.layers.ppp import HDLC, PPP, PPPoE

    hello = client_hello("api.openai.com")
    session = tcp_session(hello)
    mpls = [Ether(src=MAC_A, dst=MAC_B, type=0x8847) / Raw(b"\x00\x01\x40\x40" + b"\x00\x02\x41\x40" + bytes(p)) for p in session]
    cases = {
        "ppp": write(tmp_path / "ppp.pcap", [HDLC() / PPP(proto=0x0021) / p for p in session], linktype=9),
        "ppp-compressed": write(tmp_path / "pppc.pcap", [Raw(b"\x21" + bytes(p)) for p in session], linktype=9),
        "ppp-hdlc": write(tmp_path / "ppph.pcap", [HDLC() / PPP(proto=0x0021) / p for p in session], linktype=50),
        "pppoe": write(tmp_path / "pppoe.pcap", [Ether(src=MAC_A, dst=MAC_B) / PPPoE(sessionid=7) / PPP(proto=0x0021) / p for p in session]),
        "mpls": write(tmp_path / "mpls.pcap", mpls),
        "c-hdlc": write(tmp_path / "chdlc.pcap", [Raw(b"\x0f\x00\x08\x00" + bytes(p)) for p in session], linktype=104),
    }
    for name, path in cases.items():
        capture, found = events(path)
        assert [(e.server_name, e.orig_h) for e in found] == [("api.openai.com", CLIENT)], name
        assert capture.stats.skipped == {}, name
    lcp = write(tmp_path / "lcp.pcap", [HDLC() / PPP(proto=0xC021) / Raw(b"\x01\x01\x00\x04")], linktype=9)
    capture, found = events(lcp)
    assert found == [] and capture.stats.skipped == {}  # PPP control traffic is not IP, and not damage
    odd = write(tmp_path / "odd.pcap", [Raw(b"\x00" * 40)], linktype=147)  # a user-defined link type
    capture, found = events(odd)
    assert capture.stats.locations == {"link type 147 is not supported": [f"{odd}#1"]}


@pytest.mark.parametrize("gap, expected", [(30.0, ["api.openai.com"]), (61.0, [])])
def test_idle_flows_are_forgotten(tmp_path: Path, gap: float, expected: list[str]) -> None:
    """A ClientHello whose second half comes after IDLE_SECONDS of silence is not reassembled."""
    hello = client_hello("api.openai.com", padding=200)
    pkts = [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(hello, split=150)]
    path = tmp_path / "idle.pcap"
    writer = PcapWriter(str(path), sync=True)
    t = 1721638800.0
    for i, p in enumerate(pkts):
        p.time = t = t + (gap if i == 3 else 0.01)  # the gap falls between the two halves
        writer.write(p)
    writer.close()
    capture, found = events(path)
    assert [e.server_name for e in found] == expected
    assert capture.stats.skipped == {}
    from auditor.sources.packets import FORGOTTEN

    assert capture.stats.ignored.get(FORGOTTEN, 0) == (0 if expected else 1)  # said, not silent


def test_flow_state_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More half-sent hellos than MAX_FLOWS: the least recently active are dropped, the rest named."""
    from auditor.sources import packets

    monkeypatch.setattr(packets, "MAX_FLOWS", 5)
    hello = client_hello("api.openai.com")
    firsts, seconds = [], []
    for n in range(8):
        s = tcp_session(hello, sport=51000 + n, split=40)
        firsts += s[:3]
        seconds += s[3:-1]  # the rest of the hello, without the server's reply
    _capture, found = events(write(tmp_path / "many.pcap", [Ether(src=MAC_A, dst=MAC_B) / p for p in firsts + seconds]))
    assert sorted(e.orig_p for e in found) == [51003, 51004, 51005, 51006, 51007]


def test_cheap_path_changes_no_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames the extractor skips from their first bytes would have given nothing on the full path."""
    from auditor.sources import packets

    bulk = []
    for i in range(30):  # data both ways on named flows, pure ACKs, and a flow joined mid-stream
        bulk.append(IP(src=SERVER, dst=CLIENT) / TCP(sport=443, dport=50000, flags="PA", seq=9000 + i * 100) / Raw(bytes([i]) * 100))
        bulk.append(IP(src=CLIENT, dst=SERVER) / TCP(sport=50000, dport=443, flags="A", ack=9000 + i * 100))
        bulk.append(IP(src=CLIENT, dst=SERVER) / TCP(sport=50000, dport=443, flags="PA", seq=20000 + i * 50) / Raw(b"\x17\x03\x03" + bytes(47)))
        bulk.append(IPv6(src="2001:db8::5", dst="2001:db8::1") / TCP(sport=50001, dport=443, flags="PA", seq=i * 10) / Raw(bytes([65 + i]) * 10))
    pkts = tcp_session(client_hello("api.openai.com", padding=300), split=90, order=[3, 1, 0, 2, 4])
    pkts += tcp_session(client_hello("eu.api.openai.com"), src="2001:db8::5", dst="2001:db8::1", sport=50002, v6=True, split=33)
    mixed = [Ether(src=MAC_A, dst=MAC_B) / p for p in pkts[:4] + bulk + pkts[4:]]
    path = write(tmp_path / "mixed.pcap", mixed)
    fast = [(e.server_name, e.source) for e in events(path)[1]]
    monkeypatch.setattr(packets.Extractor, "uninteresting", lambda self, *args: False)
    assert [(e.server_name, e.source) for e in events(path)[1]] == fast
    assert {name for name, _ in fast} == {"api.openai.com", "eu.api.openai.com"}


def test_packets_cut_by_the_snap_length_are_counted(tmp_path: Path) -> None:
    """A capture taken with `-s 60`: the frames that matter are counted as cut, not misread."""
    frames = [bytes(Ether(src=MAC_A, dst=MAC_B) / p) for p in tcp_session(client_hello("api.openai.com"))]
    path = tmp_path / "snap.pcap"
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 60, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", 1721638800 + i, 0, min(len(frame), 60), len(frame)) + frame[:60])
    capture, found = events(path)
    assert found == []
    # The ClientHello (#3) and the server's reply (#4) were cut; the SYN and SYN-ACK fit.
    assert capture.stats.locations == {"packet cut short by the capture's snap length": [f"{path}#3", f"{path}#4"]}


def test_rfc9001_client_initial_is_named(tmp_path: Path) -> None:
    """The protected client Initial of RFC 9001 appendix A.2, byte for byte, in a UDP datagram."""
    packet = bytes.fromhex((Path(__file__).parents[1] / "data" / "quic" / "rfc9001-a2-client-initial.hex").read_text().replace("\n", ""))
    assert len(packet) == 1200
    dcid, frames = quic.initial_crypto(packet)
    assert dcid.hex() == "8394c8f03e515708" and [(offset, len(data)) for offset, data in frames] == [(0, 241)]
    frame = Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=SERVER) / UDP(sport=51500, dport=443) / Raw(packet)
    _capture, found = events(write(tmp_path / "rfc.pcap", [frame]))
    assert [(e.proto, e.server_name, e.name_source) for e in found] == [("udp", "example.com", "sni")]
    damaged = bytearray(packet)
    damaged[-1] ^= 0x01  # the AEAD tag no longer matches: not a client Initial we can read
    assert (
        events(
            write(
                tmp_path / "bad.pcap", [Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=SERVER) / UDP(sport=51501, dport=443) / Raw(bytes(damaged))]
            )
        )[1]
        == []
    )


def test_packets_skipped_by_the_cheap_path_still_count(tmp_path: Path) -> None:
    pkts = tcp_session(client_hello("api.openai.com"))
    pkts += [IP(src=SERVER, dst=CLIENT) / TCP(sport=443, dport=50000, flags="A", seq=7000 + i) for i in range(25)]  # trailing ACKs
    capture, found = events(write(tmp_path / "tail.pcap", [Ether(src=MAC_A, dst=MAC_B) / p for p in pkts]))
    assert len(found) == 1 and capture.stats.lines == len(pkts) == 29


def test_connect_with_extra_words_in_the_request_line(tmp_path: Path) -> None:
    """Seen from spam bots (Zeek's http-connect-with-smtp trace): proxies take the second word."""
    odd = b"CONNECT mailin.example:25 / HTTP/1.0\r\nMozilla 4.0\r\n\r\n"
    pkts = [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(odd, dst="10.0.0.3", dport=8240)]
    assert names(write(tmp_path / "odd.pcap", pkts)) == [("mailin.example", "connect")]


def test_pcapng_packet_with_an_impossible_timestamp_is_counted(tmp_path: Path) -> None:
    """Found by fuzzing: a damaged 64-bit timestamp used to end the run with a ValueError."""
    good = write(tmp_path / "good.pcapng", [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"))], ng=True)
    data = bytearray(good.read_bytes())
    # Walk the blocks to the enhanced packet block of packet 3 (the ClientHello) and break its time.
    pos, number = 0, 0
    while pos < len(data):
        btype, length = struct.unpack_from("<II", data, pos)
        if btype == 6:
            number += 1
            if number == 3:
                struct.pack_into("<I", data, pos + 12, 0xFFFFFFF0)  # timestamp high word
        pos += length
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(bytes(data))
    capture, found = events(bad)
    assert found == [] and capture.stats.locations == {"packet with an impossible timestamp (after the year 9999)": [f"{bad}#3"]}


def test_proxy_target_with_a_nul_byte_is_malformed_not_a_crash(tmp_path: Path) -> None:
    """Found by fuzzing: a CONNECT or SOCKS target holding a NUL used to raise a ValueError; such
    a target names no server: the packet is malformed, counted with its number."""
    pkts = client_stream([b"\x05\x01\x00\x05\x01\x00\x03\x0eapi.open\x00i.com\x01\xbb"], dport=1080)
    pkts += client_stream([b"CONNECT 1.2.3\x00.4:443 HTTP/1.1\r\n\r\n"], dport=3128, sport=50700)
    capture, found = events(write(tmp_path / "nul.pcap", pkts))
    assert found == []
    name = tmp_path / "nul.pcap"
    assert capture.stats.locations == {
        "socks5: the server name is neither a DNS name nor an address": [f"{name}#3"],
        "connect: the server name is neither a DNS name nor an address": [f"{name}#7"],
    }


@pytest.mark.parametrize(
    "host",
    [
        "x\x1b]0;owned\x07.api.openai.com",  # a terminal escape sequence
        "<script>alert(1)</script>.api.openai.com",  # markup
        "evil.example/api.openai.com",
        "a" * 64 + ".api.openai.com",  # a slash; a label of 64
    ],
)
def test_a_server_name_that_is_no_dns_name_is_malformed(tmp_path: Path, host: str) -> None:
    """Taken through the *.api.openai.com wildcard, such names were stored, reported and printed
    raw on a terminal. In a hello, an HTTP Host, a CONNECT: malformed, with the packet number."""
    pkts = hello_to(client_hello(host), 53500)
    pkts += client_stream([b"CONNECT " + host.encode() + b":443 HTTP/1.1\r\n\r\n"], dport=3128, sport=53501)
    pkts += client_stream([b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n"], dport=80, sport=53502)
    capture, found = events(write(tmp_path / "bad.pcap", pkts))
    assert found == []
    assert sum(capture.stats.skipped.values()) == 3


def test_pcapng_interface_block_too_short_for_its_link_type_is_counted(tmp_path: Path) -> None:
    """Found by a hostile-input hunt: an interface description block with an empty body (and one
    whose if_tsresol option has no value byte) used to end the run with struct.error/IndexError."""
    good = write(tmp_path / "good.pcapng", [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(client_hello("api.openai.com"))], ng=True)
    data = bytes(good.read_bytes())
    pos = 0
    while pos < len(data):
        btype, length = struct.unpack_from("<II", data, pos)
        if btype == 1:
            break
        pos += length
    empty = struct.pack("<II", 1, 12) + struct.pack("<I", 12)  # an IDB with no body at all
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(data[:pos] + empty + data[pos + length :])
    capture, found = events(bad)
    assert found == [] and list(capture.stats.skipped) == ["link type 65535 is not supported"]
    assert capture.stats.locations["link type 65535 is not supported"][0] == f"{bad}#1"


# --- how a hello is named: GREASE ECH, real ECH, DNS per client, WebSocket tunnels ------------

CDN = "104.18.32.47"
"""One CDN address in front of several names, governed and not (as in front of OpenAI's)."""
CDN_NAMES = ["platform.openai.com", "cdn.openai.com", "chatgpt.com", "api.openai.com"]
GREASE = [0x0A0A, 0x1A1A, 0x2A2A, 0x3A3A, 0x4A4A, 0x5A5A, 0x6A6A, 0x7A7A, 0x8A8A, 0x9A9A, 0xAAAA, 0xBABA]


def chrome_hello(sni: str, *, ech: bool = True, seed: int = 0) -> bytes:
    """A ClientHello shaped as Chrome writes it: GREASE cipher suite, extensions and group,
    permuted extensions, and an encrypted_client_hello extension of type outer (0) with a HPKE
    suite, a config id, a 32-byte `enc` and a payload (what Chrome sends as GREASE ECH when the
    server publishes no ECH config, and as real ECH with an outer name when it does)."""
    import random

    rng = random.Random(seed)
    grease = rng.choice(GREASE)
    name = sni.encode()
    sni_entry = b"\x00" + struct.pack("!H", len(name)) + name
    exts = [
        (0x0000, struct.pack("!H", len(sni_entry)) + sni_entry),
        (0x0017, b""),
        (0xFF01, b"\x00"),
        (0x000A, b"\x00\x08" + struct.pack("!H", grease) + b"\x11\xec\x00\x1d\x00\x17"),
        (0x000B, b"\x01\x00"),
        (0x0023, b""),
        (0x0010, b"\x00\x0c\x02h2\x08http/1.1"),
        (0x0005, b"\x01\x00\x00\x00\x00"),
        (0x000D, b"\x00\x08\x04\x03\x08\x04\x04\x01\x05\x03"),
        (0x0012, b""),
        (0x0033, b"\x00\x29" + struct.pack("!H", grease) + b"\x00\x01\x00" + b"\x00\x1d\x00\x20" + bytes(rng.randrange(256) for _ in range(32))),
        (0x002D, b"\x01\x01"),
        (0x002B, b"\x06" + struct.pack("!H", grease) + b"\x03\x04\x03\x03"),
        (0x001B, b"\x02\x00\x02"),
        (0x4469, b"\x00\x03\x02h2"),
    ]
    if ech:
        payload = bytes(rng.randrange(256) for _ in range(rng.choice([144, 176, 208, 240])))
        ech_ext = b"\x00" + b"\x00\x01\x00\x01" + bytes([rng.randrange(256)]) + b"\x00\x20" + bytes(32) + struct.pack("!H", len(payload)) + payload
        exts.append((0xFE0D, ech_ext))
    rng.shuffle(exts)
    exts = [(grease, b""), *exts, (rng.choice(GREASE), b"\x00")]
    ext_bytes = b"".join(struct.pack("!HH", t, len(v)) + v for t, v in exts)
    suites = [grease, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
    body = b"\x03\x03" + bytes(32) + b"\x20" + bytes(32) + struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites)
    body += b"\x01\x00" + struct.pack("!H", len(ext_bytes)) + ext_bytes
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def ech_config_list(public_name: str, config_id: int = 7) -> bytes:
    """An ECHConfigList with one ECHConfig (version 0xfe0d, draft-ietf-tls-esni-22 section 4)."""
    contents = bytes([config_id]) + b"\x00\x20" + b"\x00\x20" + bytes(range(32))  # DHKEM(X25519), public key
    contents += b"\x00\x04\x00\x01\x00\x01"  # one suite: HKDF-SHA256, AES-128-GCM
    contents += b"\x00" + bytes([len(public_name)]) + public_name.encode() + b"\x00\x00"  # max name length, name, extensions
    config = struct.pack("!HH", 0xFE0D, len(contents)) + contents
    return struct.pack("!H", len(config)) + config


def dns_reply(client: str, name: str, address: str = CDN, *, https_public: str = "", query_id: int = 1):
    """A resolver's answer to `client`: an A record, or an HTTPS record whose ech parameter
    carries an ECH config with `https_public` as its public name (then no A record)."""
    from scapy.layers.dns import DNSRRHTTPS, SvcParam

    if https_public:
        answer = DNSRRHTTPS(
            rrname=name,
            svc_priority=1,
            target_name=".",
            svc_params=[SvcParam(key=1, value=[b"h2"]), SvcParam(key=5, value=ech_config_list(https_public))],
        )
        question = DNSQR(qname=name, qtype="HTTPS")
    else:
        answer, question = DNSRR(rrname=name, type="A", rdata=address), DNSQR(qname=name)
    return (
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src="10.0.0.53", dst=client)
        / UDP(sport=53, dport=40000 + query_id)
        / DNS(id=query_id, qr=1, qd=question, an=answer)
    )


def hello_to(hello: bytes, sport: int, *, src: str = CLIENT, dst: str = CDN) -> list:
    return [Ether(src=MAC_A, dst=MAC_B) / p for p in tcp_session(hello, src=src, dst=dst, sport=sport)]


def test_grease_ech_keeps_the_name_the_browser_sent_on_a_shared_address(tmp_path: Path) -> None:
    """Chrome sends an ECH extension on every connection; its SNI is the real name. The client
    resolved every name of the CDN, api.openai.com last: nothing may be renamed to it."""
    pkts = [dns_reply(CLIENT, name, query_id=i) for i, name in enumerate(CDN_NAMES)]
    for i, name in enumerate(["platform.openai.com", "chatgpt.com", "cdn.openai.com", "chatgpt.com"]):
        pkts += hello_to(chrome_hello(name, seed=i), 51000 + i)
    pkts += hello_to(chrome_hello("api.openai.com", seed=9), 51009)
    found = events(write(tmp_path / "grease.pcap", pkts))[1]
    assert [(e.orig_p, e.server_name, e.name_source) for e in found] == [
        (51000, "platform.openai.com", "sni+ech"),
        (51001, "chatgpt.com", "sni+ech"),
        (51002, "cdn.openai.com", "sni+ech"),
        (51003, "chatgpt.com", "sni+ech"),
        (51009, "api.openai.com", "sni+ech"),
    ]
    # The same without any DNS in the capture (a browser using DNS over HTTPS).
    found = events(write(tmp_path / "doh.pcap", hello_to(chrome_hello("chatgpt.com"), 51100)))[1]
    assert [(e.server_name, e.name_source) for e in found] == [("chatgpt.com", "sni+ech")]


def test_real_ech_is_named_by_what_this_client_resolved(tmp_path: Path) -> None:
    """Real ECH: the outer name is the client-facing server's public name; the client looked up
    api.openai.com (A and HTTPS with an ECH config) and chatgpt.com, both on the CDN address."""
    pkts = [
        dns_reply(CLIENT, "api.openai.com", query_id=1),
        dns_reply(CLIENT, "api.openai.com", https_public="cloudflare-ech.com", query_id=2),
        dns_reply(CLIENT, "chatgpt.com", query_id=3),
    ]
    pkts += hello_to(chrome_hello("cloudflare-ech.com", seed=1), 52000)  # the one whose ECH config names it
    pkts += hello_to(chrome_hello("chatgpt.com", seed=2), 52001)  # GREASE beside it: stands
    found = events(write(tmp_path / "ech.pcap", pkts))[1]
    assert [(e.orig_p, e.server_name, e.name_source) for e in found] == [(52000, "api.openai.com", "ech-dns"), (52001, "chatgpt.com", "sni+ech")]
    assert [e.raw for e in found] == [
        f"tcp {CLIENT} port 52000 -> {CDN} port 443: api.openai.com (ech-dns; the hello named cloudflare-ech.com)",
        f"tcp {CLIENT} port 52001 -> {CDN} port 443: chatgpt.com (sni+ech)",
    ]


def test_a_dns_name_must_be_one_this_client_resolved(tmp_path: Path) -> None:
    """Another client's lookup of api.openai.com names none of this client's connections."""
    other = "10.20.9.9"
    pkts = [dns_reply(other, "api.openai.com", query_id=1)]
    pkts += hello_to(chrome_hello("cloudflare-ech.com"), 53000)  # real ECH, nothing resolved by CLIENT
    pkts += hello_to(client_hello(None), 53001)  # no SNI at all
    pkts += hello_to(client_hello(None), 53002, src=other)  # the client that did resolve it
    found = events(write(tmp_path / "per-client.pcap", pkts))[1]
    assert [(e.orig_h, e.server_name, e.name_source) for e in found] == [
        (CLIENT, "cloudflare-ech.com", "ech-outer"),
        (CLIENT, "", "none"),
        (other, "api.openai.com", "dns"),
    ]


def test_ech_public_names_are_learnt_from_https_records(tmp_path: Path) -> None:
    """A public name no list knows, given by the ECH config of this client's HTTPS answer; another
    client's answer is no evidence (its hello may be a GREASE visit to a site of that name). An
    outer name the client never resolved, while it resolved another name to that address, is no
    evidence either (a name resolved before the capture began): it stands."""
    pkts = [dns_reply(CLIENT, "api.anthropic.com", query_id=1), dns_reply(CLIENT, "api.anthropic.com", https_public="front.example.net", query_id=2)]
    pkts += hello_to(chrome_hello("front.example.net"), 54000)
    pkts += hello_to(chrome_hello("front.example.net"), 54001, src="10.20.1.6")  # a client that resolved nothing
    pkts += [dns_reply("10.20.1.7", "api.openai.com", query_id=3)]
    pkts += hello_to(chrome_hello("unlisted-front.example"), 54002, src="10.20.1.7")
    found = events(write(tmp_path / "learnt.pcap", pkts))[1]
    assert [(e.orig_p, e.server_name, e.name_source) for e in found] == [
        (54000, "api.anthropic.com", "ech-dns"),
        (54001, "front.example.net", "sni+ech"),
        (54002, "unlisted-front.example", "sni+ech"),
    ]


def test_ech_config_list_public_names() -> None:
    from auditor.sources.packets import ech_public_names

    two = ech_config_list("a.example")[2:] + ech_config_list("b.example", 9)[2:]
    other_version = struct.pack("!HH", 0xFE0A, 3) + b"xyz"
    assert ech_public_names(struct.pack("!H", len(other_version + two)) + other_version + two) == ["a.example", "b.example"]


def test_no_governed_call_is_invented_on_a_shared_address(tmp_path: Path) -> None:
    """The whole audit: browser connections to the web app are not calls; the real ECH call and
    the library's call are, and the summary counts the name that came from DNS."""
    pkts = [dns_reply(CLIENT, name, query_id=i) for i, name in enumerate(CDN_NAMES)]
    pkts += [dns_reply(CLIENT, "api.openai.com", https_public="cloudflare-ech.com", query_id=9)]
    pkts += [p for i in range(6) for p in hello_to(chrome_hello(["platform.openai.com", "chatgpt.com", "cdn.openai.com"][i % 3], seed=i), 55000 + i)]
    pkts += hello_to(chrome_hello("cloudflare-ech.com"), 55100)
    pkts += hello_to(client_hello("api.openai.com"), 55200)  # the Python library: no ECH
    path = write(tmp_path / "audit.pcap", pkts)
    result = CliRunner().invoke(cli, ["pcap", str(path), "--config", str(EXAMPLE_CONFIG), "--db", str(tmp_path / "f.db"), "--json"])
    assert result.exit_code == 1, result.output
    rows = json.loads(result.stdout)
    assert [(r["host"], r["calls"]) for r in rows] == [("api.openai.com", 2)]
    import sqlite3

    with sqlite3.connect(tmp_path / "f.db") as conn:  # the evidence says how each call was named
        raws = sorted(r[0] for r in conn.execute("SELECT raw FROM evidence"))
    assert raws == [
        f"tcp {CLIENT} port 55100 -> {CDN} port 443: api.openai.com (ech-dns; the hello named cloudflare-ech.com)",
        f"tcp {CLIENT} port 55200 -> {CDN} port 443: api.openai.com (sni)",
    ]
    assert "1 connection named from a DNS answer its client got" in result.stderr


@pytest.mark.parametrize(
    "frames, expected",
    [
        # wstunnel: one masked binary frame holding the ClientHello.
        ([(0x82, client_hello("api.openai.com"))], ("api.openai.com", "websocket+sni")),
        # The hello spread over two frames (binary, then continuation), the first unfinished.
        ([(0x02, client_hello("api.openai.com")[:40]), (0x80, client_hello("api.openai.com")[40:])], ("api.openai.com", "websocket+sni")),
        # A ping first (a control frame is passed over).
        ([(0x89, b"hi"), (0x82, client_hello("api.anthropic.com"))], ("api.anthropic.com", "websocket+sni")),
        # An application's own frames (JSON): the Host header names it, as any HTTP request.
        ([(0x81, b'{"type": "hello"}')], ("relay.example.org", "http")),
        # No frame before the capture ends.
        ([], ("relay.example.org", "http")),
    ],
)
def test_tls_inside_a_websocket(tmp_path: Path, frames: list[tuple[int, bytes]], expected: tuple[str, str]) -> None:
    request = (
        b"GET /v1/events HTTP/1.1\r\nhost: relay.example.org:8888\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
        b"sec-websocket-key: 2avYdCL8ryrY3ZRXm5HuVw==\r\nsec-websocket-version: 13\r\n\r\n"
    )
    chunks = [request]
    for i, (head, payload) in enumerate(frames):
        key = bytes([0x8A, 0xEF, 0xAA, 0x40 + i])
        size = bytes([0x80 | len(payload)]) if len(payload) < 126 else b"\xfe" + struct.pack("!H", len(payload))
        chunks.append(bytes([head]) + size + key + bytes(b ^ key[j % 4] for j, b in enumerate(payload)))
    found = events(write(tmp_path / "ws.pcap", client_stream(chunks, dport=8888)))[1]
    assert [(e.server_name, e.name_source, e.method) for e in found] == [(*expected, "GET")]


# --- bounds under hostile traffic: memory, time, DNS -----------------------------------------


def test_memory_for_first_bytes_is_bounded_and_what_was_shed_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unfinished large hellos from many clients: past MAX_HELD_BYTES the least recently active
    are forgotten (counted in the summary); the connections that finish are still named."""
    from auditor.sources import packets

    monkeypatch.setattr(packets, "MAX_HELD_BYTES", 40_000)
    big = client_hello("x.example", padding=9000)
    pkts = []
    for n in range(20):  # 20 hellos cut after 6000 of their 9000 bytes: 120 kB held without the bound
        pkts += tcp_session(big, sport=52000 + n, split=1500)[2:6]
    pkts += tcp_session(client_hello("api.openai.com"), sport=52100)
    extractor = packets.Extractor("t")
    peak = 0
    for number, p in enumerate(pkts, 1):
        extractor.frame(number, float(p.time), 1, bytes(Ether(src=MAC_A, dst=MAC_B) / p))
        peak = max(peak, extractor._held)
    assert peak <= 40_000
    capture, found = events(write(tmp_path / "shed.pcap", [Ether(src=MAC_A, dst=MAC_B) / p for p in pkts]))
    assert [e.server_name for e in found] == ["api.openai.com"]
    assert capture.stats.ignored[packets.SHED] + capture.stats.ignored[packets.FORGOTTEN] == 20
    assert capture.stats.ignored[packets.SHED] >= 14


def test_one_flow_holds_a_bounded_number_of_bytes(tmp_path: Path) -> None:
    """A connection whose first segment is missing, then 300 large segments after the gap: only
    MAX_AHEAD segments, each cut to what a first-bytes window can use, are kept."""
    from auditor.sources import packets

    extractor = packets.Extractor("t")
    syn = Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=SERVER) / TCP(sport=53000, dport=443, flags="S", seq=0)
    extractor.frame(1, 0.0, 1, bytes(syn))
    for n in range(300):
        seg = Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=SERVER) / TCP(sport=53000, dport=443, flags="PA", seq=10 + n) / Raw(b"\x16" * 1400)
        extractor.frame(2 + n, 0.001 * n, 1, bytes(seg))
    assert extractor._held <= packets.FLOW_COST + packets.MAX_AHEAD * 1400


@pytest.mark.slow
def test_a_hello_in_one_byte_segments_in_and_out_of_order(tmp_path: Path) -> None:
    """A hello sent one byte per segment; then its last 64 bytes first, before the rest. (Each
    segment is appended, not the flow rebuilt: 16,000 one-byte segments took 87 s when it was.)"""
    from auditor.sources import packets

    hello = client_hello("api.openai.com", padding=3000)
    extractor = packets.Extractor("t")
    frames = [
        bytes(
            Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=SERVER) / TCP(sport=53100, dport=443, flags="PA", seq=1000 + i) / Raw(hello[i : i + 1])
        )
        for i in range(len(hello))
    ]
    found = [extractor.frame(n, 0.0, 1, f) for n, f in enumerate(frames, 1)]
    assert [(e.server_name, e.name_source) for e in found if e] == [("api.openai.com", "sni")]
    assert len(hello) > 3000
    # The last 64 bytes first (out of order), then the rest: the pieces beyond the gap are kept.
    tail = [
        bytes(
            Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=SERVER) / TCP(sport=53101, dport=443, flags="PA", seq=1000 + i) / Raw(hello[i : i + 1])
        )
        for i in range(len(hello) - 64, len(hello))
    ]
    head = [
        bytes(
            Ether(src=MAC_A, dst=MAC_B)
            / IP(src=CLIENT, dst=SERVER)
            / TCP(sport=53101, dport=443, flags="PA", seq=1000)
            / Raw(hello[: len(hello) - 64])
        )
    ]
    syn = bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=SERVER) / TCP(sport=53101, dport=443, flags="S", seq=999))
    found = [extractor.frame(n, 0.0, 1, f) for n, f in enumerate([syn, *tail, *head], 1)]
    assert [(e.server_name, e.orig_p) for e in found if e] == [("api.openai.com", 53101)]


def _raw_dns(client: str, body: bytes) -> object:
    return Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.53", dst=client) / UDP(sport=53, dport=40000) / Raw(body)


def test_dns_names_past_255_octets_are_malformed(tmp_path: Path) -> None:
    """A question name of 300 octets cannot be (RFC 1035): the response is malformed and names
    nothing. One of 16,000 one-byte labels with 3,000 answers pointing into it is malformed at
    once (decoding every pointer took half a minute, and each such name was kept twice)."""
    long_name = ".".join(["a" * 59] * 5)  # 5 labels of 59: 301 octets in wire form
    pkts = [dns_reply(CLIENT, long_name), *hello_to(client_hello(None), 53199)]
    capture, found = events(write(tmp_path / "long.pcap", pkts))
    assert capture.stats.locations == {"malformed DNS response": [f"{tmp_path / 'long.pcap'}#1"]}
    assert [(e.server_name, e.name_source) for e in found] == [("", "none")]
    question = b"\x01a" * 16_000 + b"\x00" + b"\x00\x01\x00\x01"
    answers = b"".join(struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([104, 18, 32, 47]) for _ in range(3000))
    body = struct.pack("!HHHHHH", 1, 0x8180, 1, 3000, 0, 0) + question + answers
    pkts = [_raw_dns(CLIENT, body[:60000]), *hello_to(client_hello(None), 53200)]
    capture, found = events(write(tmp_path / "bomb.pcap", pkts))
    assert capture.stats.locations == {"malformed DNS response": [f"{tmp_path / 'bomb.pcap'}#1"]}
    assert [(e.server_name, e.name_source) for e in found] == [("", "none")]


def test_a_damaged_https_record_keeps_the_other_answers(tmp_path: Path) -> None:
    """An HTTPS record whose ECH config list is cut short, beside an A record: the A record still
    names the connection; a response without a question names nothing."""
    from scapy.layers.dns import DNSRRHTTPS, SvcParam

    https = DNSRRHTTPS(rrname="api.openai.com", svc_priority=1, target_name=".", svc_params=[SvcParam(key=5, value=b"\x00\x40\xfe\x0d\x00")])
    reply = (
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src="10.0.0.53", dst=CLIENT)
        / UDP(sport=53, dport=40000)
        / DNS(id=1, qr=1, qd=DNSQR(qname="api.openai.com"), an=[https, DNSRR(rrname="api.openai.com", type="A", rdata=CDN)])
    )
    no_question = _raw_dns(
        "10.20.1.9", struct.pack("!HHHHHH", 2, 0x8180, 0, 1, 0, 0) + struct.pack("!BHHIH", 0, 1, 1, 60, 4) + bytes([104, 18, 32, 47])
    )
    pkts = [reply, no_question, *hello_to(client_hello(None), 53300), *hello_to(client_hello(None), 53301, src="10.20.1.9")]
    capture, found = events(write(tmp_path / "damaged.pcap", pkts))
    assert [(e.orig_p, e.server_name, e.name_source) for e in found] == [(53300, "api.openai.com", "dns"), (53301, "", "none")]
    assert capture.stats.skipped == {}


def test_events_are_handed_on_in_bounded_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many short connections: events are stored as they are read, BATCH_EVENTS at a time."""
    from auditor.sources import pcap

    monkeypatch.setattr(pcap, "BATCH_EVENTS", 3)
    pkts = [p for n in range(7) for p in hello_to(client_hello("api.openai.com"), 53400 + n)]
    capture = PcapFile.open(str(write(tmp_path / "many.pcap", pkts)))
    try:
        sizes = [len(b.events) for b in capture.batches()]
    finally:
        capture.close()
    assert sizes == [3, 3, 1]
