"""Reading one log input: plain, gzip, bz2 or xz, or stdin; format detected per file.

Lines are read as bytes in large chunks. A line is parsed only when it contains one of the
prefilter needles (governed host names, lower-cased); every other line is only counted. A line
that passes the prefilter is parsed before it counts: a substring hit proves nothing.

The reader exposes a fingerprint of the start of the (decompressed) stream so that the store can
recognise input it has read before and resume after its checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import io
import itertools
import lzma
import os
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from auditor.events import ConnectionEvent, Tally
from auditor.sources import vercel, wrapped, zeek
from auditor.sources.common import NOT_A_HOST, is_host
from auditor.sources.compression import MAGIC_BYTES, PutBack, Streams, compression_of, zstandard_module
from auditor.sources.formats import (
    BOM,
    FORMATS,
    LineReader,
    detect_format,
    first_lines,
    format_named,
    refuse_wrapped_headers,
)
from auditor.sources.interface import (
    FINGERPRINT_BYTES,
    MAX_LOCATIONS,
    Batch,
    EventSource,
    Ignored,
    Malformed,
    Prefixed,
    SourceError,
    SourceStats,
)
from auditor.sources.needles import compiled
from auditor.spans import add_span

CHUNK = 1 << 20
"""Bytes read at a time outside the main loop (long lines, JSON documents)."""
WINDOW = 4 << 20
"""Bytes the main loop reads at a time, into one reused buffer; larger than MAX_LINE."""
SAMPLE_BYTES = 1 << 16
"""How much of the start of a stream format detection looks at."""
BATCH_LINES = 200_000
"""Lines per batch (one store transaction each)."""
SPLIT_STEP = 8192
"""Half the runtimes' 16 KiB split: a stretch this long without a newline lies inside a long line."""
MAX_LINE = 1 << 20
"""A longer line is skipped as malformed (its bytes are still consumed)."""
MAX_DOCUMENT = 512 << 20
"""A JSON array input (Vercel drain batch) is read whole; a larger one is refused."""
SETTLED_SECONDS = 10.0
"""A plain file unchanged for this long is finished: its last line counts without a newline."""
SPAN_BYTES = 1 << 20
"""How far apart (bytes) records are dated for SourceStats.spans: the first and last record of each
stretch this long (or each read, when shorter) are parsed, however many calls it holds."""
DATE_TRIES = 8
"""Records tried from each end of a stretch for one that gives a time (a malformed one gives none)."""
MAX_HEADERS = 64
"""Header lines (`#`: Zeek's eight, a concatenated log's more) passed over besides DATE_TRIES."""


ARRAY_STRETCH = 1000
"""Entries of a JSON array input per stretch dated (SourceStats.spans): its first and last."""


def _entry_time(record: object) -> dt.datetime | None:
    """The time of a JSON array entry (a Vercel log object), None when it gives none."""
    try:
        return vercel.record_time(record)
    except (Malformed, ValueError, OverflowError):  # passed over, never counted here
        return None


def check_name(path: str) -> None:
    """SourceError for a file name that is not UTF-8 (bytes the OS gave as surrogates): the store
    keeps names and locations as text, and could not tell such a file again."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "backslashreplace").decode("utf-8")
        raise SourceError(f"{shown}: the file name is not valid UTF-8; rename the file (or pipe it in as `-`)") from None


def _hash_line(block: bytes | bytearray, end: int) -> bool:
    """True when a line after the first of `block[:end]` starts with `#` (a Zeek header). One
    memchr pass for `#`, which records hardly hold: `find(b"\\n#")` took 0.7 s of a 5M-line ssl.log."""
    i = block.find(b"#", 1, end)
    while i >= 0:
        if block[i - 1] == 0x0A:
            return True
        i = block.find(b"#", i + 1, end)
    return False


@dataclass(frozen=True)
class Range:
    """Bytes [start, stop) of a plain log file on disk, whole lines: what another process needs
    to read them as lines of that input (`LogFile.of_range`)."""

    path: str
    name: str
    """The input's name, in its events' locations."""
    start: int
    stop: int
    needles: tuple[bytes, ...]
    format: str
    """Its format's name (`squid+docker`)."""
    fields: Mapping[str, str] | None


class _RangeStream(io.RawIOBase):
    """Bytes [start, stop) of a file, read straight into the reader's buffer."""

    def __init__(self, path: str, start: int, stop: int) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._pos, self._stop = start, stop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with memoryview(buffer) as view:
            got = os.preadv(self._fd, [view[: max(0, min(len(view), self._stop - self._pos))]], self._pos)
        self._pos += got
        return got

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def rebased(tally: Tally, name: str, base: int) -> Tally:
    """A tally of a range read by `LogFile.of_range`, whose lines are numbered from the range's
    start, with its samples' locations moved to the line in the input (`base` lines before the
    range). Only the samples carry locations: the rest of a tally is counts."""
    samples = tuple(dataclasses.replace(f, event=rebased_event(f.event, name, base)) for f in tally.samples)
    return dataclasses.replace(tally, samples=samples)


def rebased_event(event: ConnectionEvent, name: str, base: int) -> ConnectionEvent:
    """An event of a range (see `rebased`) with its location in the input."""
    return dataclasses.replace(event, source=_rebase(event.source, name, base))


def _rebase(location: str, name: str, base: int) -> str:
    """`name:N...` -> `name:N+base...`: a location in a range made a location in its file."""
    if not location.startswith(name + ":"):
        return location
    rest = location[len(name) + 1 :]
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{name}:{int(rest[:digits]) + base}{rest[digits:]}" if digits else location


class LogFile(Prefixed, EventSource):
    """One log input. Open with `LogFile.open()`, then `resume()` and iterate `batches()`."""

    def __init__(
        self,
        name: str,
        stream: IO[bytes],
        compression: str,
        needles: tuple[bytes, ...],
        fmt: str | None,
        *,
        growing: bool = False,
        fields: Mapping[str, str] | None = None,
        following: bool = False,
        on_disk: bytes | None = None,
        stats: SourceStats | None = None,
    ) -> None:
        """`following`: see the attribute. `on_disk`: the first bytes of the file as they are on
        disk, when `stream` releases fewer (a followed file releases complete lines only): the
        input is told by them, as `logs` tells it. `stats`: counts to go on from (the same input
        opened again)."""
        self.name = name
        self.growing = growing
        """True for a plain file changed in the last SETTLED_SECONDS: a writer may be mid-line."""
        self.finished = False
        """True when nothing will be written to the input again (a generation rotated away and
        settled, compressed or not): a last line without its newline is read as it is."""
        self.compression = compression
        self.needles = needles
        self._needles = compiled(needles)
        self.stats = stats if stats is not None else SourceStats()
        self.unterminated = False
        """True when the input ended inside a line left for the next run."""
        self.following = following
        """True when the end of the input is only the end of what is there now (a followed file):
        the first parts of a line split by the runtime wait there for their last part."""
        self.damaged = ""
        """Why a compressed input ended early (cut short or corrupt), "" when it did not."""
        self._stream = stream
        self._offset = 0
        self._line = 0
        self._long: tuple[int, bool, bytes] | None = None
        """An overlong line the input ended inside, still being written (a followed file): (bytes
        dropped so far, whether they named a governed host, their last bytes). It is counted once,
        when its newline comes; the checkpoint stays at its start until then."""
        self._pending = b""
        self._array_skip = 0
        self.fields = fields
        """The [[source]] field map (generic JSON), None when there is none."""
        self._reader: LineReader | None = None
        self._partial: Callable[[bytes | bytearray, int, int], bool] | None = None
        """For a wrapper that splits long lines (Docker, CRI): True for a record whose line goes
        on in the next one (wrapped.partial_test). The parts of a line are then read as one line,
        and reading stops only between whole lines (batches, pieces, checkpoints)."""
        self._path: str | None = None
        """The plain file on disk behind the stream, which other processes may read too; None otherwise."""
        self._stretch: list[Any] | None = None
        """The stretch of lines being dated (`_date`): [first record's time, last record's time so
        far, bytes]; None between stretches."""
        try:
            self._pending = self._read(max(SAMPLE_BYTES, FINGERPRINT_BYTES))
            if self.damaged and not self._pending:
                raise SourceError(f"{name}: cannot read {compression} data ({self.damaged.split(' (', 1)[1].split(');', 1)[0]})")
            self._sample_end = len(self._pending)
            self.prefix = self._pending[:FINGERPRINT_BYTES]
            if len(self._pending) < FINGERPRINT_BYTES and not self.damaged:  # all of it
                left = not self.prefix.endswith(b"\n") and self._leaves_last_line
                self.whole_lines = self.prefix.rfind(b"\n") + 1 if left else len(self.prefix)
            if on_disk is not None:
                self.prefix = on_disk[:FINGERPRINT_BYTES]
                if len(self.prefix) == FINGERPRINT_BYTES:
                    self.whole_lines = 0  # told by its first 4 KiB, as any longer input
            self.format = format_named(fmt, self._pending) if fmt else detect_format(self._pending, name)
            if fmt and self.format is None:
                raise SourceError(f"{name}: unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
            if self.format is not None and self.format.name.startswith(zeek.NAME + "+"):
                refuse_wrapped_headers(name, self.format.name.partition("+")[2], self._pending)
            self._reader = self._new_reader()
            self._partial = self._partial_test()
        except SourceError:
            self.close()
            raise

    @classmethod
    def open(
        cls, path: str, needles: tuple[bytes, ...], fmt: str | None = None, fields: Mapping[str, str] | None = None, *, finished: bool = False
    ) -> LogFile:
        """Open a file (or `-` for stdin), detecting compression by magic bytes. `finished`: see
        the attribute (it is told by its first bytes as any input is, whatever it holds)."""
        check_name(path)
        if path == "-" and (sys.stdin is None or sys.stdin.closed):
            raise SourceError("<stdin>: standard input is closed; pipe a log into it, or name the files")
        try:
            raw: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise SourceError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise SourceError(f"{path}: is a directory; name the log files in it") from None
        except OSError as e:
            raise SourceError(f"{path}: cannot open ({e.strerror})") from None
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]  # a raw file or stdin's buffer, read as a RawIOBase
        head = buffered.peek(8)[:8]
        if path == "-" and 0 < len(head) < MAGIC_BYTES:
            # A pipe's first read may hold less than a compression magic (a writer's first small
            # write): read up to it, then put it back in front.
            head = buffered.read(MAGIC_BYTES)
            buffered = io.BufferedReader(PutBack(head, buffered))  # type: ignore[arg-type]
        # On stdin peek waits for data or the end: nothing means the end, which a terminal gives
        # once per Ctrl-D (reading on would wait for a second one). A file may still grow.
        stream: IO[bytes] = buffered if head or path != "-" else io.BytesIO()
        compression = compression_of(head)
        if compression == "gzip":
            stream = gzip.GzipFile(fileobj=buffered)  # type: ignore[assignment]  # a BufferedIOBase, read as IO[bytes] is
        elif compression != "plain":
            stream = Streams(buffered, compression, zstandard_module(path, buffered) if compression == "zstd" else None)  # type: ignore[assignment]
        growing = False
        if path != "-" and compression == "plain":
            growing = time.time() - os.fstat(buffered.fileno()).st_mtime < SETTLED_SECONDS
        log = cls("<stdin>" if path == "-" else path, stream, compression, needles, fmt, growing=growing, fields=fields)
        if path != "-" and compression == "plain":
            log._path = path
        log.finished = finished
        return log

    def resume(self, offset: int, line: int) -> bool:
        """Skip to a checkpoint taken on this input. False when the input ends before it: an
        earlier, shorter copy of what was audited (it starts with the same bytes), with nothing
        new in it. A plain file is then left where it was; a stream has been read to its end."""
        if self._is_array():
            self._array_skip = offset  # a JSON document is re-read whole; audited entries are skipped
            self._offset, self._line = 0, 0
            return True
        if self._reader is not None and self._reader.headers:
            self._replay_headers(self._pending[:offset])
        if offset <= len(self._pending):
            self._pending = self._pending[offset:]
        elif self.compression == "plain" and self._stream.seekable():
            if self._stream.seek(0, io.SEEK_END) < offset:
                self._stream.seek(self._sample_end)
                return False
            self._stream.seek(offset)
            self._pending = b""
        else:
            remaining = offset - len(self._pending)
            while remaining:
                got = self._read(min(remaining, CHUNK))
                if not got:
                    return False
                remaining -= len(got)
            self._pending = b""
        self._offset, self._line = offset, line
        return True

    def close(self) -> None:
        if self.name != "<stdin>":  # a decompressor closed on stdin would close stdin: `logs - -` reads it twice
            self._stream.close()

    def consumed(self) -> int | None:
        """How far into the file (as stored, compressed when it is) reading got; None for a pipe.
        (Workers reading a plain file's pieces move the checkpoint, not this process's position.)"""
        try:
            position = os.lseek(self._stream.fileno(), 0, os.SEEK_CUR)
        except (OSError, ValueError, AttributeError):
            return None
        return max(position, self._offset) if self._path is not None else position

    def _read(self, size: int) -> bytes:
        """Up to `size` bytes of the (decompressed) input. Compressed data cut short or corrupt
        ends the input where the damage starts: what came before it is returned and read."""
        if self.damaged:
            return b""
        if self.compression == "plain":
            try:
                return self._stream.read(size)
            except (OSError, ValueError) as e:
                raise SourceError(f"{self.name}: cannot read at byte {self._offset + len(self._pending)} ({e})") from None
        parts, got = [], 0
        try:
            while got < size:
                piece = self._stream.read1(size - got)  # type: ignore[attr-defined]
                if not piece:
                    break
                parts.append(piece)
                got += len(piece)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as e:
            self.damaged = f"{self.compression} data cut short or corrupt ({e}); the rest of the input was not read"
        return b"".join(parts)

    def _new_reader(self) -> LineReader | None:
        """The per-input reader of formats that keep state, else None."""
        if self.format is None or self.format.reader is None:
            return None
        try:
            return self.format.reader(self.fields)
        except ValueError as e:
            raise SourceError(f"{self.name}: {e}") from None

    def _partial_test(self) -> Callable[[bytes | bytearray, int, int], bool] | None:
        """`_partial` for this input's format and first lines."""
        kind = self.format.name.partition("+")[2] if self.format is not None else ""
        return wrapped.partial_test(kind, first_lines(self._pending)) if kind in wrapped.SPLITTING else None

    def _replay_headers(self, data: bytes) -> None:
        """Give the reader the header lines of the part of the sample already audited (resume)."""
        assert self._reader is not None
        for raw in data[: data.rfind(b"\n") + 1].removeprefix(BOM).split(b"\n"):
            if raw.startswith(b"#"):
                try:
                    self._reader.header(raw.decode("utf-8", "replace").rstrip("\r"))
                except (Ignored, Malformed):
                    pass  # counted by the run that read it

    @property
    def _leaves_last_line(self) -> bool:
        """True when a last line without its newline is left unread: in a file being written, for
        the next run, once the writer ends it; in a compressed copy, for the live file it was copied
        from mid-line (it starts with the same bytes, so it resumes here and reads the whole line)."""
        return not self.finished and (self.growing or self.compression != "plain")

    def _is_array(self) -> bool:
        """A Vercel drain saved as one JSON array (`[{...}, ...]`), not lines: its first bytes are
        `[` then an object or the array's end (an Envoy line `[2024-...` before NDJSON is not)."""
        return (
            self.format is not None
            and self.format.name == vercel.NAME
            and re.match(rb"\[\s*[{\]]", self._pending.removeprefix(BOM).lstrip()) is not None
        )

    def batches(self) -> Iterator[Batch]:
        """Events in batches of about BATCH_LINES lines, each ending on a line boundary."""
        if self._is_array():
            yield from self._array_batches()
            return
        events: list[ConnectionEvent] = []
        lines_in_batch = 0
        # One window, reused: each read lands after the unfinished line left at its front, the
        # complete lines are scanned where they lie, and the unfinished one is moved to the front.
        # Fresh buffers per read and the joins and slices around them cost as much as the scan.
        window = bytearray(WINDOW + 1)  # + 1: room for the newline a finished input's last line lacks
        have = 0
        front = 0
        """`window[:front]` holds no newline (the unfinished line carried over): the search for
        complete lines starts after it. 0 after an overlong line was dropped: the bytes that
        followed it in the same read may hold many lines."""
        eof = False
        if self._long is not None:  # the rest of an overlong line this input ended inside last time
            rest = self._drop_long(b"")
            if rest is None:
                return
            window[: len(rest)] = rest
            have = len(rest)
            lines_in_batch += 1
        while not eof:
            got = self._fill(window, have)
            eof = not got
            end = have + got
            synthetic = False
            if eof and end and window[end - 1] != 0x0A:
                if self.damaged:
                    end = 0  # the line the damage cut is not counted
                elif self._leaves_last_line or (self.following and not self.finished):
                    self.unterminated = True
                else:
                    window[end] = 0x0A  # a finished input's last line is complete
                    end += 1
                    synthetic = True
            cut = window.rfind(b"\n", front, end) + 1
            if self._partial is not None:  # at the front: the first parts of a line, perhaps
                cut = cut or window.rfind(b"\n", 0, end) + 1
                if cut and not synthetic and not (eof and not self._leaves_last_line and not self.following):
                    cut = self._whole_lines(window, cut, end)
            if cut == 0:
                have = front = end
                if have > MAX_LINE:
                    rest = self._drop_long(bytes(window[:have]))
                    if rest is None:  # the input ends inside it, for now
                        have = 0
                        break
                    window[: len(rest)] = rest
                    have, front = len(rest), 0
                    lines_in_batch += 1  # a line read: the last batch's checkpoint must cover it
                elif have == len(window) - 1:
                    window += bytes(len(window))  # only a WINDOW below MAX_LINE (tests) comes here
                continue
            n = self._scan(window, events, cut)
            self._date(window, cut)
            if synthetic:
                self._offset -= 1  # the newline added above is not in the input
            window[: end - cut] = window[cut:end]
            have = front = end - cut
            lines_in_batch += n
            if lines_in_batch >= BATCH_LINES:
                self._end_stretch()  # its times go with the batch
                yield Batch(tuple(events), self._offset, self._line)
                events, lines_in_batch = [], 0
        self._end_stretch()
        if self.damaged:
            self.stats.skip(self.damaged, f"{self.name}:{self._line + 1}")
        elif have and self._partial is not None and window[have - 1] == 0x0A:
            # The parts of a line whose last part is not written yet: read again from here (a
            # follower's next round reads on from the same stream).
            self.unterminated = True
            self._pending = bytes(window[:have]) + self._pending
        elif have and self.following and not self.finished:
            # The start of a line its writer has not finished (a followed file hands out the first
            # part of a long line): read on from here in the next round, not as a line of its own.
            self.unterminated = True
            self._pending = bytes(window[:have]) + self._pending
        if events or lines_in_batch:
            yield Batch(tuple(events), self._offset, self._line)

    def _date(self, block: bytes | bytearray, cut: int) -> None:
        """Date the lines `block[:cut]` just read (SourceStats.spans): the first and last record of
        each stretch of about SPAN_BYTES; a stretch goes on over reads (a pipe gives a few KiB at
        a time). Two parses a stretch, whatever the prefilter let through."""
        pos = 0
        while pos < cut:
            stretch = self._stretch
            if stretch is None:
                first = self._record_time(block, pos, cut, backward=False)
                stretch = self._stretch = [first, first, 0]
            left = SPAN_BYTES - stretch[2]
            if cut - pos <= left:
                stretch[1] = self._record_time(block, pos, cut, backward=True) or stretch[1]
                stretch[2] += cut - pos
                return
            stop = block.find(b"\n", pos + left - 1, cut) + 1 or cut
            stretch[1] = self._record_time(block, pos, stop, backward=True) or stretch[1]
            self._end_stretch()
            pos = stop

    def _end_stretch(self) -> None:
        if self._stretch is not None:
            self.stats.dated(self._stretch[0], self._stretch[1])
            self._stretch = None

    def _record_time(self, block: bytes | bytearray, start: int, stop: int, *, backward: bool) -> dt.datetime | None:
        """The time of the first (`backward`: last) record of the whole lines `block[start:stop]`
        that gives one (a record that is not a call gives its time too, Ignored.ts), among
        DATE_TRIES records; header lines (`#`) are passed over, a few dozen at most. None when none
        does. Nothing is counted."""
        if self.format is None:
            return None
        parse = self._reader.parse if self._reader is not None else self.format.parse
        here = stop if backward else start
        tries = DATE_TRIES
        for _ in range(DATE_TRIES + MAX_HEADERS):
            if backward:
                if here <= start:
                    return None
                line_start = block.rfind(b"\n", start, here - 1) + 1 or start
                raw, here = block[line_start : here - 1], line_start
            else:
                if here >= stop:
                    return None
                line_end = block.find(b"\n", here, stop)
                line_end = stop if line_end < 0 else line_end
                raw, here = block[here:line_end], line_end + 1
            if raw[:1] == b"#":
                continue
            if len(raw) <= MAX_LINE:
                text = bytes(raw).decode("utf-8", "replace").rstrip("\r").removeprefix("\ufeff")
                try:
                    return parse(text, "").ts
                except Ignored as e:
                    if e.ts is not None:
                        return e.ts
                except (Malformed, ValueError, OverflowError, RecursionError):  # passed over, never counted here
                    pass
            tries -= 1
            if not tries:
                return None
        return None

    def _whole_lines(self, window: bytearray, cut: int, end: int) -> int:
        """Where the whole lines of `window[:cut]` (complete records) end: before the trailing
        records that hold the first parts of a line. 0 to read on (or, at the end of what a file
        being written holds, to wait) for the rest of that line; `cut` when the window holds
        nothing but parts of one line over MAX_LINE: they are read part by part."""
        partial = self._partial
        assert partial is not None
        whole = cut
        while whole:
            start = window.rfind(b"\n", 0, whole - 1) + 1
            if not partial(window, start, whole - 1):
                return whole
            whole = start
        return 0 if end <= MAX_LINE else cut

    def _fill(self, window: bytearray, have: int) -> int:
        """Read into `window` after its first `have` bytes, up to its last byte: what is left of the
        sample first, then the stream. The number of bytes added; 0 at the end of the input."""
        size = len(window) - 1
        room = size - have
        if self._pending:
            data, self._pending = self._pending[:room], self._pending[room:]
        elif self.compression == "plain" and hasattr(self._stream, "readinto"):
            try:
                with memoryview(window) as view:
                    return self._stream.readinto(view[have:size]) or 0
            except (OSError, ValueError) as e:
                raise SourceError(f"{self.name}: cannot read at byte {self._offset + have} ({e})") from None
        else:
            data = self._read(room)
        window[have : have + len(data)] = data
        return len(data)

    def range_end(self, min_left: int) -> int:
        """Where reading by byte ranges in other processes may go (the last line boundary before the
        end of the file), or 0 when this input is read in this process only: not a plain file on
        disk, still being written, a format that keeps state across lines, or less than `min_left`
        left to read."""
        if self._path is None or self.growing or self.format is None or self._reader is not None or self._is_array():
            return 0
        size = os.fstat(self._stream.fileno()).st_size
        if size - self._offset < min_left:
            return 0
        with open(self._path, "rb") as f:
            f.seek(max(self._offset, size - MAX_LINE))
            tail = f.read()
        end = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        return end if end > self._offset else 0

    def ranges(self, end: int, size: int) -> list[Range]:
        """The bytes from here up to `end` (see `range_end`) in ranges of about `size` bytes, cut at
        line boundaries (the parts of a line the runtime split stay in one range). Fewer when no
        line boundary is near a cut: the rest is read here (`batches`) once `took` the ranges."""
        assert self._path is not None and self.format is not None
        cuts = [self._offset]
        with open(self._path, "rb") as f:
            while cuts[-1] + size < end:
                f.seek(cuts[-1] + size)
                if not f.readline(2 * MAX_LINE).endswith(b"\n") or not self._past_parts(f):
                    end = cuts[-1]  # no line boundary near: the rest is read in this process
                    break
                cuts.append(min(end, f.tell()))
        if cuts[-1] != end:
            cuts.append(end)
        return [Range(self._path, self.name, a, b, self.needles, self.format.name, self.fields) for a, b in itertools.pairwise(cuts)]

    @classmethod
    def of_range(cls, where: Range) -> LogFile:
        """The lines of a range of an input, for another process to read (`batches`); its lines are
        numbered from the range's start (see `took` and `rebased`)."""
        piece = cls(
            where.name,
            _RangeStream(where.path, where.start, where.stop),  # type: ignore[arg-type]  # read as IO[bytes] is
            "plain",
            where.needles,
            where.format,
            fields=where.fields,
        )
        piece._offset = where.start
        return piece

    def took(self, stats: SourceStats, stop: int) -> int:
        """Go on after a range another process read (from here to `stop`), adding what it counted
        (its locations moved to lines of this input). The number of lines before the range, by
        which its events' locations are moved (`rebased`)."""
        base = self._line
        mine = self.stats
        mine.lines += stats.lines
        mine.candidates += stats.candidates
        mine.events += stats.events
        mine.ignored.update(stats.ignored)
        for span in stats.spans:
            add_span(mine.spans, *span)
        for reason, count in stats.skipped.items():
            mine.skipped[reason] += count
            where = mine.locations.setdefault(reason, [])
            where.extend(_rebase(w, self.name, base) for w in stats.locations.get(reason, [])[: MAX_LOCATIONS - len(where)])
        self._line += stats.lines
        self._offset = stop
        self._stream.seek(stop)
        self._pending = b""
        return base

    def _past_parts(self, f: IO[bytes]) -> bool:
        """Move `f`, at a line boundary, on past the next record that ends a line: the parts of a
        line the runtime split stay in one range. False when none does within MAX_LINE."""
        if self._partial is None:
            return True
        taken = 0
        while taken <= MAX_LINE:
            record = f.readline(2 * MAX_LINE)
            if not record.endswith(b"\n"):
                return False
            if not self._partial(record, 0, len(record) - 1):
                return True
            taken += len(record)
        return False

    def use_needles(self, needles: tuple[bytes, ...]) -> None:
        """Prefilter the lines read from now on with `needles` (the pipeline was swapped: a reload)."""
        self.needles = needles
        self._needles = compiled(needles)

    @property
    def complete(self) -> bool:
        """Read to its end (a file, not stdin), no unfinished last line, nothing cut short."""
        return self.name != "<stdin>" and not self.unterminated and not self.damaged

    @property
    def kind(self) -> str:
        """The format's name, as summaries show it (`empty` while none is known)."""
        return self.format.name if self.format is not None else "empty"

    @property
    def reopenable(self) -> bool:
        """True when another process can open this input by its name and read it the same way: a
        file on disk (not stdin) that is not being written, in a line format (not a JSON array)."""
        return (
            self.name != "<stdin>"
            and (self._path is not None or self.compression != "plain")
            and not self.growing
            and self.format is not None
            and not self._is_array()
        )

    def _array_batches(self) -> Iterator[Batch]:
        """A JSON array of log objects (vercel.read_array): read whole, one batch, entries before
        the checkpoint skipped; an entry is parsed when its text holds a needle."""
        parts, size = [self._pending], len(self._pending)
        self._pending = b""
        while chunk := self._read(CHUNK):
            size += len(chunk)
            if size > MAX_DOCUMENT:
                raise SourceError(f"{self.name}: a JSON array larger than {MAX_DOCUMENT >> 20} MiB; split it or convert it to NDJSON")
            parts.append(chunk)
        data = b"".join(parts)
        events: list[ConnectionEvent] = []
        needles = [n.decode() for n in self.needles]
        taken = 0
        stretch: list[Any] = [None, None]  # the first and last entries of the ARRAY_STRETCH being dated

        def take(record: object, raw: str, location: str) -> None:
            nonlocal taken
            low = raw.lower()
            if any(n in low for n in needles):
                self.stats.candidates += 1
                self._collect(vercel.parse_record, (record, location, raw), location, events)
            if taken % ARRAY_STRETCH == 0:
                stretch[0] = record
            stretch[1] = record
            taken += 1
            if taken % ARRAY_STRETCH == 0:
                self.stats.dated(_entry_time(stretch[0]), _entry_time(stretch[1]))

        self._line = vercel.read_array(data, self.name, self._array_skip, self.stats, take)
        if taken % ARRAY_STRETCH:
            self.stats.dated(_entry_time(stretch[0]), _entry_time(stretch[1]))
        self._offset = len(data)
        yield Batch(tuple(events), self._offset, self._line)

    def _next_chunk(self) -> bytes:
        """Up to CHUNK bytes: what is left of the sample first, then the stream."""
        if self._pending:
            chunk, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
            return chunk
        return self._read(CHUNK)

    def _drop_long(self, buf: bytes) -> bytes | None:
        """Consume the rest of an overlong line (starting with `buf`) without keeping it: the bytes
        after its newline. Like any other line it is counted, and counted as malformed when it
        names a governed host. None when the input ends inside it and a writer may go on with it
        (a file being written or followed): it is counted when its newline comes (`_long`)."""
        keep = max(map(len, self.needles), default=1) - 1
        if self._long is not None:
            dropped, candidate, tail = self._long
            self._long = None
            candidate = candidate or self._has_needle(tail + buf)
            dropped += len(buf)
            tail = (tail + buf)[-keep:] if keep else b""
        else:
            dropped, candidate = len(buf), self._has_needle(buf)
            tail = buf[max(0, len(buf) - keep) :] if keep else b""
        while True:
            chunk = self._next_chunk()
            nl = chunk.find(b"\n")
            piece = chunk if nl < 0 else chunk[:nl]
            candidate = candidate or self._has_needle(tail + piece)
            if not chunk or nl >= 0:
                break
            dropped += len(chunk)
            tail = (tail + chunk)[-keep:] if keep else b""
        if not chunk and (self._leaves_last_line or self.following) and not self.damaged:
            self._long = (dropped, candidate, tail)
            self.unterminated = True
            return None
        self._line += 1
        self.stats.lines += 1
        if candidate:
            self.stats.candidates += 1
            self.stats.skip("line longer than 1 MiB", f"{self.name}:{self._line}")
        if not chunk:
            self._offset += dropped
            return b""
        self._offset += dropped + nl + 1
        return chunk[nl + 1 :]

    def _has_needle(self, data: bytes) -> bool:
        return self._needles.any_in(data)

    def _scan(self, block: bytes | bytearray, events: list[ConnectionEvent], end: int | None = None) -> int:
        """Parse the lines of `block[:end]` (complete lines) that contain a needle; count all."""
        end = len(block) if end is None else end
        if (
            self._reader is not None
            and self._reader.headers
            and (block[:1] == b"#" or _hash_line(block, end) or (self._line == 0 and block.startswith(BOM + b"#")))
        ):
            return self._scan_headers(bytes(block[:end]), events)
        base_line = self._line
        partial = self._partial
        pos = 0
        counted_to = 0
        newlines_before = 0
        with memoryview(block) as view:
            hits = self._needles.ends(view[:end])
        if partial is not None:
            split = self._split_hits(block, end)
            if split:
                hits = sorted(set(hits).union(split))
        for hit in hits:
            if hit <= pos:
                continue  # another needle on a line already parsed
            start = block.rfind(b"\n", 0, hit) + 1
            stop = block.find(b"\n", hit - 1)
            if partial is None:
                raw = bytes(block[start:stop])
            else:  # the record may be part of a line: whole when neither it nor the one before is a first part
                low = pos + 1 if pos else 0
                if (start > low and partial(block, max(block.rfind(b"\n", low, start - 1) + 1, low), start - 1)) or partial(block, start, stop):
                    start, stop, raw = self._line_in_parts(block, start, stop, low, end)
                else:
                    raw = bytes(block[start:stop])
            newlines_before += block.count(b"\n", counted_to, start)
            counted_to = start
            self._parse_line(raw, f"{self.name}:{base_line + newlines_before + 1}", events)
            pos = stop
        total = newlines_before + block.count(b"\n", counted_to, end)  # each byte counted once
        self._line += total
        self._offset += end
        self.stats.lines += total
        return total

    def _split_hits(self, block: bytes | bytearray, end: int) -> list[int]:
        """Where a needle is cut in two by the runtime's split (a host across the 16 KiB boundary
        of a CRI `P` record or a Docker record without its newline): a position inside each part
        whose text's end, joined to the next record's text, holds a needle. The search of each
        record alone finds none there. A part is at least 16 KiB long, so only lines with 8 KiB
        without a newline in them are looked at (one `find` per 8 KiB: cheap on any block)."""
        kind = self.format.name.partition("+")[2] if self.format is not None else ""
        partial = self._partial
        found: list[int] = []
        if partial is None or kind not in ("cri", "docker"):
            return found
        keep = max(map(len, self.needles), default=1)
        pos = 0
        while pos < end:
            if block.find(b"\n", pos, min(end, pos + SPLIT_STEP)) >= 0:
                pos += SPLIT_STEP
                continue
            start = block.rfind(b"\n", 0, pos) + 1
            stop = block.find(b"\n", pos, end)
            if stop < 0:
                break
            pos = stop + 1
            if not partial(block, start, stop):
                continue
            after = block.find(b"\n", stop + 1, end)
            if after < 0:
                continue
            if kind == "cri":  # `<time> <stream> <tag> <text>`
                text_end = stop
                head = block.find(b" ", block.find(b" ", block.find(b" ", stop + 1, after) + 1, after) + 1, after) + 1
            else:  # `{"log":"<text>","stream":...`
                text_end = block.rfind(b'","stream":"', start, stop)
                head = stop + 1 + len(b'{"log":"')
            if text_end < 0 or head <= 0 or head > after:
                continue
            if self._needles.any_in(bytes(block[max(start, text_end - keep) : text_end]) + bytes(block[head : min(after, head + keep)])):
                found.append(stop - 1)
        return found

    def _line_in_parts(self, block: bytes | bytearray, start: int, stop: int, low: int, end: int) -> tuple[int, int, bytes]:
        """The line the record `block[start:stop]` is part of: where its first part starts (not
        before `low`), where its last part ends (not after `end`), and its parts joined into one
        record (wrapped.join), or the record itself when it is a whole line."""
        partial = self._partial
        assert partial is not None
        first, last = start, stop
        while first > low:
            before = max(block.rfind(b"\n", low, first - 1) + 1, low)
            if not partial(block, before, first - 1):
                break
            first = before
        record = start
        while last + 1 < end and partial(block, record, last):
            record, last = last + 1, block.find(b"\n", last + 1, end)
            if last < 0:  # not in a block of whole lines
                last = end
                break
        if first == start and last == stop:
            return start, stop, bytes(block[start:stop])
        kind = self.format.name.partition("+")[2]  # type: ignore[union-attr]
        parts = [p.decode("utf-8", "replace").rstrip("\r") for p in bytes(block[first:last]).split(b"\n")]
        try:
            return first, last, wrapped.join(kind, parts).encode()
        except Malformed:
            return first, last, bytes(block[start:stop])  # parts that are no records: the one that named a governed host

    def _scan_headers(self, block: bytes, events: list[ConnectionEvent]) -> int:
        """`_scan` for a format with header lines: each line starting with `#` goes to the reader,
        in order; the lines between them go through the prefilter as usual."""
        assert self._reader is not None
        total = pos = 0
        while pos < len(block):
            start = pos
            if block[pos : pos + 1] != b"#" and not (self._line == 0 and block.startswith(BOM + b"#")):
                start = block.find(b"\n#", pos) + 1
                if start == 0:
                    return total + self._scan(block[pos:], events)
                total += self._scan(block[pos:start], events)
            end = block.find(b"\n", start) + 1
            self._line += 1
            self._offset += end - start
            self.stats.lines += 1
            total += 1
            text = block[start : end - 1].decode("utf-8", "replace").rstrip("\r").removeprefix("\ufeff")
            try:
                self._reader.header(text)
            except Malformed as e:
                self.stats.skip(str(e), f"{self.name}:{self._line}")
            except Ignored as e:
                self.stats.ignored[str(e)] += 1
            pos = end
        return total

    def _parse_line(self, raw: bytes, location: str, events: list[ConnectionEvent]) -> None:
        self.stats.candidates += 1
        if len(raw) > MAX_LINE:
            self.stats.skip("line longer than 1 MiB", location)
            return
        if self.format is None:  # an input that was empty at open and grew since
            self.format = detect_format(raw + b"\n", self.name)
            self._reader = self._new_reader()
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if text[:1] == "\ufeff":  # first in the file, or first of a file concatenated to it
            text = text[1:]
        parse = self._reader.parse if self._reader is not None else self.format.parse  # type: ignore[union-attr]
        self._collect(parse, (text, location), location, events)

    def _collect(self, parse: Callable[..., ConnectionEvent], args: tuple[Any, ...], location: str, events: list[ConnectionEvent]) -> None:
        """Run one parse, `parse(*args)`: keep the event, or count why there is none."""
        try:
            event = parse(*args)
        except Malformed as e:
            self.stats.skip(str(e), location)
            return
        except Ignored as e:
            self.stats.ignored[str(e)] += 1
            return
        except (ValueError, OverflowError, RecursionError) as e:
            # A value no parser check foresaw (the parsers raise Malformed for those they know): the
            # line is still counted and skipped, never the end of the run.
            name = self.format.name if self.format is not None else "log"
            self.stats.skip(f"{name}: a value out of range ({type(e).__name__})", f"{location} ({str(e)[:80]})")
            return
        if event.server_name and not is_host(event.server_name):
            self.stats.skip(f"{self.format.name if self.format is not None else 'log'}: {NOT_A_HOST}", location)
            return
        self.stats.events += 1
        events.append(event)
