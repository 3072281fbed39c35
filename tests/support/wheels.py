"""Small wheels built in a test, so dependency tests never touch the internet: `fnpkg` 1.0 and 2.0
(each module says its version), and `Native-Thing`, whose top-level module `native_mod` differs from
its distribution's name (as `yaml` does from PyYAML)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def write_wheel(folder: Path, dist: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel of `dist` at `version` holding `files` ({path in site-packages: text})."""
    name = dist.replace("-", "_")
    info = f"{name}-{version}.dist-info"
    tops = sorted({path.split("/", 1)[0].removesuffix(".py") for path in files})
    contents = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: fnstage-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/top_level.txt": "".join(f"{top}\n" for top in tops),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in contents.items():
            data = text.encode()
            archive.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{member},sha256={digest},{len(data)}")
        records.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return path


def wheelhouse(folder: Path) -> Path:
    """fnpkg 1.0 and 2.0, Native-Thing 1.0 and three more small packages (a 5-package lock)."""
    for version in ("1.0", "2.0"):
        write_wheel(folder, "fnpkg", version, {"fnpkg/__init__.py": f"__version__ = {version!r}\n"})
    write_wheel(folder, "Native-Thing", "1.0", {"native_mod/__init__.py": "NATIVE = True\n"})
    for name in ("alpha-pkg", "beta-pkg", "gamma-pkg"):
        module = name.replace("-", "_")
        write_wheel(folder, name, "1.0", {f"{module}.py": f"NAME = {name!r}\n"})
    return folder


def offline_env(wheels: Path, root: Path) -> dict[str, str]:
    """The settings that make fnstage resolve and install from `wheels` only, into `root`."""
    return {
        "FNSTAGE_FIND_LINKS": str(wheels),
        "FNSTAGE_NO_INDEX": "1",
        "FNSTAGE_ENVIRONMENTS_DIR": str(root / "environments"),
        "FNSTAGE_UV_CACHE_DIR": str(root / "uv-cache"),
    }
