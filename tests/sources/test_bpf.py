"""The live-capture kernel filter, run instruction by instruction on frames built by scapy.

`run()` is a small classic-BPF interpreter with the kernel's meaning for the negative offsets the
filter uses (SKF_AD_PROTOCOL, SKF_NET_OFF). The same program is checked by the kernel itself in
test_live.py.
"""

from __future__ import annotations

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrHopByHop
from scapy.packet import Raw

from auditor.sources import bpf

PROGRAM = bpf.capture_filter([443, 3128])


def run(program: list[bpf.Insn], packet: bytes, protocol: int) -> int:
    """Bytes the program accepts of the network packet `packet` (0: dropped)."""
    a = x = 0
    mem = [0] * 16
    pc = 0

    def load(offset: int, size: int) -> int:
        if offset < 0:
            assert offset >= bpf.SKF_NET_OFF, "only SKF_NET_OFF offsets are used"
            offset -= bpf.SKF_NET_OFF
        if offset + size > len(packet):
            raise IndexError  # the kernel returns 0 (drops) on an out-of-bounds load
        return int.from_bytes(packet[offset : offset + size], "big")

    try:
        while True:
            i = program[pc]
            pc += 1
            cls, size, mode, op, src = i.code & 0x07, i.code & 0x18, i.code & 0xE0, i.code & 0xF0, i.code & 0x08
            width = {bpf.W: 4, bpf.H: 2, bpf.B: 1}.get(size, 0)
            if cls == bpf.LD:
                if mode == bpf.ABS and i.k == (bpf.SKF_AD_OFF + bpf.SKF_AD_PROTOCOL) & 0xFFFFFFFF:
                    a = protocol
                elif mode == bpf.ABS:
                    a = load(i.k - (1 << 32) if i.k >> 31 else i.k, width)
                elif mode == bpf.IND:
                    a = load(x + (i.k - (1 << 32) if i.k >> 31 else i.k), width)
                elif mode == bpf.MEM:
                    a = mem[i.k]
                else:
                    a = i.k
            elif cls == bpf.LDX:
                x = (load(i.k - (1 << 32) if i.k >> 31 else i.k, 1) & 0x0F) * 4 if mode == bpf.MSH else i.k
            elif cls == bpf.ST:
                mem[i.k] = a
            elif cls == bpf.ALU:
                operand = x if src == bpf.X else i.k
                a = {bpf.ADD: a + operand, bpf.SUB: a - operand, bpf.AND: a & operand, bpf.LSH: a << operand, bpf.RSH: a >> operand}[op] & 0xFFFFFFFF
            elif cls == bpf.JMP:
                if op == bpf.JA:
                    pc += i.k
                    continue
                taken = {bpf.JEQ: a == i.k, bpf.JGT: a > i.k, bpf.JSET: bool(a & i.k)}[op]
                pc += i.jt if taken else i.jf
            elif cls == bpf.RET:
                return i.k
            elif cls == bpf.MISC:
                x = a
    except IndexError:
        return 0


HELLO = b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"
V4, V6 = 0x0800, 0x86DD
CASES = [
    ("SYN to 443", IP(src="10.0.0.5", dst="192.0.2.1") / TCP(sport=50000, dport=443, flags="S"), V4, True),
    ("SYN with Fast Open data", IP(src="10.0.0.5", dst="192.0.2.1") / TCP(sport=50000, dport=443, flags="S") / Raw(HELLO), V4, True),
    ("data to 443", IP(src="10.0.0.5", dst="192.0.2.1") / TCP(sport=50000, dport=443, flags="PA") / Raw(HELLO), V4, True),
    ("data to the proxy port", IP(src="10.0.0.5", dst="192.0.2.1") / TCP(sport=50000, dport=3128, flags="PA") / Raw(b"CONNECT x"), V4, True),
    (
        "data with IP options",
        IP(src="10.0.0.5", dst="192.0.2.1", options=b"\x01\x01\x01\x00") / TCP(sport=5, dport=443, flags="PA") / Raw(b"x"),
        V4,
        True,
    ),
    (
        "data with TCP options",
        IP(src="10.0.0.5", dst="192.0.2.1")
        / TCP(sport=5, dport=443, flags="PA", options=[("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b"")])
        / Raw(b"x"),
        V4,
        True,
    ),
    ("pure ACK to 443", IP(src="10.0.0.5", dst="192.0.2.1") / TCP(sport=50000, dport=443, flags="A"), V4, False),
    (
        "pure ACK with options",
        IP(src="10.0.0.5", dst="192.0.2.1") / TCP(sport=50000, dport=443, flags="A", options=[("Timestamp", (1, 2))]),
        V4,
        False,
    ),
    (
        "Ethernet padding is not data",
        Raw(bytes(IP(src="10.0.0.5", dst="192.0.2.1") / TCP(sport=50000, dport=443, flags="A")) + b"\x00" * 6),
        V4,
        False,
    ),
    ("server's data back", IP(src="192.0.2.1", dst="10.0.0.5") / TCP(sport=443, dport=50000, flags="PA") / Raw(b"x" * 100), V4, False),
    ("data to another port", IP(src="10.0.0.5", dst="192.0.2.1") / TCP(sport=50000, dport=5432, flags="PA") / Raw(b"x"), V4, False),
    ("later fragment", IP(src="10.0.0.5", dst="192.0.2.1", frag=10) / Raw(b"x" * 20), V4, False),
    ("QUIC to 443", IP(src="10.0.0.5", dst="192.0.2.1") / UDP(sport=50000, dport=443) / Raw(b"\xc0" + b"\x00" * 40), V4, True),
    ("DNS response", IP(src="10.0.0.53", dst="10.0.0.5") / UDP(sport=53, dport=40000) / DNS(qr=1, qd=DNSQR(qname="a.example")), V4, True),
    ("DNS query", IP(src="10.0.0.5", dst="10.0.0.53") / UDP(sport=40000, dport=53) / DNS(qd=DNSQR(qname="a.example")), V4, False),
    ("other UDP", IP(src="10.0.0.5", dst="192.0.2.1") / UDP(sport=40000, dport=9999) / Raw(b"x"), V4, False),
    ("ICMP", IP(src="10.0.0.5", dst="192.0.2.1", proto=1) / Raw(b"\x08\x00" + b"\x00" * 6), V4, False),
    ("IPv6 data to 443", IPv6(src="2001:db8::5", dst="2001:db8::1") / TCP(sport=50000, dport=443, flags="PA") / Raw(HELLO), V6, True),
    ("IPv6 pure ACK", IPv6(src="2001:db8::5", dst="2001:db8::1") / TCP(sport=50000, dport=443, flags="A"), V6, False),
    ("IPv6 QUIC", IPv6(src="2001:db8::5", dst="2001:db8::1") / UDP(sport=50000, dport=443) / Raw(b"\xc0" + b"\x00" * 40), V6, True),
    ("IPv6 DNS response", IPv6(src="2001:db8::53", dst="2001:db8::5") / UDP(sport=53, dport=40000) / DNS(qr=1), V6, True),
    ("IPv6 server's data back", IPv6(src="2001:db8::1", dst="2001:db8::5") / TCP(sport=443, dport=50000, flags="PA") / Raw(b"x"), V6, False),
    (
        "IPv6 extension header: user space judges",
        IPv6(src="2001:db8::5", dst="2001:db8::1") / IPv6ExtHdrHopByHop() / TCP(dport=443) / Raw(b"x"),
        V6,
        True,
    ),
    ("ICMPv6", IPv6(src="2001:db8::5", dst="2001:db8::1") / ICMPv6EchoRequest(), V6, False),
    ("ARP", Raw(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20), 0x0806, False),
    ("truncated TCP header", Raw(bytes(IP(src="10.0.0.5", dst="192.0.2.1") / TCP(dport=443))[:24]), V4, False),
]


@pytest.mark.parametrize("name, packet, protocol, accepted", CASES, ids=[c[0] for c in CASES])
def test_filter_accepts_only_what_can_name_a_connection(name: str, packet, protocol: int, accepted: bool) -> None:
    assert (run(PROGRAM, bytes(packet), protocol) == bpf.SNAPLEN) is accepted


def test_ports_are_validated_and_jumps_fit() -> None:
    with pytest.raises(ValueError, match="between 1 and 65535"):
        bpf.capture_filter([0])
    with pytest.raises(ValueError, match="between 1 and 65535"):
        bpf.capture_filter([])
    many = bpf.capture_filter(range(1000, 1100))
    assert run(many, bytes(IP() / TCP(dport=1099, flags="PA") / Raw(b"x")), V4) == bpf.SNAPLEN
    assert run(many, bytes(IP() / TCP(dport=1100, flags="PA") / Raw(b"x")), V4) == 0
    with pytest.raises(ValueError, match="filter too long"):
        bpf.capture_filter(range(1000, 1300))
