"""The ledger of imported files: one record per file on ``topics.imports`` (contract ``imported_file``, key:
the file's SHA-256), so the same export is not sent onto the readings topic twice."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from gridflow import kafka_io
from gridflow.contracts import CONTRACTS, ContractError, encode
from gridflow.settings import Settings

CONTRACT = CONTRACTS["imported_file"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def imported(settings: Settings) -> dict[str, dict[str, Any]]:
    """The files imported so far, by SHA-256 (the newest record of each); records breaking the contract are
    left out (they cannot vouch for a file)."""
    kafka_io.create_topics(settings, [settings.topics.imports])
    entries: dict[str, dict[str, Any]] = {}
    for _, value in kafka_io.read_records(settings, settings.topics.imports, idle_timeout_s=1.0):
        try:
            entry = CONTRACT.decode(value)
        except ContractError:
            continue
        entries[entry["file_sha256"]] = entry
    return entries


def record(settings: Settings, entry: Mapping[str, Any]) -> None:
    """Add ``entry`` (an ``imported_file`` record) to the ledger; checked against its contract first."""
    CONTRACT.decode(encode(entry), entry["file_sha256"])
    kafka_io.produce(settings, settings.topics.imports, [(entry["file_sha256"], encode(entry))])
