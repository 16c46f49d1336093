#!/usr/bin/env bash
# Set up everything gridflow needs on a fresh Debian machine; safe and fast to run again.
#   - Debian packages: mosquitto (MQTT broker), Prometheus, Chromium (headless page tests), and Java 17 and
#     Maven if missing
#   - a virtualenv (.venv, or $GRIDFLOW_VENV) with gridflow installed editable, its native extensions
#     built, and the test tools
#   - from Maven Central, once into the jar cache (offline afterwards): Flink's official Kafka connector and
#     Apache Kafka's broker with its dependencies, every jar checked against gridflow/maven/*.lock
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GRIDFLOW_VENV:-.venv}
PYTHON=${PYTHON:-python3}

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
[ "${java_major:-0}" -ge 17 ] || missing+=(openjdk-17-jre-headless)   # Kafka 4 and Flink 2 need Java 17+
command -v mvn >/dev/null 2>&1 || missing+=(maven)                     # resolves the jars from Maven Central
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)      # scrapes job metrics in the tests
command -v chromium >/dev/null 2>&1 || missing+=(chromium)          # headless browser tests of the web pages
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || { echo "setup: creating $VENV"; "$PYTHON" -m venv "$VENV"; }
stamp="$VENV/.gridflow-installed"
fingerprint=$(cat setup.py pyproject.toml native/*.pyx | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$fingerprint" ]; then
  echo "setup: installing Python packages into $VENV (first run takes a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  # Build requirements first so the editable install can build the Cython extensions in this venv.
  "$VENV/bin/python" -m pip install -q "cython>=3.0" "numpy>=2.0,<2.2" "scipy>=1.11"
  "$VENV/bin/python" -m pip install -q --no-build-isolation -e ".[test,bench]"
  "$VENV/bin/python" -m pip check
  echo "$fingerprint" > "$stamp"
fi
"$VENV/bin/gridflow" jars fetch >/dev/null
"$VENV/bin/gridflow" data fetch >/dev/null
"$VENV/bin/python" -m gridflow.devices.micropython_lib >/dev/null  # umqtt.simple for the firmware on MicroPython
echo "setup: ready ($VENV)"
