"""The README's first command: the end-to-end demo on the embedded stack."""
import pytest

from gridflow.demo import MALFORMED, demo_readings, run_demo

pytestmark = pytest.mark.integration


def test_demo_accounts_for_every_reading_and_repeats_exactly(base_settings, tmp_path, capsys):
    first = run_demo(base_settings.with_overrides(f"stack.run_dir={tmp_path / 'a'}"), households=3, minutes=5)
    second = run_demo(base_settings.with_overrides(f"stack.run_dir={tmp_path / 'b'}"), households=3, minutes=5)
    readings = demo_readings(3, 5, interval_s=10)
    assert first == second
    assert first["readings_in"] == first["readings_summarised"] == len(readings)
    assert first["dead_lettered"] == len(MALFORMED)
    assert first["summaries"] == 3 * 5 and first["households"] == 3
    assert (tmp_path / "a" / "demo" / "summaries.jsonl").read_text() == (tmp_path / "b" / "demo" / "summaries.jsonl").read_text()
    out = capsys.readouterr().out
    assert "every reading accounted for: yes" in out and "where to look" in out
