"""Bootstrap of a fresh account, and detached jobs (submit -> status -> fetch -> the pipeline
continues), on the real loopback SSH host."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from thunder_fixtures import assert_same_segmentation, seed_run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def cli_env(section: dict, local_config, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANGRAM_THUNDER_")}
    env.update({f"TANGRAM_THUNDER_{k.upper()}": str(v) for k, v in section.items()})
    env.update({"TANGRAM_EXPORTS_DIR": str(tmp_path / "exports"),
                "TANGRAM_CACHE_DIR": str(tmp_path / "cache"),
                "TANGRAM_YOLO_WEIGHTS": local_config.tracking.weights,
                "TANGRAM_SEGMENTATION_BACKEND": "grabcut",
                "TANGRAM_RECONSTRUCTION_MAX_KEYFRAMES": str(local_config.reconstruction.max_keyframes)})
    return env


# -- bootstrap ---------------------------------------------------------------------------------


def world_readable(path: Path) -> bool:
    return all(p.stat().st_mode & 0o005 == 0o005 for p in [path, *path.parents])


@pytest.fixture
def fresh_user(sshd_root: Path):
    """A new local account with an empty home: what a freshly rented host gives you."""
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd to create a fresh account")
    name = f"tgboot{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    # useradd leaves the account locked ('!'), which sshd refuses even for keys: '*' = keys only
    subprocess.run(["usermod", "--password", "*", name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        uid = pwd.getpwnam(name).pw_uid
        for entry in Path("/proc").iterdir():  # processes this test started as that user, by PID
            with contextlib.suppress(OSError, ValueError):
                if entry.name.isdigit() and entry.stat().st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
        subprocess.run(["userdel", "--remove", "--force", name], capture_output=True)


@pytest.fixture
def host_python(sshd_root: Path) -> Path:
    """The host's python3 with the heavy stack preinstalled, like a GPU cloud image: Debian's
    /usr/bin/python3 in a venv that sees this checkout's packages (no 5 GB torch download)."""
    system = Path("/usr/bin/python3")
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    if not system.is_file():
        pytest.skip("no /usr/bin/python3 to play the host's python")
    version = subprocess.run([str(system), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        pytest.skip(f"/usr/bin/python3 is {version}, the test venv's packages are for {sys.version_info[:2]}")
    if not world_readable(site):
        pytest.skip(f"{site} is not readable by other users")
    target = sshd_root / "host-python"
    if not target.exists():
        subprocess.run([str(system), "-m", "venv", "--without-pip", str(target)], check=True)
        (target / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages" /
         "preinstalled.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    return target / "bin" / "python"


def test_setup_bootstraps_a_fresh_account_then_reuses_it(thunder_section, fresh_user, host_python,
                                                         local_config, reference_run, tmp_path):
    section = {**thunder_section, "ssh_user": fresh_user.pw_name, "remote_python": str(host_python),
               "remote_home": "~/.tangram", "remote_data_dir": "~/tangram data"}
    env = cli_env(section, local_config, tmp_path)
    first = cli("thunder", "setup", env=env, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "installing TANGRAM" in first.stdout and "worker ready" in first.stdout
    home = Path(fresh_user.pw_dir)
    ready = list(home.glob(".tangram/envs/*/ready.json"))
    assert len(ready) == 1 and ready[0].stat().st_uid == fresh_user.pw_uid
    python = ready[0].parent / "venv" / "bin" / "python"
    where = subprocess.run(["runuser", "-u", fresh_user.pw_name, "--", str(python), "-c",
                            "import tangram, torch; print(tangram.__file__)"], capture_output=True, text=True,
                           cwd=home)
    assert where.returncode == 0 and where.stdout.startswith(str(ready[0].parent / "venv")), where
    stamp = ready[0].stat().st_mtime_ns

    started = time.monotonic()
    again = cli("thunder", "setup", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "installing" not in again.stdout
    assert ready[0].stat().st_mtime_ns == stamp and time.monotonic() - started < 30  # reused, not rebuilt

    # and the account now runs stages: a --thunder segmentation as that user matches the local one
    from config import ThunderConfig
    from tangram.execution.thunder import offload_policy
    from tangram.runner import Pipeline

    config = local_config.model_copy(update={"thunder": ThunderConfig(**section)})
    run_section = config.run.model_copy(update={"exports_dir": str(tmp_path / "x")})
    config = config.model_copy(update={"run": run_section})
    seed_run(reference_run, tmp_path / "x", "fresh")
    result = Pipeline(config, offload=offload_policy(config)).run(_input(reference_run), name="fresh",
                                                                  until="segmentation")
    assert result.record("segmentation")["where"].startswith(f"{fresh_user.pw_name}@")
    assert_same_segmentation(result.run_dir / "segmentation", reference_run / "segmentation")
    assert not any((home / "tangram data").iterdir())  # scratch cleaned up


def _input(run: Path) -> Path:
    return Path(json.loads((run / "manifest.json").read_text())["input"]["path"])


# -- detached jobs -----------------------------------------------------------------------------


def test_jobs_submit_status_fetch_then_the_pipeline_continues(thunder_section, worker_env, local_config,
                                                              reference_run, remote_dirs, tmp_path):
    env = cli_env(thunder_section, local_config, tmp_path)
    video = _input(reference_run)
    submitted = cli("jobs", "submit", "--input", str(video), "--stages", "tracking,segmentation",
                    "--name", "jobrun", env=env, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    job_id = submitted.stdout.strip().splitlines()[-1]
    # the submitting process has exited (connection closed): the job goes on by itself
    seen, deadline = [], time.monotonic() + 240
    while time.monotonic() < deadline:
        status = cli("jobs", "status", env=env, cwd=tmp_path)
        assert status.returncode == 0, status.stderr[-2000:]
        row = next(line for line in status.stdout.splitlines() if line.startswith(job_id))
        seen.append(row)
        if " done " in row or " failed " in row:
            break
        time.sleep(1.0)
    assert status.stdout.splitlines()[0].split() == ["JOB_ID", "INPUT", "STATUS", "PROGRESS"]
    assert video.name in seen[-1] and " done " in seen[-1] and "2/2 stages" in seen[-1], seen
    # (tracking counts its frames, then the frames of the preview it draws from the final tracks)
    for row in seen[:-1]:  # while running: "-" before the first report, then "stage n/total unit"
        assert re.search(r" running +(-|tracking \d+/50 (frames|preview)|segmentation \d+/5 keyframes)$", row), row
    job_status = json.loads((remote_dirs["data"] / "jobs" / job_id / "status.json").read_text())
    assert job_status["progress"] == {"stage": "segmentation", "completed": 5, "total": 5,
                                      "description": "keyframes"}

    fetched = cli("jobs", "fetch", job_id, env=env, cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    run = tmp_path / "exports" / "jobrun"
    manifest = json.loads((run / "manifest.json").read_text())
    for stage in ("tracking", "segmentation"):
        record = manifest["stages"][stage]
        assert record["status"] == "done" and record["where"].endswith(f":{thunder_section['ssh_port']}")
        assert record["execution"]["job_id"] == job_id and record["execution"]["bytes_down"] > 0
    assert_same_segmentation(run / "segmentation", reference_run / "segmentation")
    ours, theirs = (json.loads((d / "tracking" / "tracks.json").read_text()) for d in (run, reference_run))
    assert ours["frames"] == theirs["frames"]  # same detections and track ids as the local tracker
    assert "fetched" in cli("jobs", "status", env=env, cwd=tmp_path).stdout

    # the local pipeline continues from the fetched stages instead of recomputing them
    from tangram.runner import Pipeline

    config = local_config.model_copy(update={"run": local_config.run.model_copy(
        update={"exports_dir": str(tmp_path / "exports")})})
    result = Pipeline(config).run(video, name="jobrun", until="segmentation")
    for stage in ("tracking", "segmentation"):
        assert result.record(stage)["finished_at"] == manifest["stages"][stage]["finished_at"]
