#!/usr/bin/env python3
"""Time and memory of `region-auditor report` on a generated store, each format from a cold process.

    .venv/bin/python bench/report.py [--observations 1000000] [--orgs 200] [--days 90] [--evidence 5] [--dir /tmp/ra-report-bench] [--repeat 3]

Generates (once, then reuses) a SQLite findings database as audits would have left it: `--orgs`
organizations calling 3 providers (2 hosts each) from 3 egresses each (one in a country no provider
serves, one in a served one, one unknown), read from 3 inputs, over `--days` days, up to
`--observations` observation rows in all (3,600 combinations a day for the defaults: 972,000 rows), each with `--evidence` evidence rows, and a run whose
locator description names dated data. Then runs `region-auditor report --db DB -o FILE` once per
format (html, md, json, csv) and once with all four -o, each --repeat times, and prints the median
wall time, the CPU time and the peak RSS of each (os.wait4), next to the budget: every format in
under 5 s and 300 MB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROVIDERS = {"openai": ("api.openai.com", "us.api.openai.com"), "anthropic": ("api.anthropic.com", "api.claude.ai"),
             "gemini": ("generativelanguage.googleapis.com", "aiplatform.googleapis.com")}
EGRESSES = (("43.198.{}.{}", "HK", "cloud:aws:ap-east-1", "violation", "not-listed:HK"),
            ("52.220.{}.{}", "SG", "cloud:aws:ap-southeast-1", "allowed", "listed:SG"),
            ("", "", "no-egress", "unknown", "no-location"))
BUDGET_S, BUDGET_MB = 5.0, 300


def generate(path: Path, observations: int, orgs: int, days: int, evidence: int) -> None:
    """A findings database with about `observations` rows (made by region-auditor's own schema)."""
    from auditor.sqlstore import SqlStore

    SqlStore(str(path)).close()  # the schema, as region-auditor makes it
    rng = random.Random(17)
    start = dt.date(2024, 6, 1)
    per_day = -(-observations // (days * 3))  # combinations a day, each read from 3 inputs
    conn = sqlite3.connect(path)
    now = dt.datetime(2024, 9, 1).isoformat(sep=" ")
    conn.execute("INSERT INTO runs (command, geoip, policies, started_at, finished_at, lines, events, findings, skipped) "
                 "VALUES ('logs', 'override:0 networks > cloud:aws:cloudip-db@2024-08-20 > mmdb:GeoLite2-Country@2024-08-27', "
                 "'anthropic@v175,gemini@v213,openai@v188', ?, ?, 0, 0, 0, 0)", (now, now))
    for i in range(3):
        conn.execute("INSERT INTO sources (name, fingerprint, fp_len, \"offset\", line, updated_at) VALUES (?, ?, 4096, 0, ?, ?)",
                     (f"/var/log/squid/access.log.{i}", f"{i:064x}", 10_000_000, now))
        conn.execute("INSERT INTO input_reads (run_id, source_id, format, compression, lines, events, calls, malformed, recorded_at) "
                     "VALUES (1, ?, 'squid', 'gzip', 10000000, 10000000, 0, '{\"squid: too few fields\": 12}', ?)", (i + 1, now))
    obs_rows, ev_rows = [], []
    obs_id = 0
    combos = [(o, p, h, e) for o in range(orgs) for p in PROVIDERS for h in PROVIDERS[p] for e in range(len(EGRESSES))]
    rng.shuffle(combos)
    for day in range(days):
        when = start + dt.timedelta(days=day)
        for org, provider, host, egress in combos[:per_day]:
            template, country, basis, verdict, rule = EGRESSES[egress]
            address = template.format(org // 250, org % 250) if template else ""
            for source in range(1, 4):
                obs_id += 1
                first = dt.datetime.combine(when, dt.time(rng.randrange(24), rng.randrange(60)))
                calls = rng.randrange(1, 500)
                obs_rows.append((obs_id, source, f"org-{org:03d}", provider, host, address, country, basis, verdict, when.isoformat(),
                                 f"{provider}@v1", f"{provider}@v1:{rule}", calls, first.isoformat(sep=" "),
                                 (first + dt.timedelta(minutes=30)).isoformat(sep=" "), min(calls, evidence), 0))
                for n in range(min(calls, evidence)):
                    ts = (first + dt.timedelta(seconds=n)).isoformat(sep=" ")
                    ev_rows.append((obs_id, 1, f"/var/log/squid/access.log.{source - 1}:{obs_id * 5 + n}", ts, f"10.{org % 250}.0.{n + 1}",
                                    "site:office", f"{provider}@v1:{rule}", "generated", f"{ts} CONNECT {host}:443 generated line", ""))
        if len(obs_rows) > 200_000 or day == days - 1:
            conn.executemany("INSERT INTO observations (id, source_id, org, provider, host, egress_ip, country, basis, verdict, day, "
                             "policy_version, rule_id, calls, first_seen, last_seen, evidence_count, blocked_calls) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", obs_rows)
            conn.executemany("INSERT INTO evidence (observation_id, run_id, location, ts, orig_h, egress_basis, rule_id, reason, raw, "
                             "disagreements) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ev_rows)
            obs_rows, ev_rows = [], []
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def run(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--evidence", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "ra-report-bench")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    db = args.dir / f"store-{args.observations}-{args.orgs}-{args.days}-{args.evidence}.db"
    if not db.exists():
        print(f"generating {db} ...", file=sys.stderr)
        t = time.perf_counter()
        generate(db, args.observations, args.orgs, args.days, args.evidence)
        print(f"  {time.perf_counter() - t:.1f} s", file=sys.stderr)
        # Start again, small: a child forked from this process would count the generator's memory
        # (several hundred MB) in its peak RSS (ru_maxrss includes the time before exec).
        os.execv(sys.executable, [sys.executable, *sys.argv])
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
    evidence = conn.execute("SELECT count(*) FROM evidence").fetchone()[0]
    conn.close()
    print(f"store: {rows} observation rows, {evidence} evidence rows, {args.orgs} orgs, {len(PROVIDERS)} providers, {args.days} days, "
          f"{db.stat().st_size / 2**20:.0f} MB")
    exe = str(Path(sys.executable).with_name("region-auditor"))
    cases = [(fmt, [f"-o{args.dir / ('report.' + fmt)}"]) for fmt in ("html", "md", "json", "csv")]
    cases.append(("all four", [f"-o{args.dir / ('all.' + fmt)}" for fmt in ("html", "md", "json", "csv")]))
    print(f"{'format':<10} {'wall s':>7} {'cpu s':>7} {'peak MB':>8}  budget {BUDGET_S:.0f} s, {BUDGET_MB} MB")
    for name, outputs in cases:
        results = sorted((run([exe, "report", "--db", str(db), "--as-of", "2024-09-01", *outputs]) for _ in range(args.repeat)),
                         key=lambda r: r[0])
        wall, cpu, rss = results[len(results) // 2]
        ok = "ok" if wall < BUDGET_S and rss < BUDGET_MB else "OVER"
        print(f"{name:<10} {wall:7.2f} {cpu:7.2f} {rss:8.0f}  {ok}")
    sizes = ", ".join(f"{fmt} {(args.dir / ('report.' + fmt)).stat().st_size / 2**20:.1f} MB" for fmt in ("html", "md", "json", "csv"))
    print(f"outputs: {sizes}")


if __name__ == "__main__":
    main()
