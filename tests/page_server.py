"""``gridflow page serve`` as a real subprocess on a free port, fed from the real broker, for the page tests."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from gridflow import kafka_io

GRIDFLOW = [sys.executable, "-m", "gridflow.cli"]


@dataclass
class PageServer:
    url: str
    config: Path
    log: Path
    tls: ssl.SSLContext | None = None  # trusts the server's certificate when it serves HTTPS

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*GRIDFLOW, *args, "--config", str(self.config)], check=check, capture_output=True, text=True
        )

    def issue(self, *who: str) -> str:
        """A new access code for a household id, or ``"--operator", name[, "--role", role]``."""
        return self.cli("page", "token", "issue", *who).stdout.strip()

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=10, context=self.tls) as answer:
            return json.loads(answer.read())


@contextlib.contextmanager
def page_server(
    settings, run_dir: Path, records: dict[str, list[dict]], keys: dict[str, list] | None = None, ca_file=None
):
    """Produce ``records`` (kind -> records, keyed by household unless ``keys`` says otherwise) to the
    settings' topics, start ``gridflow page serve`` and wait until it has consumed all of them. With
    HTTPS (``web.tls_certfile``), ``ca_file`` is the CA that signed the server's certificate."""
    kafka_io.create_topics(settings, [getattr(settings.topics, kind) for kind in records])
    for kind, values in records.items():
        kind_keys = (keys or {}).get(kind) or [v.get("household_id") for v in values]
        kafka_io.produce(
            settings,
            getattr(settings.topics, kind),
            [(k, v if isinstance(v, (str, bytes)) else json.dumps(v)) for k, v in zip(kind_keys, values)],
        )
    config = run_dir / "web.yaml"
    config.write_text(
        yaml.safe_dump({key: settings.model_dump(mode="json")[key] for key in ("kafka", "topics", "stack", "web")})
    )
    log = run_dir / "page-serve.log"
    with log.open("w") as errors:
        server = subprocess.Popen(
            [*GRIDFLOW, "page", "serve", "--config", str(config)], stdout=subprocess.PIPE, stderr=errors, text=True
        )
    try:
        first = server.stdout.readline()
        scheme = "https" if settings.web.https else "http"
        assert first.startswith(f"gridflow pages on {scheme}://127.0.0.1:"), first + log.read_text()
        tls = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        site = PageServer(first.split()[-1], config, log, tls)
        expected = sum(len(v) for v in records.values())
        deadline = time.monotonic() + 30
        while site.health().get("consumed", 0) < expected:
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()
            time.sleep(0.3)
        yield site
    finally:
        server.terminate()
        assert server.wait(timeout=20) == 0, log.read_text()
