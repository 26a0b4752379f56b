"""The packet extractor and the capture reader, given arbitrary and damaged input.

- Extractor.frame, on runs of random frames and of real frames (ClientHellos whole and split, a
  QUIC Initial, a DNS answer, SOCKS and CONNECT tunnels, built as tests/sources/test_pcap.py builds
  them) with random damage, in any link type: an event, nothing, or PacketError; nothing else.
- the cheap test PcapFile runs before copying a frame out (Extractor.uninteresting) changes no
  answer: the frames it passes over give the same events as when every frame is read.
- PcapFile, on random files that start like a pcap or pcapng and on real captures with random
  damage: SourceError (one sentence) or a read to the end with the damage counted.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, PcapWriter

from auditor.sources.interface import SourceError, SourceStats
from auditor.sources.packets import Extractor, PacketError
from auditor.sources.pcap import PcapFile
from tests.properties import budget
from tests.sources.test_fuzz import frames
from tests.sources.test_pcap import CLIENT, MAC_A, MAC_B, SERVER, client_hello, tcp_session

TMP = Path(tempfile.mkdtemp(prefix="ra-packets-"))
LINKTYPES = (0, 1, 9, 12, 50, 51, 101, 104, 108, 113, 228, 229, 276, 147)
"""Every link type the extractor reads, and one it does not."""
DNS_ANSWER = bytes(
    Ether(src=MAC_B, dst=MAC_A)
    / IP(src="192.0.2.53", dst=CLIENT)
    / UDP(sport=53, dport=33000)
    / DNS(id=1, qr=1, qd=DNSQR(qname="api.openai.com"), an=DNSRR(rrname="api.openai.com", type="A", rdata=SERVER, ttl=60))
)
REAL = [DNS_ANSWER, *frames(), *(bytes(Ether(src=MAC_A, dst=MAC_B) / p) for p in tcp_session(client_hello(None), sport=50001))]
"""Real frames in the order they were built: sessions, each from its SYN on."""


def damaged(frame: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """`frame` with each (position, bytes removed, bytes put there) applied in turn."""
    out = bytearray(frame)
    for at, cut, put in edits:
        at %= len(out) + 1
        out[at : at + cut] = put
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 12), st.integers(0, 8), st.binary(max_size=6)), max_size=4)
REAL_RUN = st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.booleans(), EDITS), max_size=40).map(
    lambda picks: [damaged(REAL[i], edits) if hurt else REAL[i] for i, hurt, edits in sorted(picks, key=lambda p: p[0])]
)
"""Real frames in their order, some left out, some damaged."""
RANDOM_RUN = st.lists(st.binary(max_size=200), max_size=30)


def extract(run: list[bytes], linktype: int, cheap: bool) -> tuple[list[tuple[int, str, str]], int]:
    """The events (frame number, server name, how it was named) of a run of frames through one
    extractor, frames the cheap test passes over left out when `cheap`; and the PacketErrors."""
    extractor = Extractor("prop")
    events, errors = [], 0
    for number, frame in enumerate(run, 1):
        if extractor.uninteresting(frame, 0, len(frame), linktype) and cheap:
            continue
        try:
            event = extractor.frame(number, 1_721_638_800.0 + number / 100, linktype, frame)
        except PacketError:
            errors += 1
            event = None
        found = ([event] if event is not None else []) + extractor.take()
        events += [(number, e.server_name, e.name_source) for e in found]
    events += [(0, e.server_name, e.name_source) for e in extractor.finish(SourceStats())]
    return events, errors


@settings(max_examples=budget(300))
@given(st.one_of(REAL_RUN, RANDOM_RUN), st.sampled_from(LINKTYPES))
def test_frames_give_events_nothing_or_packet_errors(run: list[bytes], linktype: int) -> None:
    extract(run, linktype, cheap=False)  # anything but PacketError fails the test


@settings(max_examples=budget(300))
@given(REAL_RUN)
def test_the_cheap_test_changes_no_answer(run: list[bytes]) -> None:
    assert extract(run, 1, cheap=True)[0] == extract(run, 1, cheap=False)[0]


def capture(kind: str) -> bytes:
    path = TMP / f"real.{kind}"
    writer = PcapNgWriter(str(path)) if kind == "pcapng" else PcapWriter(str(path), sync=True)
    for i, frame in enumerate(REAL):
        packet = Ether(frame)
        packet.time = 1_721_638_800.0 + i / 100
        writer.write(packet)
    writer.close()
    return path.read_bytes()


CAPTURES = {kind: capture(kind) for kind in ("pcap", "pcapng")}
PCAP_HEADER = st.tuples(
    st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"]), st.binary(min_size=20, max_size=20)
).map(b"".join)
PCAPNG_START = st.tuples(st.just(b"\x0a\x0d\x0d\x0a"), st.binary(min_size=8, max_size=8)).map(b"".join)
FILES = st.one_of(
    st.tuples(PCAP_HEADER, st.binary(max_size=400)).map(b"".join),
    st.tuples(PCAPNG_START, st.binary(max_size=400)).map(b"".join),
    st.tuples(
        st.sampled_from(sorted(CAPTURES)),
        st.lists(st.tuples(st.integers(0, 1 << 13), st.integers(0, 16), st.binary(max_size=8)), min_size=1, max_size=6),
    ).map(lambda t: damaged(CAPTURES[t[0]], t[1])),
    st.binary(max_size=64),
)


@settings(max_examples=budget(400))
@given(FILES)
def test_capture_files_are_read_or_refused_in_one_sentence(data: bytes) -> None:
    path = TMP / "input.cap"
    path.write_bytes(data)
    try:
        reader = PcapFile.open(str(path))
    except SourceError:
        return
    try:
        batches = list(reader.batches())
    finally:
        reader.close()
    assert batches[-1].offset == len(data)
    assert reader.stats.events == sum(len(b.events) for b in batches)


def test_real_frames_are_named_when_undamaged() -> None:
    """The runs above start from frames that do give events."""
    names = {name for _, name, _ in extract(REAL, 1, cheap=False)[0]}
    assert {"api.openai.com"} <= names
    assert struct.unpack("!I", CAPTURES["pcap"][:4])[0] in (0xA1B2C3D4, 0xD4C3B2A1)
