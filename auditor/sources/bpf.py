"""The kernel filter for live capture, written as classic BPF (no libpcap needed).

User space sees only what can name an outbound connection: TCP segments to the watched ports
that open a connection (SYN, which may carry data with TCP Fast Open) or carry data; UDP
datagrams to the watched ports (QUIC Initials); DNS responses (UDP from port 53). Pure ACKs,
everything the servers send back, and all other traffic stay in the kernel.

Offsets are relative to the network header (SKF_NET_OFF) and the protocol is the socket
buffer's (SKF_AD_PROTOCOL), so one program fits Ethernet, loopback, raw-IP tunnels and frames
whose VLAN tag the driver has already stripped. IPv6 packets with extension headers are let
through for user space to judge; later IPv4 fragments are dropped.
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Instruction classes, sizes, modes, operations (linux/filter.h, linux/bpf_common.h).
LD, LDX, ST, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, MSH = 0x00, 0x20, 0x40, 0x60, 0xA0
ADD, SUB, AND, LSH, RSH = 0x00, 0x10, 0x50, 0x60, 0x70
JA, JEQ, JGT, JSET = 0x00, 0x10, 0x20, 0x40
K, X = 0x00, 0x08
TAX = 0x00

SKF_AD_OFF, SKF_AD_PROTOCOL, SKF_NET_OFF = -0x1000, 0, -0x100000
SO_ATTACH_FILTER = 26
SNAPLEN = 262_144
"""Bytes of an accepted packet handed to user space."""


@dataclass(frozen=True)
class Insn:
    """One classic BPF instruction: code, jump-if-true, jump-if-false, constant."""

    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0


def _u32(k: int) -> int:
    return k & 0xFFFFFFFF


def assemble(program: Sequence[tuple[object, ...]]) -> list[Insn]:
    """Resolve labels. Items: ("label", name); (code, k); (code, k, true_label, false_label), a
    None label meaning the next instruction; (JMP | JA, label). Jumps go forward only and at most
    255 instructions for conditional ones, as the kernel requires."""
    positions: dict[object, int] = {}
    insns: list[tuple[object, ...]] = []
    for item in program:
        if item[0] == "label":
            positions[item[1]] = len(insns)
        else:
            insns.append(item)
    out = []
    for i, item in enumerate(insns):
        code = int(item[0])  # type: ignore[call-overload]
        if code == JMP | JA:
            out.append(Insn(code, 0, 0, positions[item[1]] - i - 1))
            continue
        jt = jf = 0
        if len(item) > 2:
            jt, jf = (positions[t] - i - 1 if t is not None else 0 for t in item[2:4])
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise ValueError("filter too long: a jump exceeds 255 instructions")
        out.append(Insn(code, jt, jf, _u32(int(item[1]))))  # type: ignore[call-overload]
    return out


def capture_filter(ports: Iterable[int]) -> list[Insn]:
    """The program: accept what can name an outbound connection to one of `ports` (see module doc)."""
    ports = sorted(set(ports))
    if not ports or not all(0 < p < 65536 for p in ports):
        raise ValueError("ports must be between 1 and 65535")
    net = SKF_NET_OFF
    p: list[tuple[object, ...]] = [
        (LD | W | ABS, SKF_AD_OFF + SKF_AD_PROTOCOL),
        (JMP | JEQ | K, 0x0800, "v4", None),
        (JMP | JEQ | K, 0x86DD, "v6", "drop"),
        ("label", "v4"),
        (LD | H | ABS, net + 6),
        (JMP | JSET | K, 0x1FFF, "drop", None),  # a later fragment
        (LD | H | ABS, net + 2),  # total length
        (ST, 0),
        (LDX | B | MSH, net),  # X = IPv4 header length
        (LD | B | ABS, net + 9),
        (JMP | JEQ | K, 6, "tcp", None),
        (JMP | JEQ | K, 17, "udp", "drop"),
        ("label", "v6"),
        (LD | H | ABS, net + 4),  # payload length
        (ALU | ADD | K, 40),
        (ST, 0),
        (LDX | W | IMM, 40),
        (LD | B | ABS, net + 6),
        (JMP | JEQ | K, 6, "tcp", None),
        (JMP | JEQ | K, 17, "udp", None),
        (JMP | JEQ | K, 58, "drop", "accept"),  # ICMPv6 out; extension headers to user space
        ("label", "tcp"),
        (LD | H | IND, net + 2),  # destination port
        *[(JMP | JEQ | K, port, "tcp_port", None) for port in ports],
        (JMP | JA, "drop"),
        ("label", "tcp_port"),
        (LD | B | IND, net + 13),  # flags
        (JMP | JSET | K, 0x02, "accept", None),  # SYN (maybe with Fast Open data)
        (LD | B | IND, net + 12),  # data offset
        (ALU | RSH | K, 4),
        (ALU | LSH | K, 2),
        (ALU | ADD | X, 0),  # IP header + TCP header
        (MISC | TAX, 0),
        (LD | MEM, 0),  # IP packet length
        (ALU | SUB | X, 0),
        (JMP | JGT | K, 0, "accept", "drop"),  # carries data
        ("label", "udp"),
        (LD | H | IND, net + 0),  # source port
        (JMP | JEQ | K, 53, "accept", None),  # a DNS response
        (LD | H | IND, net + 2),
        *[(JMP | JEQ | K, port, "accept", None) for port in ports],
        (JMP | JA, "drop"),
        ("label", "accept"),
        (RET | K, SNAPLEN),
        ("label", "drop"),
        (RET | K, 0),
    ]
    return assemble(p)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def attach(sock: socket.socket, program: Sequence[Insn]) -> None:
    """Attach `program` to a packet socket (SO_ATTACH_FILTER); OSError if the kernel refuses it."""
    array = (_SockFilter * len(program))(*[_SockFilter(i.code, i.jt, i.jf, i.k) for i in program])
    fprog = _SockFprog(len(program), ctypes.cast(array, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(memoryview(fprog)))
