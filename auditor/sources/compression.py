"""Compressed inputs: which compression a stream's first bytes name, and reading it.

gzip is read by GzipFile; bz2, xz and zstd (optional: the `zstd` extra) by `Streams`, which says
when data ends inside a stream or is followed by something that is not another stream.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
from collections.abc import Callable
from typing import IO, Any

from auditor.sources.interface import SourceError

READ_SIZE = 1 << 20
"""Bytes a read without a size gives at most."""

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
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
        size = READ_SIZE if size is None or size < 0 else max(size, 1)
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


def zstandard_module(path: str, raw: IO[bytes]) -> Any:
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


MAGIC_BYTES = 6
"""The longest compression magic (xz's); a shorter read cannot tell the compression."""


class PutBack(io.RawIOBase):
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
