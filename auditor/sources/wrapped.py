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

LogFile detects a wrapper from the first lines of a file and the format of the lines inside it;
each line is then unwrapped and parsed as that format (see `logfile.detect_format`). The time,
client and host come from the inner line, as if the proxy had written the file itself.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence

from auditor.sources.common import json_object
from auditor.sources.interface import Malformed

KINDS = ("docker", "ecs", "cri")
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
