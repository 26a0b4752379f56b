"""Follow mode (`logs --follow`): audit log files as they grow, the way `tail -F` reads them.

Every POLL_SECONDS each path is looked at again. Its file is held open by descriptor, so a rename
does not lose it:

- the path names another file (rename-and-create rotation): the old file is read to its end, then
  kept open for late writes until it has been quiet for DRAIN_SECONDS; the new file is a new input;
- the file is shorter than what was read, or its first bytes changed (copytruncate, truncation):
  it is read again from the top, as a new input;
- the path does not exist (yet): it is waited for.

Files rotated away unseen (two rotations between two looks, lines written just before a
copytruncate, or any rotation while no follower ran) are found next to the path by their names
and read by their checkpoints (`_missed_generations`).

Parsing is LogFile's, reading from a TailStream that releases only complete lines: a line the
writer has not finished waits for its newline. Each round ends on a line boundary when nothing
complete is left or after COMMIT_SECONDS, and its batches are stored with their checkpoint in one
transaction (FindingStore.add_batch). A process killed at any moment therefore resumes where the
store says, with nothing lost and nothing counted twice; inputs are identified as the store does,
by the first bytes of their content, so a rotated file keeps its checkpoint and its successor gets
its own.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import select
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from auditor.executor import Executor
from auditor.pipeline import Pipeline
from auditor.recorder import InputSummary, Recorder, Recording
from auditor.runner import catch_up
from auditor.scheduler import COMMIT_SECONDS, POLL_SECONDS
from auditor.sources import vercel
from auditor.sources.compression import compression_of, ends_by
from auditor.sources.interface import FINGERPRINT_BYTES, Prefixed, SourceError
from auditor.sources.logfile import CHUNK, SAMPLE_BYTES, SETTLED_SECONDS, LogFile, check_name
from auditor.store import Checkpoint, CheckpointMoved, FindingStore

_GENERATION = re.compile(r"[.\-_][0-9][0-9A-Za-z.\-_]*")
"""What logrotate adds to a rotated file's name: `.1`, `-20240715`, `.2024-07-15-1721...`."""
DRAIN_SECONDS = 5.0
"""How long a rotated file is kept open after its last write, for a writer that reopens late."""


class TailStream:
    """A readable byte stream over a descriptor that releases only complete lines.

    `read()` returns b"" when no complete line is left for now, or when the round's `deadline`
    has passed: LogFile.batches() then ends on a line boundary, and the next call goes on from
    there. A line longer than the read size is released in pieces. At the end of a pipe (its writer
    closed it) the rest is released, newline or not. `blocking` makes a pipe's reads wait for data.
    """

    def __init__(self, fd: int, *, pipe: bool = False) -> None:
        self.fd = fd
        self.pipe = pipe
        """True for a pipe or socket (not seekable; it ends when its writer closes it)."""
        self.ended = False
        """True once a pipe's writer closed it."""
        self.deadline = math.inf
        """A monotonic time after which reads give b"" (the round ends)."""
        self.blocking = False
        """Wait for a pipe's data instead of giving b"" (until `stopping()`)."""
        self.stopping: Callable[[], bool] = lambda: False
        self.taken = 0
        """Bytes taken from the descriptor (its position for a file)."""
        self._buf = b""

    @property
    def position(self) -> int:
        """Offset of the next byte `read()` gives."""
        return self.taken - len(self._buf)

    @property
    def pending(self) -> bytes:
        """Bytes taken but not released (the start of a line not finished yet)."""
        return self._buf

    def seekable(self) -> bool:
        return not self.pipe

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.taken = os.lseek(self.fd, offset, whence)
        self._buf = b""
        return self.taken

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        """The descriptor belongs to the Tail, which closes it."""

    def ready(self) -> bool:
        """True when a complete line (or a sample's worth of bytes, or a pipe's end) is there to read."""
        self._fill(SAMPLE_BYTES)
        return b"\n" in self._buf or len(self._buf) >= SAMPLE_BYTES or (self.ended and bool(self._buf))

    def read(self, size: int = -1) -> bytes:
        size = CHUNK if size is None or size < 0 else size
        while True:
            if not self.blocking and time.monotonic() >= self.deadline:
                return b""
            self._fill(size)
            cut = self._buf.rfind(b"\n", 0, size) + 1
            if not cut and (len(self._buf) >= size or self.ended):
                cut = min(size, len(self._buf))
            if cut:
                out, self._buf = self._buf[:cut], self._buf[cut:]
                return out
            if not (self.blocking and self.pipe) or self.ended or self.stopping():
                return b""
            select.select([self.fd], [], [], 0.2)

    def _fill(self, size: int) -> None:
        """Take what the descriptor has now, until `size` bytes are buffered."""
        while len(self._buf) < size and not self.ended:
            if self.pipe and not select.select([self.fd], [], [], 0)[0]:
                return
            data = os.read(self.fd, max(size - len(self._buf), 1 << 16))
            if not data:
                self.ended = self.pipe
                return
            self.taken += len(data)
            self._buf += data


@dataclass
class Tail:
    """One file being followed, held open by descriptor."""

    name: str
    """The path as given (`<stdin>` for `-`)."""
    path: str
    """The FILE argument (`-` for stdin), for the [[source]] configuration."""
    stream: TailStream
    ident: tuple[int, int] | None
    """(st_dev, st_ino) of the file; None for stdin."""
    log: LogFile | None = None
    """Opened once the file has a complete line."""
    recording: Recording | None = None
    """Its checkpoint and calls in this run, once opened."""
    resumed_at_line: int = 0
    line: int = 0
    """Lines audited and committed so far (the checkpoint's line)."""
    quiet_since: float = 0.0
    """When a rotated file was last found with new data."""
    ended_by: str = ""
    """`rotation` or `truncation` once the path no longer names what this tail read."""
    reopen: bool = False
    """True when the file is to be opened again from the top: another process moved its checkpoint."""
    behind: bool = False
    """True when, closed, it had complete lines not read yet (stopped while catching up)."""
    seen_at: float = 0.0
    """Wall-clock time the path was last found naming this file."""
    found: bool = False
    """A generation found rotated away between two looks, not a file named on the command line."""

    def close(self) -> None:
        """Close the descriptor (not stdin's); again is a no-op."""
        if self.ident is not None and self.stream.fd >= 0:
            self.behind = b"\n" in self.stream.pending or os.fstat(self.stream.fd).st_size > self.stream.taken
            os.close(self.stream.fd)
            self.stream.fd = -1

    def summary(self, log: LogFile) -> InputSummary:
        stats = log.stats
        name = f"{self.name} before {self.ended_by}" if self.ended_by and not self.found else self.name
        behind = self.behind or b"\n" in self.stream.pending
        recording = self.recording
        return InputSummary.of(
            name,
            log.kind,
            "plain",
            stats,
            bool(self.stream.pending) and not behind,
            self.resumed_at_line,
            recording.calls if recording else 0,
            behind=behind,
            source_id=recording.source_id if recording else 0,
        )


class Follower:
    """Follows paths, stepped by a Scheduler (auditor.scheduler.Task) until it stops, or until
    every input has ended (only a pipe ends): each step is one round over every input."""

    def __init__(
        self,
        paths: Sequence[str],
        *,
        pipeline: Pipeline,
        recorder: Recorder,
        fmt: str | None,
        rescan: bool = False,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        for path in paths:
            if path != "-" and os.path.isdir(path):
                raise SourceError(f"{path}: is a directory; --follow takes log files (name them)")
        self.paths = list(dict.fromkeys(paths))
        self.pipeline = pipeline
        """What the lines read are audited with: the prefilter, the configuration, the auditor
        (swapped whole by `swap`)."""
        self.recorder = recorder
        """Records the run: every input's batches go through it (and its hook for new rows)."""
        self.store: FindingStore = recorder.store
        self.fmt = fmt
        self.say = say
        self.stopped = False
        """True once stop() was called (by a signal)."""
        self._executor: Executor | None = None
        """Reads the generations caught up on at start (a large one in ranges by its workers)."""
        self._rescan = set(self.paths) if rescan else set()
        self._current: dict[str, Tail | None] = dict.fromkeys(self.paths)
        self._draining: list[Tail] = []
        self._started: list[Tail] = []
        self._waiting: set[str] = set()
        self._stdin_opened = False
        self._budget = COMMIT_SECONDS
        """How long one input is read in this round before what was read is committed."""

    def stop(self) -> None:
        """Finish the current round (what was read is committed); no other starts."""
        self.stopped = True

    def swap(self, pipeline: Pipeline) -> None:
        """Audit with `pipeline` from the next round on (the lines read so far stay as audited)."""
        self.pipeline = pipeline

    def begin(self) -> None:
        """Catch up on the generations of the paths rotated away while no follower ran."""
        self._executor = Executor(self.pipeline)
        for path in self.paths:
            if path != "-":
                self._rotated_while_stopped(path)

    def step(self, deadline: float) -> bool:
        """One round over every input, each read for up to `deadline - now` (see poll)."""
        return self.poll(max(0.0, deadline - time.monotonic()))

    @property
    def ongoing(self) -> bool:
        """Files may always grow; stdin gives more until its writer closes it."""
        return any(p != "-" for p in self.paths) or not self._stdin_opened or self._current["-"] is not None

    def due(self) -> float | None:
        return None

    def descriptors(self) -> list[int]:
        return []  # files are looked at every round, not waited on

    def finish(self, clean: bool) -> None:
        """Close every input (recording where the content of those read to their end ends) and
        add what each gave to the run."""
        try:
            for tail in self._live():
                self._retire(tail)
            if self._executor is not None:
                self._executor.close()
        finally:
            summary = self.recorder.summary
            for tail in self._started:
                assert tail.log is not None and tail.recording is not None
                summary.inputs.append(tail.summary(tail.log))
                summary.source_ids.append(tail.recording.source_id)

    def poll(self, budget: float = COMMIT_SECONDS) -> bool:
        """One round over every input, each read for up to `budget` seconds before what was read
        of it is committed; True when any of them gave data."""
        self._budget = budget
        busy = False
        for path in self.paths:
            if self.stopped:
                break
            busy |= self._poll_path(path)
        now = time.monotonic()
        for tail in list(self._draining):
            if self.stopped:
                break
            if self._read(tail):
                tail.quiet_since, busy = now, True
            elif now - tail.quiet_since >= DRAIN_SECONDS:
                self._draining.remove(tail)
                self._retire(tail)
        return busy

    def _poll_path(self, path: str) -> bool:
        tail = self._current[path]
        if path == "-":
            if tail is None and not self._stdin_opened:
                tail = self._current[path] = self._open_stdin()
            if tail is None:
                return False
            busy = self._read(tail)
            if tail.stream.ended and not tail.stream.pending:
                self._current[path] = None
                self._retire(tail)
            return busy
        try:
            st: os.stat_result | None = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise SourceError(f"{path}: cannot open ({e.strerror})") from None
        if tail is None:
            if st is None:
                if path not in self._waiting:
                    self._waiting.add(path)
                    self.say(f"{path}: no such file yet; waiting for it")
                return False
            tail = self._current[path] = self._open(path)
            if tail is None:
                return False
        elif st is not None and (st.st_dev, st.st_ino) != tail.ident:
            self._drain(tail)
            self.say(f"{path}: rotated; the old file was read to line {tail.line}, reading the new one")
            tail.ended_by = "rotation"
            tail.quiet_since = time.monotonic()
            self._draining.append(tail)
            self._current[path] = None
            self._missed_generations(path, tail.seen_at)
            tail = self._current[path] = self._open(path)
            if tail is None:
                return True
        elif self._truncated(tail):
            self.say(f"{path}: truncated after line {tail.line}; reading it again from the top as a new input")
            tail.ended_by = "truncation"
            self._current[path] = None
            self._retire(tail)
            self._missed_generations(path, tail.seen_at)  # copytruncate: the copy holds the lines not read yet
            tail = self._current[path] = self._open(path)
            if tail is None:
                return True
        elif st is not None:
            tail.seen_at = time.time()
        return self._read(tail)

    def _rotated_while_stopped(self, path: str) -> None:
        """At start, read what the generations of `path` (named as in `_generations`) hold that no
        run read: a generation known by its first bytes, from its checkpoint when that is short of
        its end; one no run read, whole, when it is newer than one read as `path` (older ones are
        from before it was followed, or audited by hand) or, with none, when written since `path`
        was last read. That holds whatever this process or an earlier one stopped in the middle of.

        The end of a compressed generation is known from gzip's trailer; for a bzip2, xz or zstd
        one, from where a run last saw the content it starts like end, when that was after its
        last write (FindingStore.saw_end). Generations that have settled (no write for
        SETTLED_SECONDS) are audited here and now as `logs` audits them, to their last line; the
        others are followed like any rotated file, for their writer's last lines. A compressed one
        that gzip is still writing next to its plain original is left: the original is read."""
        last = self.store.last_read(path)
        if last is None:
            return
        _checkpoint, when = last
        why = "rotated while no follower ran"
        found = [self._look(candidate, st) for candidate, st in self._generations(path)]
        last_commit = when.timestamp() - COMMIT_SECONDS - POLL_SECONDS
        mine = self.store.read_as(path)
        read_here = [g.mtime for g in found if g.known is not None and g.known.source_id in mine]
        since = min(read_here) if read_here else last_commit
        settled: list[str] = []
        for g in found:
            if g.error:
                if g.mtime >= since:
                    self.say(f"{g.path}: {why}, but {g.error}")
                continue
            if not _may_hold_unread(g, since):
                continue
            if g.compression != "plain" and not g.quiet and _plain_original(g.path):
                continue
            if g.quiet or g.compression != "plain":
                settled.append(g.path)
            else:
                self._follow_rotated(g.path, why)
        for candidate in settled:
            self.say(f"{candidate}: {why}; reading it too")
        if settled:
            unread = self.recorder.summary.unread
            done = len(unread)
            assert self._executor is not None
            catch_up(settled, executor=self._executor, recorder=self.recorder, fmt=self.fmt, stopping=lambda: self.stopped)
            for note in unread[done:]:
                self.say(note)

    def _missed_generations(self, path: str, since: float) -> None:
        """Read the plain generations of `path` written since `since` (the last look at it), which
        were rotated away between two looks (rotations less than POLL_SECONDS apart). Each is
        read by its checkpoint, so a file read before adds nothing, and kept open like any
        rotated file for its writer's last lines."""
        for candidate, st in self._generations(path):
            if st.st_mtime >= since - 1:
                try:
                    with open(candidate, "rb") as f:
                        if compression_of(f.read(FINGERPRINT_BYTES)) != "plain":
                            continue
                except OSError:
                    continue
                self._follow_rotated(candidate, f"rotated away between two looks at {path}")

    def _generations(self, path: str) -> Iterator[tuple[str, os.stat_result]]:
        """The files rotated away from `path`: in its directory, named after it (`access.log.1`,
        `access.log-20240715`, `access.log.2.gz`; not `access.log.bak`), regular, and not the file
        the path names now (through a link to a dated file, that file) nor one followed already."""
        where, base = os.path.split(path)
        try:
            names = sorted(os.listdir(where or "."))
        except OSError:
            return
        followed = {t.ident for t in self._live()}
        try:
            now = os.stat(path)
            followed.add((now.st_dev, now.st_ino))
        except OSError:
            pass
        for name in names:
            if not (name.startswith(base) and _GENERATION.fullmatch(name, len(base))):
                continue
            candidate = os.path.join(where, name)
            try:
                st = os.stat(candidate, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in followed:
                yield candidate, st

    def _look(self, candidate: str, st: os.stat_result) -> _Generation:
        """What a generation is: its compression, the checkpoint of the input it starts like, or
        why it cannot be read."""
        quiet = time.time() - st.st_mtime >= SETTLED_SECONDS
        try:
            with open(candidate, "rb") as f:
                head = f.read(FINGERPRINT_BYTES)
                kind = compression_of(head)
                if kind == "plain":
                    return _Generation(
                        candidate, st.st_mtime, st.st_size, kind, self.store.known(_Head(candidate, head)), quiet, complete=_complete(f, st.st_size)
                    )
        except OSError as e:
            why = f"cannot be read ({e.strerror}); let this user read it and start again"
            return _Generation(candidate, st.st_mtime, st.st_size, "plain", None, quiet, error=why)
        try:
            log = LogFile.open(candidate, self.pipeline.needles, self.fmt)
        except SourceError as e:
            return _Generation(candidate, st.st_mtime, st.st_size, kind, None, quiet, error=str(e).removeprefix(f"{candidate}: "))
        try:
            known = self.store.known(log)
        finally:
            log.close()
        seen = self.store.seen_end(known.source_id) if known is not None else None
        end = (seen[0], seen[1].timestamp()) if seen is not None else None
        return _Generation(candidate, st.st_mtime, st.st_size, kind, known, quiet, end=end)

    def _follow_rotated(self, candidate: str, why: str) -> None:
        """Read a generation like a file just rotated away: to its end, then kept open for a while."""
        try:
            tail = self._open(candidate)
        except SourceError:
            return
        if tail is not None:
            tail.ended_by, tail.found, tail.quiet_since = "rotation", True, time.monotonic()
            self._draining.append(tail)
            self.say(f"{candidate}: {why}; reading it too")

    def _open(self, path: str) -> Tail | None:
        check_name(path)
        try:
            # Not blocking: opening a FIFO with no writer would wait forever, deaf to signals.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise SourceError(f"{path}: cannot open ({e.strerror})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SourceError(f"{path}: not a regular file; --follow takes log files (pipe a stream in as `-`)")
        os.set_blocking(fd, True)
        ident = (st.st_dev, st.st_ino)
        holder = next((t for t in self._live() if t.ident == ident), None)
        if holder is not None:  # another name of a file read already (a.log and ./a.log, or a rotated file)
            os.close(fd)
            if path not in self._waiting:
                self._waiting.add(path)
                self.say(f"{path}: the same file as {holder.name}, which is read; read once")
            return None
        self._waiting.discard(path)
        return Tail(path, path, TailStream(fd), ident, seen_at=time.time())

    def _live(self) -> list[Tail]:
        return [*self._draining, *(t for t in self._current.values() if t is not None)]

    def _open_stdin(self) -> Tail:
        self._stdin_opened = True
        fd = 0
        pipe = not stat.S_ISREG(os.fstat(fd).st_mode)
        stream = TailStream(fd, pipe=pipe)
        stream.stopping = lambda: self.stopped
        return Tail("<stdin>", "-", stream, None)

    def _start(self, tail: Tail) -> bool:
        """Open the LogFile once the input has a complete line, and find where to resume."""
        if not tail.stream.ready():
            return False
        kind = compression_of(tail.stream.pending)
        if kind != "plain":
            raise SourceError(f"{tail.name}: {kind}-compressed; --follow reads plain log files (audit it without --follow)")
        tail.stream.blocking = True  # a pipe's bytes up to the checkpoint may not all be there yet
        try:
            known = self.pipeline.source(tail.path)  # its format and field map, when the config gives them
            # A file (not a pipe) is identified by its bytes on disk, as `logs` identifies it: a
            # line the writer has not finished is not released yet, but `logs` took it into the
            # file's fingerprint. A line's parts wait for its last part across rounds.
            on_disk = None if tail.stream.pipe else os.pread(tail.stream.fd, FINGERPRINT_BYTES, 0)
            again = tail.log.stats if tail.reopen and tail.log is not None else None  # the same input, counted on
            log = LogFile(
                tail.name,
                tail.stream,  # type: ignore[arg-type]  # a TailStream, read as IO[bytes] is
                "plain",
                self.pipeline.needles,
                self.fmt or known.format or None,
                fields=known.field_map,
                following=not tail.stream.pipe,
                on_disk=on_disk,
                stats=again,
            )
            if log.format is not None and log.format.name == vercel.NAME and log.prefix.lstrip()[:1] == b"[":
                raise SourceError(f"{tail.name}: a JSON array is read whole; audit it without --follow")
            rescan = tail.path in self._rescan
            self._rescan.discard(tail.path)
            recording = self.recorder.open(log, rescan=rescan)
            checkpoint = recording.start
            if not recording.resumed:
                # It ends before the checkpoint it starts like: an earlier copy (the copy of a
                # copytruncated file read further since), with nothing new in it.
                raise SourceError(
                    f"{tail.name}: nothing new: it starts like an input audited up to line {checkpoint.line} "
                    "and ends before that (an earlier, shorter copy of it); follow the file it was copied from"
                )
            twin = next((t for t in self._live() if t is not tail and t.recording and t.recording.source_id == checkpoint.source_id), None)
            if twin is not None:
                raise SourceError(f"{tail.name} starts with the same bytes as {twin.name}: it is the same input; follow one of them")
        finally:
            tail.stream.blocking = False
        if tail.reopen:  # opened again: the same input in the summary, counted on
            assert tail.log is not None
            assert tail.recording is not None
            tail.reopen = False
            recording.calls = tail.recording.calls
            tail.log, tail.recording, tail.line = log, recording, checkpoint.line
            return True
        tail.log, tail.recording, tail.resumed_at_line, tail.line = log, recording, checkpoint.line, checkpoint.line
        self._started.append(tail)
        kind = log.format.name if log.format else "format not known yet"
        where = f"after line {checkpoint.line} (audited before)" if checkpoint.line else "from its first line"
        self.say(f"{tail.name} ({kind}): {'reading' if tail.found else 'following'}, {where}")
        return True

    def _read(self, tail: Tail) -> bool:
        """Read and store the complete lines the input has now (one round); True when there were any."""
        if self.stopped:
            return False  # what was read is committed; nothing more is started
        try:
            if (tail.log is None or tail.reopen) and not self._start(tail):
                return False
        except SourceError as e:
            if not tail.found:
                raise
            self.say(str(e).removesuffix("; follow the file it was copied from"))  # not a generation to read after all
            tail.quiet_since = -math.inf
            return False
        assert tail.log is not None and tail.recording is not None
        tail.stream.deadline = time.monotonic() + self._budget
        pipeline = self.pipeline
        if tail.log.needles is not pipeline.needles:
            tail.log.use_needles(pipeline.needles)  # swapped since the last round
        source = pipeline.source(tail.path)
        got = False
        for batch in tail.log.batches():
            if not tail.stream.pipe and self._truncated(tail):
                # Truncated and written again since this round looked: what was read is the new
                # content, read from the old offset. Not stored; the next round reads it from the top.
                return got
            try:
                tail.recording.add(pipeline.tally(batch.events, source), batch.offset, batch.line, tail.log.stats)
            except CheckpointMoved as e:
                self._taken_over(tail, e.checkpoint)
                return True
            tail.line = batch.line
            got = True
        return got

    def _taken_over(self, tail: Tail, now: Checkpoint) -> None:
        """Another process stored lines of this input (`logs` run by hand on a followed file, two
        followers): the batch just read was not stored. A file is opened again from the top, to
        resume where the store says; a pipe cannot go back, and is not read further."""
        assert tail.log is not None
        where = f"it got to line {now.line}" if now.line else "it audits it again from the start"
        if tail.stream.pipe:
            raise SourceError(
                f"{tail.name}: another region-auditor process is auditing the same input into this database "
                f"({where}); stopped reading it, nothing was counted twice"
            )
        self.say(
            f"{tail.name}: another region-auditor process is auditing it into this database too ({where}); "
            "going on from where the database says, nothing counted twice"
        )
        tail.reopen = True
        tail.stream.seek(0)

    def _drain(self, tail: Tail) -> None:
        """Read a rotated file to its (current) end."""
        while not self.stopped and self._read(tail):
            pass

    def _truncated(self, tail: Tail) -> bool:
        """The file is shorter than what was read, or no longer starts with what it started with."""
        if os.fstat(tail.stream.fd).st_size < tail.stream.taken:
            return True
        prefix = tail.log.prefix if tail.log is not None else b""
        return bool(prefix) and os.pread(tail.stream.fd, len(prefix), 0) != prefix

    def _retire(self, tail: Tail) -> None:
        """Close a file no longer followed, recording where its content ended when it was read to
        its end (see FindingStore.saw_end)."""
        if tail.ident is not None and tail.recording is not None and tail.stream.fd >= 0 and tail.ended_by != "truncation":
            at = dt.datetime.now(dt.UTC)  # what was written before this, the size below holds
            if os.fstat(tail.stream.fd).st_size == tail.recording.checkpoint.offset:
                tail.recording.saw_end(at)
        tail.close()


@dataclass(frozen=True)
class _Generation:
    """A file rotated away from a followed path, as found when the follower starts."""

    path: str
    mtime: float
    size: int
    compression: str
    known: Checkpoint | None
    """The checkpoint of the input it starts like; None when no run read it."""
    quiet: bool
    """No write for SETTLED_SECONDS."""
    complete: int = 0
    """Bytes up to its last newline (plain ones)."""
    end: tuple[int, float] | None = None
    """Where and when (a timestamp) a run saw the content it starts like end (FindingStore.seen_end)."""
    error: str = ""
    """Why it cannot be read."""


def _may_hold_unread(g: _Generation, since: float) -> bool:
    """True when a generation found at start may hold lines no run read: one no run read, when
    written since `since`; one read before, when its checkpoint is short of its end. A bzip2, xz
    or zstd one keeps no size: its content is known to end at the checkpoint when a run saw it
    end there (FindingStore.saw_end) after its last write (logrotate keeps that time)."""
    if g.known is None:
        return g.mtime >= since
    if g.compression == "plain":
        return g.known.offset < (g.size if g.quiet else g.complete)
    if g.compression == "gzip":
        return not ends_by(g.path, g.known.offset)
    return g.end is None or g.end[0] != g.known.offset or g.mtime >= g.end[1] - END_MARGIN_SECONDS


END_MARGIN_SECONDS = 2.0
"""How much earlier than a run saw an input end its last write must be, for a compressed copy of
it to be taken as ending there too: a timestamp can lag the write (coarse file times)."""


def _plain_original(path: str) -> bool:
    """True when the plain file `path` was compressed from (`access.log.1` for `access.log.1.gz`) is still there."""
    return os.path.isfile(os.path.splitext(path)[0])


def _complete(f: Any, size: int) -> int:
    """How many bytes of an open file end with its last newline (an unterminated last line is
    left, as `logs` leaves one of a file being written)."""
    f.seek(max(0, size - 65536))
    end: bytes = f.read()
    return size - len(end) + end.rfind(b"\n") + 1


@dataclass
class _Head(Prefixed):
    """A file known by its first bytes, for a checkpoint lookup."""

    name: str
    prefix: bytes
