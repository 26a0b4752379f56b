"""Log lines that arrive inside another record: what a container runtime or a log shipper wrote
around the line the proxy wrote.

- `docker`: Docker's `json-file` logging driver (`/var/lib/docker/containers/<id>/<id>-json.log`),
  and Fluentd/Fluent Bit records of it: `{"log":"<line>\\n","stream":"stdout","time":"..."}`.
- `ecs`: Filebeat's and Logstash's file outputs (and anything writing Elastic Common Schema):
  `{"@timestamp":"...","message":"<line>",...}`.
- `cri`: the container runtime interface's log files (`/var/log/pods/...`, `kubectl logs` on
  containerd or CRI-O): `<RFC 3339 time> stdout F <line>`.

A runtime's line shipped inside a `docker` or `ecs` record as it is (`"message":"<time> stdout F
<line>"`: Filebeat's log input or Fluent Bit on /var/log/containers without their CRI parser) is
unwrapped both ways.

A line longer than the runtime's buffer (16 KiB) is written in parts: Docker json-file records
whose `log` does not end with a newline continue in the next record (moby's log copier reads
16 KiB at a time; `jsonfilelog` writes each piece as a record), and CRI records tagged `P` continue up to the one tagged `F` (containerd, CRI-O;
kubelet's `cri-logging` format). `partial_test` tells such a record from its bytes, and `join`
makes the parts one record again, so that the line reads whole (LogFile keeps the parts of a line
together, and locates it at its first part).

LogFile detects a wrapper from the first lines of a file and the format of the lines inside it;
each line is then unwrapped and parsed as that format (see `logfile.detect_format`). The time,
client and host come from the inner line, as if the proxy had written the file itself.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence

from auditor.sources.common import json_object
from auditor.sources.interface import Malformed

KINDS = ("docker", "ecs", "cri")
SPLITTING = ("docker", "cri")
"""The wrappers that write a long line in parts (see partial_test)."""
NAMES = {"docker": "Docker json-file", "ecs": "Filebeat/Logstash", "cri": "container runtime"}
OUTSIDE = "a line outside the wrapper the file's first lines are in"
_CRI = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2}) (?:stdout|stderr) [FP] ")
_KEY = {"docker": "log", "ecs": "message"}


def kind_of(line: str) -> str | None:
    """The wrapper `line` is in, None when it is not in one."""
    if _CRI.match(line):
        return "cri"
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("log"), str) and ("stream" in record or "time" in record):
        return "docker"
    if isinstance(record.get("message"), str) and "@timestamp" in record:
        return "ecs"
    return None


def common_kind(lines: Sequence[str]) -> str | None:
    """The wrapper most of `lines` are in, None when most are in none."""
    kinds = Counter(kind_of(line) for line in lines)
    kind, count = kinds.most_common(1)[0] if kinds else (None, 0)
    return kind if kind is not None and 2 * count > len(lines) else None


def unwrap(kind: str, line: str) -> str:
    """The line inside; Malformed when `line` is not in that JSON wrapper. A line without the
    runtime's prefix is the line itself (a file holding a container's log and the host's)."""
    if kind == "cri":
        m = _CRI.match(line)
        return line[m.end() :] if m else line
    if kind_of(line) is None and not line.startswith("{"):
        raise Malformed(f"{OUTSIDE} (a {NAMES[kind]} record is a JSON object)")
    record = json_object(line, kind, "record")
    inner = record.get(_KEY[kind])
    if not isinstance(inner, str):
        raise Malformed(f"{kind}: no {_KEY[kind]!r} text")
    m = _CRI.match(inner)  # a container runtime's line shipped as it is (Filebeat's log input, Fluent Bit without its cri parser)
    return (inner[m.end() :] if m else inner).rstrip("\r\n")


_CRI_PARTIAL = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2}) (?:stdout|stderr) P ")
_DOCKER_FINAL = b'\\n","stream":"'
"""How Docker's json-file driver ends the `log` of a whole line: a newline, then the stream (its
fields are written in the order log, stream, attrs, time)."""


def _cri_partial(buf: bytes | bytearray, start: int, stop: int) -> bool:
    """True when the CRI record `buf[start:stop]` is tagged `P`: the line goes on in the next
    record. The tag is looked at first, after the time and the stream (` stdout`, ` stderr`)."""
    i = buf.find(b" ", start, start + 48)
    return buf.startswith(b" P ", i + 7, stop) and i > start and _CRI_PARTIAL.match(buf, start, stop) is not None


def _docker_partial(buf: bytes | bytearray, start: int, stop: int) -> bool:
    """True when the `log` of the Docker json-file record `buf[start:stop]` does not end with a
    newline: the line goes on in the next record. Told from the bytes in Docker's own layout,
    else by reading the JSON."""
    i = buf.find(_DOCKER_FINAL, start, stop)
    if i > start and buf[i - 1] != 0x5C:  # not an escaped backslash before an `n`
        return False
    if i < 0 and buf.startswith(b'{"log":"', start) and buf.find(b'\\n"', start, stop) < 0:
        return True
    try:
        value = json.loads(bytes(buf[start:stop]))
    except (ValueError, RecursionError):
        return False
    log = value.get("log") if isinstance(value, dict) else None
    return isinstance(log, str) and not log.endswith("\n")


def partial_test(kind: str, sample: Sequence[str]) -> Callable[[bytes | bytearray, int, int], bool] | None:
    """How to tell a record of `kind` (`test(buffer, start, stop)`, the record's bytes without its
    newline) that holds part of a line (its line goes on in the next record), None for a wrapper
    that never splits lines. For Docker records only when some of the
    `sample` (a file's first records) end their `log` with a newline: a shipper that takes the
    newlines off (a partial test would then join every record with the next) is read record by
    record."""
    if kind == "cri":
        return _cri_partial
    if kind == "docker" and any(_docker_whole(line) for line in sample):
        return _docker_partial
    return None


def _docker_whole(line: str) -> bool:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and isinstance(record.get("log"), str) and record["log"].endswith("\n")


def join(kind: str, records: Sequence[str]) -> str:
    """One record holding the line the runtime wrote over `records` (all but the last one partial):
    the first record's wrapper, around the parts' text. Malformed when a Docker part is no record."""
    if kind == "cri":
        m = _CRI.match(records[0])
        head = records[0][: m.end() - 2] + "F " if m else ""
        return head + "".join(unwrap(kind, r) for r in records)
    first = json_object(records[0], kind, "record")
    parts = [first, *(json_object(r, kind, "record") for r in records[1:])]
    text = [p.get(_KEY[kind]) for p in parts]
    if not all(isinstance(t, str) for t in text):
        raise Malformed(f"{kind}: no {_KEY[kind]!r} text")
    return json.dumps({**first, _KEY[kind]: "".join(text)})  # type: ignore[arg-type]
