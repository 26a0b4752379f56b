"""Live capture from network interfaces: a packet socket per interface, the kernel filter of
auditor.sources.bpf attached, frames fed to the same extractor as capture files.

Linux only (AF_PACKET). CAP_NET_RAW is all it needs: the interface is not put in promiscuous
mode (the host's own outbound traffic is what is audited).
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterator, Sequence

from auditor.events import ConnectionEvent
from auditor.sources import bpf
from auditor.sources.interface import Batch, EventSource, Prefixed, SourceError, SourceStats
from auditor.sources.packets import LINKTYPE_ETHERNET, LINKTYPE_RAW, Extractor, PacketError

DEFAULT_PORTS = (443, 80, 1080, 3128, 8080)
"""TLS, plain HTTP, SOCKS and the usual proxy ports."""
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_STATISTICS = 263, 6
ARPHRD_LOOPBACK = 772
ANY = "any"
"""The interface name that captures on every interface."""
ARPHRD_LINKTYPES = {
    1: LINKTYPE_ETHERNET,
    ARPHRD_LOOPBACK: LINKTYPE_ETHERNET,
    65534: LINKTYPE_RAW,
    512: LINKTYPE_RAW,
    776: LINKTYPE_RAW,
    778: LINKTYPE_RAW,
}
"""Interface hardware types (ARPHRD_*) -> how their frames start: Ethernet and loopback with an
Ethernet header; tun, PPP, sit and GRE with the IP header."""
RECEIVE_BUFFER = 8 << 20
FLUSH_SECONDS = 1.0
"""Events are handed on (and stored) at least this often while traffic flows."""


class _Interface:
    """One packet socket bound to one interface."""

    def __init__(self, name: str, program: list[bpf.Insn]) -> None:
        self.name = name
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise SourceError(
                f"capturing on {name} needs CAP_NET_RAW: run as root, or grant it to this Python with "
                '`sudo setcap cap_net_raw+ep "$(readlink -f "$(command -v python3)")"`'
            ) from None
        except (AttributeError, OSError) as e:
            raise SourceError(f"cannot open a packet socket ({getattr(e, 'strerror', None) or e}); live capture needs Linux") from None
        try:
            bpf.attach(self.sock, program)  # before bind: nothing unfiltered is queued
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            if name != ANY:  # `any`: an unbound packet socket sees every interface
                self.sock.bind((name, ETH_P_ALL))
        except OSError as e:
            self.sock.close()
            if e.errno in (errno.ENODEV, errno.ENXIO) or isinstance(e, socket.gaierror):
                raise SourceError(f"{name}: no such network interface; list them with `ip link` (or capture on `any`)") from None
            raise SourceError(f"cannot capture on {name} ({e.strerror or e})") from None
        if name != ANY and self.sock.getsockname()[3] not in ARPHRD_LINKTYPES:
            hatype = self.sock.getsockname()[3]
            self.sock.close()
            raise SourceError(f"{name}: interfaces of hardware type {hatype} are not supported; capture on an Ethernet, loopback or tunnel interface")
        self.sock.setblocking(False)

    def drops(self) -> int:
        """Packets the kernel dropped since the last call (its receive buffer was full)."""
        try:
            _packets, dropped = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return 0
        return int(dropped)


class LiveCapture(Prefixed, EventSource):
    """Packets from interfaces until `stop()`; each run is a new input (no checkpoint to resume)."""

    compression = "plain"
    unterminated = False
    resumable = False
    kind = "live"

    def __init__(self, interfaces: Sequence[str], ports: Sequence[int] = DEFAULT_PORTS) -> None:
        if not interfaces:
            raise SourceError("name an interface to capture on (`--interface eth0`); list them with `ip link`")
        self.name = ",".join(interfaces)
        self.ports = tuple(sorted(set(ports)))
        self.stats = SourceStats()
        self.dropped = 0
        """Packets the kernel dropped because user space fell behind."""
        self.prefix = f"live {self.name} {time.time_ns()} {os.getpid()}".encode()
        program = bpf.capture_filter(self.ports)
        self._interfaces: list[_Interface] = []
        try:
            for name in interfaces:
                self._interfaces.append(_Interface(name, program))
        except SourceError:
            self.close()
            raise
        self._stopping = False
        self._extractor = Extractor(self.name)
        self._events: list[ConnectionEvent] = []
        """Events read since the last batch."""
        self._flush_at = time.monotonic() + FLUSH_SECONDS

    def resume(self, offset: int, line: int) -> bool:
        return True

    def stop(self) -> None:
        """Finish after the packets already received (safe to call from a signal handler)."""
        self._stopping = True

    def close(self) -> None:
        for interface in self._interfaces:
            interface.sock.close()

    def descriptors(self) -> list[int]:
        """The packet sockets: readable when frames wait."""
        return [i.sock.fileno() for i in self._interfaces]

    @property
    def flush_at(self) -> float:
        """When (time.monotonic()) the events read since the last batch are handed on."""
        return self._flush_at

    def step(self) -> tuple[Batch | None, bool]:
        """Take every frame the interfaces hold now, without waiting: a batch of the events read
        since the last one when FLUSH_SECONDS passed and there are any, else None; and whether
        any frame was read."""
        before = self.stats.lines
        for interface in self._interfaces:
            self._drain(interface, self._extractor, self._events)
        if self.stats.lines != before:
            now = dt.datetime.now(dt.UTC)
            self.stats.dated(now, now)
        batch = None
        if time.monotonic() >= self._flush_at:
            self._flush_at = time.monotonic() + FLUSH_SECONDS
            self.dropped += sum(i.drops() for i in self._interfaces)
            if self._events:
                batch, self._events = Batch(tuple(self._events), 0, self.stats.lines), []
        return batch, self.stats.lines != before

    def finish(self) -> Batch:
        """The last batch, once stopped: the frames still waiting, and the connections the
        extractor still holds."""
        events, self._events = self._events, []
        for interface in self._interfaces:
            self._drain(interface, self._extractor, events)
        completed = self._extractor.finish(self.stats)
        events.extend(completed)
        for event in completed:
            self.stats.count(event)
        self.dropped += sum(i.drops() for i in self._interfaces)
        return Batch(tuple(events), 0, self.stats.lines)

    def batches(self) -> Iterator[Batch]:
        """A batch at least every FLUSH_SECONDS while events come, and a last one after stop()."""
        while not self._stopping:
            try:
                select.select(self.descriptors(), [], [], max(0.0, min(0.25, self._flush_at - time.monotonic())))
            except InterruptedError:
                pass
            batch, _ = self.step()
            if batch is not None:
                yield batch
        yield self.finish()

    def _drain(self, interface: _Interface, extractor: Extractor, events: list[ConnectionEvent]) -> None:
        """Every frame waiting on one interface's socket."""
        for _ in range(10_000):  # then give the other interfaces a turn
            try:
                frame, address = interface.sock.recvfrom(bpf.SNAPLEN)
            except (BlockingIOError, InterruptedError):
                return
            ifname, _proto, pkttype, hatype = address[:4]
            linktype = ARPHRD_LINKTYPES.get(hatype)
            if linktype is None or (hatype == ARPHRD_LOOPBACK and pkttype == PACKET_OUTGOING):
                continue  # an unsupported link type (on `any`); loopback shows each packet as sent and as received
            self.stats.lines += 1
            number = self.stats.lines
            try:
                event = extractor.frame(number, time.time(), linktype, frame)
            except PacketError as e:
                self.stats.skip(str(e), f"{ifname}#{number}")
                continue
            if event is not None:
                self.stats.count(event)
                events.append(event)
            if extractor.pending:
                completed = extractor.take()
                for done in completed:
                    self.stats.count(done)
                events.extend(completed)
