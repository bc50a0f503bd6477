"""Turn a host with only ssh and python3 into a TANGRAM worker (`tangram thunder setup`, and
automatically on first use).

The project's own code is packed locally into a wheel (built here from the source tree: no
build backend or network needed) whose version carries a hash of the code and requirements.
On the host it is installed with its requirements into `<remote_home>/envs/<hash>/venv` by
`thunder/remote_setup.py`, run with the host's python3. While the hash matches, the install is
reused: the check is one `stat` over SFTP. Model weights are cached on the host under
`<remote_home>/models/<sha256>/` and uploaded once per host, not per job.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import json
import logging
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tangram
from thunder.errors import ThunderSetupError
from thunder.thunder_client import ThunderClient

log = logging.getLogger("thunder")

BOOTSTRAP_VERSION = "1"  # bump when the remote layout changes
PACKAGES = ("tangram", "thunder")
MODULES = ("config",)
EXTRAS = ("offline-detectors", "fleet")  # TFLite/ONNX weights (detached jobs); Dask for `tangram batch`
SKIP_PARTS = {"__pycache__"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same code gives the same wheel bytes
SETUP_TIMEOUT_S = 3600.0

ProgressMsg = Callable[[str], None]


@dataclass(frozen=True)
class Wheel:
    version: str
    code_hash: str
    contents: list[tuple[str, bytes]]  # (name in the wheel, bytes) of the code files
    metadata: str

    @property
    def filename(self) -> str:
        return f"tangram-{self.version}-py3-none-any.whl"


@dataclass(frozen=True)
class WorkerEnv:
    python: str  # the venv's interpreter on the host
    env_dir: str
    code_hash: str
    models_dir: str


def source_root() -> Path:
    return Path(tangram.__file__).resolve().parents[1]


def project_requirements(root: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Dependencies and extras from pyproject.toml, else from the installed distribution."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text())["project"]
        return list(project.get("dependencies", [])), dict(project.get("optional-dependencies", {}))
    requires = importlib.metadata.requires("tangram") or []
    base = [r for r in requires if "extra ==" not in r]
    extras: dict[str, list[str]] = {}
    for req in requires:
        if "extra ==" in req:
            spec, _, marker = req.partition(";")
            extras.setdefault(marker.split("==")[1].strip().strip("\"'"), []).append(spec.strip())
    return base, extras


def code_files(root: Path) -> list[tuple[Path, str]]:
    files = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not SKIP_PARTS & set(rel.parts) and path.suffix not in SKIP_SUFFIXES:
                files.append((path, rel.as_posix()))
    files += [(root / f"{m}.py", f"{m}.py") for m in MODULES]
    return files


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata(version: str, requirements: list[str], extras: dict[str, list[str]]) -> str:
    lines = ["Metadata-Version: 2.1", "Name: tangram", f"Version: {version}", "Requires-Python: >=3.11"]
    lines += [f"Requires-Dist: {r}" for r in requirements]
    for extra in EXTRAS:
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in extras.get(extra, [])]
    return "\n".join(lines) + "\n"


def plan_wheel() -> Wheel:
    """TANGRAM's code and requirements, and the hash that names their install on the host."""
    root = source_root()
    requirements, extras = project_requirements(root)
    digest = hashlib.sha256(BOOTSTRAP_VERSION.encode())
    contents = []
    for path, arcname in code_files(root):
        data = path.read_bytes()
        contents.append((arcname, data))
        digest.update(arcname.encode() + b"\0" + hashlib.sha256(data).digest())
    digest.update(json.dumps([requirements, {e: extras.get(e, []) for e in EXTRAS}]).encode())
    code_hash = digest.hexdigest()[:16]
    version = f"{tangram.__version__}+h{code_hash}"
    return Wheel(version, code_hash, contents, _metadata(version, requirements, extras))


def build_wheel(wheel: Wheel, out_dir: Path) -> Path:
    """Write the py3-none-any wheel file (fixed timestamps: same code, same bytes)."""
    path = out_dir / wheel.filename
    _write_wheel(path, wheel.version, wheel.contents, wheel.metadata)
    return path


def _write_wheel(path: Path, version: str, contents: list[tuple[str, bytes]], metadata: str) -> None:
    dist_info = f"tangram-{version}.dist-info"
    contents = [*contents,
                (f"{dist_info}/METADATA", metadata.encode()),
                (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: tangram-thunder\n"
                                       b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
                (f"{dist_info}/top_level.txt", "\n".join([*PACKAGES, *MODULES]).encode() + b"\n")]
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in contents:
        writer.writerow([name, _record_hash(data), len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [*contents, (f"{dist_info}/RECORD", record.getvalue().encode())]:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    tmp.replace(path)


_READY: dict[tuple[str, str], WorkerEnv] = {}  # (host, hash) checked in this process


def ensure_worker(client: ThunderClient, force: bool = False,
                  progress: ProgressMsg | None = None) -> WorkerEnv:
    """The host's worker for this exact code, installing it first if needed."""
    say = progress or (lambda msg: log.info("%s", msg))
    wheel = plan_wheel()
    home = client.expand(client.cfg.remote_home).rstrip("/")
    env_dir = f"{home}/envs/{wheel.code_hash}"
    env = WorkerEnv(f"{env_dir}/venv/bin/python", env_dir, wheel.code_hash, f"{home}/models")
    key = (client.label, wheel.code_hash)
    if not force and (key in _READY or client.exists(f"{env_dir}/ready.json")):
        _READY[key] = env
        return env
    started = time.perf_counter()
    say(f"Thunder setup on {client.label}: installing TANGRAM {wheel.version} into {env_dir}")
    incoming = f"{home}/incoming"
    client.makedirs(incoming)
    remote_wheel = f"{incoming}/{wheel.filename}"
    remote_script = f"{incoming}/remote_setup-{wheel.code_hash}.py"
    with tempfile.TemporaryDirectory(prefix="tangram-wheel-") as tmp:  # private, gone afterwards
        sent = client.put_file(build_wheel(wheel, Path(tmp)), remote_wheel)
    client.put_file(Path(__file__).with_name("remote_setup.py"), remote_script)
    say(f"Thunder setup: uploaded code ({sent.bytes / 1e3:.0f} kB wheel)")
    outcome: dict = {}

    def on_line(line: str) -> None:
        event = _parse(line)
        if event.get("event") == "progress":
            say(f"Thunder setup: {event['step']}")
        elif event.get("event") == "log":
            log.debug("setup: %s", event["line"])
        elif event.get("event") in ("ready", "failed"):
            outcome.update(event)

    argv = [client.cfg.remote_python, remote_script, "--env", env_dir, "--wheel", remote_wheel,
            "--extras", ",".join(EXTRAS), "--hash", wheel.code_hash]
    result = client.run([*argv, "--force"] if force else argv, on_line=on_line, timeout=SETUP_TIMEOUT_S)
    client.run(["rm", "-f", "--", remote_script])
    if result.exit_status == 127:
        raise ThunderSetupError(f"remote python {client.cfg.remote_python} not found on {client.label} "
                                "(thunder.remote_python must be an absolute path to python3 >= 3.11)")
    if outcome.get("event") != "ready":
        reason = outcome.get("message") or result.reason()
        raise ThunderSetupError(f"setting up the worker on {client.label} failed: {reason}")
    seconds = time.perf_counter() - started
    say(f"Thunder setup: worker ready on {client.label} in {seconds:.0f} s")
    _READY[key] = env
    return env


def _parse(line: str) -> dict:
    try:
        data = json.loads(line)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def ensure_model(client: ThunderClient, env: WorkerEnv, local: Path) -> str:
    """The host path of a weights file, uploading it once per host (keyed by content hash)."""
    from tangram.fileio import file_fingerprint

    digest = file_fingerprint(local)[:16]
    folder = f"{env.models_dir}/{digest}"
    remote = f"{folder}/{local.name}"
    if client.exists(remote):
        return remote
    log.info("Thunder: caching model %s (%.0f MB) on %s", local.name, local.stat().st_size / 1e6,
             client.label)
    client.makedirs(folder)
    sent = client.put_file(local, remote)
    if sent.sha256[:16] != digest:
        client.run(["rm", "-f", "--", remote])
        raise ThunderSetupError(f"model {local.name} changed while it was uploaded")
    return remote
