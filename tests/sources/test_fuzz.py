"""Damaged input, generated: sample log lines and captured frames mutated at random (fixed seeds,
so a failure replays). Whatever the damage, a parser answers with an event, a counted malformed
record or a not-counted reason, never another exception. Each bug these found is also pinned by a
test of its own (test_formats.py, test_pcap.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapWriter

from auditor.sources.interface import Ignored, Malformed, SourceError
from auditor.sources.logfile import FORMATS
from auditor.sources.packets import Extractor, PacketError
from auditor.sources.pcap import PcapFile
from tests.sources.test_pcap import MAC_A, MAC_B, client_hello, client_initial, tcp_session

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
INSERTS = [
    b'"',
    b"{",
    b"}",
    b"[",
    b"]",
    b"999999999999999999999",
    b"-",
    b"\x00",
    b"\xff",
    b" ",
    b"1e999",
    b"null",
    b"api.openai.com",
    b"%",
    b"\\",
    b"\\u0000",
    b"-1",
    b"NaN",
    b"[]",
    b"{}",
    b"true",
    b"\r",
]


def mutate(rng: random.Random, data: bytes, inserts: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        op = rng.random()
        if op < 0.5 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif op < 0.7:
            del out[rng.randrange(len(out) + 1) :]
        else:
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.choice(inserts)
    return bytes(out)


@pytest.mark.parametrize("seed", [1, 2])
def test_log_parsers_never_raise_anything_else(seed: int) -> None:
    rng = random.Random(seed)
    lines = [line for f in sorted(LOGS.iterdir()) if f.name != "README.md" for line in f.read_bytes().splitlines()]
    assert len(lines) > 500
    outcomes = {"event": 0, "malformed": 0, "ignored": 0}
    for _ in range(20_000):
        text = mutate(rng, rng.choice(lines), INSERTS).decode("utf-8", "replace")
        fmt = rng.choice(list(FORMATS.values()))
        fmt.sniff(text)
        try:
            fmt.parse(text, "t.log:1")
            outcomes["event"] += 1
        except Malformed:
            outcomes["malformed"] += 1
        except Ignored:
            outcomes["ignored"] += 1
    assert all(outcomes.values())  # the mutations reach every outcome


def frames() -> list[bytes]:
    eth = lambda p: bytes(Ether(src=MAC_A, dst=MAC_B) / p)  # noqa: E731
    out = [eth(p) for p in tcp_session(client_hello("api.openai.com", padding=100), split=60)]
    out += [
        eth(
            IP(src="10.0.0.1", dst="192.0.2.4")
            / UDP(sport=5000, dport=443)
            / Raw(client_initial([(0, b"\x01\x00\x00\x10" + b"a" * 16)], b"\x11" * 8, 1))
        )
    ]
    out += [eth(p) for p in tcp_session(b"\x05\x01\x00\x05\x01\x00\x03\x0eapi.openai.com\x01\xbb", dport=1080, sport=40000)]
    out += [eth(p) for p in tcp_session(b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00api.openai.com\x00", dport=1080, sport=40001)]
    out += [eth(p) for p in tcp_session(b"CONNECT 192.0.2.4:443 HTTP/1.1\r\n\r\n" + client_hello("api.openai.com"), dport=3128, sport=40002)]
    return out


def test_frames_never_raise_anything_but_packet_errors() -> None:
    rng = random.Random(11)
    base = frames()
    errors = 0
    extractor = Extractor("fuzz")
    for i in range(30_000):
        if i % 50 == 0:
            extractor = Extractor("fuzz")
        frame = mutate(rng, rng.choice(base), [b"\x00", b"\xff" * 4, b"\x16\x03\x01", b"\x05", b"CONNECT "])
        linktype = rng.choice([1, 1, 1, 0, 9, 51, 101, 104, 113, 276])
        extractor.uninteresting(frame, 0, len(frame), linktype)
        try:
            extractor.frame(i, 1_721_638_800.0 + i, linktype, frame)
        except PacketError:
            errors += 1
    assert errors  # damage was met, and answered as damage


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_damaged_capture_files_are_counted_never_a_crash(tmp_path: Path, kind: str) -> None:
    rng = random.Random(5)
    good = tmp_path / f"good.{kind}"
    writer = PcapNgWriter(str(good)) if kind == "pcapng" else PcapWriter(str(good))
    for frame in frames():
        writer.write(Ether(frame))
    writer.close()
    data = good.read_bytes()
    damaged = 0
    for i in range(300):
        path = tmp_path / f"f{i % 3}.{kind}"
        path.write_bytes(mutate(rng, data, [b"\x00" * 4, b"\xff" * 8]))
        try:
            capture = PcapFile.open(str(path))
        except SourceError:
            continue  # not a capture any more: one sentence
        try:
            list(capture.batches())
        finally:
            capture.close()
        damaged += bool(capture.stats.skipped)
    assert damaged  # and some of it was counted as damage
