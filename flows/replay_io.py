"""``pulse replay`` from files: JSONL event files as a bounded source, read at full speed.

Each file is one source partition (``replay:<file name>/0``), read in order; a record's
offset is its line number (1-based), so a profile's position per source tells a re-run
of the same file from new lines, as it does for Kafka partitions, and replaying a file
twice changes nothing. After every batch a heartbeat carries no wall clock: the
segment clock and model timers follow the file's own event time, so transitions caused
by time happen at the same instants as they did live. The last batch ends with a final
heartbeat.

Progress (lines and bytes read, events/s) is logged every ``progress_s`` seconds.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.records import RawRecord, Tick
from flows.shutdown import stop_requested

log = logging.getLogger(__name__)


def replay_source_name(path: Path) -> str:
    return f"replay:{path.name}/0"


class _FilePartition(StatefulSourcePartition[RawRecord, int]):
    def __init__(self, path: Path, batch_size: int, progress_s: float, resume: int | None) -> None:
        self._path = path
        self._source = replay_source_name(path)
        self._file = path.open("rb")
        self._size = max(1, path.stat().st_size)
        self._batch_size = batch_size
        self._line = 0
        for _ in range(resume or 0):  # lines already emitted before a restart
            if not self._file.readline():
                break
            self._line += 1
        self._progress_s = progress_s
        self._started = self._last_log = time.monotonic()
        self._started_line = self._line
        self._done = False

    def next_batch(self) -> list[RawRecord | Tick]:
        if self._done or stop_requested():
            raise StopIteration
        now_ms = int(time.time() * 1000)
        out: list[RawRecord | Tick] = []
        readline = self._file.readline
        while len(out) < self._batch_size:
            line = readline()
            if not line:
                self._done = True
                break
            self._line += 1
            if line.strip():
                out.append(RawRecord(line.rstrip(b"\r\n"), None, self._source, self._line, now_ms))
        self._progress(final=self._done)
        out.append(Tick(self._source, None, final=self._done))
        return out

    def _progress(self, final: bool) -> None:
        now = time.monotonic()
        if not final and now - self._last_log < self._progress_s:
            return
        self._last_log = now
        rate = (self._line - self._started_line) / max(1e-9, now - self._started)
        done = 100.0 * self._file.tell() / self._size
        log.info("replay %s: %d lines (%.0f%%), %.0f lines/s%s", self._path.name, self._line, done, rate,
                 " - done" if final else "")

    def snapshot(self) -> int:
        return self._line

    def close(self) -> None:
        self._file.close()


class JsonlReplaySource(FixedPartitionedSource[RawRecord, int]):
    """JSONL files of events (one event per line), each a partition read in line order."""

    def __init__(self, paths: list[str | Path], *, batch_size: int = 1000, progress_s: float = 2.0) -> None:
        self._paths = [Path(p) for p in paths]
        names = [p.name for p in self._paths]
        if len(set(names)) != len(names):
            raise ValueError(f"replay files need distinct names (their name is the source): {names}")
        self._batch_size = batch_size
        self._progress_s = progress_s

    def list_parts(self) -> list[str]:
        return [p.name for p in self._paths]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        path = next(p for p in self._paths if p.name == for_part)
        return _FilePartition(path, self._batch_size, self._progress_s, resume_state)
