"""The meter registry: which (household, meter) pairs exist. A CSV file with a header line::

    household_id,meter_id
    h-00001,m-h-00001

Jobs dead-letter readings of meters that are not in it (reason ``unknown meter``); without a registry
file every meter is accepted.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from gridflow.contracts import ID as _ID

HEADER = ["household_id", "meter_id"]


class RegistryError(ValueError):
    """The registry file is missing or malformed; the message names the line and field."""


def load_registry(path: str | Path) -> frozenset[tuple[str, str]]:
    """Read a registry file; raises :class:`RegistryError` naming the line and field of a bad row."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RegistryError(f"readings.registry_file: cannot read {path}: {exc.strerror}") from None
    rows = list(csv.reader(lines))
    if not rows or [c.strip() for c in rows[0]] != HEADER:
        raise RegistryError(f"{path}: line 1 must be the header 'household_id,meter_id'")
    meters = set()
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise RegistryError(f"{path}: line {number}: expected 2 fields household_id,meter_id, got {len(row)}")
        for name, value in zip(HEADER, row):
            if not _ID.match(value.strip()):
                raise RegistryError(f"{path}: line {number}: {name} {value!r} must be 1-64 of letters, digits, '._:-'")
        meters.add((row[0].strip(), row[1].strip()))
    return frozenset(meters)


def write_registry(path: str | Path, meters: Iterable[tuple[str, str]]) -> Path:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        writer.writerows(sorted(meters))
    return path
