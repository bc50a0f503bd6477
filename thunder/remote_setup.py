"""Runs ON the host with its bare python3 (standard library only): installs one TANGRAM version.

    python3 remote_setup.py --env ENV_DIR --wheel WHEEL [--extras E1,E2] [--hash H] [--force]

ENV_DIR/venv gets TANGRAM's wheel and its requirements. The venv also sees the packages of the
python3 that created it (a .pth runs site.addsitedir on that interpreter's site folders), so a
host image's preinstalled CUDA torch is reused instead of downloaded again, and pip installs only
what is missing. ENV_DIR/ready.json marks a finished install; a lock folder keeps two concurrent
first runs from installing over each other. Progress: JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

LOCK_STALE_S = 3600
KEEP_ENVS = 3


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def base_site_dirs() -> list[str]:
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if os.path.isdir(d)]


def acquire_lock(lock: Path, ready: Path, want: str) -> bool:
    """True when we hold the lock; False when another install finished meanwhile."""
    deadline = time.time() + LOCK_STALE_S
    while True:
        try:
            lock.mkdir(parents=True)
            return True
        except FileExistsError:
            if is_ready(ready, want):
                return False
            if time.time() - lock.stat().st_mtime > LOCK_STALE_S or time.time() > deadline:
                shutil.rmtree(lock, ignore_errors=True)  # a crashed installer's leftover
                continue
            emit("progress", step="waiting for another install on this host")
            time.sleep(2)


def is_ready(ready: Path, want: str) -> bool:
    try:
        return json.loads(ready.read_text()).get("hash") == want
    except (OSError, ValueError):
        return False


def run(cmd: list[str], step: str) -> None:
    emit("progress", step=step)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail, line.rstrip()][-15:]
        emit("log", line=line.rstrip()[:300])
    if proc.wait() != 0:
        raise RuntimeError(f"{step} failed: " + " | ".join(t for t in tail if t.strip())[-600:])


def install(env: Path, wheel: Path, extras: str) -> Path:
    venv = env / "venv"
    shutil.rmtree(env / "venv", ignore_errors=True)
    try:
        run([sys.executable, "-m", "venv", str(venv)], "creating the virtual environment")
    except RuntimeError as exc:
        raise RuntimeError(f"{exc} (on Debian/Ubuntu: apt-get install python3-venv)") from None
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    lines = [f"import site; site.addsitedir({d!r})" for d in base_site_dirs()]
    Path(purelib, "_tangram_base_python.pth").write_text("\n".join(lines) + "\n")
    if importlib.util.find_spec("setuptools") is not None:
        # ensurepip's old setuptools would shadow the base's and make pip fetch a newer one
        run([str(python), "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"],
            "using the host's setuptools")
    # a PEP 508 direct reference: the path is percent-encoded, so ';' or '[' in it stay literal
    target = f"tangram{f'[{extras}]' if extras else ''} @ {wheel.resolve().as_uri()}"
    run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
         "--progress-bar", "off", target], "installing TANGRAM and its requirements")
    check = "import thunder.worker, tangram.stages, config"
    run([str(python), "-P", "-c", check], "checking the installation")
    return python


def prune(envs_root: Path, keep: Path) -> None:
    """Keep the newest few installed versions; older ones only take disk space."""
    ready = sorted((p for p in envs_root.glob("*/ready.json") if p.parent != keep),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for old in ready[KEEP_ENVS - 1:]:
        shutil.rmtree(old.parent, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--env", required=True)
    p.add_argument("--wheel", required=True)
    p.add_argument("--extras", default="")
    p.add_argument("--hash", default="")
    p.add_argument("--force", action="store_true")
    args = p.parse_args()
    env, wheel = Path(args.env), Path(args.wheel)
    ready, lock = env / "ready.json", env.with_name(env.name + ".lock")
    if not args.force and is_ready(ready, args.hash):
        emit("ready", python=str(env / "venv" / "bin" / "python"), reused=True)
        return 0
    if not acquire_lock(lock, ready, args.hash) and not args.force:
        emit("ready", python=str(env / "venv" / "bin" / "python"), reused=True)
        return 0
    started = time.time()
    try:
        ready.unlink(missing_ok=True)
        env.mkdir(parents=True, exist_ok=True)
        python = install(env, wheel, args.extras)
        ready.write_text(json.dumps({"hash": args.hash, "python": str(python), "created": time.time(),
                                     "base_python": sys.executable}))
        prune(env.parent, env)
        emit("ready", python=str(python), reused=False, seconds=round(time.time() - started, 1))
        return 0
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        emit("failed", message=str(exc)[:800])
        return 1
    finally:
        shutil.rmtree(lock, ignore_errors=True)
        wheel.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
