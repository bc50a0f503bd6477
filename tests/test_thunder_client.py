"""The SSH client and the connection test against a real OpenSSH server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from thunder_fixtures import WEIRD, CuttingProxy, for_server, pwned_files

ROOT = Path(__file__).resolve().parents[1]


def thunder_env(section: dict, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANGRAM_THUNDER_")}
    env.update({f"TANGRAM_THUNDER_{k.upper()}": str(v) for k, v in section.items()})
    env["TANGRAM_CACHE_DIR"] = str(cache)
    return env


def client_for(section: dict, **changes):
    from config import ThunderConfig
    from thunder.thunder_client import ThunderClient

    return ThunderClient(ThunderConfig(**{**section, **changes}))


def test_connection_test_script_reports_the_host(thunder_section, tmp_path):
    """`python thunder/thunder_client.py` from the repo root: exit 0 and every figure measured."""
    proc = subprocess.run([sys.executable, "thunder/thunder_client.py", "--probe-mb", "4"], cwd=ROOT,
                          env=thunder_env(thunder_section, tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for label in ("reachable", "authenticated", "remote OS", "python", "GPU", "free disk", "latency",
                  "upload", "download"):
        assert label in out
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in out  # the remote python's version
    report = json.loads(next((tmp_path / "thunder" / "hosts").glob("*.json")).read_text())
    assert report["upload_mb_s"] > 1 and report["download_mb_s"] > 1  # loopback: far above 1 MB/s
    assert report["info"]["free_bytes"] > 0 and 0 < report["latency_s"] < 1


def test_connection_test_fails_with_one_line(thunder_section, fresh_sshd, tmp_path):
    section = for_server(thunder_section, fresh_sshd)
    fresh_sshd.stop()
    proc = subprocess.run([sys.executable, "thunder/thunder_client.py"], cwd=ROOT,
                          env=thunder_env(section, tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "connection refused" in proc.stderr and "Traceback" not in proc.stderr


def test_disabled_or_unconfigured_is_a_clear_error(thunder_section):
    from thunder.errors import ThunderUnavailable

    with pytest.raises(ThunderUnavailable, match="TANGRAM_THUNDER_ENABLED"):
        client_for(thunder_section, enabled=False)
    with pytest.raises(ThunderUnavailable, match="ssh_host"):
        client_for(thunder_section, ssh_host="")


def test_key_readable_by_others_is_refused(thunder_section, sshd, tmp_path):
    from thunder.errors import ThunderAuthError

    key = tmp_path / "key"
    key.write_bytes(sshd.client_key.read_bytes())
    key.chmod(0o644)
    with pytest.raises(ThunderAuthError, match=r"chmod 600"):
        client_for(thunder_section, ssh_key_path=str(key)).connect()
    key.chmod(0o600)
    with client_for(thunder_section, ssh_key_path=str(key)) as client:
        assert client.run(["true"]).exit_status == 0


def test_wrong_key_is_an_auth_error(thunder_section, other_key):
    from thunder.errors import ThunderAuthError

    with pytest.raises(ThunderAuthError, match=r"authentication .* failed") as info:
        client_for(thunder_section, ssh_key_path=str(other_key)).connect()
    assert not info.value.transient


def test_unknown_host_refused_unless_trust_on_first_use(thunder_section, sshd, tmp_path):
    from thunder.errors import ThunderHostKeyError

    known = tmp_path / "known_hosts"
    with pytest.raises(ThunderHostKeyError, match="not in"):
        client_for(thunder_section, known_hosts_path=str(known)).connect()
    assert not known.exists()
    with client_for(thunder_section, known_hosts_path=str(known), trust_on_first_use=True) as client:
        client.run(["true"])
    recorded = known.read_text()
    assert recorded.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    assert recorded.split()[2] == Path(f"{sshd.host_key}.pub").read_text().split()[1]
    with client_for(thunder_section, known_hosts_path=str(known)) as client:  # now verified, no TOFU
        assert client.run(["true"]).exit_status == 0


def test_changed_host_key_is_refused_even_with_tofu(thunder_section, sshd, tmp_path):
    from sshd import keygen

    from thunder.errors import ThunderHostKeyError

    impostor = keygen(tmp_path / "impostor_host_key")
    known = tmp_path / "known_hosts"
    kind, blob = Path(f"{impostor}.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {blob}\n")
    with pytest.raises(ThunderHostKeyError, match="CHANGED") as info:
        client_for(thunder_section, known_hosts_path=str(known), trust_on_first_use=True).connect()
    assert not info.value.transient
    assert known.read_text().split()[2] == blob  # the recorded key was not replaced


def test_commands_are_quoted_and_big_output_does_not_deadlock(thunder_section, sshd_root):
    marker = sshd_root / f"quoting {WEIRD}"
    script = ("import sys\nfor i in range(40000): sys.stdout.write('o' * 250 + '\\n'); "
              "sys.stderr.write('e' * 250 + '\\n')\nprint(sys.argv[1])")
    lines: list[str] = []
    with client_for(thunder_section) as client:
        client.makedirs(str(marker))
        result = client.run([sys.executable, "-c", script, WEIRD], on_line=lines.append, timeout=120)
        client.remove_tree(str(marker))
    assert result.exit_status == 0
    assert len(lines) == 40001 and lines[-1] == WEIRD  # 20 MB through both pipes, argument intact
    assert result.stderr_tail[-1] == "e" * 250
    assert not marker.exists()
    assert not pwned_files(Path.home(), sshd_root)


def test_remote_timeout_kills_the_remote_process(thunder_section):
    from thunder_fixtures import pid_gone

    from thunder.errors import ThunderTimeout

    pids: list[int] = []
    sleeper = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"
    with client_for(thunder_section) as client:
        started = time.monotonic()
        with pytest.raises(ThunderTimeout):
            client.run([sys.executable, "-c", sleeper], on_line=lambda ln: pids.append(int(ln)), timeout=1.5)
        assert time.monotonic() - started < 10
    assert pids and pid_gone(pids[0])


def test_transfers_verify_and_a_cut_leaves_nothing(thunder_section, fresh_sshd, tmp_path):
    """Upload/download hash on the way; a connection cut mid-upload raises a transient error and
    leaves no partial file under the final name."""
    from thunder.errors import ThunderTransferError

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 << 20))  # above SCP_MIN_BYTES: the scp protocol path
    target = tmp_path / "remote" / "big.bin"
    target.parent.mkdir()
    section = for_server(thunder_section, fresh_sshd)
    with client_for(section) as client:
        assert client.transport.remote_cipher.endswith("gcm@openssh.com")  # AEAD preferred: faster
        sent = client.put_file(big, str(target))  # scp protocol
        got = client.get_file(str(target), tmp_path / "back.bin")
        assert sent.sha256 == got.sha256 and got.bytes == big.stat().st_size
        target.unlink()
        client._scp_available = False  # a host without scp: the same over SFTP
        sent = client.put_file(big, str(target))
        got = client.get_file(str(target), tmp_path / "back2.bin")
        assert sent.sha256 == got.sha256 and (tmp_path / "back2.bin").stat().st_size == got.bytes
    target.unlink()
    proxy = CuttingProxy(fresh_sshd.port, cut_after=16 << 20)
    fresh_sshd.trust_port(proxy.port)
    try:
        with client_for(section, ssh_port=proxy.port) as client, pytest.raises(ThunderTransferError) as info:
            client.put_file(big, str(target))
    finally:
        proxy.close()
    assert info.value.transient and proxy.cut.is_set()
    assert not target.exists()
