"""The README's first command: the end-to-end demo on the embedded stack, from simulated meters to
recommendations arriving on the meters' MQTT command topics."""
import json

import pytest

from gridflow.demo import MALFORMED, run_demo

pytestmark = pytest.mark.integration


def test_demo_goes_from_meters_to_recommendations_on_the_meters(base_settings, tmp_path, capsys):
    result = run_demo(base_settings.with_overrides(f"stack.run_dir={tmp_path}"), households=4, hours=24)
    assert result["readings_in_features"] + result["readings_dead_lettered_by_jobs"] == result["readings_published"]
    assert result["readings_in_features"] > 4 * 8000
    assert result["daily_profiles"] == 4 and result["cluster_assignments"] >= 3  # the first profile warms up
    assert result["forecasts"] >= 1 and result["schedules"] >= 4
    assert "shift" in result["recommendation_kinds"] and result["savings_per_day"] > 0
    assert result["households_with_commands"] == 4, "every meter receives its commands over MQTT"
    assert result["commands_received"] >= result["recommendations"]
    demo = tmp_path / "demo"
    dead = [json.loads(line) for line in (demo / "dead_letters.jsonl").read_text().splitlines()]
    assert len(dead) >= len(MALFORMED)
    recommendations = [json.loads(line) for line in (demo / "recommendations.jsonl").read_text().splitlines()]
    assert all(r["text"] and r["household_id"].startswith("h-") for r in recommendations)
    out = capsys.readouterr().out
    assert "recommendations delivered to the meters: yes" in out and "where to look" in out
