"""pcap and pcapng capture files, read packet by packet with scapy's raw readers (never whole).

Each packet goes through auditor.sources.packets; a packet that cannot be parsed is counted and
skipped with its number. An input read before resumes by packet number: earlier packets are
still fed to the extractor (a connection may span the checkpoint) but give no events again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

from auditor.events import ConnectionEvent
from auditor.sources.interface import Batch, EventSource, Prefixed, SourceError, SourceStats
from auditor.sources.logfile import FINGERPRINT_BYTES
from auditor.sources.packets import Extractor, PacketError

BATCH_PACKETS = 500_000
logging.getLogger("scapy").setLevel(logging.ERROR)  # damaged records are counted, not logged


class PcapFile(Prefixed, EventSource):
    """One capture file. Open with `PcapFile.open()`, then `resume()` and iterate `batches()`."""

    compression = "plain"
    unterminated = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = SourceStats()
        try:
            with open(name, "rb") as f:
                self.prefix = f.read(FINGERPRINT_BYTES)
                self.size = f.seek(0, 2)
            self._reader = RawPcapReader(name)
        except FileNotFoundError:
            raise SourceError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise SourceError(f"{name}: is a directory; name the capture files in it") from None
        except OSError as e:
            raise SourceError(f"{name}: cannot open ({e.strerror})") from None
        except (Scapy_Exception, EOFError, ValueError) as e:
            raise SourceError(f"{name}: not a pcap or pcapng capture ({e}); for logs use `region-auditor logs`") from None
        self.format = type("Fmt", (), {"name": "pcapng" if isinstance(self._reader, RawPcapNgReader) else "pcap"})()
        self._skip_to = 0

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
        self._reader.close()

    def _packets(self) -> Iterator[tuple[int, dt.datetime, int, bytes]]:
        reader = self._reader
        number = 0
        while True:
            try:
                data, meta = reader._read_packet()
            except EOFError:
                return
            except (Scapy_Exception, ValueError, OSError) as e:
                self.stats.skip(f"capture ends in a damaged record ({e})", f"{self.name}#{number + 1}")
                return
            if data is None:
                continue
            number += 1
            if isinstance(reader, RawPcapNgReader):
                stamp = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
                linktype = meta.linktype
            else:
                stamp = meta.sec + meta.usec / (1e9 if reader.nano else 1e6)
                linktype = reader.linktype
            yield number, dt.datetime.fromtimestamp(stamp, tz=dt.timezone.utc), linktype, data

    def batches(self) -> Iterator[Batch]:
        extractor = Extractor(self.name)
        events: list[ConnectionEvent] = []
        number = 0
        for number, ts, linktype, frame in self._packets():
            self.stats.lines += 1
            try:
                event = extractor.frame(number, ts, linktype, frame)
            except PacketError as e:
                self.stats.skip(str(e), f"{self.name}#{number}")
                continue
            if event is not None and number > self._skip_to:
                self.stats.events += 1
                events.append(event)
            if number % BATCH_PACKETS == 0:
                yield Batch(tuple(events), 0, number)
                events = []
        # The whole file is read: its size marks the checkpoint as complete.
        yield Batch(tuple(events), self.size, max(number, self._skip_to))
