"""pcap and pcapng capture files, read record by record in large chunks (never whole).

Our own readers rather than scapy's: they are several times faster, and they tell a record cut
short at the end of the file (counted, with its packet number) from a complete one. Each packet
goes through auditor.sources.packets; a packet that cannot be parsed is counted and skipped with
its number. An input read before resumes by packet number: earlier packets are still fed to the
extractor (a connection may span the checkpoint) but give no events again.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable, Iterator
from typing import IO

from auditor.events import ConnectionEvent
from auditor.sources.interface import FINGERPRINT_BYTES, Batch, EventSource, Prefixed, SourceError, SourceStats
from auditor.sources.packets import Extractor, PacketError

BATCH_PACKETS = 500_000
"""Packets per batch (one store transaction each)."""
BATCH_EVENTS = 5_000
"""Events per batch at most: a capture of many short connections is stored as it is read, not held."""
CHUNK = 1 << 20
"""Bytes read at a time."""
DATE_PACKETS = 4096
"""pcapng packets per stretch dated for SourceStats.spans (pcap dates each read of CHUNK bytes)."""
MAX_RECORD = 1 << 24
"""A record claiming more bytes than this is damaged: the rest of the file cannot be trusted."""

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
SNAPLEN_CUT = "packet cut short by the capture's snap length"
LAST_SECOND = 253_402_300_800
"""1 January 10000: a later timestamp (pcapng has 64 bits for it) is damage."""
"""A frame the capture kept only the start of; it is counted, not read (its bytes are missing)."""

Packet = tuple[int, float, int, bytes]
"""(packet number, timestamp in seconds, link type, frame)."""
Skip = Callable[[bytearray, int, int, int], bool]
"""(buffer, frame start, frame end, link type) -> True for a frame not worth copying out."""


def _keep(buf: bytearray, start: int, end: int, linktype: int) -> bool:
    return False


class Damaged(Exception):
    """The file cannot be read past this point."""


class _Window:
    """A file read through one reused buffer (no allocation per chunk: on some virtual machines
    fresh memory costs more than the parsing). `buf[pos:filled]` holds unread bytes."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.pos = self.filled = 0

    def need(self, n: int) -> bool:
        """True when `n` bytes from `pos` are in `buf`, reading more (and growing) if needed."""
        while self.filled - self.pos < n:
            rest = self.filled - self.pos
            if self.pos:
                self.buf[:rest] = self.view[self.pos : self.filled]
                self.pos, self.filled = 0, rest
            if n > len(self.buf):
                self.view.release()
                self.buf.extend(bytes(n - len(self.buf)))
                self.view = memoryview(self.buf)
            got = self.f.readinto(self.view[self.filled :])  # type: ignore[attr-defined]
            if not got:
                return False
            self.filled += got
        return True

    @property
    def left(self) -> int:
        return self.filled - self.pos


class PcapFile(Prefixed, EventSource):
    """One capture file. Open with `PcapFile.open()`, then `resume()` and iterate `batches()`."""

    compression = "plain"
    unterminated = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = SourceStats()
        try:
            self._file: IO[bytes] = open(name, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise SourceError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise SourceError(f"{name}: is a directory; name the capture files in it") from None
        except OSError as e:
            raise SourceError(f"{name}: cannot open ({e.strerror})") from None
        try:
            self.prefix = self._file.read(FINGERPRINT_BYTES)
            self.size = self._file.seek(0, 2)
            self._file.seek(0)
        except OSError as e:
            self._file.close()
            raise SourceError(f"{name}: cannot read ({e.strerror})") from None
        magic = self.prefix[:4]
        if magic in _PCAP_MAGIC and len(self.prefix) >= 24:
            kind = "pcap"
        elif magic == _PCAPNG_MAGIC and len(self.prefix) >= 12:
            kind = "pcapng"
        else:
            self._file.close()
            raise SourceError(f"{name}: not a pcap or pcapng capture (it starts {magic.hex() or 'empty'}); for logs use `region-auditor logs`")
        self.kind = kind
        """`pcap` or `pcapng`."""
        self._skip_to = 0
        self._number = 0
        """Packet records read so far."""

    @classmethod
    def open(cls, path: str) -> PcapFile:
        return cls(path)

    def resume(self, offset: int, line: int) -> bool:
        """Give no events for packets up to number `line` (already audited)."""
        if offset > self.size:
            return False
        self._skip_to = line
        return True

    def close(self) -> None:
        self._file.close()

    def packets(self, skip: Skip | None = None) -> Iterator[Packet]:
        """Every packet record, but those `skip(buffer, start, end, linktype)` is true for (the
        extractor's cheap test, run before the frame is copied out); damage and a cut-short last
        record are counted in `stats`."""
        reader = self._pcap if self.kind == "pcap" else self._pcapng
        try:
            yield from reader(_Window(self._file), skip or _keep)
        except Damaged as e:
            self.stats.skip(str(e), f"{self.name}#{self._number + 1}")
        except OSError as e:
            raise SourceError(f"{self.name}: cannot read ({e.strerror})") from None

    def _pcap(self, window: _Window, skip: Skip) -> Iterator[Packet]:
        window.need(24)
        endian, scale = _PCAP_MAGIC[bytes(window.buf[:4])]
        linktype = struct.unpack_from(endian + "I", window.buf, 20)[0] & 0xFFFF
        window.pos = 24
        record = struct.Struct(endian + "IIII").unpack_from
        number = 0
        buf, view, pos, filled = window.buf, window.view, window.pos, window.filled
        sec = frac = 0
        first = record(buf, pos)[:2] if pos + 16 <= filled else None
        """(seconds, fraction) of the first record of the stretch being dated: the records of one
        read of the window (about CHUNK bytes), dated at each read, outside the loop's hot path."""
        before = (0, 0)
        try:
            while True:
                if pos + 16 > filled:
                    window.pos, self._number = pos, number
                    if number and first is not None:
                        self._dated(first[0] + first[1] * scale, sec + frac * scale)
                        first = None
                    if not window.need(16):
                        if window.left:
                            raise Damaged("capture ends in a truncated record header")
                        return
                    buf, view, pos, filled = window.buf, window.view, window.pos, window.filled
                    first = record(buf, pos)[:2]
                before = sec, frac
                sec, frac, caplen, wirelen = record(buf, pos)
                start = pos + 16
                pos = start + caplen
                if pos > filled:
                    if caplen > MAX_RECORD:
                        raise Damaged(f"damaged record header (claims {caplen} bytes); the rest of the file was not read")
                    if number and first is not None:  # a stretch ends at each read, before this record
                        self._dated(first[0] + first[1] * scale, before[0] + before[1] * scale)
                    first = (sec, frac)
                    window.pos, self._number = start - 16, number
                    if not window.need(16 + caplen):
                        raise Damaged("capture ends in a record cut short")
                    buf, view, filled = window.buf, window.view, window.filled
                    start = window.pos + 16
                    pos = start + caplen
                number += 1
                if not skip(buf, start, pos, linktype):
                    if caplen < wirelen:
                        self.stats.skip(SNAPLEN_CUT, f"{self.name}#{number}")
                    else:
                        self._number = number
                        yield number, sec + frac * scale, linktype, bytes(view[start:pos])
        except Damaged:  # the records read before the damage are dated all the same
            if number and first is not None:
                self._dated(first[0] + first[1] * scale, before[0] + before[1] * scale)
            raise

    def _pcapng(self, window: _Window, skip: Skip) -> Iterator[Packet]:
        endian = "<"
        interfaces: list[tuple[int, float]] = []  # (link type, seconds per timestamp unit)
        last_ts = 0.0
        first: float | None = None
        """The timestamp of the first packet of the stretch being dated (DATE_PACKETS packets)."""
        self._number = 0
        try:
            while True:
                if not window.need(12):
                    if first is not None:
                        self._dated(first, last_ts)
                    if window.left:
                        raise Damaged("capture ends in a truncated block header")
                    return
                buf, pos = window.buf, window.pos
                if buf[pos : pos + 4] == _PCAPNG_MAGIC:  # section header: its own byte order
                    order = buf[pos + 8 : pos + 12]
                    endian = "<" if order == b"\x4d\x3c\x2b\x1a" else ">" if order == b"\x1a\x2b\x3c\x4d" else ""
                    if not endian:
                        raise Damaged("pcapng section header with an unknown byte order")
                    interfaces = []
                btype, length = struct.unpack_from(endian + "II", buf, pos)
                if length < 12 or length % 4 or length > MAX_RECORD:
                    raise Damaged(f"damaged pcapng block (length {length}); the rest of the file was not read")
                if not window.need(length):
                    raise Damaged("capture ends in a block cut short")
                buf, pos = window.buf, window.pos
                body = pos + 8
                window.pos = pos + length
                if btype == 6:  # enhanced packet block
                    iface, high, low, caplen, wirelen = struct.unpack_from(endian + "IIIII", buf, body)
                    ts_high_low = (high << 32) | low
                    data_at, limit = body + 20, pos + length - 4
                elif btype == 3:  # simple packet block: interface 0, no timestamp
                    iface, ts_high_low = 0, -1
                    data_at, limit = body + 4, pos + length - 4
                    wirelen = struct.unpack_from(endian + "I", buf, body)[0]
                    caplen = min(wirelen, limit - data_at)
                elif btype == 2:  # obsolete packet block
                    iface, _drops, high, low, caplen, wirelen = struct.unpack_from(endian + "HHIIII", buf, body)
                    ts_high_low = (high << 32) | low
                    data_at, limit = body + 20, pos + length - 4
                else:
                    if btype == 1:  # interface description
                        interfaces.append(self._interface(bytes(buf[body : pos + length - 4]), endian))
                    continue
                self._number += 1
                if iface >= len(interfaces) or data_at + caplen > limit:
                    self.stats.skip("pcapng packet block names an unknown interface or overruns its block", f"{self.name}#{self._number}")
                    continue
                linktype, unit = interfaces[iface]
                ts = last_ts if ts_high_low < 0 else ts_high_low * unit
                if ts >= LAST_SECOND:
                    self.stats.skip("packet with an impossible timestamp (after the year 9999)", f"{self.name}#{self._number}")
                    continue
                last_ts = ts
                if first is None:
                    first = ts
                elif not self._number % DATE_PACKETS:
                    self._dated(first, ts)
                    first = None
                if not skip(buf, data_at, data_at + caplen, linktype):
                    if caplen < wirelen:
                        self.stats.skip(SNAPLEN_CUT, f"{self.name}#{self._number}")
                        continue
                    yield self._number, ts, linktype, bytes(window.view[data_at : data_at + caplen])
        except Damaged:  # the packets read before the damage are dated all the same
            if first is not None:
                self._dated(first, last_ts)
            raise

    def _dated(self, first: float, last: float) -> None:
        """Note the stretch of packets from `first` to `last` (epoch seconds) in SourceStats.spans."""
        try:
            self.stats.dated(dt.datetime.fromtimestamp(first, dt.UTC), dt.datetime.fromtimestamp(last, dt.UTC))
        except (ValueError, OverflowError, OSError):
            pass  # a time no datetime holds: damage the readers count elsewhere

    @staticmethod
    def _interface(body: bytes, endian: str) -> tuple[int, float]:
        """(link type, timestamp unit) of an interface description block's body; a body too short
        to hold its link type gives 0xFFFF, a type no reader knows (its packets are skipped as such)."""
        if len(body) < 2:
            return 0xFFFF, 1e-6
        linktype = struct.unpack_from(endian + "H", body, 0)[0]
        unit, off = 1e-6, 8
        while off + 4 <= len(body):
            code, size = struct.unpack_from(endian + "HH", body, off)
            if code == 0:
                break
            if code == 9 and size >= 1 and off + 4 < len(body):  # if_tsresol
                value = body[off + 4]
                unit = 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
            off += 4 + size + (-size % 4)
        return linktype, unit

    def batches(self) -> Iterator[Batch]:
        extractor = Extractor(self.name)
        events: list[ConnectionEvent] = []
        frame = extractor.frame
        skip_to = self._skip_to
        number, next_batch = 0, BATCH_PACKETS
        for number, ts, linktype, data in self.packets(extractor.uninteresting):
            try:
                event = frame(number, ts, linktype, data)
            except PacketError as e:
                self.stats.skip(str(e), f"{self.name}#{number}")
                event = None
            if event is not None and number > skip_to:
                self.stats.count(event)
                events.append(event)
            if extractor.pending:
                self._keep(extractor.take(), number > skip_to, events)
            if number >= next_batch or len(events) >= BATCH_EVENTS:
                next_batch = number + BATCH_PACKETS
                self.stats.lines = number
                yield Batch(tuple(events), 0, number)
                events = []
        number = self._number  # packets read, the skipped ones after the last yielded included
        self._keep(extractor.finish(self.stats), number > skip_to, events)
        self.stats.lines = number
        # The whole file is read: its size marks the checkpoint as complete.
        yield Batch(tuple(events), self.size, max(number, self._skip_to))

    def _keep(self, completed: list[ConnectionEvent], new: bool, events: list[ConnectionEvent]) -> None:
        """Events the extractor completed other than by a frame, unless audited before."""
        if new:
            for event in completed:
                self.stats.count(event)
            events.extend(completed)
