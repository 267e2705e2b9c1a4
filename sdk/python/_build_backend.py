"""A PEP 517 build backend in the standard library only, so that `pip install ./sdk/python` needs
no download (pip's isolated build would otherwise fetch setuptools from an index).

It builds a pure-Python wheel of the `matchlock` package and an sdist of this folder; the
project's metadata is read from pyproject.toml's [project] table (simple `key = "value"` lines).
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "matchlock"


def _project():
    with open(os.path.join(HERE, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("[project]", 1)[1].split("\n[", 1)[0]
    meta = dict(re.findall(r'^([a-z-]+)\s*=\s*"([^"]*)"', table, re.M))
    for key in ("name", "version", "description", "requires-python"):
        if key not in meta:
            raise RuntimeError(f"pyproject.toml: [project] {key} is missing")
    return meta


def _metadata():
    p = _project()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {p['name']}",
        f"Version: {p['version']}",
        f"Summary: {p['description']}",
        f"Requires-Python: {p['requires-python']}",
        "License: MIT",
        "Classifier: Typing :: Typed",
    ]
    readme = os.path.join(HERE, "README.md")
    body = ""
    if os.path.exists(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = "\n" + f.read()
    return "\n".join(lines) + "\n" + body


def _package_files():
    root = os.path.join(HERE, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py") or name == "py.typed":
                full = os.path.join(dirpath, name)
                yield full, os.path.relpath(full, HERE).replace(os.sep, "/")


def _dist(p):
    return f"{p['name'].replace('-', '_')}-{p['version']}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    dist = _dist(p)
    name = f"{dist}-py3-none-any.whl"
    info = f"{dist}.dist-info"
    record = []

    def add(zf, arcname, data):
        zf.writestr(zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0)), data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")

    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as zf:
        for full, arc in _package_files():
            with open(full, "rb") as f:
                add(zf, arc, f.read())
        add(zf, f"{info}/METADATA", _metadata().encode())
        add(zf, f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: matchlock _build_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        record.append(f"{info}/RECORD,,")
        zf.writestr(zipfile.ZipInfo(f"{info}/RECORD", date_time=(2026, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    return name


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    dist = _dist(p)
    name = f"{dist}.tar.gz"
    files = [(os.path.join(HERE, f), f) for f in ("pyproject.toml", "_build_backend.py", "README.md")
             if os.path.exists(os.path.join(HERE, f))]
    files += list(_package_files())
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for full, arc in files:
            tf.add(full, arcname=f"{dist}/{arc}")
        pkg_info = _metadata().encode()
        ti = tarfile.TarInfo(f"{dist}/PKG-INFO")
        ti.size = len(pkg_info)
        tf.addfile(ti, io.BytesIO(pkg_info))
    return name
