"""The history writer: the pipeline's output topics -> Parquet files per topic, UTC day and Kafka partition.

Layout under ``history.path`` (a folder, or a URI pyarrow opens, e.g. ``s3://bucket/gridflow``)::

    <topic>/_day=YYYY-MM-DD/part-<partition>-<first offset>-<last offset>.parquet

``<topic>`` is the ``topics.*`` setting's name (``features``, ``alerts``, ...), so a history outlives topic
renames. A record's day is the UTC day of its Kafka timestamp (when it was written). Each row holds the
record's fields plus ``_partition``, ``_offset``, ``_key`` and ``_kafka_ms``.

Exactly once, with the files as the only state: the writer resumes every partition after the highest offset
its files hold, writes each file whole under a temporary name and then moves it into place, and keeps one
contiguous buffer per partition (a new day first writes the old day's file), so what is on disk is always
a gap-free prefix of each partition. A record that is not a JSON object goes to the dead-letter topic.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

FILE = re.compile(r"^part-(\d+)-(\d+)-(\d+)\.parquet$")
DAY_DIR = re.compile(r"^_day=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class HistoryFile:
    topic: str  # the topics.* setting's name
    day: str
    partition: int
    first: int
    last: int
    path: str


def history_root(settings) -> str:
    """``history.path``, or ``<stack.run_dir>/history`` when it is empty (a local folder, expanded)."""
    path = settings.history.path or str(Path(settings.stack.run_dir).expanduser() / "history")
    return path if "://" in path else str(Path(path).expanduser().resolve())


class History:
    """The Parquet files of a history root (local folder or object-store URI)."""

    def __init__(self, root: str):
        from pyarrow import fs

        self.root = root
        if "://" in root:
            self.fs, self.base = fs.FileSystem.from_uri(root)
        else:
            self.fs, self.base = fs.LocalFileSystem(), root
            Path(root).mkdir(parents=True, exist_ok=True)

    def _dir(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts])

    def files(self, topic: str) -> list[HistoryFile]:
        from pyarrow import fs

        found = []
        top = self._dir(topic)
        if self.fs.get_file_info(top).type != fs.FileType.Directory:
            return []
        for info in self.fs.get_file_info(fs.FileSelector(top, recursive=True)):
            parent, name = info.path.rsplit("/", 1)
            day, match = DAY_DIR.match(parent.rsplit("/", 1)[-1]), FILE.match(name)
            if info.type == fs.FileType.File and day and match:
                p, first, last = (int(g) for g in match.groups())
                found.append(HistoryFile(topic, day.group(1), p, first, last, info.path))
        return sorted(found, key=lambda f: (f.partition, f.first, f.last))

    def positions(self, topic: str) -> dict[int, int]:
        """The next offset to write per partition: after the highest one on disk."""
        nxt: dict[int, int] = {}
        for f in self.files(topic):
            nxt[f.partition] = max(nxt.get(f.partition, 0), f.last + 1)
        return nxt

    def write(self, topic: str, day: str, partition: int, rows: list[dict[str, Any]]) -> str:
        """Write ``rows`` (offsets ascending, one partition and day) as one file; returns its path."""
        import pyarrow.parquet as pq

        first, last = rows[0]["_offset"], rows[-1]["_offset"]
        folder = self._dir(topic, f"_day={day}")
        self.fs.create_dir(folder, recursive=True)
        final = f"{folder}/part-{partition:03d}-{first:012d}-{last:012d}.parquet"
        temporary = f"{folder}/.{final.rsplit('/', 1)[1]}.{time.time_ns()}.tmp"
        with self.fs.open_output_stream(temporary) as out:
            pq.write_table(table_of(rows), out, compression="zstd")
        self.fs.move(temporary, final)
        return final

    def drop_days_before(self, topic: str, day: str) -> list[str]:
        """Delete the days before ``day`` (YYYY-MM-DD) of ``topic``; returns the folders removed."""
        from pyarrow import fs

        top = self._dir(topic)
        if self.fs.get_file_info(top).type != fs.FileType.Directory:
            return []
        removed = []
        for info in self.fs.get_file_info(fs.FileSelector(top)):
            match = DAY_DIR.match(info.path.rsplit("/", 1)[-1])
            if info.type == fs.FileType.Directory and match and match.group(1) < day:
                self.fs.delete_dir(info.path)
                removed.append(info.path)
        return removed

    def compact(self, topic: str, before_day: str) -> int:
        """Merge each partition's files of each day before ``before_day`` into one file; returns files merged.
        Crash-safe: the merged file covers the offsets of the ones it replaces, which are deleted after it is
        in place (a leftover that another file covers is removed by :meth:`remove_covered`)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.remove_covered(topic)
        groups: dict[tuple[str, int], list[HistoryFile]] = {}
        for f in self.files(topic):
            if f.day < before_day:
                groups.setdefault((f.day, f.partition), []).append(f)
        merged = 0
        for (day, partition), parts in groups.items():
            if len(parts) < 2:
                continue
            tables = [pq.read_table(self.fs.open_input_file(f.path)) for f in parts]
            table = pa.concat_tables(tables, promote_options="permissive").sort_by("_offset")
            rows = table.to_pylist()
            self.write(topic, day, partition, rows)
            for f in parts:
                self.fs.delete_file(f.path)
            merged += len(parts)
        return merged

    def remove_covered(self, topic: str) -> int:
        """Delete files whose offsets another file of the same partition and day covers (what an interrupted
        compaction leaves); returns how many."""
        files = self.files(topic)
        removed = 0
        for f in files:
            if any(
                o is not f
                and o.partition == f.partition
                and o.day == f.day
                and o.first <= f.first
                and f.last <= o.last
                and (o.first, o.last) != (f.first, f.last)
                for o in files
            ):
                self.fs.delete_file(f.path)
                removed += 1
        return removed


def table_of(rows: list[dict[str, Any]]):
    """An Arrow table of JSON records; a column whose values Arrow cannot type alike is kept as JSON text."""
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        names = list(dict.fromkeys(name for row in rows for name in row))
        columns = {}
        for name in names:
            values = [row.get(name) for row in rows]
            try:
                columns[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                columns[name] = pa.array([None if v is None else orjson.dumps(v).decode() for v in values])
        return pa.table(columns)


@dataclass
class _Buffer:
    day: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


@dataclass
class WriterStats:
    records: int = 0
    files: int = 0
    dead_letters: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


class HistoryWriter:
    """Consumes the configured topics into a :class:`History` (see the module docstring)."""

    def __init__(self, settings, history: History | None = None):
        self.settings = settings
        self.history = history or History(history_root(settings))
        self.names = {getattr(settings.topics, name): name for name in settings.history.topics}
        self.stats = WriterStats()
        self._buffers: dict[tuple[str, int], _Buffer] = {}

    def _consumer(self):
        from confluent_kafka import Consumer

        settings = self.settings
        isolation = "read_committed" if settings.kafka.delivery_guarantee == "exactly-once" else "read_uncommitted"
        return Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap_servers,
                "group.id": f"{settings.kafka.group_id_prefix}-history",
                "enable.auto.commit": False,  # the files are the position
                "isolation.level": isolation,
                "auto.offset.reset": "earliest",
                **settings.kafka.client,
            }
        )

    def run(self, until_caught_up: bool = False, idle_s: float = 3.0, stop=None) -> WriterStats:
        """Write until ``stop`` (a ``threading.Event``) is set or, with ``until_caught_up``, until every
        partition reached the end it had at the start (or nothing arrived for ``idle_s``); flushes on the way
        out. Retention (``history.retention_days``) is applied at the start and every hour."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, Producer, TopicPartition

        from gridflow import kafka_io
        from gridflow.contracts import dead_letter

        settings = self.settings
        kafka_io.create_topics(settings, [*self.names, settings.topics.dead_letter])
        consumer = self._consumer()
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, **settings.kafka.client})
        assigned, ends, starts = [], {}, {}
        for topic, name in self.names.items():
            positions = self.history.positions(name)
            partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
            for p in sorted(partitions):
                assigned.append(TopicPartition(topic, p, positions.get(p, OFFSET_BEGINNING)))
                ends[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                starts[(topic, p)] = positions.get(p, 0)
        consumer.assign(assigned)
        self._retention()
        last_retention = last_message = time.monotonic()
        try:
            while stop is None or not stop.is_set():
                messages = consumer.consume(num_messages=10_000, timeout=0.5)
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise RuntimeError(f"history writer: Kafka error {error}")
                    self._add(message, producer, dead_letter)
                if messages:
                    last_message = time.monotonic()
                self._flush(due_only=True)
                if time.monotonic() - last_retention > 3600:
                    self._retention()
                    last_retention = time.monotonic()
                if until_caught_up:
                    positions = consumer.position([TopicPartition(t, p) for (t, p) in ends])
                    # a partition not fetched from yet has no position (negative): it is where it started
                    behind = [
                        tp
                        for tp in positions
                        if max(tp.offset, starts[(tp.topic, tp.partition)]) < ends[(tp.topic, tp.partition)]
                    ]
                    if not behind or time.monotonic() - last_message > idle_s:
                        break
        finally:
            self._flush(due_only=False)
            producer.flush(30)
            consumer.close()
        return self.stats

    def _add(self, message, producer, dead_letter) -> None:
        name = self.names[message.topic()]
        partition, offset = message.partition(), message.offset()
        kafka_ms = message.timestamp()[1]
        day = datetime.fromtimestamp(kafka_ms / 1000, timezone.utc).strftime("%Y-%m-%d")
        try:
            record = orjson.loads(message.value())
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        except ValueError as error:
            letter = dead_letter(
                message.value() or b"", f"not kept in the history: {error}", f"kafka:{message.topic()}"
            )
            producer.produce(self.settings.topics.dead_letter, letter.encode())
            self.stats.dead_letters += 1
            record = None
        buffer = self._buffers.get((name, partition))
        if buffer is not None and buffer.day != day:  # one day per file, written in offset order
            self._write(name, partition, buffer)
            buffer = None
        if buffer is None:
            buffer = self._buffers[(name, partition)] = _Buffer(day)
        if record is not None:
            key = message.key()
            record.update(
                _partition=partition,
                _offset=offset,
                _key=None if key is None else key.decode("utf-8", "replace"),
                _kafka_ms=kafka_ms,
            )
            buffer.rows.append(record)
            if len(buffer.rows) >= self.settings.history.flush_records:
                self._write(name, partition, buffer)

    def _flush(self, due_only: bool) -> None:
        history = self.settings.history
        now = time.monotonic()
        for (name, partition), buffer in list(self._buffers.items()):
            due = len(buffer.rows) >= history.flush_records or now - buffer.started >= history.flush_s
            if buffer.rows and (due or not due_only):
                self._write(name, partition, buffer)

    def _write(self, name: str, partition: int, buffer: _Buffer) -> None:
        del self._buffers[(name, partition)]
        if not buffer.rows:
            return
        self.history.write(name, buffer.day, partition, buffer.rows)
        self.stats.files += 1
        self.stats.records += len(buffer.rows)
        self.stats.by_topic[name] = self.stats.by_topic.get(name, 0) + len(buffer.rows)

    def _retention(self) -> None:
        days = self.settings.history.retention_days
        if not days:
            return
        first_kept = (datetime.now(timezone.utc) - timedelta(days=days - 1)).strftime("%Y-%m-%d")
        for name in self.names.values():
            self.history.drop_days_before(name, first_kept)
