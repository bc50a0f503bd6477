"""Fixtures for the Thunder tests: a real OpenSSH server on loopback, a worker installed on it
once per session, a locally tracked run of the real apple video, and real fault injectors (a TCP
proxy that cuts or kills mid-transfer, a watcher that kills or freezes the remote worker).

Loaded as a plugin from conftest.py (`pytest_plugins = ["thunder_fixtures"]`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sshd import SshServer, find_sshd, keygen

# Names with spaces, quotes and command substitutions: a shell that saw them unquoted would
# create a PWNED file (tests look for it) or fail on the quotes.
WEIRD = "sp ace 'q' \"dq\" $(touch PWNED) `touch PWNED2` ;x"


def pwned_files(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        if root.is_dir():
            found += [p for p in root.rglob("PWNED*") if p.is_file()]
    return found


@pytest.fixture(scope="session")
def sshd_root() -> Iterator[Path]:
    """A folder every local user can traverse (sshd reads authorized_keys as the user)."""
    root = Path(tempfile.mkdtemp(prefix="tangram-sshd-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd(sshd_root: Path) -> Iterator[SshServer]:
    if find_sshd() is None:
        pytest.skip("OpenSSH server not installed (scripts/setup_test_deps.sh installs it)")
    server = SshServer(sshd_root / "main")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_sshd(sshd_root: Path) -> Iterator[SshServer]:
    """A second server to stop, kill or rekey in one test without touching the shared one."""
    if find_sshd() is None:
        pytest.skip("OpenSSH server not installed (scripts/setup_test_deps.sh installs it)")
    server = SshServer(Path(tempfile.mkdtemp(prefix="fresh-", dir=sshd_root)))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def remote_dirs(sshd_root: Path) -> dict[str, Path]:
    """The host's data and home folders (same machine), both with hostile characters."""
    data = sshd_root / f"data {WEIRD}"
    home = sshd_root / f"home {WEIRD}"
    return {"data": data, "home": home}


@pytest.fixture(scope="session")
def thunder_section(sshd: SshServer, remote_dirs: dict[str, Path]) -> dict[str, Any]:
    """config.thunder for the loopback host; the remote python is this venv's (same machine)."""
    return {
        "enabled": True,
        "ssh_host": "127.0.0.1",
        "ssh_port": sshd.port,
        "ssh_user": sshd.user,
        "ssh_key_path": str(sshd.client_key),
        "known_hosts_path": str(sshd.known_hosts),
        "remote_data_dir": str(remote_dirs["data"]),
        "remote_home": str(remote_dirs["home"]),
        "remote_python": sys.executable,
        "connect_timeout_s": 5.0,
        "command_timeout_s": 300.0,
        "retries": 1,
        "retry_backoff_s": 0.2,
        "offload": "always",
    }


def for_server(section: dict[str, Any], server: SshServer, **changes: Any) -> dict[str, Any]:
    return {**section, "ssh_port": server.port, "ssh_key_path": str(server.client_key),
            "known_hosts_path": str(server.known_hosts), **changes}


@pytest.fixture(scope="session")
def local_config(tmp_path_factory: pytest.TempPathFactory, yolo_weights: str) -> Any:
    """Settings shared by the reference run and every Thunder run (GrabCut: no SAM offline)."""
    from tangram.settings import load_config

    exports = tmp_path_factory.mktemp("thunder-exports")
    return load_config(env={}, overrides={
        "run": {"exports_dir": str(exports)},
        "tracking": {"weights": yolo_weights},
        "segmentation": {"backend": "grabcut"},
        "reconstruction": {"max_keyframes": 8},
    })


@pytest.fixture(scope="session")
def base_config(local_config: Any, thunder_section: dict) -> Any:
    """local_config plus the loopback Thunder host (the thunder section changes no stage hash)."""
    from config import ThunderConfig

    return local_config.model_copy(update={"thunder": ThunderConfig(**thunder_section)})


@pytest.fixture
def thunder_config(base_config: Any, tmp_path: Path) -> Callable[..., Any]:
    """base_config with this test's exports folder and thunder overrides."""

    def make(**thunder: Any) -> Any:
        section = base_config.thunder.model_copy(update=thunder)
        run = base_config.run.model_copy(update={"exports_dir": str(tmp_path / "exports")})
        return base_config.model_copy(update={"thunder": section, "run": run})

    return make


@pytest.fixture(scope="session")
def worker_env(base_config: Any) -> Any:
    """The worker installed on the loopback host once per session (the bootstrap, for real)."""
    from thunder.bootstrap import ensure_worker
    from thunder.thunder_client import ThunderClient

    with ThunderClient(base_config.thunder) as client:
        return ensure_worker(client)


@pytest.fixture(scope="session")
def reference_run(local_config: Any) -> Path:
    """apple_orbit.mp4 tracked and segmented locally: the run every remote run is compared with."""
    from conftest import real_file

    from tangram.runner import Pipeline

    result = Pipeline(local_config).run(real_file("apple_orbit.mp4"), name="reference", until="segmentation")
    assert result.ok, result.manifest
    return result.run_dir


def seed_run(reference: Path, exports: Path, name: str, keep: tuple[str, ...] = ("tracking",)) -> Path:
    """A run folder holding only the reference's `keep` stages, so the next run redoes the rest."""
    from tangram.fileio import read_json, write_json

    run = exports / name
    run.mkdir(parents=True)
    manifest = read_json(reference / "manifest.json")
    manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k in keep}
    for stage in keep:
        shutil.copytree(reference / stage, run / stage)
    write_json(run / "manifest.json", manifest)
    return run


def assert_same_segmentation(got: Path, want: Path, min_iou: float = 0.98) -> None:
    """Same keyframes, objects, boxes and frames; masks equal up to GrabCut's random start (its
    k-means seeding draws from OpenCV's global RNG, so two runs in one process can differ by a
    few pixels; a fresh worker process starts from the same seed as a fresh local one)."""
    import cv2
    import numpy as np

    from tangram.fileio import read_json

    a, b = read_json(got / "masks.json"), read_json(want / "masks.json")
    assert a["backend"] == b["backend"]
    assert [k["frame_index"] for k in a["keyframes"]] == [k["frame_index"] for k in b["keyframes"]]
    for ka, kb in zip(a["keyframes"], b["keyframes"], strict=True):
        assert (got / ka["image"]).read_bytes() == (want / kb["image"]).read_bytes()
        assert [(m["track_id"], m["box_xyxy"], m["mask"]) for m in ka["masks"]] == \
            [(m["track_id"], m["box_xyxy"], m["mask"]) for m in kb["masks"]]
        for ma in ka["masks"]:
            ra = cv2.imread(str(got / ma["mask"]), cv2.IMREAD_GRAYSCALE) > 0
            rb = cv2.imread(str(want / ma["mask"]), cv2.IMREAD_GRAYSCALE) > 0
            iou = float(np.logical_and(ra, rb).sum()) / max(1.0, float(np.logical_or(ra, rb).sum()))
            assert iou >= min_iou, (ma["mask"], iou)


def folder_digest(folder: Path) -> dict[str, str]:
    from tangram.fileio import file_fingerprint

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): file_fingerprint(p) for p in files}


# -- fault injectors ---------------------------------------------------------------------------


class CuttingProxy:
    """TCP proxy to an sshd that, once `cut_after` client->server bytes went through, calls
    `on_cut` (e.g. stop the server) and drops every open connection: a transfer cut off."""

    def __init__(self, target_port: int, cut_after: int, on_cut: Callable[[], None] | None = None):
        self.target_port, self.cut_after, self.on_cut = target_port, cut_after, on_cut
        self.sent = 0
        self.cut = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
                if counted and not self.cut.is_set():
                    self.sent += len(data)
                    if self.sent >= self.cut_after:
                        self._cut()
                        return
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _cut(self) -> None:
        self.cut.set()
        if self.on_cut:
            self.on_cut()
        with self._lock:
            for sock in self._conns:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            self._conns.clear()

    def close(self) -> None:
        self.listener.close()
        self._cut() if not self.cut.is_set() else None


def find_worker(marker: str, timeout: float = 60.0) -> int:
    """PID of the remote `thunder.worker run-stage` whose command line contains `marker`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
                # the python worker itself, not the shell that is about to exec it
                if "thunder.worker" in argv and "run-stage" in argv and any(marker in a for a in argv):
                    return int(entry.name)
        time.sleep(0.02)
    raise TimeoutError(f"no remote worker for {marker!r} within {timeout} s")


class WorkerSaboteur:
    """In a thread: wait for the remote worker to start, then send it `sig` (a real crash or hang)."""

    def __init__(self, marker: str, sig: signal.Signals, delay: float = 0.3):
        self.marker, self.sig, self.delay = marker, sig, delay
        self.pid: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.pid = find_worker(self.marker)
            time.sleep(self.delay)  # let it import and start the stage
            os.kill(self.pid, self.sig)
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self._thread.join(30)


def pid_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def other_key(tmp_path: Path) -> Path:
    return keygen(tmp_path / "other_key")
