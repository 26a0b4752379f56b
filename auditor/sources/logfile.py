"""Reading one log input: plain, gzip, bz2 or xz, or stdin; format detected per file.

Lines are read as bytes in large chunks. A line is parsed only when it contains one of the
prefilter needles (governed host names, lower-cased); every other line is only counted. A line
that passes the prefilter is parsed before it counts: a substring hit proves nothing.

The reader exposes a fingerprint of the start of the (decompressed) stream so that the store can
recognise input it has read before and resume after its checkpoint.
"""

from __future__ import annotations

import bz2
import collections
import ctypes
import dataclasses
import gzip
import io
import itertools
import json
import lzma
import multiprocessing
import os
import re
import signal
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol

from auditor.events import ConnectionEvent, Tally
from auditor.sources import (
    aws_firewall,
    cloudflare,
    combined,
    envoy,
    haproxy,
    jsonmap,
    nginx_proxy_manager,
    nginx_stream,
    squid,
    suricata,
    vercel,
    wrapped,
    zeek,
)
from auditor.sources.common import JSON_TOO_DEEP, NOT_A_HOST, is_host, without_surrogates
from auditor.sources.interface import MAX_LOCATIONS, Audit, Batch, EventSource, Ignored, Malformed, Prefixed, SourceError, SourceStats
from auditor.sources.needles import compiled

CHUNK = 1 << 20
"""Bytes read at a time outside the main loop (long lines, JSON documents)."""
WINDOW = 4 << 20
"""Bytes the main loop reads at a time, into one reused buffer; larger than MAX_LINE."""
FINGERPRINT_BYTES = 4096
"""How much of the start of a stream identifies it."""
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
BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark Windows editors put first: not part of the first line (its bytes
still count in offsets)."""


@dataclass(frozen=True)
class LogFormat:
    """A log format: a name, a cheap recogniser and a parser."""

    name: str
    """Format name for --format and summaries."""
    sniff: Callable[[str], bool]
    """True when a line looks like this format."""
    parse: Callable[[str, str], ConnectionEvent]
    """Line and location -> event; raises Malformed or Ignored."""
    reader: Callable[[Mapping[str, str] | None], LineReader] | None = None
    """For a format that needs state per input (Zeek TSV columns from `#fields`, the field map of
    generic JSON): makes the input's reader from its [[source]] field map; it parses instead of
    `parse`. It may raise ValueError (a sentence saying what to configure)."""
    detected: bool = True
    """False for a format chosen only by --format or configuration."""


class LineReader(Protocol):
    """Per-input parsing state (see LogFormat.reader)."""

    headers: bool
    """True when every line starting with `#` goes to `header()`, prefilter or not."""

    def header(self, line: str) -> None:
        """Take in a header line; may raise Ignored or Malformed to be counted."""

    def parse(self, line: str, location: str) -> ConnectionEvent:
        """Line and location -> event; raises Malformed or Ignored."""


FORMATS = {
    f.name: f
    for f in (
        LogFormat(squid.NAME, squid.sniff, squid.parse),
        LogFormat(combined.NAME, combined.sniff, combined.parse),
        LogFormat(vercel.NAME, vercel.sniff, vercel.parse),
        LogFormat(haproxy.NAME, haproxy.sniff, haproxy.parse),
        LogFormat(nginx_stream.NAME, nginx_stream.sniff, nginx_stream.parse),
        LogFormat(nginx_proxy_manager.NAME, nginx_proxy_manager.sniff, nginx_proxy_manager.parse),
        LogFormat(envoy.NAME, envoy.sniff, envoy.parse),
        LogFormat(zeek.NAME, zeek.sniff, zeek.parse, reader=zeek.Reader),
        LogFormat(aws_firewall.NAME, aws_firewall.sniff, aws_firewall.parse),  # before suricata: its events are EVE too
        LogFormat(suricata.NAME, suricata.sniff, suricata.parse),
        LogFormat(cloudflare.NAME, cloudflare.sniff, cloudflare.parse),
        LogFormat(jsonmap.NAME, jsonmap.sniff, jsonmap.parse, reader=jsonmap.Reader, detected=False),
    )
}
"""Known formats by name, in detection order."""

_MAGIC = (
    (b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
    # zstd skippable frames (magic 0x184D2A50-5F): pzstd starts its output with one
    *((bytes([0x50 + i]) + b"\x2a\x4d\x18", "zstd") for i in range(16)),
)


class Streams:
    """bz2, xz or zstd data (one stream or several concatenated, as `cat a.xz b.xz`, `pbzip2` and
    `zstd` write them) decompressed stream by stream, so that data ending inside a stream, or data
    after the last one that is not another stream, is reported: BZ2File and LZMAFile drop what
    follows the last stream without a word, and zstandard's stream reader ends silently inside a
    frame. xz's stream padding (zero bytes) is skipped. (gzip keeps GzipFile, which says both.)
    A read gives at most `size` bytes from bz2 and xz, however well the data compressed."""

    def __init__(self, raw: IO[bytes], kind: str, zstandard: Any = None) -> None:
        self._raw = raw
        self._kind = kind
        self._magic = next(m for m, k in _MAGIC if k == kind)
        if kind == "zstd":
            self._new: Callable[[], Any] = lambda: zstandard.ZstdDecompressor().decompressobj()
            self._errors: tuple[type[Exception], ...] = (zstandard.ZstdError,)
        elif kind == "bz2":
            self._new, self._errors = bz2.BZ2Decompressor, (OSError,)
        else:
            self._new, self._errors = lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ), (lzma.LZMAError,)
        self._obj = self._new()
        self._out = b""
        self._in_stream = False
        self._ended = False
        self._error: Exception | None = None

    def read1(self, size: int = -1) -> bytes:
        size = CHUNK if size is None or size < 0 else max(size, 1)
        while not self._out and not self._ended:
            try:
                if self._in_stream and self._kind != "zstd" and not self._obj.needs_input:
                    self._step(b"", size)  # output the decompressor holds back (max_length)
                    continue
                data = self._raw.read(1 << 16)
                if not data:
                    self._ended = True
                    if self._in_stream:
                        self._error = EOFError(f"{self._kind} data ends inside a {'frame' if self._kind == 'zstd' else 'stream'}")
                    break
                self._step(data, size)
            except ValueError as e:  # what came before it is given first
                self._ended, self._error = True, e
        if not self._out and self._error is not None:
            raise self._error
        out, self._out = self._out[:size], self._out[size:]
        return out

    read = read1

    def _step(self, data: bytes, size: int) -> None:
        """Decompress `data` (b"": what the decompressor holds) into `_out`; at the end of a stream
        go on with what follows it: padding, another stream, or data that is neither (ValueError)."""
        while True:
            if not self._in_stream:
                if self._kind == "xz":
                    data = data.lstrip(b"\0")  # stream padding
                if not data:
                    return
                if self._kind != "zstd" and not data.startswith(self._magic[: len(data)]):
                    raise ValueError(f"data after the last {self._kind} stream is not {self._kind} data")
            self._in_stream = True
            try:
                self._out += self._obj.decompress(data) if self._kind == "zstd" else self._obj.decompress(data, size)
            except self._errors as e:
                raise ValueError(str(e)) from None
            if not self._obj.eof:
                return
            data, self._in_stream = self._obj.unused_data, False
            self._obj = self._new()

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
PARALLEL_MIN = 64 << 20
"""A plain file with at least this much left to read is read by one process per core."""
PARALLEL_PIECE = 16 << 20
"""Bytes of a file one worker reads at a time (then a batch is stored)."""


def _zstandard(path: str, raw: IO[bytes]) -> Any:
    """The optional zstandard module, or a SourceError that says how to get it."""
    try:
        import zstandard
    except ImportError:
        raw.close()
        raise SourceError(
            f"{path}: is zstd-compressed; install the zstd extra (`pip install 'region-auditor[zstd]'`) or decompress it first"
        ) from None
    return zstandard


def compression_of(head: bytes) -> str:
    """`gzip`, `bz2`, `xz` or `zstd` when `head` (an input's first bytes) starts with that magic, else `plain`."""
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), "plain")


def ends_by(path: str, offset: int) -> bool:
    """True when the content of the file at `path` (decompressed) ends at `offset` or before: by
    its size for a plain file, by what gzip's trailer says for a `.gz` (the size modulo 2**32 of
    its one member, as logrotate writes it). False when that cannot be told without reading it
    whole (bzip2, xz, zstd) or the file cannot be read."""
    try:
        with open(path, "rb") as f:
            kind = compression_of(f.read(8))
            size = os.fstat(f.fileno()).st_size
            if kind == "plain":
                return offset >= size
            if kind != "gzip" or size < 18:
                return False
            f.seek(-4, os.SEEK_END)
            return int.from_bytes(f.read(4), "little") == offset % 2**32
    except OSError:
        return False


def check_name(path: str) -> None:
    """SourceError for a file name that is not UTF-8 (bytes the OS gave as surrogates): the store
    keeps names and locations as text, and could not tell such a file again."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "backslashreplace").decode("utf-8")
        raise SourceError(f"{shown}: the file name is not valid UTF-8; rename the file (or pipe it in as `-`)") from None


def usable_cores() -> int:
    """The cores this process may run on (`taskset`, cgroup cpusets), not all the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def worker_start() -> None:
    """First thing in a worker process: SIGTERM ends it, which is how Pool.terminate stops it (a
    handler inherited from the parent, the follower's, would only set a flag), and SIGINT is left
    to the parent (Ctrl-C reaches the whole process group). It dies with its parent (Linux)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_worker_audit: Audit | None = None
"""What the worker processes of LogFile._parallel_batches run on the events of their piece."""


def _scan_piece(
    job: tuple[str, str, int, int, tuple[bytes, ...], str, Mapping[str, str] | None],
) -> tuple[list[ConnectionEvent], list[Tally] | None, SourceStats]:
    """In a worker process: the events (or, given an audit, their tallies) and counts of bytes
    [start, stop) of a file (whole lines). Lines are numbered from the piece's start: the lines
    before it are not counted yet (see `_rebase`)."""
    path, name, start, stop, needles, fmt, fields = job
    # arg-type: LogFile takes any binary file object; a RawIOBase is one, though not an IO[bytes] to typeshed.
    piece = LogFile(name, _Piece(path, start, stop), "plain", needles, fmt, fields=fields)  # type: ignore[arg-type]
    piece._offset = start
    events = [e for batch in piece.batches() for e in batch.events]
    if _worker_audit is not None:
        return [], _worker_audit(events), piece.stats
    return events, None, piece.stats


def _rebase(location: str, name: str, base: int) -> str:
    """`name:N...` -> `name:N+base...`: a location in a piece made a location in its file."""
    if not location.startswith(name + ":"):
        return location
    rest = location[len(name) + 1 :]
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{name}:{int(rest[:digits]) + base}{rest[digits:]}" if digits else location


def _rebase_event(event: ConnectionEvent, name: str, base: int) -> ConnectionEvent:
    return dataclasses.replace(event, source=_rebase(event.source, name, base))


def _hash_line(block: bytes | bytearray, end: int) -> bool:
    """True when a line after the first of `block[:end]` starts with `#` (a Zeek header). One
    memchr pass for `#`, which records hardly hold: `find(b"\\n#")` took 0.7 s of a 5M-line ssl.log."""
    i = block.find(b"#", 1, end)
    while i >= 0:
        if block[i - 1] == 0x0A:
            return True
        i = block.find(b"#", i + 1, end)
    return False


def _rebase_tally(tally: Tally, name: str, base: int) -> Tally:
    """Only the samples carry locations: the rest of a tally is counts."""
    samples = tuple(dataclasses.replace(f, event=_rebase_event(f.event, name, base)) for f in tally.samples)
    return dataclasses.replace(tally, samples=samples)


class _Piece(io.RawIOBase):
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


def _first_lines(sample: bytes) -> list[str]:
    """The first lines of a sample (up to 64, not blank, the last only when it is complete)."""
    lines = [ln for ln in sample.removeprefix(BOM).split(b"\n")[:64] if ln.strip()]
    if len(lines) > 1 and not sample.endswith(b"\n"):
        lines = lines[:-1]  # the last one may be cut off by the sample size
    return [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines]


def detect_format(sample: bytes, name: str) -> LogFormat | None:
    """The format most of the first lines of `sample` match; None for an empty sample."""
    if vercel.sniff_sample(sample.removeprefix(BOM)):
        return FORMATS[vercel.NAME]
    texts = _first_lines(sample)
    if not texts:
        return None
    kind = wrapped.common_kind(texts)
    if kind is not None:
        inner = _most_matched([_unwrapped(kind, t) for t in texts])
        if inner is not None:
            return _wrap(inner, kind)
    best = _most_matched(texts)
    if best is None:
        known = " or ".join(n for n, f in FORMATS.items() if f.detected)
        raise SourceError(
            f"{name}: not a recognised log format (looked for {known} records in its first lines); pass --format to force one, "
            'or for other JSON lines set format = "json" and a field map in its [[source]] config entry'
        )
    return best


def format_named(name: str, sample: bytes = b"") -> LogFormat | None:
    """The format of this name (`squid`, or `squid+docker` for squid lines in a wrapper), None for
    none. A plain name is read inside the wrapper most of the sample's first lines are in
    (`--format envoy` on a container's log is `envoy+cri`), except `json`: its field map may
    address the wrapper's own fields."""
    if name in FORMATS:
        kind = wrapped.common_kind(_first_lines(sample)) if sample and name != jsonmap.NAME else None
        return _wrap(FORMATS[name], kind) if kind is not None else FORMATS[name]
    inner, _, kind = name.partition("+")
    return _wrap(FORMATS[inner], kind) if inner in FORMATS and kind in wrapped.KINDS else None


UNWRAP = {"docker": "jq -r .log FILE", "ecs": "jq -r .message FILE", "cri": "cut -d' ' -f4- FILE"}
"""How to take the lines out of each wrapper by hand."""


def _refuse_wrapped_headers(name: str, kind: str, sample: bytes) -> None:
    """Zeek TSV inside a wrapper cannot be read: its header lines (`#fields`) are wrapped too, and
    only lines naming a governed host reach the parser."""
    for line in sample.split(b"\n")[:64]:
        if _unwrapped(kind, line.decode("utf-8", "replace")).startswith("#"):
            raise SourceError(f"{name}: Zeek TSV inside {kind} records cannot be read (its header lines are wrapped too); "
                              f"take the lines out first: {UNWRAP[kind]} > ssl.log")


def _most_matched(texts: list[str]) -> LogFormat | None:
    best, best_hits = None, 0
    for fmt in FORMATS.values():
        hits = sum(1 for t in texts if fmt.sniff(t))
        if hits > best_hits:
            best, best_hits = fmt, hits
    return best


def _unwrapped(kind: str, text: str) -> str:
    try:
        return wrapped.unwrap(kind, text)
    except Malformed:
        return ""


def _wrap(fmt: LogFormat, kind: str) -> LogFormat:
    """`fmt` for lines inside a `kind` wrapper (auditor.sources.wrapped)."""

    def parse(line: str, location: str) -> ConnectionEvent:
        return fmt.parse(wrapped.unwrap(kind, line), location)

    def sniff(line: str) -> bool:
        return wrapped.kind_of(line) == kind and fmt.sniff(_unwrapped(kind, line))

    make = fmt.reader
    reader = None if make is None else lambda fields: _WrappedReader(make(fields), kind)
    return LogFormat(f"{fmt.name}+{kind}", sniff, parse, reader, detected=False)


class _WrappedReader:
    """A format's reader (Zeek JSON, generic JSON's field map), given the lines inside a wrapper.
    Header lines cannot be read there: only lines naming a governed host reach the parser."""

    headers = False

    def __init__(self, inner: LineReader, kind: str) -> None:
        self._inner = inner
        self._kind = kind

    def header(self, line: str) -> None:
        """Never called (`headers` is False)."""

    def parse(self, line: str, location: str) -> ConnectionEvent:
        return self._inner.parse(wrapped.unwrap(self._kind, line), location)


MAGIC_BYTES = 6
"""The longest compression magic (xz's); a shorter read cannot tell the compression."""


class _PutBack(io.RawIOBase):
    """A stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, rest: io.BufferedReader) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto1(buffer)


class LogFile(Prefixed, EventSource):
    """One log input. Open with `LogFile.open()`, then `resume()` and iterate `batches()`."""

    def __init__(
        self, name: str, stream: IO[bytes], compression: str, needles: tuple[bytes, ...], fmt: str | None, *, growing: bool = False,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.growing = growing
        """True for a plain file changed in the last SETTLED_SECONDS: a writer may be mid-line."""
        self.finished = False
        """True when nothing will be written to the input again (a generation rotated away and
        settled, compressed or not): a last line without its newline is read as it is."""
        self.compression = compression
        self.needles = needles
        self._needles = compiled(needles)
        self.stats = SourceStats()
        self.unterminated = False
        """True when the input ended inside a line left for the next run."""
        self.following = False
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
        try:
            self._pending = self._read(max(SAMPLE_BYTES, FINGERPRINT_BYTES))
            if self.damaged and not self._pending:
                raise SourceError(f"{name}: cannot read {compression} data ({self.damaged.split(' (', 1)[1].split(');', 1)[0]})")
            self._sample_end = len(self._pending)
            self.prefix = self._pending[:FINGERPRINT_BYTES]
            if len(self._pending) < FINGERPRINT_BYTES and not self.damaged:  # all of it
                left = not self.prefix.endswith(b"\n") and self._leaves_last_line
                self.whole_lines = self.prefix.rfind(b"\n") + 1 if left else len(self.prefix)
            self.format = format_named(fmt, self._pending) if fmt else detect_format(self._pending, name)
            if fmt and self.format is None:
                raise SourceError(f"{name}: unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
            if self.format is not None and self.format.name.startswith(zeek.NAME + "+"):
                _refuse_wrapped_headers(name, self.format.name.partition("+")[2], self._pending)
            self._reader = self._new_reader()
            self._partial = self._partial_test()
        except SourceError:
            self.close()
            raise

    @classmethod
    def open(cls, path: str, needles: tuple[bytes, ...], fmt: str | None = None, fields: Mapping[str, str] | None = None) -> LogFile:
        """Open a file (or `-` for stdin), detecting compression by magic bytes."""
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
        # type-var: typeshed wants a RawIOBase; any binary file object serves.
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]
        head = buffered.peek(8)[:8]
        if path == "-" and 0 < len(head) < MAGIC_BYTES:
            # A pipe's first read may hold less than a compression magic (a writer's first small
            # write): read up to it, then put it back in front.
            head = buffered.read(MAGIC_BYTES)
            buffered = io.BufferedReader(_PutBack(head, buffered))  # type: ignore[arg-type]
        # On stdin peek waits for data or the end: nothing means the end, which a terminal gives
        # once per Ctrl-D (reading on would wait for a second one). A file may still grow.
        # A BufferedReader, GzipFile or Streams: LogFile reads each the same way (read, read1, close).
        stream: Any = buffered if head or path != "-" else io.BytesIO()
        compression = compression_of(head)
        if compression == "gzip":
            stream = gzip.GzipFile(fileobj=buffered)
        elif compression != "plain":
            stream = Streams(buffered, compression, _zstandard(path, buffered) if compression == "zstd" else None)
        growing = False
        if path != "-" and compression == "plain":
            growing = time.time() - os.fstat(buffered.fileno()).st_mtime < SETTLED_SECONDS
        log = cls("<stdin>" if path == "-" else path, stream, compression, needles, fmt, growing=growing, fields=fields)
        if path != "-" and compression == "plain":
            log._path = path
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
        return wrapped.partial_test(kind, _first_lines(self._pending)) if kind in wrapped.SPLITTING else None

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
        return (self.format is not None and self.format.name == vercel.NAME
                and re.match(rb"\[\s*[{\]]", self._pending.removeprefix(BOM).lstrip()) is not None)

    def batches(self, audit: Audit | None = None) -> Iterator[Batch]:
        """Events in batches of about BATCH_LINES lines, each ending on a line boundary."""
        if self._is_array():
            yield from self._array_batches()
            return
        end = self._parallel_end()
        if end > self._offset:
            yield from self._parallel_batches(end, audit)
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
            if synthetic:
                self._offset -= 1  # the newline added above is not in the input
            window[: end - cut] = window[cut:end]
            have = front = end - cut
            lines_in_batch += n
            if lines_in_batch >= BATCH_LINES:
                yield Batch(tuple(events), self._offset, self._line)
                events, lines_in_batch = [], 0
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

    @property
    def reopenable(self) -> bool:
        """True when another process can open this input by its name and read it the same way: a
        file on disk (not stdin) that is not being written, in a line format (not a JSON array)."""
        return self.name != "<stdin>" and (self._path is not None or self.compression != "plain") \
            and not self.growing and self.format is not None and not self._is_array()

    def _parallel_end(self) -> int:
        """Where reading by several processes stops (the last line boundary before the end of the
        file), or 0 when this input is read in this process only: not a plain file on disk, still
        being written, a format that keeps state across lines, one core, or too little left."""
        if (self._path is None or self.growing or self.format is None or self._reader is not None
                or self._is_array() or usable_cores() < 2):
            return 0
        size = os.fstat(self._stream.fileno()).st_size
        if size - self._offset < PARALLEL_MIN:
            return 0
        with open(self._path, "rb") as f:
            f.seek(max(self._offset, size - MAX_LINE))
            tail = f.read()
        return size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0

    def _parallel_batches(self, end: int, audit: Audit | None) -> Iterator[Batch]:
        """Bytes up to `end` (a line boundary) in pieces cut at line boundaries, scanned, parsed
        and audited by worker processes (one per core), handed on in order: one batch per piece,
        its checkpoint at the piece's end. A worker numbers its piece's lines from 1; the locations
        it hands on are moved by the lines of the pieces before it here (`_rebase`)."""
        cuts = [self._offset]
        with open(self._path, "rb") as f:  # type: ignore[arg-type]
            while cuts[-1] + PARALLEL_PIECE < end:
                f.seek(cuts[-1] + PARALLEL_PIECE)
                if not f.readline(2 * MAX_LINE).endswith(b"\n") or not self._past_parts(f):
                    end = cuts[-1]  # no line boundary near: the rest is read in this process
                    break
                cuts.append(min(end, f.tell()))
        if cuts[-1] != end:
            cuts.append(end)
        if len(cuts) < 2:
            return
        global _worker_audit  # noqa: PLW0603 - the parent's copy, inherited by the forked workers
        context = multiprocessing.get_context("fork")
        workers = min(usable_cores(), len(cuts) - 1, 8)
        _worker_audit = audit  # the forked workers inherit it: closures need no pickling
        try:
            pool = context.Pool(workers, initializer=worker_start)
        except OSError:
            return  # no processes to be had (limits): this process reads it all
        finally:
            _worker_audit = None
        with pool:
            jobs = [(self._path, self.name, a, b, self.needles, self.format.name, self.fields)  # type: ignore[union-attr]
                    for a, b in itertools.pairwise(cuts)]
            # At most four pieces per worker in flight: memory stays flat however far the workers
            # get ahead of the store.
            window = 4 * workers
            pending = collections.deque(pool.apply_async(_scan_piece, (job,)) for job in jobs[:window])
            for i, stop in enumerate(cuts[1:]):
                events, tallies, stats = pending.popleft().get()
                if i + window < len(jobs):
                    pending.append(pool.apply_async(_scan_piece, (jobs[i + window],)))
                base = self._line
                self._merge(stats, base)
                self._line += stats.lines
                self._offset = stop
                yield Batch(tuple(_rebase_event(e, self.name, base) for e in events), stop, self._line,
                            None if tallies is None else tuple(_rebase_tally(t, self.name, base) for t in tallies))
        self._stream.seek(end)
        self._pending = b""

    def _past_parts(self, f: IO[bytes]) -> bool:
        """Move `f`, at a line boundary, on past the next record that ends a line: the parts of a
        line the runtime split stay in one piece. False when none does within MAX_LINE."""
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

    def _merge(self, stats: SourceStats, base: int) -> None:
        """Add the counts of a piece that starts after line `base` to this input's."""
        mine = self.stats
        mine.lines += stats.lines
        mine.candidates += stats.candidates
        mine.events += stats.events
        mine.ignored.update(stats.ignored)
        for reason, count in stats.skipped.items():
            mine.skipped[reason] += count
            where = mine.locations.setdefault(reason, [])
            where.extend(_rebase(w, self.name, base) for w in stats.locations.get(reason, [])[: MAX_LOCATIONS - len(where)])

    def _array_batches(self) -> Iterator[Batch]:
        """A JSON array of log objects: read whole, one batch, entries before the checkpoint skipped."""
        parts, size = [self._pending], len(self._pending)
        self._pending = b""
        while chunk := self._read(CHUNK):
            size += len(chunk)
            if size > MAX_DOCUMENT:
                raise SourceError(f"{self.name}: a JSON array larger than {MAX_DOCUMENT >> 20} MiB; split it or convert it to NDJSON")
            parts.append(chunk)
        data = b"".join(parts)
        text = data.decode("utf-8", "replace")
        skip_chars = len(data[: self._array_skip].decode("utf-8", "replace"))
        decoder = json.JSONDecoder()
        events: list[ConnectionEvent] = []
        pos, line = text.index("[") + 1, 1 + text.count("\n", 0, text.index("["))
        counted = pos
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos < len(text) and text[pos] == "]":
                # One drain request body per line: another array may follow.
                pos += 1
                while pos < len(text) and text[pos] in " \t\r\n":
                    pos += 1
                if pos < len(text) and text[pos] == "[":
                    pos += 1
                    continue
                if pos < len(text):
                    line += text.count("\n", counted, pos)
                    self.stats.skip("vercel: text after the JSON array was not read", f"{self.name}:{line}")
                break
            if pos >= len(text):
                break
            line += text.count("\n", counted, pos)
            counted = pos
            location = f"{self.name}:{line}"
            try:
                record, end = decoder.raw_decode(text, pos)
                if "\\ud" in text[pos:end].lower():
                    record = without_surrogates(record)
            except (ValueError, RecursionError) as e:
                why = JSON_TOO_DEEP if isinstance(e, RecursionError) else getattr(e, "msg", e)
                self.stats.skip("vercel: invalid JSON in the array; the rest of it was not read", f"{location} ({why})")
                break
            if end > skip_chars:
                self.stats.lines += 1
                self._parse_record(record, text[pos:end], location, events)
            pos = end
        self._line = line
        self._offset = len(data)
        yield Batch(tuple(events), self._offset, self._line)

    def _parse_record(self, record: object, raw: str, location: str, events: list[ConnectionEvent]) -> None:
        low = raw.lower()
        if not any(n.decode() in low for n in self.needles):
            return
        self.stats.candidates += 1
        self._collect(vercel.parse_record, (record, location, raw), location, events)

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
        if self._reader is not None and self._reader.headers and (
                block[:1] == b"#" or _hash_line(block, end) or (self._line == 0 and block.startswith(BOM + b"#"))):
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
