"""The Kafka consumer thread that feeds a :class:`~gridflow.web.store.PageStore` from the result topics.

Every page server reads every record (a consumer group of its own, from the earliest offset, nothing
committed): the store is rebuilt from the topics on each start and several servers can run side by side.
Records that are not JSON (or nest deeper than orjson's 1,024 levels) are counted as ``undecodable`` and
skipped; a record whose Kafka key names another household than its ``household_id`` is counted as
``misaddressed`` and never shown on either page. Broker errors are logged and retried by the client.
``consumed``, the two counters and ``last_record_ms`` are reported by ``/healthz``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import orjson
from confluent_kafka import Consumer, KafkaError

from gridflow.settings import Settings
from gridflow.web.store import KINDS, PageStore

log = logging.getLogger(__name__)


def topic_kinds(settings: Settings) -> dict[str, str]:
    """Topic name -> record kind of the store."""
    return {getattr(settings.topics, kind): kind for kind in KINDS}


class TopicFeed(threading.Thread):
    def __init__(self, settings: Settings, store: PageStore):
        super().__init__(name="gridflow-web-feed", daemon=True)
        self.store = store
        self.kinds = topic_kinds(settings)
        self.consumed = 0
        self.undecodable = 0
        self.misaddressed = 0
        self.last_record_ms: int | None = None
        self._stopping = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap_servers,
                **settings.kafka.client,
                "group.id": f"{settings.kafka.group_id_prefix}.web.{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "topic.metadata.refresh.interval.ms": 5000,
            }
        )

    def run(self) -> None:
        self._consumer.subscribe(list(self.kinds))
        try:
            while not self._stopping.is_set():
                for record in self._consumer.consume(num_messages=1000, timeout=0.3):
                    self._take(record)
        finally:
            self._consumer.close()

    def _take(self, record) -> None:
        error = record.error()
        if error is not None:
            if error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                log.warning("Kafka consumer error: %s", error)
            return
        self.consumed += 1
        self.last_record_ms = int(time.time() * 1000)
        try:
            value = orjson.loads(record.value() or b"")
        except orjson.JSONDecodeError:
            self.undecodable += 1
            return
        key, household_id = record.key(), value.get("household_id") if isinstance(value, dict) else None
        if key and household_id is not None and key != str(household_id).encode():
            self.misaddressed += 1
            return
        self.store.add(self.kinds[record.topic()], value)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout_s)
