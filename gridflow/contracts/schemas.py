"""JSON Schema files of every topic's contract, generated from the record types (``docs/schemas/``).

gridflow contracts schemas docs/schemas    # write them
gridflow contracts check docs/schemas      # fail when a file and the code disagree (CI)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gridflow.contracts.core import Contract

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(contract: Contract) -> dict[str, Any]:
    """The JSON Schema (2020-12) of one contract's record."""
    schema = contract.adapter.json_schema(mode="validation")
    schema = {
        "$schema": DRAFT,
        "$id": f"gridflow/{contract.name}/v{contract.version}",
        "title": f"gridflow {contract.name} record, version {contract.version}",
        "description": contract.description,
        **{k: v for k, v in schema.items() if k != "title"},
    }
    schema["x-gridflow"] = {
        "topic_setting": f"topics.{contract.topic}",
        "kafka_key": contract.key_field,
        "schema_version": contract.version,
    }
    if contract.example:
        schema["examples"] = [dict(contract.example)]
    return schema


def rendered(contracts: dict[str, Contract]) -> dict[str, str]:
    """File name -> text of every schema file."""
    return {
        f"{name}.schema.json": json.dumps(json_schema(c), indent=2, sort_keys=True) + "\n"
        for name, c in sorted(contracts.items())
    }


def write(contracts: dict[str, Contract], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered(contracts).items():
        path = folder / name
        path.write_text(text)
        written.append(path)
    return written


def drift(contracts: dict[str, Contract], folder: Path) -> list[str]:
    """What differs between the schema files in ``folder`` and the code ([] when they agree)."""
    expected = rendered(contracts)
    problems = []
    for name, text in expected.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text() != text:
            problems.append(f"{path}: differs from the {name.split('.')[0]} contract in gridflow/contracts")
    for path in sorted(folder.glob("*.schema.json")):
        if path.name not in expected:
            problems.append(f"{path}: no such contract")
    return problems
