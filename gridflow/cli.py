"""The ``gridflow`` command: the embedded stack, connector jars, settings, the demo, appliance scheduling and
the household pages."""

from __future__ import annotations

import argparse
import json
import sys

from gridflow.cli_args import add_settings_arguments, settings_from_args
from gridflow.cluster import add_parser as add_cluster_parser
from gridflow.scheduling.cli import add_parser as add_schedule_parser
from gridflow.web.cli import add_parser as add_page_parser


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gridflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gridflow {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="start, stop or inspect the embedded default stack")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--flink", action="store_true", help="also start a standalone Flink cluster")
    stack.add_argument("--no-mqtt", action="store_true", help="do not start mosquitto")
    stack.add_argument("--run-dir", help="where pid files, logs and data go (default: stack.run_dir)")
    add_settings_arguments(stack)

    jars = commands.add_parser("jars", help="fetch the Flink connector and Kafka broker jars from Maven Central")
    jars.add_argument(
        "action",
        choices=["fetch", "path", "lock"],
        help="fetch: into the jar cache (once; offline afterwards); path: print the cache; "
        "lock: re-pin the jars' SHA-256 after a version bump in gridflow/maven/*.pom.xml",
    )
    add_settings_arguments(jars)

    data = commands.add_parser("data", help="fetch the real household and price datasets into the data cache")
    data.add_argument("action", choices=["fetch", "path"])
    add_settings_arguments(data)

    config = commands.add_parser("config", help="validate or print the effective settings")
    config.add_argument("action", choices=["check", "show"])
    add_settings_arguments(config)

    topics = commands.add_parser("topics", help="create the configured Kafka topics")
    topics.add_argument("action", choices=["create"])
    add_settings_arguments(topics)

    bridge = commands.add_parser("bridge", help="run the MQTT <-> Kafka bridge until interrupted")
    bridge.add_argument("--no-downlink", action="store_true", help="only move readings up, not commands down")
    add_settings_arguments(bridge)

    simulate = commands.add_parser("simulate", help="run simulated meters replaying real load shapes over MQTT")
    simulate.add_argument("--meters", type=int, default=100)
    simulate.add_argument("--duration-s", type=float, default=3600.0, help="simulated time to cover")
    simulate.add_argument("--start-ms", type=int, help="first reading time (default: now, or the past when speed > 1)")
    simulate.add_argument("--sources", default="uci,citylearn", help="load-shape sources: uci, citylearn or both")
    simulate.add_argument("--faults-out", help="write the injected faults' ground truth here (JSON Lines)")
    simulate.add_argument("--no-progress", action="store_true")
    add_settings_arguments(simulate)

    contracts = commands.add_parser("contracts", help="the record contract of every topic as JSON Schema files")
    contracts.add_argument(
        "action",
        choices=["schemas", "check"],
        help="schemas: write them into FOLDER; check: fail when FOLDER's files and the code differ",
    )
    contracts.add_argument("folder", nargs="?", default="docs/schemas")
    add_settings_arguments(contracts)

    importing = commands.add_parser(
        "import",
        help="send CSV or Parquet exports of meter readings, or day-ahead price files, onto their topic",
        description="readings: columns, units and time zone come from the import_readings settings (--set "
        "import_readings.power_unit=kW ...); prices: from import_prices (a column per market, prices per "
        "MWh). Bad rows are reported with their file and line and go to the dead-letter topic; a file already "
        "imported (the ledger on topics.imports) is skipped.",
    )
    importing.add_argument("what", choices=["readings", "prices"])
    importing.add_argument("files", nargs="+", metavar="FILE", help=".csv (.tsv) or .parquet files")
    importing.add_argument("--again", action="store_true", help="send files already in the ledger again")
    importing.add_argument(
        "--speed", type=float, default=0.0, help="replay at this multiple of real time (default 0: full speed)"
    )
    importing.add_argument("--no-progress", action="store_true")
    add_settings_arguments(importing)

    history = commands.add_parser(
        "history", help="keep the pipeline's outputs as Parquet (write), ask them in SQL (query), merge old files"
    )
    history_actions = history.add_subparsers(dest="action", required=True)
    write = history_actions.add_parser(
        "write",
        help="consume history.topics into Parquet under history.path until interrupted",
        description="One folder per topic and UTC day, one file per partition and flush; resumes after the "
        "highest offset on disk, so every record is written once.",
    )
    write.add_argument("--until-caught-up", action="store_true", help="stop at the topics' current ends")
    add_settings_arguments(write)
    ask = history_actions.add_parser(
        "query",
        help="run SQL with DuckDB over one view per kept topic",
        description="Views: features, profiles, assignments, centroids, alerts, load_forecasts, schedules, "
        "recommendations "
        "(those with files), with the records' fields and _day, _partition, _offset, _key, _kafka_ms.",
    )
    ask.add_argument("sql", help='e.g. "SELECT type, count(*) FROM alerts GROUP BY type"')
    ask.add_argument("--format", choices=["table", "csv", "json"], default="table")
    add_settings_arguments(ask)
    compact = history_actions.add_parser("compact", help="merge each partition's files of past days into one")
    compact.add_argument("--before", help="first day (YYYY-MM-DD) left as it is (default: today, UTC)")
    add_settings_arguments(compact)

    forecast = commands.add_parser("forecast", help="train the load-forecasting job's model")
    forecast.add_argument("action", choices=["train-load"])
    forecast.add_argument("--out", required=True, help="the model file to write (then: load_forecast.model_file)")
    forecast.add_argument(
        "--citylearn",
        action="store_true",
        help="train on the 17 CityLearn homes that ship with gridflow (a start before the history has weeks)",
    )
    add_settings_arguments(forecast)

    demo = commands.add_parser("demo", help="run the end-to-end demo on the embedded stack")
    demo.add_argument("--households", type=int, default=6)
    demo.add_argument("--hours", type=int, default=24, help="simulated hours of readings (one day: profiles)")
    demo.add_argument("--keep-stack", action="store_true", help="leave the stack running to inspect the topics")
    add_settings_arguments(demo)

    meter = commands.add_parser(
        "meter",
        help="meters' own MQTT accounts on the embedded broker: add, list, remove, rotate",
        description="add prints the new meter's password once (for its config.json); remove disconnects "
        "the meter at once; rotate hands the meter a new password and switches the broker only after "
        "the meter confirmed it, so the meter is never locked out.",
    )
    meter.add_argument("action", choices=["add", "list", "remove", "rotate"])
    meter.add_argument("household_id", nargs="*", help="the meter's household id (its MQTT user name)")
    meter.add_argument("--run-dir", help="the stack's folder (default: stack.run_dir)")
    meter.add_argument("--timeout-s", type=float, default=60.0, help="rotate: how long to wait for the meter")
    add_settings_arguments(meter)

    add_schedule_parser(commands)
    add_page_parser(commands)
    add_cluster_parser(commands)

    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    handler = {
        "stack": _stack,
        "meter": _meter,
        "jars": _jars,
        "data": _data,
        "config": _config,
        "topics": _topics,
        "demo": _demo,
        "import": _import,
        "history": _history,
        "forecast": _forecast,
        "bridge": _bridge,
        "simulate": _simulate,
        "schedule": _schedule,
        "page": _page,
        "cluster": _cluster,
        "contracts": _contracts,
    }[args.command]
    handler(args, settings)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gridflow")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _contracts(args, settings) -> None:
    from pathlib import Path

    from gridflow.contracts import CONTRACTS
    from gridflow.contracts import schemas

    folder = Path(args.folder)
    if args.action == "schemas":
        for path in schemas.write(CONTRACTS, folder):
            print(path)
        return
    problems = schemas.drift(CONTRACTS, folder)
    if problems:
        sys.exit(
            "gridflow contracts: the schema files and the code differ (run 'gridflow contracts schemas "
            f"{folder}'):\n  " + "\n  ".join(problems)
        )
    print(f"{len(CONTRACTS)} contracts match {folder}")


def _import(args, settings) -> None:
    from pathlib import Path

    from gridflow.importing.files import ImportFileError
    from gridflow.importing.prices import import_prices
    from gridflow.importing.readings import import_readings

    if args.speed < 0:
        sys.exit("gridflow import: --speed must be 0 (full speed) or a positive multiple of real time")
    if args.speed and args.what == "prices":
        sys.exit("gridflow import prices: --speed is for readings (prices are sent ahead of their day)")
    files = [Path(f) for f in args.files]
    try:
        if args.what == "readings":
            import_readings(settings, files, args.again, args.speed, not args.no_progress)
        else:
            import_prices(settings, files, args.again, not args.no_progress)
    except ImportFileError as error:
        sys.exit(f"gridflow import: {error}")


def _history(args, settings) -> None:
    import csv
    from datetime import datetime, timezone

    from gridflow.history.writer import History, HistoryWriter, history_root

    if args.action == "write":
        import signal
        import threading

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stats = HistoryWriter(settings).run(until_caught_up=args.until_caught_up, stop=stop)
        except KeyboardInterrupt:
            return
        kept = ", ".join(f"{name} {count}" for name, count in sorted(stats.by_topic.items())) or "nothing new"
        print(f"history: {stats.records} records in {stats.files} files ({kept}) under {history_root(settings)}")
        return
    if args.action == "compact":
        before = args.before or datetime.now(timezone.utc).strftime("%Y-%m-%d")
        store = History(history_root(settings))
        merged = sum(store.compact(name, before) for name in settings.history.topics)
        print(f"history: merged {merged} files of the days before {before}")
        return
    from gridflow.history.query import query

    if not args.sql:
        sys.exit('gridflow history query: give the SQL, e.g. "SELECT type, count(*) FROM alerts GROUP BY type"')
    try:
        columns, rows = query(settings, args.sql)
    except ValueError as error:
        sys.exit(f"gridflow history query: {error}")
    if args.format == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row)), default=str))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        cells: list[list[str]] = [columns, *[["" if v is None else str(v) for v in row] for row in rows]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        for n, line in enumerate(cells):
            print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())
            if n == 0:
                print("  ".join("-" * w for w in widths))


def _cluster(args, settings) -> None:
    from gridflow.cluster import command

    command(args, settings)


def _meter(args, settings) -> None:
    from pathlib import Path

    from gridflow.stack import StackError, read_state
    from gridflow.stack.meters import MeterAccounts
    from gridflow.stack.processes import Launcher

    run_dir = Path(args.run_dir or settings.stack.run_dir).expanduser()
    info = read_state(run_dir)
    if info is None or info.mqtt_port is None:
        sys.exit(f"gridflow meter: no stack with mosquitto runs from {run_dir} ('gridflow stack up' first)")
    accounts = MeterAccounts(Path(info.run_dir), Launcher(Path(info.run_dir), info.stack_id))
    if args.action != "list" and not args.household_id:
        sys.exit(f"gridflow meter {args.action}: name the meter's household id")
    try:
        if args.action == "list":
            for household in accounts.list():
                print(household)
        elif args.action == "add":
            for household in args.household_id:
                print(f"{household} {accounts.add(household)}")
        elif args.action == "remove":
            accounts.remove(args.household_id)
            print(f"removed {len(args.household_id)} meter account(s); connected meters were disconnected")
        else:
            live = settings.with_overrides(
                *(
                    f"{section}.{key}={value}"
                    for section, values in info.overlay().items()
                    for key, value in values.items()
                )
            )
            for household in args.household_id:
                accounts.rotate(live, household, args.timeout_s)
                print(f"{household}: the meter confirmed its new password; the old one no longer works")
    except StackError as error:
        sys.exit(f"gridflow meter {args.action}: {error}")


def _stack(args, settings) -> None:
    from gridflow.stack import EmbeddedStack, StackError, read_state, stop_stack

    run_dir = args.run_dir or settings.stack.run_dir
    if args.action == "up":
        stack = EmbeddedStack(settings, run_dir, mqtt=not args.no_mqtt, flink=args.flink)
        try:
            info = stack.up()
        except StackError as error:
            sys.exit(f"gridflow: {error}")
        print(json.dumps(_shown(info), indent=2))
        print(
            f"settings for jobs and tools (with the service accounts' passwords): "
            f"--config {stack.run_dir / 'settings.yaml'}"
        )
    elif args.action == "down":
        stopped = stop_stack(run_dir)
        print(f"stopped stack {stopped.stack_id}" if stopped else f"no stack recorded in {run_dir}")
    else:
        from gridflow.stack.processes import marked_pids

        recorded = read_state(run_dir)
        if recorded is None:
            print(f"no stack recorded in {run_dir}")
            return
        print(json.dumps({**_shown(recorded), "pids": marked_pids(recorded.stack_id)}, indent=2))


def _shown(info) -> dict:
    """What the stack commands print: everything but the service accounts' passwords (those stay in
    the stack's 0600 files)."""
    return {**info.__dict__, "mqtt_accounts": sorted(info.mqtt_accounts or {})}


def _jars(args, settings) -> None:
    from gridflow.jars import ARTIFACT_SETS, ConnectorJarError, cache_dir, fetch_all, write_lock

    try:
        if args.action == "fetch":
            for path in fetch_all(settings):
                print(path)
        elif args.action == "lock":
            for artifacts in ARTIFACT_SETS:
                print(write_lock(artifacts, settings))
        else:
            print(cache_dir(settings))
    except ConnectorJarError as error:
        sys.exit(f"gridflow: {error}")


def _forecast(args, settings) -> None:
    import time

    from gridflow.forecasting.load import citylearn_days, profile_days, train

    started = time.perf_counter()
    try:
        if args.citylearn:
            from gridflow.datasets import DatasetError, load_citylearn

            try:
                days = citylearn_days(load_citylearn(settings)).without_temperature()
            except DatasetError as error:
                sys.exit(f"gridflow forecast train-load: {error}")
            source = "the CityLearn homes"
        else:
            from gridflow.history.query import connect
            from gridflow.history.writer import history_root

            connection, views = connect(settings)
            if "profiles" not in views:
                sys.exit(
                    f"gridflow forecast train-load: the history under {history_root(settings)} holds no profiles "
                    "yet (keep them with 'gridflow history write', or train on the shipped homes with --citylearn)"
                )
            sql = "SELECT household_id, meter_id, day, profile_w FROM profiles ORDER BY _kafka_ms"
            rows = connection.execute(sql).fetchall()
            households, days = profile_days(rows, settings.preprocess.profile_slots)
            source = f"the history's profiles of {len(households)} households"
        model = train(days, settings.load_forecast)
        model.save(args.out)
    except ValueError as error:
        sys.exit(f"gridflow forecast train-load: {error}")
    print(
        f"load model: trained on {source}, {days.n_series} series x {days.n_days} days of {days.slots} slots, "
        f"in {time.perf_counter() - started:.1f} s; written to {args.out} (set load_forecast.model_file to use it)"
    )


def _data(args, settings) -> None:
    from gridflow.datasets import data_dir, fetch_datasets

    print(fetch_datasets(settings) if args.action == "fetch" else data_dir(settings))


def _config(args, settings) -> None:
    if args.action == "show":
        import yaml

        print(yaml.safe_dump(settings.model_dump(mode="json", by_alias=True), sort_keys=False))
    else:
        print("settings are valid")


def _topics(args, settings) -> None:
    from gridflow.kafka_io import create_topics

    names = list(settings.topics.model_dump().values())
    create_topics(settings, names)
    print("\n".join(names))


def _bridge(args, settings) -> None:
    import logging
    import signal
    import threading

    from prometheus_client import CollectorRegistry

    from gridflow.connectors.kafka_mqtt_downlink import KafkaMqttDownlink
    from gridflow.connectors.mqtt_kafka_bridge import MqttKafkaBridge

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    registry = CollectorRegistry()
    uplink = MqttKafkaBridge(settings, registry)
    uplink.start()
    print(
        f"bridge: MQTT {settings.mqtt.host}:{settings.mqtt.port} -> Kafka {settings.kafka.bootstrap_servers}; "
        f"metrics on http://{uplink.metrics_address[0]}:{uplink.metrics_address[1]}/metrics",
        flush=True,
    )
    threads = []
    if settings.bridge.downlink and not args.no_downlink:
        downlink = KafkaMqttDownlink(settings, registry)
        downlink.start()
        threads.append(threading.Thread(target=downlink.run, args=(stop,), name="downlink", daemon=True))
        threads[-1].start()
    uplink.run(stop)
    for thread in threads:
        thread.join(timeout=30)


def _simulate(args, settings) -> None:
    from gridflow.devices.load_shapes import LoadShapeLibrary
    from gridflow.devices.simulator import FleetSimulator

    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = sorted(set(sources) - {"uci", "citylearn"})
    if unknown or not sources:
        sys.exit(f"gridflow: --sources takes uci, citylearn or both, got {args.sources!r}")
    library = LoadShapeLibrary.load(settings, sources)
    simulator = FleetSimulator(
        settings, args.meters, args.duration_s, library, start_ms=args.start_ms, faults_path=args.faults_out
    )
    try:
        summary = simulator.run(progress=not args.no_progress)
    finally:
        simulator.close()
    print(summary.line())
    if args.faults_out:
        print(f"ground truth of {summary.faults} faults: {args.faults_out}")


def _schedule(args, settings) -> None:
    from gridflow.scheduling.cli import run

    run(args, settings)


def _page(args, settings) -> None:
    from gridflow.web.cli import run

    run(args, settings)


def _demo(args, settings) -> None:
    from gridflow.demo import run_demo

    run_demo(settings, households=args.households, hours=args.hours, keep_stack=args.keep_stack)


if __name__ == "__main__":
    main()
