"""SSH client for the Thunder Compute host (paramiko), and the connection test.

    python thunder/thunder_client.py [--config FILE] [--trust-new-host] [--probe-mb 16] [--json]

is the connection test (also `tangram thunder test`): reachable, authenticated, remote OS,
Python, GPU, free disk in remote_data_dir, latency and measured upload/download throughput.
Exit 0 when the host is usable, 1 with a one-line reason on stderr otherwise.

Security: key authentication only, with a private key that only its owner can read (as ssh
demands); the host key is checked against known_hosts and an unknown key is refused unless trust
on first use was asked for (then it is recorded); a changed key is always refused. Every remote
command is built from an argument list with each item shell-quoted. Keys are never logged.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable, not thunder/
    _ROOT = str(Path(__file__).resolve().parents[1])
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [_ROOT] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import secrets
import select
import shlex
import socket
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import paramiko
from scp import SCPClient, SCPException

from config import ThunderConfig
from thunder.errors import (
    ThunderAuthError,
    ThunderConnectError,
    ThunderDiskFull,
    ThunderError,
    ThunderHostKeyError,
    ThunderRemoteError,
    ThunderTimeout,
    ThunderTransferError,
    ThunderUnavailable,
)

log = logging.getLogger("thunder")

CHUNK = 32768  # one SFTP request; paramiko pipelines writes and prefetches reads
PID_MARK = "TANGRAM_REMOTE_PID="


def host_label(cfg: ThunderConfig) -> str:
    """How a host is named in logs and the manifest: user@host[:port]."""
    port = "" if cfg.ssh_port == 22 else f":{cfg.ssh_port}"
    return f"{cfg.ssh_user}@{cfg.ssh_host}{port}" if cfg.ssh_user else f"{cfg.ssh_host}{port}"


def check_configured(cfg: ThunderConfig) -> None:
    """Raise ThunderUnavailable with what to set when Thunder is off or incomplete."""
    if not cfg.enabled:
        raise ThunderUnavailable(
            "Thunder is disabled: set enabled = true in config.py HARDWARE_CONFIG['thunder_compute'], "
            "[thunder] in the TOML config, or TANGRAM_THUNDER_ENABLED=1")
    missing = [name for name in ("ssh_host", "ssh_user") if not getattr(cfg, name)]
    if missing:
        names = ", ".join(missing)
        env = ", ".join(f"TANGRAM_THUNDER_{m.upper()}" for m in missing)
        raise ThunderUnavailable(f"Thunder is not configured: {names} empty (config.py or {env})")


def shell_join(argv: Sequence[str | os.PathLike[str]]) -> str:
    """One shell command line; every item quoted, so spaces, quotes and $(...) stay literal."""
    return " ".join(shlex.quote(os.fspath(a)) for a in argv)


def fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..." as ssh prints it


# -- host keys ---------------------------------------------------------------------------------


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path, port: int):
        self.known_hosts, self.port = known_hosts, port

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        host = hostname.split("]")[0].lstrip("[")
        port = f"-p {self.port} " if self.port != 22 else ""
        raise ThunderHostKeyError(
            f"host key of {hostname} is not in {self.known_hosts} ({key.get_name()} {fingerprint(key)}); "
            f"check it and add it (ssh-keyscan {port}{host} >> {self.known_hosts}) or allow trust on first "
            "use (tangram thunder test --trust-new-host, or TANGRAM_THUNDER_TRUST_ON_FIRST_USE=1)")


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Accept an unknown host's key once and record it, so the next connection verifies it."""

    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.known_hosts, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("trusting the new host key of %s on first use: %s %s (recorded in %s)",
                    hostname, key.get_name(), fingerprint(key), self.known_hosts)


def _prefer_aead(sock: Any, **kwargs: Any) -> paramiko.Transport:
    """A transport offering AES-GCM first: one pass for cipher and integrity instead of CTR plus
    HMAC, about twice paramiko's default throughput. Hosts without GCM negotiate the rest."""
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    gcm = [c for c in options.ciphers if "gcm" in c]
    options.ciphers = tuple(gcm + [c for c in options.ciphers if c not in gcm])
    return transport


def load_private_key(path: Path) -> paramiko.PKey:
    """The private key, refused like ssh does when it is missing or readable by others."""
    if not path.is_file():
        raise ThunderAuthError(f"private key not found: {path} (thunder.ssh_key_path)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ThunderAuthError(
            f"private key {path} is accessible by others (mode {mode:04o}); ssh refuses such keys: "
            f"run chmod 600 {shlex.quote(str(path))}")
    try:
        return paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        raise ThunderAuthError(
            f"private key {path} is protected by a passphrase; use a dedicated key without one "
            "(ssh-keygen -t ed25519 -N '' -f KEY) for the Thunder host") from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise ThunderAuthError(f"cannot read private key {path}: {exc}") from None


# -- results -----------------------------------------------------------------------------------


@dataclass
class RemoteResult:
    exit_status: int
    seconds: float
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)

    def reason(self) -> str:
        """The last meaningful stderr line (a traceback's final line), for one-line errors."""
        for line in reversed(self.stderr_tail):
            if line.strip():
                return line.strip()[:300]
        return f"exit status {self.exit_status}"


@dataclass
class Transfer:
    bytes: int
    seconds: float
    sha256: str

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / max(self.seconds, 1e-9)


SCP_BUFFER = 1 << 18  # bytes per channel write: fewer Python round trips per MB
# Below this size SFTP wins: an scp transfer starts a process on the host (~0.2 s, measured on
# loopback); above it the scp stream is faster (no request/acknowledge per 32 kB block).
SCP_MIN_BYTES = 32 << 20


def _scp_missing(exc: Exception) -> bool:
    """The host's shell could not find scp ('sh: 1: scp: not found', 'scp: command not found')."""
    return re.search(r"scp: (command )?not found", str(exc).lower()) is not None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _HashingReader:
    def __init__(self, fh: IO[bytes]):
        self.fh, self.digest = fh, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.digest.update(data)
        return data

    def tell(self) -> int:
        return self.fh.tell()


class _HashingWriter:
    def __init__(self, fh: IO[bytes]):
        self.fh, self.digest, self.bytes = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.bytes += len(data)
        return self.fh.write(data)


# -- the client --------------------------------------------------------------------------------


class ThunderClient:
    """One SSH connection to the host; use as a context manager."""

    def __init__(self, cfg: ThunderConfig, trust_on_first_use: bool | None = None):
        check_configured(cfg)
        self.cfg = cfg
        self.trust_on_first_use = cfg.trust_on_first_use if trust_on_first_use is None else trust_on_first_use
        self.label = host_label(cfg)
        self._ssh: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._home: str | None = None
        self._scp_available = True
        self.connect_s = 0.0

    # connection ------------------------------------------------------------------------------

    def __enter__(self) -> ThunderClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        cfg = self.cfg
        key = load_private_key(Path(cfg.ssh_key_path).expanduser())
        known_hosts = Path(cfg.known_hosts_path).expanduser()
        ssh = paramiko.SSHClient()
        if known_hosts.is_file():
            ssh.load_host_keys(str(known_hosts))
        policy = _TrustOnFirstUse(known_hosts) if self.trust_on_first_use else _RefuseUnknownHost(
            known_hosts, cfg.ssh_port)
        ssh.set_missing_host_key_policy(policy)
        started = time.perf_counter()
        try:
            ssh.connect(cfg.ssh_host, cfg.ssh_port, cfg.ssh_user, pkey=key, timeout=cfg.connect_timeout_s,
                        banner_timeout=cfg.connect_timeout_s, auth_timeout=cfg.connect_timeout_s,
                        allow_agent=False, look_for_keys=False, transport_factory=_prefer_aead)
        except ThunderError:
            ssh.close()
            raise
        except Exception as exc:
            ssh.close()
            raise self._connect_error(exc) from None
        self.connect_s = time.perf_counter() - started
        transport = ssh.get_transport()
        assert transport is not None
        transport.set_keepalive(15)  # notices a dead host during long remote computations
        self._ssh = ssh
        log.debug("connected to %s in %.3f s (%s)", self.label, self.connect_s, transport.remote_cipher)

    def _connect_error(self, exc: Exception) -> ThunderError:
        where = f"{self.cfg.ssh_host}:{self.cfg.ssh_port}"
        if isinstance(exc, paramiko.BadHostKeyException):
            return ThunderHostKeyError(
                f"host key of {where} CHANGED: it sent {exc.key.get_name()} {fingerprint(exc.key)} but "
                f"{self.cfg.known_hosts_path} has {fingerprint(exc.expected_key)}; refusing (possible "
                "man-in-the-middle). If the host was reinstalled, remove the old key with ssh-keygen -R")
        if isinstance(exc, paramiko.AuthenticationException):
            return ThunderAuthError(
                f"authentication as {self.cfg.ssh_user} on {where} failed with key {self.cfg.ssh_key_path} "
                "(is its public key in the host's authorized_keys?)")
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            return ThunderConnectError(f"cannot connect to {where}: connection refused")
        if isinstance(exc, socket.gaierror):
            return ThunderConnectError(f"cannot resolve host {self.cfg.ssh_host}: {exc.strerror}")
        if isinstance(exc, TimeoutError | socket.timeout):
            return ThunderConnectError(
                f"cannot connect to {where}: timed out after {self.cfg.connect_timeout_s} s")
        return ThunderConnectError(f"cannot connect to {where}: {exc or type(exc).__name__}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._sftp:
                self._sftp.close()
        with contextlib.suppress(Exception):
            if self._ssh:
                self._ssh.close()
        self._sftp = self._ssh = None

    @property
    def transport(self) -> paramiko.Transport:
        transport = self._ssh.get_transport() if self._ssh else None
        if transport is None or not transport.is_active():
            raise ThunderConnectError(f"connection to {self.label} lost")
        return transport

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self.transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise ThunderConnectError(f"cannot open SFTP on {self.label}: {exc}") from None
            assert self._sftp is not None
            # a stalled transfer raises instead of waiting forever
            self._sftp.get_channel().settimeout(max(30.0, 3 * self.cfg.connect_timeout_s))
        return self._sftp

    # remote paths ----------------------------------------------------------------------------

    def home(self) -> str:
        if self._home is None:
            with self._io_errors("reading the remote home folder"):
                self._home = self.sftp.normalize(".")
        return self._home

    def expand(self, path: str) -> str:
        """Absolute remote path: '~' and '~/x' point into the remote home (no shell involved)."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return f"{self.home().rstrip('/')}/{path[2:]}"
        if not path.startswith("/"):
            return f"{self.home().rstrip('/')}/{path}"
        return path

    # commands --------------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        on_line: Callable[[str], None] | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        check: bool = False,
    ) -> RemoteResult:
        """Run a command on the host, reading stdout/stderr while it runs (no deadlock on big
        output). stdout lines go to `on_line`. Past `timeout` the remote process group is killed
        and ThunderTimeout raised; if `on_line` raises (cancel), the process is killed too."""
        # The shell reports its PID, then becomes the command (same PID, its own process group).
        # The token names the shell in `ps` until then, so a command stuck even before the echo
        # can still be found and killed.
        token = secrets.token_hex(8)
        command = f"TANGRAM_CMD={token}; echo {PID_MARK}$$; exec {shell_join(argv)}"
        try:
            chan = self.transport.open_session(timeout=self.cfg.connect_timeout_s)
            chan.exec_command(command)
        except ThunderError:
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ThunderConnectError(f"cannot start a command on {self.label}: {exc}") from None
        started = time.perf_counter()
        reader = _ChannelReader(chan, on_line)
        try:
            if stdin is not None:
                chan.sendall(stdin)
                chan.shutdown_write()
            status = reader.pump(None if timeout is None else started + timeout)
        except BaseException:
            self._kill(reader.pid, token)
            raise
        finally:
            chan.close()
        result = RemoteResult(status, time.perf_counter() - started, list(reader.stdout_tail),
                              list(reader.stderr_tail))
        if status is None:
            self._kill(reader.pid, token)
            raise ThunderTimeout(f"remote command ran past {timeout:.0f} s on {self.label} and was killed")
        if status == -1:
            if not self.alive():
                raise ThunderConnectError(f"connection to {self.label} lost while running {argv[0]}")
            raise ThunderRemoteError(f"remote process on {self.label} was killed ({result.reason()})")
        if check and status != 0:
            raise ThunderRemoteError(f"{shell_join(argv[:2])} failed on {self.label}: {result.reason()}")
        return result

    def alive(self) -> bool:
        transport = self._ssh.get_transport() if self._ssh else None
        return bool(transport and transport.is_active())

    def _kill(self, pid: int | None, token: str) -> None:
        """TERM, then KILL, the remote process group (sshd makes each session its own group),
        and any shell still carrying the command's token (stuck before it reported its PID)."""
        if not self.alive():
            return
        pattern = shlex.quote(f"TANGRAM_CM[D]={token}")  # [D]: does not match this kill script
        group = f"kill -{{sig}} -- -{pid} 2>/dev/null; " if pid else ""
        script = (f"{group.format(sig='TERM')}pkill -TERM -f {pattern}; sleep 1; "
                  f"{group.format(sig='KILL')}pkill -KILL -f {pattern}; true")
        with contextlib.suppress(Exception):
            chan = self.transport.open_session(timeout=self.cfg.connect_timeout_s)
            chan.exec_command(script)
            chan.settimeout(10)
            chan.recv_exit_status()
            chan.close()
        log.debug("killed remote process group %s on %s", pid, self.label)

    # files -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _io_errors(self, action: str, remote_dir: str | None = None,
                   needed: int | Callable[[], int] = 0) -> Iterator[None]:
        try:
            yield
        except ThunderError:
            raise
        except SCPException as exc:
            if "no space left" in str(exc).lower():
                raise ThunderDiskFull(f"no space left on {self.label} in {remote_dir} "
                                      f"while {action}") from None
            if not self.alive():
                raise ThunderTransferError(f"{action} on {self.label} was cut off: connection lost") from None
            raise ThunderTransferError(f"{action} on {self.label} failed: {exc}") from None
        except (paramiko.SSHException, EOFError, TimeoutError, ConnectionError) as exc:
            why = exc or type(exc).__name__
            raise ThunderTransferError(f"{action} on {self.label} was cut off: {why}") from None
        except OSError as exc:
            need = needed() if callable(needed) else needed
            if remote_dir and self.alive() and (free := self._free_bytes(remote_dir)) is not None \
                    and free < max(need, 64 << 10):
                raise ThunderDiskFull(f"no space left on {self.label} in {remote_dir} while {action} "
                                      f"({free >> 10} KiB free)") from None
            if not self.alive():
                raise ThunderTransferError(f"{action} on {self.label} was cut off: connection lost") from None
            raise ThunderTransferError(f"{action} on {self.label} failed: {exc}") from None

    def _free_bytes(self, remote_dir: str) -> int | None:
        """SFTP reports ENOSPC as a bare 'Failure' (or a short file): ask the host for room left."""
        with contextlib.suppress(Exception):
            result = self.run(["df", "-Pk", remote_dir])
            return int(result.stdout_tail[-1].split()[3]) * 1024
        return None

    def makedirs(self, path: str) -> None:
        with self._io_errors(f"creating {path}", path):
            self.run(["mkdir", "-p", "--", path], check=True)

    def exists(self, path: str) -> bool:
        with self._io_errors(f"checking {path}"):
            try:
                self.sftp.stat(path)
                return True
            except FileNotFoundError:
                return False

    def remove_tree(self, path: str) -> None:
        """rm -rf a folder this client created (callers pass paths under remote_data_dir/home)."""
        parts = [p for p in path.split("/") if p]
        if not path.startswith("/") or len(parts) < 2 or ".." in parts or path.rstrip("/") == self.home():
            raise ValueError(f"refusing to remove remote path {path!r}")
        self.run(["rm", "-rf", "--", path], check=True)

    def put_file(self, local: Path, remote: str,
                 callback: Callable[[int, int], None] | None = None) -> Transfer:
        """Upload a file (hashing it on the way) to `remote` via a temp name, renamed when complete.
        Big files go over the scp protocol (one stream), small ones over SFTP (no process to start
        on the host), and all of them over SFTP where the host has no scp."""
        size = local.stat().st_size
        tmp = f"{remote}.part-{secrets.token_hex(4)}"
        started = time.perf_counter()
        where = remote.rsplit("/", 1)[0]
        with self._io_errors(f"uploading {local.name}", where, needed=size), open(local, "rb") as fh:
            reader = _HashingReader(fh)
            try:
                if not self._scp_put(reader, tmp, size, callback):
                    self.sftp.putfo(reader, tmp, file_size=size, callback=callback)
                if self.sftp.stat(tmp).st_size != size:
                    raise OSError(f"size mismatch: {size} bytes sent, fewer arrived")
                self.sftp.posix_rename(tmp, remote)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.sftp.remove(tmp)
                raise
        return Transfer(size, time.perf_counter() - started, reader.digest.hexdigest())

    def _scp(self, callback: Callable[[int, int], None] | None) -> SCPClient:
        progress = (lambda _name, size, sent: callback(sent, size)) if callback else None
        return SCPClient(self.transport, buff_size=SCP_BUFFER, progress=progress,
                         socket_timeout=max(30.0, 3 * self.cfg.connect_timeout_s))

    def _scp_put(self, reader: _HashingReader, remote: str, size: int,
                 callback: Callable[[int, int], None] | None) -> bool:
        """False when SFTP should do it: a small file, or no scp on the host (nothing sent)."""
        if not self._scp_available or size < SCP_MIN_BYTES:
            return False
        try:
            with self._scp(callback) as scp:
                scp.putfo(reader, remote, size=size)
            return True
        except SCPException as exc:
            if reader.tell() == 0 and _scp_missing(exc):
                self._scp_available = False
                log.debug("no scp on %s: using SFTP", self.label)
                return False
            raise

    def put_stream(self, write: Callable[[IO[bytes]], None], remote: str) -> Transfer:
        """Upload what `write(fileobj)` writes (e.g. a tar stream), with no local temp file."""
        tmp = f"{remote}.part-{secrets.token_hex(4)}"
        started = time.perf_counter()
        writer = _HashingWriter(io.BytesIO())
        with self._io_errors(f"uploading {remote.rsplit('/', 1)[-1]}", remote.rsplit("/", 1)[0],
                             needed=lambda: writer.bytes):
            try:
                with self.sftp.open(tmp, "wb") as fh:
                    fh.set_pipelined(True)
                    writer = _HashingWriter(fh)
                    write(writer)  # type: ignore[arg-type]
                if self.sftp.stat(tmp).st_size != writer.bytes:  # pipelined writes can fail silently
                    raise OSError(f"size mismatch: {writer.bytes} bytes sent, fewer arrived")
                self.sftp.posix_rename(tmp, remote)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.sftp.remove(tmp)
                raise
        return Transfer(writer.bytes, time.perf_counter() - started, writer.digest.hexdigest())

    def get_file(self, remote: str, local: Path,
                 callback: Callable[[int, int], None] | None = None) -> Transfer:
        """Download to `local` and hash it; a cut-off download leaves no file behind."""
        started = time.perf_counter()
        tmp = local.with_name(f".{local.name}.part-{secrets.token_hex(4)}")
        with self._io_errors(f"downloading {remote.rsplit('/', 1)[-1]}"):
            try:
                if not self._scp_get(remote, tmp, callback):
                    self.sftp.get(remote, str(tmp), callback=callback)
                size, digest = tmp.stat().st_size, _sha256(tmp)
                tmp.replace(local)
            finally:
                tmp.unlink(missing_ok=True)
        return Transfer(size, time.perf_counter() - started, digest)

    def _scp_get(self, remote: str, local: Path, callback: Callable[[int, int], None] | None) -> bool:
        if not self._scp_available or self.sftp.stat(remote).st_size < SCP_MIN_BYTES:
            return False
        try:
            with self._scp(callback) as scp:
                scp.get(remote, str(local))
            return True
        except SCPException as exc:
            if not local.exists() and _scp_missing(exc):
                self._scp_available = False
                return False
            raise

    def ping(self, count: int = 5) -> float:
        """Median round trip of an SSH global request (answered by sshd itself), in seconds."""
        times = []
        for _ in range(count):
            started = time.perf_counter()
            with self._io_errors("measuring latency"):
                self.transport.global_request("tangram-ping@tangram", wait=True)
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]


class _ChannelReader:
    """Drains a channel's stdout and stderr as data arrives; stdout is split into lines."""

    def __init__(self, chan: paramiko.Channel, on_line: Callable[[str], None] | None):
        self.chan, self.on_line = chan, on_line
        self.pid: int | None = None
        self.stdout_tail: deque[str] = deque(maxlen=50)
        self.stderr_tail: deque[str] = deque(maxlen=50)
        self._out, self._err = b"", b""

    def pump(self, deadline: float | None) -> int | None:
        """Exit status, -1 when the channel closed without one, None past the deadline."""
        chan = self.chan
        while True:
            self._drain()
            # sshd sends EOF, then exit-status, then close: wait for the status, not just EOF
            if chan.exit_status_ready() or chan.closed:
                self._drain()
                break
            if deadline is not None and time.perf_counter() > deadline:
                return None
            if chan.eof_received:
                time.sleep(0.01)  # output closed, process still running: don't spin on select
            else:
                select.select([chan], [], [], 0.1)
        self._feed_out(b"\n") if self._out else None
        self._feed_err(b"\n") if self._err else None
        return chan.recv_exit_status() if chan.exit_status_ready() else -1

    def _drain(self) -> None:
        chan = self.chan
        while chan.recv_ready() or chan.recv_stderr_ready():
            if chan.recv_ready():
                self._feed_out(chan.recv(1 << 16))
            if chan.recv_stderr_ready():
                self._feed_err(chan.recv_stderr(1 << 16))

    def _feed_out(self, data: bytes) -> None:
        self._out += data
        *lines, self._out = self._out.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if self.pid is None and line.startswith(PID_MARK):
                self.pid = int(line[len(PID_MARK):])
                continue
            self.stdout_tail.append(line[:2000])
            if self.on_line:
                self.on_line(line)

    def _feed_err(self, data: bytes) -> None:
        self._err += data
        *lines, self._err = self._err.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            self.stderr_tail.append(line[:2000])
            log.debug("remote: %s", line[:500])


# -- the connection test -----------------------------------------------------------------------

PROBE_SCRIPT = r"""
import json, os, platform, shutil, subprocess, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
du = shutil.disk_usage(d)
gpus, smi = [], "nvidia-smi not found"
try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,memory.used",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
    smi = out.stderr.strip() or out.stdout.strip()
    if out.returncode == 0:
        for line in out.stdout.strip().splitlines():
            name, total, used = [x.strip() for x in line.split(",")]
            gpus.append({"name": name, "memory_mib": int(float(total)), "used_mib": int(float(used))})
except (OSError, subprocess.SubprocessError, ValueError) as exc:
    smi = str(exc)
pretty = platform.platform()
try:
    for line in open("/etc/os-release"):
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip().strip('"')
except OSError:
    pass
print(json.dumps({"os": pretty, "kernel": platform.release(), "machine": platform.machine(),
                  "python": platform.python_version(), "executable": sys.executable,
                  "cpus": os.cpu_count(), "gpus": gpus, "nvidia_smi": smi[:200],
                  "data_dir": os.path.abspath(d), "free_bytes": du.free, "home": os.path.expanduser("~")}))
"""


@dataclass
class HostReport:
    host: str
    connect_s: float
    latency_s: float
    info: dict[str, Any]
    upload_mb_s: float
    download_mb_s: float
    probe_bytes: int
    measured_at: float = field(default_factory=time.time)

    @property
    def gpu(self) -> dict[str, Any] | None:
        return self.info["gpus"][0] if self.info.get("gpus") else None

    def lines(self) -> list[str]:
        info, gpu = self.info, self.gpu
        gpu_text = (f"{gpu['name']}, {gpu['memory_mib']} MiB ({len(info['gpus'])} GPU)" if gpu
                    else f"none ({info.get('nvidia_smi') or 'nvidia-smi not found'})")
        return [
            f"host           {self.host}",
            f"reachable      yes (connected in {self.connect_s * 1000:.0f} ms)",
            "authenticated  yes (key)",
            f"remote OS      {info['os']} ({info['kernel']}, {info['machine']}, {info['cpus']} CPUs)",
            f"python         {info['executable']} {info['python']}",
            f"GPU            {gpu_text}",
            f"free disk      {info['free_bytes'] / 1e9:.1f} GB in {info['data_dir']}",
            f"latency        {self.latency_s * 1000:.1f} ms (round trip)",
            f"upload         {self.upload_mb_s:.1f} MB/s ({self.probe_bytes / 1e6:.0f} MB)",
            f"download       {self.download_mb_s:.1f} MB/s ({self.probe_bytes / 1e6:.0f} MB)",
        ]

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "connect_s": self.connect_s, "latency_s": self.latency_s,
                "info": self.info,
                "upload_mb_s": self.upload_mb_s, "download_mb_s": self.download_mb_s,
                "probe_bytes": self.probe_bytes, "measured_at": self.measured_at}


def probe_host(client: ThunderClient, probe_bytes: int = 16 << 20) -> HostReport:
    """Everything the connection test reports, measured on an open connection."""
    cfg = client.cfg
    data_dir = client.expand(cfg.remote_data_dir)
    result = client.run([cfg.remote_python, "-c", PROBE_SCRIPT, data_dir], timeout=120)
    if result.exit_status != 0:
        if result.exit_status == 127:
            raise ThunderRemoteError(f"remote python {cfg.remote_python} not found on {client.label} "
                                     "(thunder.remote_python must be an absolute path to python3)")
        raise ThunderRemoteError(
            f"remote python {cfg.remote_python} failed on {client.label}: {result.reason()}")
    info = json.loads(result.stdout_tail[-1])
    latency = client.ping()
    up, down = _measure_throughput(client, data_dir, probe_bytes)
    return HostReport(client.label, client.connect_s, latency, info, up, down, probe_bytes)


def _measure_throughput(client: ThunderClient, data_dir: str, size: int) -> tuple[float, float]:
    """Upload then download `size` random (incompressible) bytes; checksums must match."""
    import tempfile

    remote = f"{data_dir.rstrip('/')}/.tangram-probe-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="tangram-probe-") as tmp:
        src, back = Path(tmp) / "up.bin", Path(tmp) / "down.bin"
        with open(src, "wb") as fh:
            for _ in range(0, size, 1 << 20):
                fh.write(os.urandom(min(1 << 20, size)))
        try:
            sent = client.put_file(src, remote)
            got = client.get_file(remote, back)
        finally:
            with contextlib.suppress(Exception):
                client.sftp.remove(remote)
    if sent.sha256 != got.sha256:
        raise ThunderTransferError(f"probe file came back different from {client.label}")
    return sent.mb_per_s, got.mb_per_s


def add_test_options(p: Any) -> None:
    p.add_argument("--probe-mb", type=float, default=16.0, help="size of the throughput probe (MB)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def connection_test(config: Any, args: Any) -> int:
    """The connection test on the configured host: prints the report, records it for the scorer."""
    from thunder.scorer import save_host_report

    with ThunderClient(config.thunder) as client:
        report = probe_host(client, int(args.probe_mb * 1e6))
    save_host_report(config.thunder, report)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(report.lines()))
        print("Thunder host usable.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from thunder.options import add_common_options, load_thunder_config, run_command

    p = argparse.ArgumentParser(prog="thunder_client.py", description="Thunder connection test "
                                "(the same as `tangram thunder test`).")
    add_common_options(p)
    add_test_options(p)
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    return run_command(lambda: connection_test(load_thunder_config(args), args))


if __name__ == "__main__":
    sys.exit(main())
