"""A PEP 517 build backend in the standard library alone, so that ``pip install ./protocol/python``
needs nothing from a package index (no setuptools, no wheel): it packs ``src/flotilla`` into a
pure-Python wheel (or an sdist) with the metadata of ``pyproject.toml``."""

import base64
import hashlib
import io
import os
import tarfile
import zipfile
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.abspath(__file__))
NAME = "flotilla"
VERSION = "0.1.0"
SUMMARY = "dstack's Python API (Client, runs.submit, attach, logs, stop) served by the flotilla daemon"
REQUIRES_PYTHON = ">=3.9"
TAG = "py3-none-any"


def _package_files() -> List[Tuple[str, str]]:
    """``(path in the wheel, path on disk)`` of every file of the package (no caches)."""
    out = []
    src = os.path.join(ROOT, "src")
    for folder, dirs, files in os.walk(os.path.join(src, NAME)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if f.endswith((".py", ".typed")):
                disk = os.path.join(folder, f)
                out.append((os.path.relpath(disk, src).replace(os.sep, "/"), disk))
    return out


def _metadata() -> str:
    readme = ""
    path = os.path.join(ROOT, "README.md")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            readme = f.read()
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\nVersion: {VERSION}\nSummary: {SUMMARY}\n"
        f"Requires-Python: {REQUIRES_PYTHON}\nLicense: Apache-2.0\n"
        "Description-Content-Type: text/markdown\n\n" + readme
    )


def _dist_info(directory: str) -> str:
    name = f"{NAME}-{VERSION}.dist-info"
    os.makedirs(os.path.join(directory, name), exist_ok=True)
    with open(os.path.join(directory, name, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata())
    return name


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: Optional[Dict[str, Any]] = None) -> str:
    return _dist_info(metadata_directory)


def build_wheel(wheel_directory: str, config_settings: Optional[Dict[str, Any]] = None,
                metadata_directory: Optional[str] = None) -> str:
    info = f"{NAME}-{VERSION}.dist-info"
    entries: List[Tuple[str, bytes]] = []
    for arc, disk in _package_files():
        with open(disk, "rb") as f:
            entries.append((arc, f.read()))
    entries.append((f"{info}/METADATA", _metadata().encode("utf-8")))
    entries.append((f"{info}/WHEEL", (
        f"Wheel-Version: 1.0\nGenerator: {NAME}-build-backend\nRoot-Is-Purelib: true\nTag: {TAG}\n"
    ).encode()))
    entries.append((f"{info}/top_level.txt", f"{NAME}\n".encode()))
    record = "".join(f"{arc},{_record_hash(data)},{len(data)}\n" for arc, data in entries)
    record += f"{info}/RECORD,,\n"
    entries.append((f"{info}/RECORD", record.encode()))
    wheel = f"{NAME}-{VERSION}-{TAG}.whl"
    os.makedirs(wheel_directory, exist_ok=True)
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in entries:
            z.writestr(zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0)), data,
                       compress_type=zipfile.ZIP_DEFLATED)
    return wheel


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    base = f"{NAME}-{VERSION}"
    files = [(arc, disk) for arc, disk in _package_files()]
    for extra in ("pyproject.toml", "build_backend.py", "README.md"):
        files.append((extra, os.path.join(ROOT, extra)))
    sdist = f"{base}.tar.gz"
    os.makedirs(sdist_directory, exist_ok=True)
    with tarfile.open(os.path.join(sdist_directory, sdist), "w:gz") as tar:
        for arc, disk in files:
            if not os.path.exists(disk):
                continue
            arcname = f"{base}/{arc}" if arc.startswith(("pyproject", "build_backend", "README")) else f"{base}/src/{arc}"
            tar.add(disk, arcname=arcname)
        meta = _metadata().encode("utf-8")
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return sdist
