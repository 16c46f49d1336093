"""micropython-lib's ``umqtt.simple`` for running the firmware on MicroPython's unix port (tests, a bench).

A board gets it with ``mpremote mip install umqtt.simple``; here the PyPI sdist is fetched once (pip's
own HTTP session and index: its package has no setup.py, so pip cannot install it), checked against a
pinned SHA-256 and unpacked into ``<data.cache_dir>/micropython-lib``. ``scripts/setup.sh`` runs
``python -m gridflow.devices.micropython_lib``.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from pathlib import Path

UMQTT_VERSION = "1.3.4"
UMQTT_SDIST = (
    "https://files.pythonhosted.org/packages/bd/cf/697e3418b2f44222b3e848078b1e33ee76aedca9b6c2430ca1b1aec1ce1d/"
    f"micropython-umqtt.simple-{UMQTT_VERSION}.tar.gz"
)
UMQTT_SHA256 = "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"


def umqtt_dir(cache_dir: Path) -> Path:
    """The folder holding ``umqtt/simple.py`` (fetched when missing)."""
    target = Path(cache_dir).expanduser() / "micropython-lib" / f"umqtt.simple-{UMQTT_VERSION}"
    if (target / "umqtt" / "simple.py").exists():
        return target
    from pip._internal.network.session import PipSession  # the index and proxy pip is configured with

    answer = PipSession().get(UMQTT_SDIST, timeout=60)
    answer.raise_for_status()
    digest = hashlib.sha256(answer.content).hexdigest()
    if digest != UMQTT_SHA256:
        raise RuntimeError(f"{UMQTT_SDIST}: SHA-256 {digest}, expected {UMQTT_SHA256}")
    staging = target.with_name(target.name + ".partial")
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith("/umqtt/simple.py"))
        source = sdist.extractfile(member)
        assert source is not None
        (staging / "umqtt").mkdir(parents=True, exist_ok=True)
        (staging / "umqtt" / "simple.py").write_bytes(source.read())
    staging.rename(target)
    return target


if __name__ == "__main__":
    from gridflow.settings import load_settings

    print(umqtt_dir(Path(load_settings().data.cache_dir)))
    sys.exit(0)
