"""A real OpenSSH server on loopback for the Thunder tests and benchmark.

The server gets its own host key, client key, authorized_keys and config under a temp folder,
listens on a free high port of 127.0.0.1 only, and is stopped by its PID. Run as root it can log
in any local user (the bootstrap test uses a fresh account); run as another user it can log in
only that user (sshd drops no privileges it does not have).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")


def find_sshd() -> str | None:
    found = shutil.which("sshd")
    if found:
        return found
    return next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    """Write a fresh unencrypted key pair (path, path.pub) with ssh-keygen; mode 600."""
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "tangram-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def wait_port(port: int, timeout: float = 10.0, up: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            is_up = sock.connect_ex(("127.0.0.1", port)) == 0
        if is_up == up:
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not come {'up' if up else 'down'} in {timeout} s")


@dataclass
class SshServer:
    """One sshd process. `start()` / `stop()` may be called repeatedly (same port, same keys)."""

    root: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # sshd reads authorized_keys as the logged-in user: the folder must be traversable.
        self.root.chmod(0o755)
        self.port = self.port or free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.host_key = keygen(self.root / "ssh_host_ed25519_key")
        self.client_key = keygen(self.root / "id_ed25519")
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        self.authorized_keys.chmod(0o644)
        self.known_hosts = self.root / "known_hosts"
        self.write_known_hosts()
        self.log_file = self.root / "sshd.log"
        self.config_file = self.root / "sshd_config"
        self.config_file.write_text(self._config())

    def _config(self) -> str:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the temp folder is not owned by every user logging in
            "PermitRootLogin prohibit-password",
            "MaxStartups 100",
            "MaxSessions 100",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
        ]
        return "\n".join(lines) + "\n"

    def host_entry(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    def write_known_hosts(self, key_pub: Path | None = None) -> None:
        """Record the server's (or another) public host key for 127.0.0.1:port."""
        kind, blob = Path(f"{key_pub or self.host_key}.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"{self.host_entry()} {kind} {blob}\n")

    def trust_port(self, port: int) -> None:
        """Also accept this server's key on another loopback port (a proxy in front of it)."""
        kind, blob = Path(f"{self.host_key}.pub").read_text().split()[:2]
        with open(self.known_hosts, "a") as fh:
            fh.write(f"[127.0.0.1]:{port} {kind} {blob}\n")

    def start(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            return
        sshd = find_sshd()
        if sshd is None:
            raise RuntimeError("sshd not found: apt-get install -y openssh-server (scripts/setup_sshd.sh)")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
        self.proc = subprocess.Popen(
            [sshd, "-D", "-f", str(self.config_file), "-E", str(self.log_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(self.port, timeout)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"sshd did not start: {self.log_tail()}") from exc

    def children(self) -> list[int]:
        """PIDs of the per-connection sshd processes forked by our listener."""
        if not self.proc:
            return []
        kids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid:
                    kids.append(int(entry.name))
        return kids

    def kill_connections(self) -> list[int]:
        """Cut every open SSH connection (SIGKILL to our per-connection sshd processes)."""
        killed = []
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return killed

    def stop(self) -> None:
        """Stop the listener and every connection it forked (by PID)."""
        if not self.proc:
            return
        self.kill_connections()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        with contextlib.suppress(TimeoutError):
            wait_port(self.port, 5, up=False)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
