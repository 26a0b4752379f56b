"""FILE arguments of `logs`: directories (recursive, sorted, hidden names skipped), files and stdin
together, stdin with checkpoints, --rescan, and the progress bar (terminals only)."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor import cli as cli_mod
from auditor.cli import cli
from auditor.inputs import expand

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = ROOT / "examples" / "auditor.toml"


def squid(i: int, client: str = "10.20.1.5", host: str = "api.openai.com") -> str:
    return f"{1721638800 + i}.000    120 {client} TCP_TUNNEL/200 5120 CONNECT {host}:443 - HIER_DIRECT/162.159.140.245 -\n"


def block(start: int, count: int) -> str:
    return "".join(squid(i) for i in range(start, start + count))


def logs(*args: str, input: bytes | None = None):  # type: ignore[no-untyped-def]  # noqa: A002 - CliRunner.invoke's name
    return CliRunner().invoke(cli, ["logs", *args], input=input, catch_exceptions=False)


def total(result) -> int:  # type: ignore[no-untyped-def]
    return sum(r["calls"] for r in json.loads(result.stdout))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """logs/ with plain, compressed, nested, hidden and non-log files."""
    root = tmp_path / "logs"
    (root / "squid" / "old").mkdir(parents=True)
    (root / ".cache").mkdir()
    (root / "squid" / "access.log").write_text(block(0, 3))
    (root / "squid" / "old" / "access.log.1.gz").write_bytes(gzip.compress(block(100, 4).encode()))
    (root / "squid" / "old" / "access.log.2.bz2").write_bytes(bz2.compress(block(200, 5).encode()))
    (root / "b.log").write_text(block(300, 2))
    (root / ".hidden.log").write_text(block(400, 7))
    (root / ".cache" / "x.log").write_text(block(500, 11))
    (root / "README").write_text("These are the proxy's logs.\nRotated daily.\n")
    (root / "empty").mkdir()
    return root


def test_expand_walks_directories_sorted_without_hidden_names(tree: Path) -> None:
    os.symlink(tree / "b.log", tree / "link.log")
    inputs = expand([str(tree / "b.log"), "-", str(tree), str(tree / "empty")])
    found = [
        str(tree / "README"),
        str(tree / "b.log"),
        str(tree / "link.log"),
        str(tree / "squid" / "access.log"),
        str(tree / "squid" / "old" / "access.log.1.gz"),
        str(tree / "squid" / "old" / "access.log.2.bz2"),
    ]
    assert inputs.paths == [str(tree / "b.log"), "-", *found]
    assert inputs.found == set(found) - {str(tree / "b.log")}  # named on its own: an error in it stops the run
    assert inputs.notes == [f"{tree / 'empty'}: no files in this directory"]
    assert inputs.total_bytes == sum(os.stat(p).st_size for p in inputs.paths if p != "-")


def test_logs_on_a_directory_reads_every_log_in_it(tree: Path, tmp_path: Path) -> None:
    result = logs(str(tree), "--db", str(tmp_path / "f.db"), "--config", str(EXAMPLE_CONFIG), "--json")
    assert result.exit_code == 1, result.output
    assert total(result) == 3 + 4 + 5 + 2  # not the hidden ones
    err = result.stderr
    assert f"skipped {tree / 'README'}: not a recognised log format" in err
    assert f"{tree / 'squid' / 'old' / 'access.log.1.gz'} (squid, gzip): 4 lines, 4 calls" in err
    assert f"{tree / 'squid' / 'old' / 'access.log.2.bz2'} (squid, bz2): 5 lines, 5 calls" in err
    order = [line.split(" (")[0] for line in err.splitlines() if " lines, " in line]
    assert order == sorted(order)
    # Again: nothing new, nothing skipped silently.
    again = logs(str(tree), "--db", str(tmp_path / "f.db"), "--config", str(EXAMPLE_CONFIG), "--json")
    assert total(again) == 14
    assert again.stderr.count("(audited before)") == 4


def test_a_named_file_that_is_not_a_log_still_stops_the_run(tree: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["logs", str(tree / "README"), str(tree), "--db", str(tmp_path / "f.db")])
    assert result.exit_code == 3
    assert "README: not a recognised log format" in result.output


def test_files_directories_and_stdin_in_one_run(tree: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.log"
    extra.write_text(block(600, 6))
    result = logs(str(extra), str(tree / "squid"), "-", "--db", str(tmp_path / "f.db"), "--json", input=block(700, 8).encode())
    assert total(result) == 6 + 3 + 4 + 5 + 8
    assert "<stdin> (squid): 8 lines, 8 calls" in result.stderr


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    result = logs(str(tmp_path / "none"), "--db", str(tmp_path / "f.db"))
    assert result.exit_code == 0
    assert f"{tmp_path / 'none'}: no files in this directory" in result.stderr
    assert result.stdout == "no calls to governed AI provider hosts found\n"


def test_stdin_checkpoints(tmp_path: Path) -> None:
    """The same stream again reads nothing new, a longer one only its new lines, another one all."""
    db = str(tmp_path / "f.db")
    first = block(0, 60)  # more than the 4 KiB fingerprint
    assert total(logs("-", "--db", db, "--json", input=first.encode())) == 60
    again = logs("-", "--db", db, "--json", input=first.encode())
    assert total(again) == 60 and "<stdin> (squid): 0 lines after line 60 (audited before)" in again.stderr
    grown = logs("-", "--db", db, "--json", input=(first + block(60, 5)).encode())
    assert total(grown) == 65 and "5 lines after line 60" in grown.stderr
    other = logs("-", "--db", db, "--json", input=block(1000, 3).encode())
    assert total(other) == 3 and "<stdin> (squid): 3 lines, 3 calls" in other.stderr
    # The same file as a file is the same input.
    path = tmp_path / "same.log"
    path.write_text(first + block(60, 5))
    assert "0 lines after line 65 (audited before)" in logs(str(path), "--db", db).stderr
    # A stream that ends before what was audited is an earlier copy of it: nothing new (it used to
    # be refused, and a plain file shorter than its checkpoint was counted again); --rescan starts over.
    short = first[: len(first) - len(squid(59))]
    earlier = CliRunner().invoke(cli, ["logs", "-", "--db", db, "--json"], input=_Pipe(short.encode()))
    assert earlier.exit_code == 0 and total(earlier) == 65
    assert (
        "<stdin> (squid): nothing new: it starts like an input audited up to line 65 and ends before that (an earlier, shorter copy of it)"
    ) in earlier.stderr
    copy = tmp_path / "older-copy.log"
    copy.write_text(short)
    assert total(logs(str(copy), "--db", db, "--json")) == 65
    rescanned = logs("-", "--db", db, "--json", "--rescan", input=_Pipe(short.encode()))
    assert "<stdin> (squid): 59 lines, 59 calls" in rescanned.stderr
    assert total(logs("-", "--db", db, "--json", input=b"")) == 0


def test_rescan_recounts_files_and_directories(tree: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    before = logs(str(tree), "--db", db, "--json")
    rescanned = logs(str(tree), "--db", db, "--json", "--rescan")
    assert json.loads(rescanned.stdout) == json.loads(before.stdout)
    assert "(audited before)" not in rescanned.stderr
    assert total(logs("--db", db, "--json", str(tree / "b.log"), "--rescan")) == 2
    assert sum(r["calls"] for r in json.loads(CliRunner().invoke(cli, ["findings", "--db", db, "--json"]).stdout)) == 14


class _Pipe(io.BytesIO):
    """Stdin that cannot seek, like a pipe."""

    def seekable(self) -> bool:
        return False


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal_and_only_when_the_run_is_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_mod._AuditProgress, "delay", 0.0)
    terminal = _Terminal()
    bar = cli_mod._AuditProgress(1000, terminal)
    for done in (100, 500, 1000, 1200):
        bar(done)
    bar.close()
    assert "reading" in terminal.getvalue() and "100%" in terminal.getvalue()
    piped = io.StringIO()
    quiet = cli_mod._AuditProgress(1000, piped)
    quiet(500)
    quiet.close()
    assert piped.getvalue() == ""
    monkeypatch.setattr(cli_mod._AuditProgress, "delay", 60.0)
    short = _Terminal()
    brief = cli_mod._AuditProgress(1000, short)
    brief(1000)
    brief.close()
    assert short.getvalue() == ""


def test_progress_is_fed_the_bytes_read(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    monkeypatch.setattr(cli_mod._AuditProgress, "__call__", lambda self, done: seen.append(done))
    logs(str(tree / "squid"), "--db", str(tmp_path / "f.db"))
    sizes = [os.stat(p).st_size for p in expand([str(tree / "squid")]).paths]
    assert seen == [sizes[0], sizes[0] + sizes[1], sum(sizes)]


# --- several files read by worker processes ----------------------------------------------------


def rotated_tree(tmp_path: Path) -> Path:
    """A directory as logrotate leaves it: the live log, compressed generations, a damaged one,
    a copy of a generation under another name, and a README."""
    d = tmp_path / "squid"
    d.mkdir()
    (d / "access.log").write_text(block(0, 40) + squid(40, client="10.30.1.9"))
    (d / "access.log.1.gz").write_bytes(gzip.compress(block(100, 30).encode()))
    (d / "access.log.2.bz2").write_bytes(bz2.compress(block(200, 20).encode()))
    (d / "access.log.3.gz").write_bytes(gzip.compress(block(300, 5000).encode())[:5000])  # cut short
    (d / "copy-of-1.gz").write_bytes(gzip.compress(block(100, 30).encode()))  # same content as .1
    (d / "README").write_text("rotated squid logs\n")
    old = 1_700_000_000
    for f in d.iterdir():
        os.utime(f, (old, old))
    return d


@pytest.mark.parametrize("workers", [True, False])
def test_many_files_read_by_workers_store_what_one_process_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: bool) -> None:
    from auditor.executor import Executor

    if workers:
        monkeypatch.setattr("auditor.executor.AHEAD_MIN", 0)  # a tree this small is read here otherwise
    else:
        monkeypatch.setattr(Executor, "ahead", lambda self, paths: None)
    d = rotated_tree(tmp_path)
    db = str(tmp_path / f"{workers}.db")
    first = logs(str(d), "--config", str(EXAMPLE_CONFIG), "--db", db, "--json")
    rows = {(r["org"], r["verdict"]): r["calls"] for r in json.loads(first.stdout)}
    cut = first.stderr.split("access.log.3.gz (squid, gzip): ")[1].split(" lines")[0]
    # 41 + 30 + 20 lines, the cut file's lines before the damage; the copy of .1 adds nothing.
    assert rows == {("acme-research", "violation"): 90 + int(cut), ("beta-labs", "allowed"): 1}
    assert "copy-of-1.gz (squid, gzip): 0 lines after line 30 (audited before)" in first.stderr
    assert "gzip data cut short or corrupt" in first.stderr and "skipped" in first.stderr  # the README
    again = logs(str(d), "--config", str(EXAMPLE_CONFIG), "--db", db, "--json")
    assert {(r["org"], r["verdict"]): r["calls"] for r in json.loads(again.stdout)} == rows
    assert again.stderr.count("0 lines after line") == 5  # every log resumes at its end


def test_workers_and_one_process_give_the_same_summaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor.executor import Executor

    d = rotated_tree(tmp_path)
    monkeypatch.setattr("auditor.executor.AHEAD_MIN", 0)  # a tree this small is read here otherwise
    many = logs(str(d), "--config", str(EXAMPLE_CONFIG), "--db", str(tmp_path / "many.db"), "--json")
    monkeypatch.setattr(Executor, "ahead", lambda self, paths: None)
    one = logs(str(d), "--config", str(EXAMPLE_CONFIG), "--db", str(tmp_path / "one.db"), "--json")
    assert many.stderr == one.stderr and json.loads(many.stdout) == json.loads(one.stdout)


@pytest.mark.parametrize("rescan", [False, True])
def test_a_grown_input_and_its_earlier_copies_count_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rescan: bool) -> None:
    """A directory with a log, its grown successor and older copies of it (backups, logrotate's
    `copy`), read by workers: the copies add nothing. They used to be counted again (92 calls for
    46), and with --rescan a copy forgot what the same run had just stored of the grown file."""
    d = tmp_path / "logs"
    d.mkdir()
    original, grown = block(0, 60), block(0, 60) + block(60, 40)  # over the 4 KiB fingerprint
    (d / "a-grown.log.gz").write_bytes(gzip.compress(grown.encode()))
    (d / "b-copy.log").write_text(original)
    (d / "c-copy.log.gz").write_bytes(gzip.compress(original.encode()))
    (d / "d-copy.log").write_text(original)
    for f in d.iterdir():
        os.utime(f, (1_700_000_000, 1_700_000_000))
    monkeypatch.setattr("auditor.executor.AHEAD_MIN", 0)  # a tree this small is read here otherwise
    db = str(tmp_path / "f.db")
    args = [str(d), "--db", db, "--json", *(["--rescan"] if rescan else [])]
    result = logs(*args)
    assert total(result) == 100
    assert result.stderr.count("nothing new: it starts like an input audited up to line 100") == 3
    again = logs(*args)
    assert total(again) == 100
    assert sum(r["calls"] for r in json.loads(CliRunner().invoke(cli, ["findings", "--db", db, "--json"]).stdout)) == 100


def test_symlinked_directories_are_followed_once(tmp_path: Path) -> None:
    """A link to another log directory was skipped without a word; a link back up the tree is not a loop."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "logs" / "a.log").write_text(block(0, 3))
    (tmp_path / "elsewhere" / "n.log").write_text(block(100, 4))
    (tmp_path / "logs" / "nginx").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "logs" / "loop").symlink_to(tmp_path / "logs")
    (tmp_path / "logs" / "again").symlink_to(tmp_path / "elsewhere")  # the same directory twice
    assert expand([str(tmp_path / "logs")]).paths == [str(tmp_path / "logs" / "a.log"), str(tmp_path / "logs" / "again" / "n.log")]
    assert total(logs(str(tmp_path / "logs"), "--db", str(tmp_path / "f.db"), "--json")) == 7


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux) to drop root's permission bypass")
def test_a_named_directory_that_cannot_be_listed_stops_the_run(tmp_path: Path) -> None:
    """It exited 0 with 'cannot list this directory' and 'no files in this directory' both."""
    import subprocess
    import sys

    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.log").write_text(block(0, 3))
    locked.chmod(0)
    try:
        result = subprocess.run(
            [
                "setpriv",
                "--inh-caps=-dac_override,-dac_read_search",
                "--bounding-set=-dac_override,-dac_read_search",
                sys.executable,
                "-m",
                "auditor",
                "logs",
                str(locked),
                "--db",
                str(tmp_path / "f.db"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        locked.chmod(0o755)
    assert result.returncode == 3, result.stderr
    assert result.stderr == f"Error: {locked}: cannot list this directory (Permission denied); check its permissions\n"


def test_progress_moves_while_workers_read_a_large_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pieces of a large plain file are read by workers, which do not move this process's file
    position: the bar stood at 0% for the whole run."""
    monkeypatch.setattr("auditor.executor.PARALLEL_MIN", 1)
    monkeypatch.setattr("auditor.executor.PARALLEL_PIECE", 8192)
    monkeypatch.setattr("auditor.executor.usable_cores", lambda: 2)
    seen: list[int] = []
    monkeypatch.setattr(cli_mod._AuditProgress, "__call__", lambda self, done: seen.append(done))
    path = tmp_path / "big.log"
    path.write_text(block(0, 2000))
    os.utime(path, (1_700_000_000, 1_700_000_000))
    assert total(logs(str(path), "--db", str(tmp_path / "f.db"), "--json")) == 2000
    size = path.stat().st_size
    assert len(set(seen)) > 10 and seen == sorted(seen) and seen[-1] == size and seen[0] < size // 2


@pytest.mark.parametrize("several", [False, True])
def test_a_run_stopped_by_a_named_input_shows_what_it_stored_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, several: bool) -> None:
    """Exit 3 printed only the error, although the inputs before the bad one were stored (they then
    showed up as 'audited before' on the next run)."""
    good = tmp_path / "a.log"
    good.write_text(block(0, 5))
    other = tmp_path / "b.log"
    other.write_text(block(100, 3))
    bad = tmp_path / "notes.txt"
    bad.write_text("not a log\n")
    for f in (good, other, bad):
        os.utime(f, (1_700_000_000, 1_700_000_000))
    if not several:
        monkeypatch.setattr("auditor.executor.usable_cores", lambda: 1)  # read here, not by workers
    else:
        monkeypatch.setattr("auditor.executor.AHEAD_MIN", 0)  # by workers, small as they are
    result = CliRunner().invoke(cli, ["logs", str(good), str(other), str(bad), "--db", str(tmp_path / "f.db"), "--json"])
    assert result.exit_code == 3
    assert total(result) == 8
    assert f"{good} (squid): 5 lines, 5 calls" in result.stderr and f"{other} (squid): 3 lines, 3 calls" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith(f"Error: {bad}: not a recognised log format")


def test_an_empty_terminal_on_stdin_ends_with_one_ctrl_d(tmp_path: Path) -> None:
    """With nothing typed, the first Ctrl-D ended only the magic-byte peek; a second one was needed."""
    import pty
    import select
    import sys
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: region-auditor reading the terminal
        os.execv(sys.executable, [sys.executable, "-m", "auditor", "logs", "-", "--db", str(tmp_path / "f.db")])
    try:
        time.sleep(1.5)  # started and waiting on the terminal
        os.write(fd, b"\x04")
        out, deadline = b"", time.monotonic() + 30
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # the child closed the terminal: it ended
                    break
                if not data:
                    break
                out += data
        assert b"<stdin> (empty): 0 lines" in out, out
    finally:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):  # still waiting: the bug
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
