"""The bridge's routing of one MQTT message, without brokers: hand-worked cases and fuzzing."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gridflow.connectors.routing import MAX_BATCH, household_from_topic, route
from gridflow.readings import ReadingBounds

TEMPLATE = "meters/{household_id}/readings"
BOUNDS = ReadingBounds()


def reading(household="h-1", **change):
    return {
        "v": 1,
        "household_id": household,
        "meter_id": "m-1",
        "ts_ms": 1_768_435_200_000,
        "power_w": 250.0,
        **change,
    }


def test_household_from_topic():
    assert household_from_topic("meters/h-1/readings", TEMPLATE) == "h-1"
    assert household_from_topic("meters//readings", TEMPLATE) is None
    assert household_from_topic("meters/a/b/readings", TEMPLATE) is None
    assert household_from_topic("other/h-1/readings", TEMPLATE) is None


def test_single_reading_is_forwarded_byte_for_byte_keyed_by_household():
    payload = b'{"household_id": "h-1",  "meter_id": "m-1", "ts_ms": 1768435200000, "power_w": 250.0}'
    [record] = route("meters/h-1/readings", payload, TEMPLATE, BOUNDS)
    assert not record.dead and record.key == b"h-1" and record.value == payload


def test_a_batch_becomes_one_record_per_reading_and_bad_members_are_dead_lettered_alone():
    batch = [reading(ts_ms=1_768_435_200_000 + i * 1000) for i in range(3)] + [reading(power_w="high")]
    records = route("meters/h-1/readings", json.dumps(batch).encode(), TEMPLATE, BOUNDS)
    assert [r.dead for r in records] == [False, False, False, True]
    assert [json.loads(r.value) for r in records[:3]] == batch[:3]
    dead = json.loads(records[3].value)
    assert dead["field"] == "power_w" and json.loads(dead["payload"]) == batch[3]


def test_a_meter_cannot_publish_for_another_household():
    [record] = route("meters/h-1/readings", json.dumps(reading("h-2")).encode(), TEMPLATE, BOUNDS)
    assert record.dead and record.field == "household_id"
    assert "meters/h-2/readings" in json.loads(record.value)["reason"]


def test_empty_and_oversized_batches_and_garbage():
    assert route("meters/h-1/readings", b"[]", TEMPLATE, BOUNDS)[0].dead
    big = json.dumps([reading()] * (MAX_BATCH + 1)).encode()
    [record] = route("meters/h-1/readings", big, TEMPLATE, BOUNDS)
    assert record.dead and "1..1000" in json.loads(record.value)["reason"]
    [record] = route("meters/h-1/readings", b"\x00\xff garbage", TEMPLATE, BOUNDS)
    assert record.dead and json.loads(record.value)["reason"].startswith("not JSON")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=8),
    max_leaves=30,
)
reading_like = st.fixed_dictionaries(
    {
        "household_id": st.sampled_from(["h-1", "h-2", "", "h 1"]),
        "meter_id": st.text(max_size=5),
        "ts_ms": st.integers(),
        "power_w": st.floats(allow_nan=True) | st.integers() | st.text(max_size=3),
    },
    optional={"v": st.integers(0, 3), "voltage_v": st.floats(), "channels_w": json_values},
)


@settings(max_examples=600, deadline=None)
@given(
    topic=st.sampled_from(["meters/h-1/readings", "meters/h-2/readings", "meters/x/y/readings", "junk"]),
    payload=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        reading_like.map(lambda v: json.dumps(v).encode()),
        st.lists(reading_like, min_size=1, max_size=6).map(lambda v: json.dumps(v).encode()),
        st.just(b"[" * 5000),
    ),
)
def test_routing_never_raises_and_every_dead_letter_explains_itself(topic, payload):
    records = route(topic, payload, TEMPLATE, BOUNDS)
    assert records
    for record in records:
        if record.dead:
            dead = json.loads(record.value)
            assert dead["reason"] and dead["source"] == f"mqtt:{topic}"
        else:
            assert json.loads(record.value)["household_id"] == household_from_topic(topic, TEMPLATE)
