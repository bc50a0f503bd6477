"""Dask's SSH scheduler and workers, started with TLS and with every remote shell argument quoted.

`distributed.deploy.ssh.Scheduler` / `Worker` build their remote command by joining strings (the
spec JSON goes into `'…'` unquoted, the python path as given) and have no way to hand a process
its certificates. These subclasses keep Dask's behaviour (asyncssh connection with the caller's
options, the spec on `distributed.cli.dask_spec`, the address read from stderr) and add:

- the batch's certificate and key (`Security.temporary()` material, made in the client's memory)
  written on the host into a fresh `mktemp -d` folder (mode 0700) under TANGRAM's remote home,
  files mode 0600, sent over the SSH channel's stdin: never on a command line or in an
  environment variable. The process gets only the files' paths (Dask's `distributed.comm.tls.*`
  config as `DASK_*` variables) and `require-encryption`, so it accepts only peers holding that
  certificate. The folder is removed when the process is closed.
- every argument of the remote command through `shlex.quote`.
"""

from __future__ import annotations

import json
import logging
import shlex
from typing import Any

from distributed.deploy.ssh import Process

log = logging.getLogger("tangram.fleet")

TLS_ROLES = ("scheduler", "worker", "client")


def tls_material(security: Any) -> dict[str, str]:
    """The PEM texts of a `Security.temporary()` (one self-signed certificate for every role)."""
    cert, key = security.tls_scheduler_cert, security.tls_scheduler_key
    if not (isinstance(cert, str) and "-----BEGIN" in cert and isinstance(key, str) and "-----BEGIN" in key):
        raise ValueError("the batch's Security holds no in-memory certificate")
    return {"ca.pem": security.tls_ca_file, "cert.pem": cert, "key.pem": key}


def tls_env(folder: str) -> dict[str, str]:
    """Dask's TLS settings pointing at the files in `folder` (paths only, no key material)."""
    env = {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
           "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": f"{folder}/ca.pem"}
    for role in TLS_ROLES:
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}__CERT"] = f"{folder}/cert.pem"
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}__KEY"] = f"{folder}/key.pem"
    return env


def remote_command(python: str, args: list[str], spec: dict[str, Any], env: dict[str, str]) -> str:
    """`env K=V … python -m distributed.cli.dask_spec ARGS --spec JSON`, every word quoted."""
    import dask.config

    words = ["env", f"DASK_INTERNAL_INHERIT_CONFIG={dask.config.serialize(dask.config.global_config)}",
             *(f"{k}={v}" for k, v in env.items()), python, "-m", "distributed.cli.dask_spec", *args,
             "--spec", json.dumps(spec)]
    return " ".join(shlex.quote(w) for w in words)


class _TlsProcess(Process):
    """Shared part: the private TLS folder on the host, made before and removed after the process."""

    def _init_tls(self, address: str, connect_options: dict[str, Any], material: dict[str, str],
                  remote_base: str, remote_python: str) -> None:
        self.address = address
        self.connect_options = connect_options
        self.material = material
        self.remote_base = remote_base
        self.remote_python = remote_python
        self.tls_dir: str | None = None

    async def _connect_and_place(self) -> None:
        import asyncssh

        self.connection = await asyncssh.connect(self.address, **self.connect_options)
        base = shlex.quote(self.remote_base)
        made = await self.connection.run(f"umask 077 && mkdir -p {base} && mktemp -d {base}/tls-XXXXXXXX",
                                         check=True)
        folder = str(made.stdout).strip()
        if not folder.startswith(self.remote_base.rstrip("/") + "/tls-"):
            raise RuntimeError(f"could not make a private TLS folder under {self.remote_base} on {self.address}")
        self.tls_dir = folder
        for name, text in self.material.items():  # the PEM travels on stdin, not on a command line
            path = shlex.quote(f"{folder}/{name}")
            await self.connection.run(f"umask 077 && cat > {path} && chmod 600 {path}", input=text, check=True)

    async def _read_stderr_until(self, marker: str, count: int = 1) -> str:
        assert self.proc is not None
        seen, line = 0, ""
        while seen < count:
            line = await self.proc.stderr.readline()
            if not line.strip():
                raise RuntimeError(f"Dask process on {self.address} ended before '{marker}'")
            log.debug("%s: %s", self.address, line.strip())
            if marker in line:
                seen += 1
        return str(line)

    async def close(self) -> None:
        if self.proc:
            self.proc.kill()
        if self.connection and self.tls_dir:
            try:
                await self.connection.run(f"rm -rf -- {shlex.quote(self.tls_dir)}", timeout=20)
                self.tls_dir = None
            except Exception as exc:  # the host went away: nothing more can be done from here
                log.warning("fleet: could not remove %s on %s: %s", self.tls_dir, self.address, exc)
        if self.connection:
            self.connection.close()
        self.proc = None
        self.connection = None
        await super().close()


class TlsScheduler(_TlsProcess):
    """A remote `distributed.Scheduler` listening on tls:// only."""

    def __init__(self, address: str, connect_options: dict[str, Any], kwargs: dict[str, Any],
                 material: dict[str, str], remote_base: str, remote_python: str):
        super().__init__()
        self._init_tls(address, connect_options, material, remote_base, remote_python)
        self.kwargs = {**kwargs, "protocol": "tls"}

    async def start(self) -> None:
        await self._connect_and_place()
        assert self.tls_dir is not None
        cmd = remote_command(self.remote_python, [], {"cls": "distributed.Scheduler", "opts": self.kwargs},
                             tls_env(self.tls_dir))
        self.proc = await self.connection.create_process(cmd)
        line = await self._read_stderr_until("Scheduler at")
        self.address = line.split("Scheduler at:")[1].strip()
        await super().start()


class TlsWorker(_TlsProcess):
    """A remote Nanny + Worker that reaches the scheduler over tls:// with the batch's certificate."""

    def __init__(self, scheduler: str, address: str, connect_options: dict[str, Any], kwargs: dict[str, Any],
                 material: dict[str, str], remote_base: str, remote_python: str,
                 worker_class: str = "distributed.Nanny", name: Any = None):
        super().__init__()
        self._init_tls(address, connect_options, material, remote_base, remote_python)
        self.scheduler = scheduler
        self.worker_class = worker_class
        self.name = name
        self.kwargs = {**kwargs, "protocol": "tls"}

    async def start(self) -> None:
        await self._connect_and_place()
        assert self.tls_dir is not None
        cmd = remote_command(self.remote_python, [self.scheduler],
                             {"0": {"cls": self.worker_class, "opts": self.kwargs}}, tls_env(self.tls_dir))
        self.proc = await self.connection.create_process(cmd)
        await self._read_stderr_until("worker at")
        await super().start()
