"""A built wheel, installed into a fresh environment outside the repository: its packaged settings
(``gridflow/conf``, the repository's flink-conf/) are found and valid, and it runs a job on the mini-cluster
against the real broker."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gridflow import kafka_io
from gridflow.analytics.clustering import LoadProfileClusterer
from gridflow.cli_args import format_topic_offsets
from gridflow.contracts import CONTRACTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(python of a fresh venv with only the wheel of this checkout installed, its environment). Its
    third-party dependencies come from this interpreter's site-packages (appended to its path), whose
    editable gridflow is not visible there."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(folder / "dist"),
        ],
        check=True,
        cwd=folder,
    )
    (wheel,) = (folder / "dist").glob("gridflow-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    own_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(own_site), str(wheel)], check=True
    )
    (own_site / "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # as from a fresh shell: no settings folder, and none of the variables PyFlink sets in this process
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GRIDFLOW_CONF_DIR", "PYTHONPATH") and not k.startswith(("PYFLINK", "FLINK_", "_PYTHON"))
    }
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    return python, env


def _run(installed, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    python, env = installed
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_the_wheel_finds_and_validates_its_packaged_settings(installed, tmp_path):
    where = _run(
        installed,
        "-c",
        "import gridflow, gridflow.settings as s; print(gridflow.__file__); print(s.default_conf_dir())",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    module, conf = where.stdout.split()
    assert not module.startswith(str(REPO)) and conf.endswith("gridflow/conf"), where.stdout
    check = _run(installed, "-m", "gridflow.cli", "config", "check", cwd=tmp_path)
    assert check.returncode == 0 and "settings are valid" in check.stdout, check.stderr
    shown = _run(installed, "-m", "gridflow.cli", "config", "show", cwd=tmp_path)
    assert yaml.safe_load(shown.stdout)["jobs"]["anomaly"]["python_execution_mode"] == "thread"
    (tmp_path / "bad.yaml").write_text("clustering: {n_clusters: 1}\n")
    bad = _run(installed, "-m", "gridflow.cli", "config", "check", "--config", str(tmp_path / "bad.yaml"), cwd=tmp_path)
    assert bad.returncode != 0 and "clustering.n_clusters" in bad.stderr


def test_the_wheel_runs_a_job(installed, kafka_settings, tmp_path):
    settings = kafka_settings
    t = settings.topics
    kafka_io.create_topics(settings, [t.profiles], partitions=1)  # one partition: the model sees a fixed order
    kafka_io.create_topics(settings, [t.assignments, t.centroids, t.dead_letter])
    example = CONTRACTS["profile"].example

    def shape(k: int) -> list[float]:  # two load shapes: evening and morning peaks
        peak = 19 if k % 2 else 8
        return [2.0 if abs(hour - peak) <= 1 else 0.7 for hour in range(24)]

    profiles = [
        {
            **example,
            "household_id": f"h-{k % 4}",
            "day_start_ms": example["day_start_ms"] + k // 4 * 86_400_000,
            "slots": 24,
            "profile_norm": shape(k),
            "profile_w": [500 * v for v in shape(k)],
        }
        for k in range(12)
    ]
    ends = kafka_io.produce(
        settings,
        t.profiles,
        [(p["household_id"], json.dumps(p)) for p in profiles] + [("h-0", '{"household_id": "h-0"}')],
    )
    overlay = tmp_path / "settings.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "kafka": settings.kafka.model_dump(),
                "topics": settings.topics.model_dump(),
                "clustering": {"n_clusters": 2, "warmup_profiles": 4},
            }
        )
    )
    job = _run(
        installed,
        "-m",
        "gridflow.jobs.clustering",
        "--config",
        str(overlay),
        "--stop-at",
        format_topic_offsets(t.profiles, ends),
        cwd=tmp_path,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    reference = LoadProfileClusterer.from_settings(
        settings.with_overrides("clustering.n_clusters=2", "clustering.warmup_profiles=4")
    )
    expected = [a for a in map(reference.learn_record, profiles) if a is not None]
    assignments = [json.loads(v) for v in kafka_io.read_topic(settings, t.assignments, expected=len(expected))]
    assert len(expected) >= 8 and len(assignments) == len(expected)
    assert sorted(a["household_id"] for a in assignments) == sorted(a["household_id"] for a in expected)
    (dead,) = [json.loads(v) for v in kafka_io.read_topic(settings, t.dead_letter, until_end=True)]
    assert dead["field"] == "meter_id" and dead["payload"] == '{"household_id": "h-0"}'
