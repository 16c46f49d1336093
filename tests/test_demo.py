"""The README's first command: the end-to-end demo on the embedded stack."""
import json

import pytest

from gridflow.demo import MALFORMED, run_demo

pytestmark = pytest.mark.integration


def test_demo_accounts_for_every_reading_and_repeats_exactly(base_settings, tmp_path, capsys):
    first = run_demo(base_settings.with_overrides(f"stack.run_dir={tmp_path / 'a'}"), households=4, minutes=6)
    second = run_demo(base_settings.with_overrides(f"stack.run_dir={tmp_path / 'b'}"), households=4, minutes=6)
    assert first == second
    assert first["readings_summarised"] == first["readings_published"] > 0
    assert first["dead_lettered"] == len(MALFORMED)
    assert first["households"] == 4 and first["summaries"] >= 4 * 6
    for name in ("summaries.jsonl", "dead-letter.jsonl", "faults.jsonl"):
        assert (tmp_path / "a" / "demo" / name).read_text() == (tmp_path / "b" / "demo" / name).read_text()
    dead = [json.loads(line) for line in (tmp_path / "a" / "demo" / "dead-letter.jsonl").read_text().splitlines()]
    assert sorted(d["field"] for d in dead) == ["", "household_id", "power_w", "power_w", "ts_ms"]
    out = capsys.readouterr().out
    assert "every reading accounted for: yes" in out and "where to look" in out
