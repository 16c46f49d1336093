"""The end-to-end demo on the embedded stack: simulated meters to recommendations on the meters.

    simulated meters (firmware code, real load shapes, labelled faults) -> mosquitto (per-device ACL)
      -> MQTT->Kafka bridge -> Kafka -> PyFlink jobs on the local mini-cluster:
         preprocess (window features, daily profiles, dead letters)
         clustering (household clusters, typical shapes), anomaly (alerts)
         forecasting (real Dutch day-ahead prices -> tomorrow's price forecast)
         scheduling (appliances learned by NILM from the UCI household's history + forecast -> schedules)
         recommendations (shifts with savings, off-peak advice, alerts, grid requests)
      -> Kafka->MQTT downlink -> each meter's command topic

One simulated day (2024-05-11, UTC); real prices of the week up to it; the schedule is for the next day.
Deterministic apart from wall-clock stamps: a fixed seed gives the same records on every run.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np

from gridflow import kafka_io
from gridflow.contracts import encode
from gridflow.settings import Settings
from gridflow.stack import EmbeddedStack

DAY_MS = 86_400_000
DEMO_DAY_MS = 1_715_385_600_000  # 2024-05-11 00:00 UTC (a Saturday; Sunday 05-12 has negative midday prices)
PRICE_START, PRICE_DAYS = date(2024, 5, 4), 8
# what the demo asks of its history (gridflow history query), printed with the answers
ANALYST_QUESTIONS = {
    "alerts per type": "SELECT type, count(*) AS alerts FROM alerts GROUP BY type ORDER BY alerts DESC, type",
    "each household's highest minute": (
        "SELECT household_id, max(peak_w) AS peak_w FROM features GROUP BY household_id ORDER BY household_id"
    ),
    "each household's latest cluster": (
        "SELECT household_id, arg_max(cluster, _offset) AS cluster FROM assignments "
        "GROUP BY household_id ORDER BY household_id"
    ),
}
NILM_HISTORY_DAYS = 60
MIN_SCHEDULABLE_MINUTES = 15
# What a misbehaving meter might send; the bridge dead-letters each with the reason.
MALFORMED = [
    ("meters/h-00000/readings", b"not json at all"),
    ("meters/h-00001/readings", b'{"household_id": "h-00001", "meter_id": "m-1", "ts_ms": 1705190400000}'),
    (
        "meters/h-00002/readings",
        b'{"household_id": "h-00002", "meter_id": "m-2", "ts_ms": 1705190400000, "power_w": -9e9}',
    ),
    (
        "meters/h-00003/readings",
        b'{"household_id": "h-00004", "meter_id": "m-4", "ts_ms": 1705190400000, "power_w": 5}',
    ),
    ("meters/h-00005/readings", b'{"household_id": "h-00005", "meter_id": "m-5", "ts_ms": "yesterday", "power_w": 5}'),
]


def run_demo(
    settings: Settings, households: int = 6, hours: int = 24, keep_stack: bool = False, out_dir: Path | None = None
) -> dict:
    started = time.monotonic()
    stack = EmbeddedStack(settings)
    print(f"starting the embedded stack in {stack.run_dir} ...", flush=True)
    stack.up()
    try:
        live = stack.settings.with_overrides(
            "simulator.speed=100000",
            "simulator.fault_rate_per_day=3",
            "bridge.metrics_port=0",
            "clustering.warmup_profiles=2",
            "clustering.n_clusters=2",
            "stream.out_of_orderness_ms=30000",
            "clustering.publish_every_s=1",
        )
        out_dir = out_dir or stack.run_dir / "demo"
        out_dir.mkdir(parents=True, exist_ok=True)
        t = live.topics
        kafka_io.create_topics(live, [name for name in t.model_dump().values()])
        fleet = _meters_to_kafka(live, households, hours, out_dir)
        outputs = _run_jobs(live, fleet, households)
        history = _history(live)
        commands = _downlink(live, expected=len(outputs["recommendations"]) + len(outputs["schedules"]))
        sensors = _home_assistant_view(stack, live, sorted(commands))
        for name, rows in outputs.items():
            _write_jsonl(out_dir / f"{name}.jsonl", rows)
        _write_jsonl(out_dir / "home_assistant.jsonl", [{"household_id": h, **s} for h, s in sensors.items()])
        result = _result(fleet, outputs, commands, households)
        result["households_in_home_assistant"] = sum(len(s) == 4 for s in sensors.values())
        result["history_records"] = history
        _report(result, outputs, live, out_dir, keep_stack, stack, time.monotonic() - started)
        return result
    finally:
        if not keep_stack:
            stack.down()


def _meters_to_kafka(live: Settings, households: int, hours: int, out_dir: Path):
    from gridflow.connectors.mqtt_kafka_bridge import MqttKafkaBridge
    from gridflow.devices.load_shapes import LoadShapeLibrary
    from gridflow.devices.simulator import FleetSimulator

    bridge = MqttKafkaBridge(live)
    bridge.start()
    stop = threading.Event()
    bridge_thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    bridge_thread.start()
    try:
        simulator = FleetSimulator(
            live,
            households,
            hours * 3600,
            LoadShapeLibrary.load(live),
            start_ms=DEMO_DAY_MS,
            faults_path=out_dir / "faults.jsonl",
        )
        simulator.connect()
        print(
            f"{households} simulated meters publish {hours} h of readings over MQTT (bridge metrics on "
            f"http://{bridge.metrics_address[0]}:{bridge.metrics_address[1]}/metrics) ...",
            flush=True,
        )
        fleet = simulator.run(progress=False)
        misbehaving = simulator.connections[0].client_for("demo-misbehaving-meter")
        for topic, payload in MALFORMED:
            misbehaving.publish(topic, payload, qos=1)
        for connection in simulator.connections:
            connection.wait_until_sent()
        simulator.close()
        print("  " + fleet.line(), flush=True)
        _wait_for_bridge(bridge, fleet.published, len(MALFORMED))
    finally:
        stop.set()
        bridge_thread.join(timeout=60)
    return fleet


def _ends(settings: Settings, topic: str) -> dict[int, int]:
    """End offsets of every partition of ``topic`` (0 for an empty one): a later job reads it exactly."""
    return kafka_io.ends_of(kafka_io.read_positioned(settings, topic, until_end=True), settings.kafka.partitions)


def _read(settings: Settings, topic: str) -> list[dict]:
    return [json.loads(v) for v in kafka_io.read_topic(settings, topic, idle_timeout_s=2, until_end=True)]


def _stream_job(module, settings: Settings, stops: dict[str, dict[int, int]]) -> None:
    from gridflow.runtime import create_env

    print(f"running the {module.NAME} job on the local mini-cluster ...", flush=True)
    env = create_env(settings)
    module.build(env, settings, stop_offsets=stops)
    env.execute(module.NAME)


def _run_jobs(live: Settings, fleet, households: int) -> dict[str, list[dict]]:
    from gridflow.jobs import anomaly, clustering, forecasting, preprocess, recommendations, scheduling

    t = live.topics
    readings_end = kafka_io.end_offsets(live, t.readings, expected=fleet.published)
    print("running the preprocess job on the local mini-cluster ...", flush=True)
    preprocess.build(preprocess.create_table_env(live), live, readings_end).execute().wait()
    _stream_job(clustering, live, {t.profiles: _ends(live, t.profiles)})
    _stream_job(anomaly, live, {t.feature_batches: _ends(live, t.feature_batches)})

    from gridflow.datasets import load_prices
    from gridflow.prices_replay import replay_records

    prices = replay_records(load_prices(live), PRICE_START, PRICE_DAYS, "NL", live.forecast.slot_minutes)
    kafka_io.produce(live, t.prices, [("NL", encode(p)) for p in prices])
    _stream_job(forecasting, live, {t.prices: _ends(live, t.prices)})

    kafka_io.produce(live, t.appliances, [(h, encode(a)) for h, a in _learned_appliances(live, households)])
    forecasts = _start_at_latest(live, scheduling.NAME, t.price_forecasts)
    _stream_job(
        scheduling,
        live,
        {
            t.appliances: _ends(live, t.appliances),
            t.price_forecasts: forecasts,
            t.load_forecasts: _ends(live, t.load_forecasts),
            t.home_energy: _ends(live, t.home_energy),
        },
    )
    _stream_job(
        recommendations,
        live,
        {
            t.schedules: _ends(live, t.schedules),
            t.profiles: _ends(live, t.profiles),
            t.alerts: _ends(live, t.alerts),
            t.load_forecasts: _ends(live, t.load_forecasts),
        },
    )
    names = {
        "features": t.features,
        "profiles": t.profiles,
        "dead_letters": t.dead_letter,
        "assignments": t.assignments,
        "centroids": t.centroids,
        "alerts": t.alerts,
        "forecasts": t.price_forecasts,
        "schedules": t.schedules,
        "recommendations": t.recommendations,
    }
    outputs = {name: _read(live, topic) for name, topic in names.items()}
    outputs["features"].sort(key=lambda f: (f["household_id"], f["window_start_ms"]))
    return outputs


def _history(live: Settings) -> int:
    """The outputs kept as Parquet (``gridflow history write --until-caught-up``), with three questions an
    analyst would ask of them answered in SQL; returns the records kept."""
    from gridflow.history.query import query
    from gridflow.history.writer import HistoryWriter, history_root

    print("writing the history (Parquet) ...", flush=True)
    stats = HistoryWriter(live).run(until_caught_up=True)
    print(f"history: {stats.records} records under {history_root(live)}")
    for question, sql in ANALYST_QUESTIONS.items():
        print(f"  {question}  ({sql})")
        try:
            columns, rows = query(live, sql)
        except ValueError as error:  # e.g. a run without alerts has no alerts view
            print(f"    no answer: {error}")
            continue
        for row in rows[:6]:
            print("    " + ", ".join(f"{c}={v}" for c, v in zip(columns, row)))
    return stats.records


def _learned_appliances(live: Settings, households: int) -> list[tuple[str, dict]]:
    """Appliance profiles learned by NILM from the UCI household's whole-house history, for every simulated
    household (they replay real load shapes; a real deployment runs the appliance-learning job instead)."""
    from gridflow.datasets import load_uci_household
    from gridflow.devices.simulator import household_ids
    from gridflow.nilm import ApplianceLearner

    uci = load_uci_household(live)
    ts, power, reactive = uci["ts_ms"], uci["power_w"], uci["reactive_power_var"]
    first = (int(ts[0]) // DAY_MS + 1) * DAY_MS
    learner = ApplianceLearner.from_settings(live.nilm)
    for k in range(NILM_HISTORY_DAYS):
        day = (ts >= first + k * DAY_MS) & (ts < first + (k + 1) * DAY_MS)
        if day.sum() == 1440:
            learner.learn_day(first + k * DAY_MS, np.nan_to_num(power[day]), np.nan_to_num(reactive[day]))
    profiles = [p for p in learner.profiles() if p.duration_minutes >= MIN_SCHEDULABLE_MINUTES]
    return [
        (h, p.to_record(h, live.scheduler.slot_minutes, live.nilm.horizon_start_minute, DEMO_DAY_MS + DAY_MS))
        for h in household_ids(households)
        for p in profiles
    ]


def _start_at_latest(live: Settings, job_name: str, topic: str) -> dict[int, int]:
    """Commit the job's group just before the forecast for the latest day (and at the end of every other
    partition): the scheduling job plans tomorrow only. Returns the topic's end offsets."""
    from confluent_kafka import Consumer, TopicPartition

    from gridflow.connectors.flink_kafka import group_id

    records = kafka_io.read_positioned(live, topic, until_end=True)
    ends = kafka_io.ends_of(records, live.kafka.partitions)
    latest = max(records, key=lambda r: json.loads(r[3])["start_ts_ms"])
    start = {**ends, latest[0]: latest[1]}
    consumer = Consumer(
        {
            "bootstrap.servers": live.kafka.bootstrap_servers,
            "group.id": group_id(live, job_name),
            "enable.auto.commit": False,
            **live.kafka.client,
        }
    )
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in start.items()], asynchronous=False)
    finally:
        consumer.close()
    return ends


def _downlink(live: Settings, expected: int, timeout_s: float = 60.0) -> dict[str, list[dict]]:
    """Forward recommendations and schedules to the meters' command topics; what the meters received."""
    import paho.mqtt.client as mqtt

    from gridflow.connectors.kafka_mqtt_downlink import KafkaMqttDownlink
    from gridflow.mqtt_tls import client_context

    received: dict[str, list[dict]] = {}
    meters = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-meters", protocol=mqtt.MQTTv311)
    meters.username_pw_set(live.simulator.mqtt_username, live.simulator.mqtt_password)
    context = client_context(live.mqtt)
    if context is not None:
        meters.tls_set_context(context)

    def on_message(client, userdata, message):
        household = message.topic.split("/")[1]
        received.setdefault(household, []).append(json.loads(message.payload))

    meters.on_message = on_message
    meters.connect(live.mqtt.host, live.mqtt.port)
    meters.subscribe(live.mqtt.commands_topic.replace("{household_id}", "+"), qos=1)
    meters.loop_start()
    downlink = KafkaMqttDownlink(live)
    downlink.start()
    stop = threading.Event()
    thread = threading.Thread(target=downlink.run, args=(stop,), daemon=True)
    thread.start()
    print("downlink: recommendations and schedules -> meters/<household>/commands ...", flush=True)
    deadline = time.monotonic() + timeout_s
    while sum(len(v) for v in received.values()) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(timeout=30)
    meters.loop_stop()
    meters.disconnect()
    return received


def _home_assistant_view(stack, live: Settings, households: list[str], timeout_s: float = 15.0) -> dict:
    """What each household's Home Assistant would show: its account reads its retained discovery tree
    (household -> entity -> state value)."""
    import paho.mqtt.client as mqtt

    from gridflow.mqtt_tls import client_context
    from gridflow.stack.mqtt_auth import new_password

    accounts = {household: new_password() for household in households}
    stack.add_meter_accounts(accounts)  # each household its own account, as on a real broker
    seen: dict[str, dict] = {}
    clients = []
    for household, password in accounts.items():
        base = live.mqtt.home_assistant_topic.replace("{household_id}", household)
        states = seen.setdefault(household, {})

        def on_message(client, userdata, message, states=states, base=base):
            if message.topic.endswith("/state"):
                entity = message.topic[len(base) + len("/gridflow/") :].rsplit("/", 1)[0]
                states[entity] = json.loads(message.payload)["value"]

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-ha-{household}", protocol=mqtt.MQTTv311)
        client.username_pw_set(household, password)
        context = client_context(live.mqtt)
        if context is not None:
            client.tls_set_context(context)
        client.on_message = on_message
        client.connect(live.mqtt.host, live.mqtt.port)
        client.subscribe(f"{base}/#", qos=1)
        client.loop_start()
        clients.append(client)
    deadline = time.monotonic() + timeout_s
    while any(len(s) < 4 for s in seen.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for client in clients:
        client.loop_stop()
        client.disconnect()
    return seen


def _wait_for_bridge(bridge, readings: int, dead_letters: int, timeout_s: float = 120.0) -> None:
    """Until the bridge forwarded every reading and dead-lettered every malformed message."""
    metrics = bridge.metrics
    deadline = time.monotonic() + timeout_s
    while metrics.forwarded < readings or sum(metrics.dead_lettered.values()) < dead_letters or metrics.inflight:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"bridge forwarded {metrics.forwarded}/{readings} readings and "
                f"{sum(metrics.dead_lettered.values())}/{dead_letters} dead letters in {timeout_s} s"
            )
        time.sleep(0.05)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def _result(fleet, outputs: dict[str, list[dict]], commands: dict[str, list[dict]], households: int) -> dict:
    features, recs = outputs["features"], outputs["recommendations"]
    job_dead = [d for d in outputs["dead_letters"] if d.get("source", "").startswith("kafka:")]
    return {
        "meters": households,
        "readings_published": fleet.published,
        "malformed_published": len(MALFORMED),
        "labelled_faults": fleet.faults,
        "readings_in_features": sum(f["n_readings"] + f["n_duplicates"] for f in features),
        "readings_dead_lettered_by_jobs": len(job_dead),
        "late_readings": sum(d["reason"].startswith("late") for d in job_dead),
        "feature_windows": len(features),
        "daily_profiles": len(outputs["profiles"]),
        "energy_kwh": round(sum(f["energy_wh"] for f in features) / 1000, 6),
        "alerts": len(outputs["alerts"]),
        "cluster_assignments": len(outputs["assignments"]),
        "forecasts": len(outputs["forecasts"]),
        "schedules": len(outputs["schedules"]),
        "recommendations": len(recs),
        "recommendation_kinds": sorted({r["kind"] for r in recs}),
        "savings_per_day": round(sum(r["saving_per_day"] for r in recs), 4),
        "households_with_commands": len(commands),
        "commands_received": sum(len(v) for v in commands.values()),
    }


def _report(result, outputs, settings, out_dir, keep_stack, stack, elapsed_s) -> None:
    print("\nresult:", json.dumps(result))
    print("\nrecommendations (household: text):")
    order = {"shift": 0, "grid_request": 1, "off_peak": 2, "alert": 3}
    for r in sorted(outputs["recommendations"], key=lambda r: (order.get(r["kind"], 9), r["household_id"]))[:12]:
        print(f"  {r['household_id']}: {r['text']}")
    if outputs["schedules"]:
        s = outputs["schedules"][0]
        print(
            f"\nschedule of {s['household_id']} for the day from {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(s['start_ts_ms'] / 1000))}: "
            f"{s['expected_cost']:.2f} {s['currency']} instead of {s['unscheduled_cost']:.2f} "
            f"(PAR {s['par_before']:.2f} -> {s['par_after']:.2f})"
        )
    accounted = result["readings_in_features"] + result["readings_dead_lettered_by_jobs"]
    ok = accounted == result["readings_published"] and result["commands_received"] > 0
    print(
        f"\nevery reading accounted for and recommendations delivered to the meters: {'yes' if ok else 'NO'} "
        f"({elapsed_s:.0f} s)"
    )
    print("where to look:")
    for name in outputs:
        print(f"  {name:16s}{out_dir / (name + '.jsonl')}")
    print(f"  {'fault labels':16s}{out_dir / 'faults.jsonl'}  (ground truth of the injected meter faults)")
    print(f"  {'logs':16s}{stack.run_dir / 'logs'}")
    if keep_stack:
        print(
            f"  the stack is still running: Kafka at {settings.kafka.bootstrap_servers}, MQTT at "
            f"{settings.mqtt.host}:{settings.mqtt.port}; settings overlay {stack.run_dir / 'settings.yaml'}; "
            "see the pages with 'gridflow page serve --config <that overlay>' and a household's access code from "
            "'gridflow page token issue <household id> --config <that overlay>'; stop it with 'gridflow stack down'"
        )
    if not ok:
        raise SystemExit("the demo lost readings or delivered nothing: see the files above")
