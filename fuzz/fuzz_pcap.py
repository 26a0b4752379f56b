"""Atheris harness for captures: bytes -> a pcap/pcapng file -> PcapFile batches, or raw frames -> Extractor.

The first byte of an input picks the mode. Even: the rest is a capture file, read by PcapFile as
`region-auditor pcap` reads it; a SourceError (not a capture, cannot be read) and damage counted
in its stats are answers. Odd: the second byte picks a link type, and the rest is a run of frames,
each a 2-byte big-endian length and that many bytes, handed to one Extractor (the cheap test
first, as PcapFile does); PacketError is the answer to a bad frame. Any other exception is a crash.

    pip install -e '.[test,fuzz]'
    python fuzz/seed.py
    python fuzz/fuzz_pcap.py fuzz/corpus/pcap -max_total_time=60

A crasher is written as crash-<sha1> in the current directory; replay it with
`python fuzz/fuzz_pcap.py crash-<sha1>`, then make it a regression test under tests/.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from auditor.sources.interface import SourceError, SourceStats
    from auditor.sources.packets import Extractor, PacketError
    from auditor.sources.pcap import PcapFile

LINKTYPES = (1, 0, 9, 12, 50, 51, 101, 104, 108, 113, 228, 229, 276)
"""Ethernet, BSD loopback, PPP, raw IP, PPP in HDLC, PPPoE, raw IP, Cisco HDLC, OpenBSD loop,
Linux cooked (SLL), IPv4, IPv6, SLL2: every link type the extractor reads, and 12/50 besides."""
DIR = tempfile.mkdtemp(prefix="fuzz-pcap-")
PATH = os.path.join(DIR, "input.pcap")


def frames(data: bytes) -> list[bytes]:
    """A run of 2-byte-length-prefixed frames; a cut-short last one is taken as it is."""
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 2], "big")
        out.append(data[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return out


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    if data[0] & 1:
        linktype = LINKTYPES[data[1] % len(LINKTYPES)]
        extractor = Extractor("fuzz")
        for number, frame in enumerate(frames(data[2:]), 1):
            extractor.uninteresting(frame, 0, len(frame), linktype)
            try:
                extractor.frame(number, 1_721_638_800.0 + number, linktype, frame)
            except PacketError:
                pass
            extractor.take()
        extractor.finish(SourceStats())
        return
    with open(PATH, "wb") as f:
        f.write(data[1:])
    try:
        capture = PcapFile.open(PATH)
    except SourceError:
        return
    try:
        for _ in capture.batches():
            pass
    except SourceError:
        pass
    finally:
        capture.close()


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
