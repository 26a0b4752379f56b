"""Atheris harness for log reading: bytes -> a file -> LogFile, detected and then every format forced.

The first byte of an input picks how the rest is stored (plain, gzip, bz2, xz, zstd) and which read
window the reader uses (small windows and line limits reach the long-line and window-edge paths in
a few bytes); the second picks the format: detected, or one forced (every format, and some inside
each container wrapper); the rest is the log. A counted malformed line, a counted damaged stream
and a SourceError (one sentence about the input) are answers; any other exception is a crash.
With FUZZ_ALL_FORMATS=1 every input is read once detected and once with each format forced
(25 times slower, for replaying a corpus: `python fuzz/fuzz_logs.py fuzz/corpus/logs/*`).

    pip install -e '.[fuzz]'
    python fuzz/seed.py
    python fuzz/fuzz_logs.py fuzz/corpus/logs -max_total_time=60

A crasher is written as crash-<sha1> in the current directory; replay it with
`python fuzz/fuzz_logs.py crash-<sha1>`, then make it a regression test under tests/.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import auditor.sources.logfile as logfile
    from auditor.sources.interface import SourceError
    from auditor.sources.logfile import FORMATS, LogFile
    from rules.policy import load_policies

try:
    import zstandard
except ImportError:  # the zstd extra: without it zstd inputs are a SourceError, also an answer
    zstandard = None

NEEDLES = load_policies().needles()
FIELDS = {"ts": "time", "orig_h": "client.ip", "server_name": "request.host", "status": "response.code"}
"""The field map generic JSON (`json`) is forced with."""
FORCED = [name for name in FORMATS] + [f"{name}+{kind}" for name in ("squid", "combined", "vercel", "envoy") for kind in ("docker", "ecs", "cri")]
COMPRESS = [
    lambda b: b,
    gzip.compress,
    bz2.compress,
    lzma.compress,
    (lambda b: zstandard.ZstdCompressor().compress(b)) if zstandard is not None else (lambda b: b),
]
WINDOWS = [(4 << 20, 1 << 20, 1 << 20), (64, 48, 16), (256, 100, 64), (97, 90, 7)]
"""(WINDOW, MAX_LINE, CHUNK) choices: the shipped sizes, and small ones that reach the edges."""
DIR = tempfile.mkdtemp(prefix="fuzz-logs-")
PATH = os.path.join(DIR, "input.log")


def read(fmt: str | None) -> None:
    try:
        log = LogFile.open(PATH, NEEDLES, fmt, FIELDS if fmt == "json" else None)
    except SourceError:
        return
    try:
        for _ in log.batches():
            pass
    except SourceError:
        pass
    finally:
        log.close()
    stats = log.stats
    assert stats.lines >= 0 and stats.events <= stats.candidates, stats


ALL_FORMATS = os.environ.get("FUZZ_ALL_FORMATS") == "1"


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, pick, body = data[0], data[1], data[2:]
    logfile.WINDOW, logfile.MAX_LINE, logfile.CHUNK = WINDOWS[(mode >> 3) % len(WINDOWS)]
    with open(PATH, "wb") as f:
        f.write(COMPRESS[mode % len(COMPRESS)](body))
    choices = [None, *FORCED]
    for fmt in choices if ALL_FORMATS else [choices[pick % len(choices)]]:
        read(fmt)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
