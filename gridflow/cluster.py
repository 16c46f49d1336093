"""Run gridflow's jobs on a Flink cluster the way operators do: ``flink run`` to submit, the REST API to
watch, stop-with-savepoint to upgrade or rescale, ``flink run -s`` to resume.

    cluster = FlinkCluster("http://127.0.0.1:8081", conf_dir)
    submitted = cluster.submit("preprocess", ["--config", "prod.yaml"])      # one job, returns at once
    cluster.wait_for_checkpoint(submitted.job_id)
    savepoint = cluster.stop_with_savepoint(submitted.job_id, "/savepoints")
    cluster.submit("preprocess", [..., "--set", "flink.parallelism.default=1"], savepoint=savepoint)

``PIPELINE`` lists the jobs in data-flow order; ``gridflow cluster submit`` submits them all. Every job takes
the same settings arguments (``--config``, ``--set``), so one overlay file configures the whole pipeline.
The Flink CLI is the one shipped in the apache-flink package unless ``FLINK_HOME`` names another.

A job bounded with ``--stop-offsets`` and resumed from a savepoint reads up to those offsets but does not end
by itself (the Kafka source's split enumerator, restored from the savepoint, never tells the readers that
no more splits come). End it with ``stop_with_savepoint(..., drain=True)`` once its consumer group's
committed offsets (:func:`gridflow.kafka_io.committed_offsets`) reach the stop offsets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Data-flow order: each job reads topics written by the ones before it.
PIPELINE = (
    "preprocess",
    "clustering",
    "anomaly",
    "forecasting",
    "appliance_learning",
    "load_forecasting",
    "scheduling",
    "recommendations",
)
_SUBMITTED = re.compile(r"Job has been submitted with JobID ([0-9a-f]{32})")
TERMINAL_STATES = {"FINISHED", "FAILED", "CANCELED"}


class ClusterError(RuntimeError):
    """The cluster refused a request, or a job did not reach the state asked for in time."""


def flink_cli() -> Path:
    home = os.environ.get("FLINK_HOME")
    if home:
        return Path(home) / "bin" / "flink"
    from gridflow.stack.services import flink_home

    return flink_home() / "bin" / "flink"


def job_script(job: str) -> Path:
    """The file ``flink run -py`` takes for ``job`` (a name of ``PIPELINE`` or ``reading_summary``)."""
    import importlib.util

    source_tree = Path(__file__).resolve().parent.parent / "jobs"  # editable install / source checkout
    spec = None if source_tree.is_dir() else importlib.util.find_spec("gridflow.jobs")
    if spec is None:
        folder = source_tree
    elif spec.submodule_search_locations is None:
        raise ClusterError(f"gridflow.jobs ({spec.origin}) is not a package: the job scripts cannot be found")
    else:
        folder = Path(spec.submodule_search_locations[0])
    path = folder / f"{job}.py"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
        raise ClusterError(f"unknown job {job!r}; known jobs: {', '.join(known)}")
    return path


@dataclass
class Submission:
    """A job submitted in attached mode: the CLI process stays until the job ends and holds its output."""

    job: str
    job_id: str
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def wait(self, timeout_s: float) -> int:
        """Wait for the job (bounded jobs end by themselves); raises with the CLI's output if it failed."""
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{self.job} ({self.job_id}) still running after {timeout_s:.0f} s") from None
        if code != 0:
            raise ClusterError(f"flink run {self.job} exited with {code}:\n" + "".join(self.output[-60:]))
        return code

    def detach(self) -> None:
        """Stop the CLI client; the job keeps running on the cluster."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@dataclass
class FlinkCluster:
    rest_url: str
    conf_dir: str | None = None  # FLINK_CONF_DIR of the CLI (the cluster's address); None: the CLI's default

    # ---- submission -----------------------------------------------------------------------------------
    def command(self, job: str, job_args: list[str], savepoint: str | None = None) -> list[str]:
        command = [str(flink_cli()), "run", "-pyexec", sys.executable, "-pyclientexec", sys.executable]
        if savepoint:
            command += ["--fromSavepoint", savepoint]
        return command + ["-py", str(job_script(job)), *job_args]

    def environment(self) -> dict[str, str]:
        from gridflow.stack.processes import path_with_interpreter_first

        env = {**os.environ, "PATH": path_with_interpreter_first()}
        if self.conf_dir:
            env["FLINK_CONF_DIR"] = str(self.conf_dir)
        return env

    def submit(
        self, job: str, job_args: list[str], savepoint: str | None = None, timeout_s: float = 300.0
    ) -> Submission:
        """Submit ``job`` with ``flink run`` (attached, in the background); returns once the cluster has it."""
        process = subprocess.Popen(
            self.command(job, job_args, savepoint),
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        stdout = process.stdout
        if stdout is None:  # stdout=PIPE always gives one
            raise ClusterError(f"flink run for {job!r} started without an output pipe")
        submission = Submission(job, "", process)
        found = threading.Event()

        def pump() -> None:
            for line in stdout:
                submission.output.append(line)
                match = _SUBMITTED.search(line)
                if match and not found.is_set():
                    submission.job_id = match.group(1)
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True, name=f"flink-run-{job}").start()
        if not found.wait(timeout_s) or not submission.job_id:
            if process.poll() is None:
                process.kill()
            process.wait()
            raise ClusterError(
                f"flink run {job} did not submit a job within {timeout_s:.0f} s:\n" + "".join(submission.output[-60:])
            )
        return submission

    # ---- REST -----------------------------------------------------------------------------------------
    def _request(self, path: str, method: str = "GET", body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.rest_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
        except urllib.error.HTTPError as error:
            raise ClusterError(f"{method} {path}: HTTP {error.code}: {error.read()[:500]!r}") from None
        except OSError as error:
            raise ClusterError(f"cannot reach the Flink REST API at {self.rest_url}: {error}") from None
        return json.loads(text) if text else {}

    def jobs(self) -> list[dict]:
        return self._request("/jobs/overview")["jobs"]

    def job(self, job_id: str) -> dict:
        return self._request(f"/jobs/{job_id}")

    def state(self, job_id: str) -> str:
        return self.job(job_id)["state"]

    def wait_for_state(self, job_id: str, states: set[str] | str, timeout_s: float = 120.0) -> str:
        states = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout_s
        state = None
        while time.monotonic() < deadline:
            state = self.state(job_id)
            if state in states:
                return state
            if state in TERMINAL_STATES:
                break
            time.sleep(0.5)
        raise ClusterError(f"job {job_id} is {state}, expected {sorted(states)}")

    def wait_until_running(self, job_id: str, timeout_s: float = 180.0) -> None:
        """Until every task of the job runs (the job is RUNNING before its tasks are deployed)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["state"] in TERMINAL_STATES:
                raise ClusterError(f"job {job_id} ended ({job['state']}) before all its tasks ran")
            if job["state"] == "RUNNING" and all(v["status"] in ("RUNNING", "FINISHED") for v in job["vertices"]):
                return
            time.sleep(0.5)
        raise ClusterError(f"job {job_id}'s tasks are not all running after {timeout_s:.0f} s")

    def checkpoints(self, job_id: str) -> dict:
        return self._request(f"/jobs/{job_id}/checkpoints")

    def completed_checkpoints(self, job_id: str) -> int:
        return int(self.checkpoints(job_id)["counts"]["completed"])

    def wait_for_checkpoint(self, job_id: str, after: int = 0, timeout_s: float = 120.0) -> int:
        """Until more than ``after`` checkpoints completed; returns the count."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            count = self.completed_checkpoints(job_id)
            if count > after:
                return count
            time.sleep(0.5)
        raise ClusterError(f"job {job_id} completed no checkpoint after {after} in {timeout_s:.0f} s")

    def restarts(self, job_id: str) -> int:
        """How often the job restarted after a failure (Flink's ``numRestarts``)."""
        metrics = self._request(f"/jobs/{job_id}/metrics?get=numRestarts")
        return int(float(metrics[0]["value"])) if metrics else 0

    def exceptions(self, job_id: str) -> list[dict]:
        """The job's failure history (one entry per failure it recovered from or died of), newest first."""
        return self._request(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]

    def stop_with_savepoint(
        self, job_id: str, target_dir: str | Path, drain: bool = False, timeout_s: float = 180.0
    ) -> str:
        """Stop the job with a savepoint in ``target_dir``; returns the savepoint's path for ``--fromSavepoint``.

        ``drain=True`` first advances event time to the end (every open window fires and its output is
        committed with the savepoint): for ending a job for good, not for resuming it.
        """
        trigger = self._request(
            f"/jobs/{job_id}/stop",
            "POST",
            {"targetDirectory": str(target_dir), "drain": drain, "formatType": "CANONICAL"},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._request(f"/jobs/{job_id}/savepoints/{trigger['request-id']}")
            if status["status"]["id"] == "COMPLETED":
                operation = status.get("operation") or {}
                if "location" not in operation:
                    raise ClusterError(f"stop-with-savepoint of {job_id} failed: {operation.get('failure-cause')}")
                self.wait_for_state(job_id, "FINISHED", timeout_s=60)
                return operation["location"]
            time.sleep(0.5)
        raise ClusterError(f"stop-with-savepoint of {job_id} did not complete in {timeout_s:.0f} s")

    def cancel(self, job_id: str) -> None:
        self._request(f"/jobs/{job_id}?mode=cancel", "PATCH")


def submit_pipeline(
    cluster: FlinkCluster, job_args: list[str], jobs: tuple[str, ...] = PIPELINE, timeout_s: float = 300.0
) -> list[Submission]:
    """Submit the jobs (default: the whole pipeline) to run continuously, one after the other."""
    return [cluster.submit(job, job_args, timeout_s=timeout_s) for job in jobs]


# ---- gridflow cluster ... ---------------------------------------------------------------------------------
def add_parser(commands) -> None:
    from gridflow.cli_args import add_settings_arguments

    parser = commands.add_parser("cluster", help="submit the pipeline's jobs to a Flink cluster, list, stop them")
    parser.add_argument("action", choices=["submit", "list", "stop"])
    parser.add_argument("job_id", nargs="?", help="stop: the job to stop")
    parser.add_argument("--jobs", default=",".join(PIPELINE), help="submit: comma-separated jobs (default: all)")
    parser.add_argument("--from-savepoint", help="submit: resume from this savepoint (one job)")
    parser.add_argument(
        "--savepoint-dir", help="stop: where the savepoint goes (default: execution.checkpointing.savepoint-dir)"
    )
    parser.add_argument("--drain", action="store_true", help="stop: fire all open windows first (ending for good)")
    parser.add_argument(
        "--rest", help="the cluster's REST address (default: the embedded stack's, else rest.address:rest.port)"
    )
    parser.add_argument("--flink-conf-dir", help="FLINK_CONF_DIR for flink run (default: the embedded stack's)")
    add_settings_arguments(parser)


def command(args, settings) -> None:
    from gridflow.stack import read_state

    state = read_state(settings.stack.run_dir)
    options = settings.flink.options()
    rest = args.rest or (
        state.flink_rest
        if state and state.flink_rest
        else f"http://{options.get('rest.address', 'localhost')}:{options.get('rest.port', '8081')}"
    )
    cluster = FlinkCluster(rest, args.flink_conf_dir or (state.flink_conf_dir if state else None))
    try:
        if args.action == "list":
            for job in cluster.jobs():
                print(f"{job['jid']}  {job['state']:10s}  {job['name']}")
        elif args.action == "stop":
            if not args.job_id:
                sys.exit("gridflow: cluster stop needs the job id (see 'gridflow cluster list')")
            target = args.savepoint_dir or options.get("execution.checkpointing.savepoint-dir")
            if not target:
                sys.exit("gridflow: give --savepoint-dir or set flink.execution.checkpointing.savepoint-dir")
            print(cluster.stop_with_savepoint(args.job_id, target, drain=args.drain))
        else:
            jobs = tuple(j.strip() for j in args.jobs.split(",") if j.strip())
            if args.from_savepoint and len(jobs) != 1:
                sys.exit("gridflow: --from-savepoint resumes one job: name it with --jobs")
            job_args = [
                *(a for f in args.config for a in ("--config", f)),
                *(a for o in args.overrides for a in ("--set", o)),
            ]
            for job in jobs:
                submission = cluster.submit(job, job_args, savepoint=args.from_savepoint)
                cluster.wait_until_running(submission.job_id)
                submission.detach()
                print(f"{job}: {submission.job_id} running")
    except ClusterError as error:
        sys.exit(f"gridflow: {error}")
