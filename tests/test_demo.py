"""The README's first command: the end-to-end demo on the embedded stack, from simulated meters to
recommendations arriving on the meters' MQTT command topics and on each household's page."""

import html
import json
import subprocess
import sys
import time

import pytest

from gridflow.demo import MALFORMED, run_demo
from gridflow.stack import stop_stack

from test_web import _get, browse

pytestmark = pytest.mark.integration


def test_demo_goes_from_meters_to_recommendations_on_the_meters_and_their_pages(base_settings, tmp_path, capsys):
    try:
        result = run_demo(
            base_settings.with_overrides(f"stack.run_dir={tmp_path}"), households=4, hours=24, keep_stack=True
        )
        assert result["readings_in_features"] + result["readings_dead_lettered_by_jobs"] == result["readings_published"]
        assert result["readings_in_features"] > 4 * 8000
        assert result["daily_profiles"] == 4 and result["cluster_assignments"] >= 3  # the first profile warms up
        assert result["forecasts"] >= 1 and result["schedules"] >= 4
        assert "shift" in result["recommendation_kinds"] and result["savings_per_day"] > 0
        assert result["households_with_commands"] == 4, "every meter receives its commands over MQTT"
        assert result["households_in_home_assistant"] == 4, "each household's Home Assistant has its four sensors"
        assert result["commands_received"] >= result["recommendations"]
        demo = tmp_path / "demo"
        dead = [json.loads(line) for line in (demo / "dead_letters.jsonl").read_text().splitlines()]
        assert len(dead) >= len(MALFORMED)
        recommendations = [json.loads(line) for line in (demo / "recommendations.jsonl").read_text().splitlines()]
        assert all(r["text"] and r["household_id"].startswith("h-") for r in recommendations)
        _every_record_is_keyed(tmp_path)
        _history_answers_match_the_topics(tmp_path, result)
        out = capsys.readouterr().out
        assert "recommendations delivered to the meters: yes" in out and "where to look" in out
        _recommendation_on_the_page(tmp_path, recommendations)
    finally:
        stop_stack(tmp_path)


def _history_answers_match_the_topics(run_dir, result) -> None:
    """The demo kept its outputs as Parquet; the analyst questions it asks of them in SQL give what the
    topics hold (read back from Kafka into the demo's JSON Lines files)."""
    from collections import Counter

    from gridflow.demo import ANALYST_QUESTIONS
    from gridflow.history.query import query
    from gridflow.settings import load_settings

    live = load_settings(extra_files=[run_dir / "settings.yaml"], overrides=[f"stack.run_dir={run_dir}"])
    demo = run_dir / "demo"

    def rows(name):
        return [json.loads(line) for line in (demo / f"{name}.jsonl").read_text().splitlines()]

    alerts, features, assignments = rows("alerts"), rows("features"), rows("assignments")
    kept = sum(
        len(rows(n))
        for n in ("features", "profiles", "assignments", "centroids", "alerts", "schedules", "recommendations")
    )
    assert result["history_records"] == kept, "every output record is in the history once"
    _, answer = query(live, ANALYST_QUESTIONS["alerts per type"])
    counts = Counter(a["type"] for a in alerts)
    assert answer == sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) and answer
    _, answer = query(live, ANALYST_QUESTIONS["each household's highest minute"])
    peaks = {}
    for f in features:
        peaks[f["household_id"]] = max(peaks.get(f["household_id"], float("-inf")), f["peak_w"])
    assert answer == sorted(peaks.items())
    _, answer = query(live, ANALYST_QUESTIONS["each household's latest cluster"])
    latest = {a["household_id"]: a["cluster"] for a in assignments}  # a household's records keep their order
    assert answer == sorted(latest.items())


def _every_record_is_keyed(run_dir) -> None:
    """Every record the pipeline wrote keeps its topic's contract as a producer must (no field outside it)
    and carries the key that orders it: its household, meter, market or cluster (a dead letter: its
    record's household, else its source)."""
    from gridflow import kafka_io
    from gridflow.contracts import CONTRACTS, KEY_FIELDS
    from gridflow.settings import load_settings

    live = load_settings(extra_files=[run_dir / "settings.yaml"], overrides=[f"stack.run_dir={run_dir}"])
    t = live.topics
    contracts = {getattr(t, c.topic): c for c in CONTRACTS.values()}
    for topic in (
        t.features,
        t.profiles,
        t.dead_letter,
        t.assignments,
        t.centroids,
        t.alerts,
        t.prices,
        t.price_forecasts,
        t.appliances,
        t.schedules,
        t.recommendations,
    ):
        records = kafka_io.read_records(live, topic, idle_timeout_s=2, until_end=True)
        assert records, f"the demo wrote to {topic}"
        for key, value in records:
            assert key, f"an unkeyed record in {topic}: {value[:200]!r}"
            record = json.loads(value)
            contracts[topic].check_written(record)
            field = next((name for name in KEY_FIELDS if name in record), None)
            if field is not None:
                assert key.decode() == str(record[field]), f"{topic}: key {key!r} is not its {field}"


def _recommendation_on_the_page(run_dir, recommendations) -> None:
    config = run_dir / "settings.yaml"
    gridflow = [sys.executable, "-m", "gridflow.cli"]
    server = subprocess.Popen(
        [
            *gridflow,
            "page",
            "serve",
            "--config",
            str(config),
            "--set",
            "web.port=0",
            "--set",
            f"stack.run_dir={run_dir}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().split()[-1]
        deadline = time.monotonic() + 60
        while _get(f"{url}/healthz")[1].get("accepted", 0) < len(recommendations):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.5)
        household = next(r["household_id"] for r in recommendations if r["kind"] == "shift")
        token = subprocess.run(
            [
                *gridflow,
                "page",
                "token",
                "issue",
                household,
                "--config",
                str(config),
                "--set",
                f"stack.run_dir={run_dir}",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dom = html.unescape(browse(f"{url}/household/{household}?code={token}"))
        shift = next(r for r in recommendations if r["household_id"] == household and r["kind"] == "shift")
        assert shift["text"].split(":")[0] in dom, "the household's recommendation is on its page"
    finally:
        server.terminate()
        server.wait(timeout=20)
