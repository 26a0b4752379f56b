#!/usr/bin/env python3
"""Throughput of `region-auditor logs` on a generated Squid log, next to grep and wc on the same file.

    .venv/bin/python bench/logs.py [--lines 5000000] [--share 0.015] [--format squid|zeek|eve|docker|cri] [--dir /tmp/ra-bench] [--repeat 3]

Generates (once, then reuses) a Squid native access.log with `--lines` lines from many clients,
a `--share` of them CONNECTs to api.openai.com plus a few look-alike decoys (or the same calls as
a Zeek ssl.log or Suricata eve.json tls events, or the Squid lines inside Docker json-file or
container runtime records, `--format`), then runs, each from a cold process:
  region-auditor logs FILE --db <fresh SQLite>    (the whole audit, store included; all cores, then 1)
  python floor                                    (read + needle search + line count, 1 core)
  grep -c -F api.openai.com FILE                  (the floor: a substring count)
  grep -c -i -F -e NEEDLE ... FILE                (grep doing region-auditor's search: every needle, any case)
  wc -l FILE
and prints wall time, CPU time, lines/s and peak RSS for each, and checks that region-auditor found
exactly the governed calls the generator wrote. region-auditor runs twice: on every core this
process may use, and on one (`taskset`); next to it, the "python floor": the same file read,
searched for the needles and its lines counted, in Python, with nothing parsed or stored; and
region-auditor's start-up alone (a one-line file). Each command runs --repeat times; the run with
the median wall time is shown. Python runs with a bytecode cache, as an installed package does.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rules.policy import load_policies

HOSTS = ["www.google.com:443", "github.com:443", "pypi.org:443", "files.pythonhosted.org:443", "s3.amazonaws.com:443", "slack.com:443"]
DECOYS = ["api.openai.com.evil.example:443", "notapi.openai.community:443"]


ZEEK_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p version cipher curve server_name resumed last_alert next_protocol "
               "established ssl_history cert_chain_fps client_cert_chain_fps sni_matches_cert validation_status").split()
ZEEK_HEADER = "".join(f"{line}\n" for line in (
    "#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tssl", "#open\t2024-07-22-09-00-00",
    "#fields\t" + "\t".join(ZEEK_FIELDS), "#types\t" + "\t".join("string" for _ in ZEEK_FIELDS)))
"""Zeek's ASCII writer's header for ssl.log (the types are not read)."""


def record(fmt: str, rng: random.Random, t: float, client: str, host: str) -> str:
    """One line of `fmt` for a call from `client` to `host:443` at `t`, as each tool writes it."""
    name = host.rsplit(":", 1)[0]
    if fmt == "zeek":  # ssl.log, Zeek's ASCII writer
        uid = "C" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=17))
        return "\t".join((f"{t:.6f}", uid, client, str(rng.randint(30000, 60999)), "142.250.66.68", "443", "TLSv13", "TLS_AES_128_GCM_SHA256",
                          "x25519", name, "F", "-", "h2", "T", "CsiI", "(empty)", "(empty)", "-", "-")) + "\n"
    if fmt == "eve":  # Suricata eve.json, a tls event
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}+0000"
        return (f'{{"timestamp":"{stamp}","flow_id":{rng.getrandbits(50)},"in_iface":"eth0","event_type":"tls","src_ip":"{client}",'
                f'"src_port":{rng.randint(30000, 60999)},"dest_ip":"142.250.66.68","dest_port":443,"proto":"TCP","pkt_src":"wire/pcap",'
                f'"tls":{{"subject":"CN={name}","issuerdn":"C=US, O=Google Trust Services, CN=WE1","serial":"00:C4:6E:71:5B:38:5D:09:AF",'
                f'"fingerprint":"b4:5f:6a:9e:33:0c:8d:fa:52:e2:01:d0:4a:ab:35:a1:0b:18:7f:2c","sni":"{name}","version":"TLS 1.3",'
                f'"notbefore":"2024-06-10T08:38:06","notafter":"2024-09-02T08:38:05","ja3":{{"hash":"579ccef312d18482fc42e2b822ca2430"}},'
                f'"ja3s":{{"hash":"15af977ce25de452b96affa2addb1036"}}}}}}\n')
    line = f"{t:.3f} {rng.randint(1, 200000):>6} {client} TCP_TUNNEL/200 {rng.randint(100, 100000)} CONNECT {host} - HIER_DIRECT/142.250.66.68 -"
    if fmt in ("docker", "cri"):  # as the runtime writes a container's stdout (nanosecond times)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
        return f'{{"log":"{line}\\n","stream":"stdout","time":"{stamp}"}}\n' if fmt == "docker" else f"{stamp} stdout F {line}\n"
    return line + "\n"


def generate(path: Path, lines: int, share: float, fmt: str = "squid") -> int:
    rng = random.Random(42)
    governed = 0
    t = 1721638800.0
    with path.open("w") as out:
        if fmt == "zeek":
            out.write(ZEEK_HEADER)
        buf = []
        for _ in range(lines):
            t += 0.01
            client = f"10.{rng.choice((20, 30, 40))}.{rng.randint(0, 15)}.{rng.randint(1, 254)}"
            r = rng.random()
            if r < share:
                host = "api.openai.com:443"
                governed += 1
            elif r < share * 1.1:
                host = rng.choice(DECOYS)
            else:
                host = rng.choice(HOSTS)
            buf.append(record(fmt, rng, t, client, host))
            if len(buf) >= 100_000:
                out.writelines(buf)
                buf = []
        out.writelines(buf)
    return governed


FLOOR = """
import sys
from auditor.sources.needles import compiled
from rules.policy import load_policies
needles = compiled(load_policies().needles())
buf = bytearray(16 << 20)
view = memoryview(buf)
hits = lines = 0
with open(sys.argv[1], "rb", buffering=0) as f:
    while n := f.readinto(buf):
        block = view[:n]
        hits += len(needles.ends(block))
        lines += buf.count(b"\\n", 0, n)
print(hits, lines)
"""
"""The least any reader of this design does in Python: read the file, find the needles, count the
lines (no parsing, no store). What is left of region-auditor's time over this is its own work."""


def timed(argv: list[str], before: Callable[[], None] = lambda: None) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (user + system), peak RSS in KiB (via GNU time) and stdout of the
    run with the median wall time of REPEAT runs (`before` runs ahead of each)."""
    runs = []
    for _ in range(REPEAT):
        before()
        with tempfile.NamedTemporaryFile("r") as report:
            cmd = ["/usr/bin/time", "-f", "%M %U %S", "-o", report.name, *argv] if GNU_TIME else argv
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
            wall = time.perf_counter() - start
            rss, user, system = report.read().strip().splitlines()[-1].split() if GNU_TIME else ("0", "0", "0")
        if proc.returncode not in (0, 1):
            sys.exit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
        runs.append((wall, float(user) + float(system), int(rss), proc.stdout))
    return sorted(runs)[len(runs) // 2]


GNU_TIME = os.path.exists("/usr/bin/time")
REPEAT = 3
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
"""Python runs with its bytecode cache, as after an install (pip compiles at install time); a
checkout's modules get theirs in the bench directory (PYTHONPYCACHEPREFIX, set in main)."""
ONE_CORE = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if shutil.which("taskset") and hasattr(os, "sched_getaffinity") else None


def main() -> None:
    global REPEAT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=5_000_000)
    ap.add_argument("--share", type=float, default=0.015, help="share of governed calls")
    ap.add_argument("--format", choices=("squid", "zeek", "eve", "docker", "cri"), default="squid",
                    help="the log to generate: Squid access.log, Zeek ssl.log (TSV), Suricata eve.json (tls events), or Squid's "
                         "lines in Docker json-file or container runtime (CRI) records")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "ra-bench")
    ap.add_argument("--repeat", type=int, default=REPEAT, help="runs per command; the median is shown")
    args = ap.parse_args()
    REPEAT = max(1, args.repeat)
    args.dir.mkdir(parents=True, exist_ok=True)
    ENV["PYTHONPYCACHEPREFIX"] = str(args.dir / "pycache")
    log = args.dir / f"{args.format}-{args.lines}-{args.share}.log"
    meta = log.with_suffix(".json")
    if not (log.exists() and meta.exists()):
        print(f"generating {log} ...", file=sys.stderr)
        meta.write_text(json.dumps({"governed": generate(log, args.lines, args.share, args.format)}))
    governed = json.loads(meta.read_text())["governed"]
    size = log.stat().st_size
    os.utime(log, (time.time() - 3600, time.time() - 3600))
    auditor = shutil.which("region-auditor", path=os.path.dirname(sys.executable)) or shutil.which("region-auditor")
    if not auditor:
        sys.exit("region-auditor is not installed in this environment; run make install first")
    db = args.dir / "bench.db"

    def fresh_db() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)

    def ours(prefix: list[str], path: Path = log) -> tuple[float, float, int, str]:
        return timed([*prefix, auditor, "logs", str(path), "--db", str(db), "--json"], before=fresh_db)

    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    one_line = args.dir / "one-line.log"
    with log.open("rb") as f:
        one_line.write_bytes(f.readline())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    results = []
    fresh_db()
    subprocess.run([auditor, "logs", str(one_line), "--db", str(db)], capture_output=True, env=ENV)  # fills the bytecode cache
    wall, cpu, rss, _ = ours(ONE_CORE or [], one_line)
    results.append(("region-auditor start-up (1 line)", wall, cpu, rss))
    wall, cpu, rss, out = ours([])
    found = sum(r["calls"] for r in json.loads(out))
    results.append((f"region-auditor logs ({cores} cores)", wall, cpu, rss))
    if ONE_CORE:
        wall, cpu, rss, out_one = ours(ONE_CORE)
        found_one = sum(r["calls"] for r in json.loads(out_one))
        results.append(("region-auditor logs (1 core)", wall, cpu, rss))
    else:
        found_one = found
    wall, cpu, rss, floor_out = timed([*(ONE_CORE or []), sys.executable, "-c", FLOOR, str(log)])
    results.append(("python floor (1 core)", wall, cpu, rss))
    grep_wall, cpu, rss, grep_out = timed(["grep", "-c", "-F", "api.openai.com", str(log)])
    results.append(("grep -c -F api.openai.com", grep_wall, cpu, rss))
    needles = [arg for n in load_policies().needles() for arg in ("-e", n.decode())]
    wall, cpu, rss, _ = timed(["grep", "-c", "-i", "-F", *needles, str(log)])
    results.append((f"grep -c -i -F, all {len(needles) // 2} needles", wall, cpu, rss))
    wall, cpu, rss, _ = timed(["wc", "-l", str(log)])
    results.append(("wc -l", wall, cpu, rss))

    print(f"file: {log} ({args.lines:,} lines, {size / 1e6:.0f} MB, {governed:,} governed calls, grep hits {int(grep_out):,} incl. decoys)")
    print(f"python floor: read, find the needles ({floor_out.split()[0]} hits), count the lines ({floor_out.split()[1]})")
    print(f"each: the median of {REPEAT} runs")
    print(f"{'command':34} {'wall s':>7} {'CPU s':>7} {'lines/s':>12} {'peak RSS MB':>12} {'x grep':>7}")
    for name, wall, cpu, rss in results:
        rate = "" if "start-up" in name else f"{args.lines / wall:,.0f}"
        print(f"{name:34} {wall:7.2f} {cpu:7.2f} {rate:>12} {rss / 1024:12.1f} {wall / grep_wall:7.1f}")
    ok = found == governed == found_one
    print(f"region-auditor found {found:,} governed calls ({found_one:,} on 1 core): {'matches' if ok else 'DOES NOT MATCH'} the generator's {governed:,}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
