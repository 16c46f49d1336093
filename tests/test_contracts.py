"""The record contracts: the schema files match the code, an independent JSON Schema validator agrees with
the contracts on good and broken records, and every error names the field."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import jsonschema
import pytest

from gridflow.contracts import CONTRACTS, ContractError, dead_letter, encode, record_key
from gridflow.contracts.core import READING_VERSIONS, SCHEMA_VERSION
from gridflow.contracts.records import ReadingVersion
from gridflow.contracts.schemas import drift, json_schema, rendered
from gridflow.readings import ReadingBounds, validate_reading

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def test_the_schema_files_are_the_ones_the_code_generates():
    assert drift(CONTRACTS, SCHEMAS) == []


def test_drift_is_found(tmp_path):
    for name, text in rendered(CONTRACTS).items():
        (tmp_path / name).write_text(text)
    assert drift(CONTRACTS, tmp_path) == []
    schema = json.loads((tmp_path / "alert.schema.json").read_text())
    schema["required"].remove("action")
    (tmp_path / "alert.schema.json").write_text(json.dumps(schema))
    (tmp_path / "feature.schema.json").unlink()
    (tmp_path / "gone.schema.json").write_text("{}")
    problems = drift(CONTRACTS, tmp_path)
    assert len(problems) == 3
    assert any("alert.schema.json: differs" in p for p in problems)
    assert any("feature.schema.json: missing" in p for p in problems)
    assert any("gone.schema.json: no such contract" in p for p in problems)


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_the_example_keeps_its_contract_and_its_json_schema(name):
    contract = CONTRACTS[name]
    contract.check_written(contract.example)
    jsonschema.Draft202012Validator(json_schema(contract)).validate(contract.example)
    key = record_key(encode(contract.example))
    assert contract.decode(encode(contract.example), key) == contract.example


def _broken(example: dict) -> list[tuple[str, dict]]:
    """(field, record) pairs: each required field missing, each field given a value of another type."""
    out = []
    for field, value in example.items():
        if field == "v":
            out.append(("v", {**example, "v": 99}))
            continue
        out.append((field, {k: v for k, v in example.items() if k != field}))
        wrong = [1] if isinstance(value, str) else "1"
        out.append((field, {**example, field: wrong}))
    return out


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_an_independent_validator_agrees_on_every_broken_record(name):
    """jsonschema (a reference implementation of JSON Schema) and the contract accept and reject the same
    records; each rejection names the broken field."""
    contract = CONTRACTS[name]
    validator = jsonschema.Draft202012Validator(json_schema(contract))
    schema_required = set(json_schema(contract).get("required", []))
    for field, record in _broken(dict(contract.example)):
        reference_ok = validator.is_valid(record)
        try:
            contract.decode(encode(record))
            ok = True
        except ContractError as error:
            ok = False
            assert error.field.split(".")[0] == field, (record, error)
            assert error.reason
        assert ok == reference_ok, (name, field, record)
        if field in schema_required and field not in record:
            assert not ok, f"{name}: {field} is required"


def test_errors_name_the_field_and_the_allowed_values():
    feature = CONTRACTS["feature"]
    good = dict(feature.example)
    with pytest.raises(ContractError) as missing:
        feature.decode(encode({k: v for k, v in good.items() if k != "mean_w"}))
    assert (missing.value.field, missing.value.reason) == ("mean_w", "is required")
    with pytest.raises(ContractError) as typed:
        feature.decode(encode({**good, "n_readings": "6"}))
    assert typed.value.field == "n_readings" and "'6'" in typed.value.reason
    with pytest.raises(ContractError) as version:
        feature.decode(encode({**good, "v": 3}))
    assert version.value.field == "v" and "supported: 1" in version.value.reason
    with pytest.raises(ContractError) as key:
        feature.decode(encode(good), key="h-other")
    assert key.value.field == "household_id" and "'h-other'" in key.value.reason
    with pytest.raises(ContractError) as not_json:
        feature.decode("{oops")
    assert not_json.value.field == "" and not_json.value.reason.startswith("not JSON")
    with pytest.raises(ContractError) as nested:
        CONTRACTS["schedule"].decode(encode({**CONTRACTS["schedule"].example, "appliances": [{"name": "washer"}]}))
    assert nested.value.field == "appliances.0.power_w"
    with pytest.raises(ContractError) as per_mwh:
        CONTRACTS["price"].decode(encode({**CONTRACTS["price"].example, "price_per_mwh": 92.0}))
    assert per_mwh.value.field == "price_per_mwh" and "allowed fields: " in per_mwh.value.reason


def test_consumers_tolerate_fields_a_newer_producer_added_but_producers_may_not_write_them():
    alert = CONTRACTS["alert"]
    newer = {**alert.example, "confidence": 0.9}
    assert alert.decode(encode(newer))["confidence"] == 0.9
    with pytest.raises(ContractError) as extra:
        alert.check_written(newer)
    assert extra.value.field == "confidence"


def test_a_record_without_a_version_is_version_1_and_without_a_key_is_accepted():
    profile = {k: v for k, v in CONTRACTS["profile"].example.items() if k != "v"}
    assert CONTRACTS["profile"].decode(encode(profile), None) == profile
    assert CONTRACTS["profile"].decode(encode(profile), "") == profile


READINGS = [
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 500.0},
    {
        "v": 1,
        "household_id": "h-1",
        "meter_id": "m-1",
        "ts_ms": 1_700_000_000_000,
        "power_w": 5,
        "voltage_v": 230.1,
        "current_a": 2.2,
        "energy_kwh": 12.5,
        "channels_w": {"kitchen": 12.0},
    },
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000},
    {"household_id": "h 1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 1.0},
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": "1700000000000", "power_w": 1.0},
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": True},
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 1.0, "v": 3},
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 1.0, "v": 2},
    {"v": 2, "household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "energy_kwh": 1532.118},
    {"v": 2, "household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 1.0, "interval_s": 900},
    {"v": 2, "household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "energy_kwh": -1.0},
    {"v": 2, "household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "energy_kwh": "12"},
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 1.0, "interval_s": 0},
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 1.0, "interval_s": 86_401},
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 1.0, "interval_s": 900.0},
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 1.0, "interval_s": True},
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 1.0, "oops": 1},
    {"household_id": "h-1", "meter_id": 7, "ts_ms": 1_700_000_000_000, "power_w": 1.0},
    {"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "power_w": 1.0, "channels_w": []},
]


@pytest.mark.parametrize("reading", READINGS)
def test_the_readings_fast_validator_keeps_the_reading_contract(reading):
    """The bridge's hand-written validator (``validate_reading``, also physical bounds) rejects at least what
    the contract rejects, on the same field."""
    try:
        CONTRACTS["reading"].decode(encode(reading))
        contract_error = None
    except ContractError as error:
        contract_error = error
    try:
        validate_reading(reading, ReadingBounds())
        fast_error = None
    except ContractError as error:
        fast_error = error
    if contract_error is None:
        assert fast_error is None, fast_error
    else:
        assert fast_error is not None and fast_error.field == contract_error.field, (contract_error, fast_error)


REGISTER_ONLY = {"v": 2, "household_id": "h-1", "meter_id": "m-1", "ts_ms": 1_700_000_000_000, "energy_kwh": 1532.118}


@pytest.mark.parametrize(
    "reading",
    [
        REGISTER_ONLY,
        {**REGISTER_ONLY, "v": 1},
        {k: v for k, v in REGISTER_ONLY.items() if k != "v"},
        {**REGISTER_ONLY, "power_w": 512.3, "interval_s": 900},
        {
            "v": 2,
            "household_id": "h-1",
            "meter_id": "m-1",
            "ts_ms": 1_700_000_000_000,
            "power_w": 5.0,
            "interval_s": 900,
        },
    ],
)
def test_register_only_and_interval_readings_keep_the_reading_contract(reading):
    contract = CONTRACTS["reading"]
    assert contract.decode(encode(reading), "h-1") == reading
    jsonschema.Draft202012Validator(json_schema(contract)).validate(reading)
    validate_reading(reading, ReadingBounds())


def test_a_reading_needs_power_or_an_energy_register_and_a_version_it_knows():
    contract = CONTRACTS["reading"]
    validator = jsonschema.Draft202012Validator(json_schema(contract))
    neither = {k: v for k, v in REGISTER_ONLY.items() if k != "energy_kwh"}
    with pytest.raises(ContractError) as missing:
        contract.decode(encode(neither))
    assert (missing.value.field, missing.value.reason) == ("power_w", "is required (or an energy_kwh register)")
    assert not validator.is_valid(neither)
    with pytest.raises(ContractError) as version:
        contract.decode(encode({**REGISTER_ONLY, "v": 3}))
    assert (version.value.field, version.value.reason) == (
        "v",
        "unsupported schema version 3 of the reading record; supported: 1, 2",
    )
    assert not validator.is_valid({**REGISTER_ONLY, "v": 3})
    assert typing.get_args(ReadingVersion) == READING_VERSIONS == contract.versions
    assert contract.version == 2 and json_schema(contract)["$id"] == "gridflow/reading/v2"
    others = [c for c in CONTRACTS.values() if c.name != "reading"]
    assert {c.versions for c in others} == {(SCHEMA_VERSION,)} and SCHEMA_VERSION == 1


def test_a_dead_letter_keeps_its_contract_and_its_key():
    letter = dead_letter('{"household_id": "h-5", "mean_w": "x"}', ContractError("mean_w", "bad"), "kafka:x")
    record = CONTRACTS["dead_letter"].decode(letter)
    assert (record["field"], record["reason"], record["source"], record["v"]) == ("mean_w", "bad", "kafka:x", 1)
    assert record_key(letter) == "h-5"
