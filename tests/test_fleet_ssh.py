"""`tangram batch --hosts` over two real OpenSSH servers on loopback acting as two hosts (separate
host keys, client keys and ports): each host checked and set up with `tangram thunder setup`'s
venv, Dask's SSH scheduler and workers started over asyncssh with known_hosts verified, the input
shipped to the workers, both hosts used; and the refusals (unknown host key, unreachable host)."""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from fleet_helpers import batch_cmd, fleet_env, read_batch, run_batch_cli, wait_for
from sshd import SshServer, find_sshd, free_port

pytestmark = pytest.mark.timeout(500)


@pytest.fixture(scope="module")
def two_hosts() -> dict:
    if find_sshd() is None:
        pytest.skip("OpenSSH server not installed (scripts/setup_test_deps.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="tangram-fleet-ssh-"))
    root.chmod(0o755)
    servers = [SshServer(root / "host-a"), SshServer(root / "host-b")]
    for server in servers:
        server.start()
    yield {"root": root, "servers": servers, "home": root / "remote-home"}
    for server in servers:
        server.stop()
    shutil.rmtree(root, ignore_errors=True)


def host_arg(server: SshServer, home: Path, **extra: str) -> str:
    opts = {"key_path": str(server.client_key), "known_hosts_path": str(server.known_hosts),
            "remote_home": str(home), "remote_python": __import__("sys").executable, "gpus": "0",
            "price_per_hour": "3.6", **extra}
    return ",".join([f"{server.user}@127.0.0.1:{server.port}", *(f"{k}={v}" for k, v in opts.items())])


def test_batch_over_two_ssh_hosts(two_hosts: dict, tmp_path: Path, yolo_weights: str) -> None:
    from conftest import real_file

    from tangram.runner import default_input

    a, b = two_hosts["servers"]
    home = two_hosts["home"]
    exports = tmp_path / "exports"
    inputs = [str(real_file("apple_orbit.mp4")), str(default_input())]
    args = [*inputs, "--name", "ssh", "--mode", "track", "--hosts", host_arg(a, home), host_arg(b, home),
            "--no-progress"]
    proc = subprocess.Popen(batch_cmd(*args), env=fleet_env(exports, yolo_weights), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # while the batch runs: its scheduler speaks TLS only, with certificates in private folders
        address = wait_for(lambda: read_batch(exports / "ssh")["cluster"]["address"], 300, "scheduler address")
        assert address.startswith("tls://127.0.0.1:"), address
        _plain_tcp_client_is_refused("tcp://" + address.split("://", 1)[1])
        folders = sorted(home.glob("tls-*"))
        assert len(folders) >= 3, folders  # the scheduler's and each worker's
        for folder in folders:
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            assert {p.name for p in folder.iterdir()} == {"ca.pem", "cert.pem", "key.pem"}
            assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir())
        assert not any("PRIVATE KEY" in line for line in _command_lines()), "key material on a command line"
        _, stderr = proc.communicate(timeout=450)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr[-4000:]
    assert not list(home.glob("tls-*")), "the TLS folders are removed at the end"
    data = read_batch(exports / "ssh")
    cluster = data["cluster"]
    labels = {f"{a.user}@127.0.0.1:{a.port}", f"{b.user}@127.0.0.1:{b.port}"}
    assert cluster["kind"] == "ssh" and {w["host"] for w in cluster["workers"]} == labels
    used = {e["stages"]["tracking"]["where"] for e in data["inputs"]}
    assert used == labels, "both hosts ran a stage"
    for entry in data["inputs"]:
        rec = entry["stages"]["tracking"]
        assert entry["status"] == "done" and rec["bytes_up"] > 100_000  # the input travelled to the host
        assert entry["cost_usd"] == pytest.approx(rec["task_seconds"] * 3.6 / 3600, rel=1e-3)
        tracks = exports / "ssh" / entry["run_dir"] / "tracking" / "tracks.json"
        assert tracks.is_file()
    totals = data["totals"]
    assert set(totals["host_seconds"]) == labels and totals["bytes_up"] > 1_000_000
    assert totals["cost_usd"] == pytest.approx(sum(totals["host_seconds"].values()) * 3.6 / 3600, rel=1e-3)


def _plain_tcp_client_is_refused(address: str) -> None:
    """A Client without the batch's certificate cannot talk to the scheduler (short timeout)."""
    import sys

    code = ("import sys\nfrom distributed import Client\n"
            f"try:\n    Client({address!r}, timeout=4).close()\nexcept (OSError, TimeoutError) as exc:\n"
            "    print('refused', type(exc).__name__); sys.exit(3)\nprint('connected')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "refused" in out.stdout, (out.stdout, out.stderr[-2000:])


def _command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return lines


def test_unknown_host_key_is_refused_with_the_fix(two_hosts: dict, tmp_path: Path, yolo_weights: str,
                                                  apple_video: Path) -> None:
    a = two_hosts["servers"][0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    proc = run_batch_cli([str(apple_video), "--name", "k", "--hosts",
                          host_arg(a, two_hosts["home"], known_hosts_path=str(empty))],
                         fleet_env(tmp_path / "exports", yolo_weights), tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "not in" in line and "ssh-keyscan -p" in line and "trust" in line, proc.stderr
    assert empty.read_text() == "", "an unknown key is never recorded silently"
    assert not (tmp_path / "exports" / "k").exists()


def test_unreachable_host_exit_2(two_hosts: dict, tmp_path: Path, yolo_weights: str, apple_video: Path) -> None:
    a = two_hosts["servers"][0]
    dead = host_arg(a, two_hosts["home"]).replace(f":{a.port},", f":{free_port()},")
    proc = run_batch_cli([str(apple_video), "--name", "u", "--hosts", dead],
                         fleet_env(tmp_path / "exports", yolo_weights), tmp_path, timeout=60)
    assert proc.returncode == 2 and "connection refused" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
