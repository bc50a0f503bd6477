"""The Dask cluster a batch runs on: an embedded LocalCluster, SSH hosts, or a scheduler you run.

- No hosts: `distributed.LocalCluster` on this machine (`--workers`, default half the cores).
- SSH hosts (`--hosts`, `--hosts-file` or `[fleet] hosts`): Dask's own SSH deployment classes
  (`distributed.deploy.ssh.Scheduler` / `Worker`, what `SSHCluster` is made of), one worker spec per
  worker so that each can advertise its own resources (`GPU=1` per GPU, `CUDA_VISIBLE_DEVICES`).
  The scheduler runs on the first host, as with `SSHCluster`. Before anything starts, each host is
  checked with Thunder's client (host key verified against known_hosts — an unknown key is refused
  with the ssh-keyscan / trust-on-first-use fix, a changed one always — then authentication) and
  gets TANGRAM's worker venv from `tangram thunder setup` (`thunder.bootstrap.ensure_worker`), whose
  python then runs the Dask processes. asyncssh then connects with the same known_hosts file, key,
  user and port: no key is ever accepted silently.
- `--scheduler tls://HOST:PORT`: a Dask cluster the user runs (Kubernetes, HPC, dask-ssh...); it
  must answer within fleet.connect_timeout_s and have at least one worker. tls:// uses the user's
  certificates (--tls-ca/--tls-cert/--tls-key or Dask's config); a tcp:// address that is not
  loopback is refused unless --insecure.
- SSH clusters run TLS too: the same kind of per-batch certificate, written on each host into a
  private folder (0700, files 0600) for the processes' lifetime (`tangram.fleet.ssh_tls`).
- A LocalCluster runs TLS with a per-batch in-memory certificate (`Security.temporary()`), bound
  to 127.0.0.1, dashboard on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import FleetHost, TangramConfig, ThunderConfig
from tangram.errors import TangramError
from tangram.execution.dask import GPU_SHARE_ENV
from tangram.execution.device import glibc_malloc_defaults, thread_env, usable_cores

log = logging.getLogger("tangram.fleet")

HOST_KEYS = {"gpus": int, "workers": int, "threads": int, "price_per_hour": float, "price": float,
             "user": str, "port": int, "key_path": str, "key": str, "known_hosts_path": str,
             "remote_home": str, "remote_python": str, "memory_limit": str}


@dataclass
class HostSpec:
    """One SSH host with its Thunder-style connection settings."""

    label: str  # user@host[:port], as logs, batch.json and the metrics name it
    thunder: ThunderConfig
    gpus: int | None
    workers: int | None
    threads: int
    price_per_hour: float
    memory_limit: str

    @property
    def address(self) -> str:
        return self.thunder.ssh_host


def parse_host(text: str, config: TangramConfig) -> FleetHost:
    """`[user@]host[:port][,key=value...]`, or the host of a [fleet] hosts entry with that name."""
    head, *opts = [t for t in text.replace(",", " ").split() if t]
    known = {h.host: h for h in config.fleet.hosts}
    values: dict[str, Any] = known[head].model_dump() if head in known else {}
    if head not in known:
        user, _, rest = head.rpartition("@")
        host, port = rest, None
        if rest.count(":") == 1:
            host, _, port_text = rest.partition(":")
            try:
                port = int(port_text)
            except ValueError:
                raise TangramError(f"bad port in host {text!r}") from None
        values.update(host=host, user=user or None, port=port)
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or key not in HOST_KEYS:
            raise TangramError(f"bad host option {opt!r} in {text!r}; known: {', '.join(sorted(HOST_KEYS))}")
        try:
            parsed = HOST_KEYS[key](value)
        except ValueError:
            raise TangramError(f"bad value in host option {opt!r}") from None
        values[{"price": "price_per_hour", "key": "key_path"}.get(key, key)] = parsed
    if not values.get("host"):
        raise TangramError(f"empty host name in {text!r}")
    try:
        return FleetHost(**values)
    except ValueError as exc:
        raise TangramError(f"bad host {text!r}: {exc}") from None


def read_hosts_file(path: Path, config: TangramConfig) -> list[FleetHost]:
    """One host per line (`user@host:port gpus=1 price_per_hour=2.5`); # starts a comment."""
    if not path.is_file():
        raise TangramError(f"hosts file not found: {path}")
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    hosts = [parse_host(line, config) for line in lines if line]
    if not hosts:
        raise TangramError(f"hosts file {path} lists no host")
    return hosts


def host_spec(host: FleetHost, config: TangramConfig) -> HostSpec:
    base = config.thunder
    update = {"enabled": True, "ssh_host": host.host, "ssh_user": host.user or base.ssh_user,
              "ssh_port": host.port or base.ssh_port, "ssh_key_path": host.key_path or base.ssh_key_path,
              "known_hosts_path": host.known_hosts_path or base.known_hosts_path,
              "remote_home": host.remote_home or base.remote_home,
              "remote_python": host.remote_python or base.remote_python,
              "connect_timeout_s": config.fleet.connect_timeout_s}
    thunder = base.model_copy(update=update)
    if not thunder.ssh_user:
        import getpass

        thunder = thunder.model_copy(update={"ssh_user": getpass.getuser()})
    from thunder.thunder_client import host_label

    price = host.price_per_hour if host.price_per_hour is not None else base.price_per_hour
    return HostSpec(host_label(thunder), thunder, host.gpus, host.workers, host.threads, price, host.memory_limit)


# -- the running cluster -----------------------------------------------------------------------


@dataclass
class FleetCluster:
    kind: str  # "local" | "ssh" | "scheduler"
    client: Any  # distributed.Client
    cluster: Any | None  # what we started (closed by close()), None for a user's scheduler
    ships_input: bool  # workers do not share this machine's disk: send the input's bytes
    hosts: dict[str, HostSpec] = field(default_factory=dict)  # label -> spec (ssh)
    local_price_per_hour: float = 0.0

    @property
    def address(self) -> str:
        return str(self.client.scheduler.address)

    @property
    def dashboard(self) -> str | None:
        with contextlib.suppress(Exception):
            link = self.client.dashboard_link
            if link and "{" not in link:
                return str(link)
        return None

    @property
    def dask_metrics_url(self) -> str | None:
        link = self.dashboard
        return link.rsplit("/status", 1)[0] + "/metrics" if link else None

    def workers(self) -> list[dict[str, Any]]:
        info = self.client.scheduler_info(n_workers=-1) if _takes_n_workers(self.client) else \
            self.client.scheduler_info()
        out = []
        for address, w in sorted(info.get("workers", {}).items()):
            out.append({"name": str(w.get("name", address)), "address": address,
                        "host": self.host_of(str(w.get("name", "")), address),
                        "resources": dict(w.get("resources") or {}), "nthreads": int(w.get("nthreads", 1))})
        return out

    def host_of(self, worker_name: str, worker_address: str) -> str:
        """The host a worker runs on, as batch.json names it."""
        if self.kind == "local":
            return "local"
        if "#" in worker_name:
            return worker_name.rsplit("#", 1)[0]
        host = worker_address.split("://", 1)[-1].rsplit(":", 1)[0]
        return host or worker_name

    def price_of(self, host: str) -> float:
        if host == "local" or host == "client":
            return self.local_price_per_hour
        spec = self.hosts.get(host)
        return spec.price_per_hour if spec else 0.0

    def has_gpu(self) -> bool:
        return any(w["resources"].get("GPU") for w in self.workers())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close(timeout=10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=20)


def _takes_n_workers(client: Any) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def default_local_workers() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


def local_gpu_count() -> int:
    """CUDA GPUs on this machine (nvidia-smi), without importing torch; 0 on a CPU-only box."""
    if not (os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")):
        return 0
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
        return sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return 0


def batch_security() -> Any:
    """TLS with mutual authentication for a cluster this batch starts: `Security.temporary()`
    makes a fresh self-signed key and certificate (the `cryptography` package, pinned) that live
    only in this process's memory and in the processes it starts: nothing is written to disk where
    another user could read it, and a peer without that certificate is refused at the handshake."""
    from distributed.security import Security

    return Security.temporary()


def user_security(address: str, tls_ca: str | None = None, tls_cert: str | None = None,
                  tls_key: str | None = None) -> Any:
    """The Security for `--scheduler ADDRESS`: for tls:// the user's CA/certificate/key (options,
    else Dask's own config `distributed.comm.tls.*`); for a plain tcp:// address, None."""
    from distributed.security import Security

    if not address.startswith("tls://"):
        if tls_ca or tls_cert or tls_key:
            raise TangramError("--tls-ca/--tls-cert/--tls-key need a tls:// scheduler address")
        return None
    for label, path in (("--tls-ca", tls_ca), ("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path and not Path(path).expanduser().is_file():
            raise TangramError(f"{label} file not found: {path}")
    if tls_ca or tls_cert or tls_key:
        if not (tls_ca and tls_cert):
            raise TangramError("a tls:// scheduler needs --tls-ca and --tls-cert (and --tls-key unless the "
                               "certificate file holds the key)")
        ca, cert = str(Path(tls_ca).expanduser()), str(Path(tls_cert).expanduser())
        key = str(Path(tls_key).expanduser()) if tls_key else None
        return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
    return Security(require_encryption=True)  # Dask's config (distributed.comm.tls.*)


def start_local(config: TangramConfig, workers: int | None) -> FleetCluster:
    from distributed import Client, LocalCluster

    fleet = config.fleet
    n = workers or fleet.workers or default_local_workers()
    gpus = local_gpu_count()
    # each worker's share of the cores for torch, BLAS, OpenCV and the detector (Dask's nanny gives it 1)
    kwargs: dict[str, Any] = {"env": thread_env(usable_cores(), n, fleet.threads_per_worker)}
    if gpus:  # every local worker may use the GPU; each takes its share of the memory
        kwargs["resources"] = {"GPU": 1}
        kwargs["env"][GPU_SHARE_ENV] = str(n)
    dashboard = f"127.0.0.1:{fleet.dashboard_port}" if fleet.dashboard_port is not None else None
    security = batch_security()
    with glibc_malloc_defaults():
        cluster = LocalCluster(n_workers=n, threads_per_worker=fleet.threads_per_worker, processes=True,
                               host="127.0.0.1", dashboard_address=dashboard, memory_limit=fleet.memory_limit,
                               silence_logs=logging.WARNING, protocol="tls://", security=security, **kwargs)
    client = Client(cluster, timeout=fleet.connect_timeout_s, security=security)
    log.info("fleet: LocalCluster with %d worker(s) at %s", n, cluster.scheduler_address)
    return FleetCluster("local", client, cluster, ships_input=False,
                        local_price_per_hour=fleet.local_price_per_hour)


def connect_scheduler(config: TangramConfig, address: str, insecure: bool = False,
                      tls: tuple[str | None, str | None, str | None] = (None, None, None)) -> FleetCluster:
    from distributed import Client

    timeout = config.fleet.connect_timeout_s
    security = user_security(address, *tls)
    if security is None:
        host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
        if not _is_loopback(host):
            if not insecure:
                raise TangramError(f"scheduler {address} is not loopback and not tls://: anyone on the network "
                                   "could read the inputs and run code on the workers; use a tls:// address "
                                   "(--tls-ca/--tls-cert/--tls-key) or pass --insecure")
            log.warning("fleet: connecting to %s without TLS (--insecure): traffic is in clear and "
                        "unauthenticated", address)
    try:
        client = Client(address, timeout=timeout, security=security)
    except (OSError, TimeoutError) as exc:
        raise TangramError(f"Dask scheduler {address} does not answer: {exc}".splitlines()[0]) from None
    except ValueError as exc:
        raise TangramError(f"bad scheduler address {address!r}: {exc}") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        client.close()
        raise TangramError(f"Dask scheduler {address} has no workers (waited {timeout:.0f} s)") from None
    log.info("fleet: connected to the Dask scheduler %s", address)
    return FleetCluster("scheduler", client, None, ships_input=True,
                        local_price_per_hour=config.fleet.local_price_per_hour)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class HostCheck:
    """What `check_host` found on one host."""

    python: str  # TANGRAM's worker venv python
    gpus: int
    home: str  # TANGRAM's remote home, absolute (the private TLS folders go under it)
    facing: str  # the address this host's SSH server was reached on (SSH_CONNECTION), for binding
    cores: int = 1  # the host's CPU cores (nproc), shared among its workers


def check_host(spec: HostSpec) -> HostCheck:
    """Host key, authentication and TANGRAM's worker venv on one host, before anything starts.
    Raises ThunderError (a TangramError, one line)."""
    from thunder.bootstrap import ensure_worker
    from thunder.thunder_client import ThunderClient

    with ThunderClient(spec.thunder) as client:
        env = ensure_worker(client)
        gpus = spec.gpus
        if gpus is None:
            result = client.run(["sh", "-c", "command -v nvidia-smi >/dev/null && nvidia-smi -L || true"])
            gpus = sum(1 for line in result.stdout_tail if line.startswith("GPU "))
        home = client.expand(spec.thunder.remote_home).rstrip("/")
        seen = client.run(["sh", "-c", 'echo "$SSH_CONNECTION"; nproc 2>/dev/null || echo 1'])
        words = " ".join(seen.stdout_tail).split()
        facing = words[2] if len(words) >= 5 else spec.address
        cores = int(words[-1]) if words and words[-1].isdigit() else 1
    return HostCheck(env.python, gpus, home, facing, max(1, cores))


def connect_options(spec: HostSpec) -> dict[str, Any]:
    """asyncssh options matching the Thunder settings: known_hosts verified, our key only."""
    cfg = spec.thunder
    return {"port": cfg.ssh_port, "username": cfg.ssh_user,
            "client_keys": [str(Path(cfg.ssh_key_path).expanduser())],
            "known_hosts": str(Path(cfg.known_hosts_path).expanduser()),
            "agent_path": None, "connect_timeout": cfg.connect_timeout_s}


def start_ssh(config: TangramConfig, hosts: list[FleetHost]) -> FleetCluster:
    """Dask over SSH with TLS: one certificate made for this batch (`batch_security()`), placed on
    each host in a private folder for the processes' lifetime (see `tangram.fleet.ssh_tls`);
    scheduler and workers bound to 127.0.0.1 when every host is loopback, else each to the address
    its SSH server was reached on (the interface facing this machine and, on one network, the
    other hosts)."""
    from distributed import Client, SpecCluster

    from tangram.fleet.ssh_tls import TlsScheduler, TlsWorker, tls_material

    fleet = config.fleet
    specs = [host_spec(h, config) for h in hosts]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise TangramError(f"a host is listed twice: {', '.join(labels)}")
    checks: list[HostCheck] = []
    for spec in specs:  # every host checked before anything starts
        check = check_host(spec)
        checks.append(check)
        log.info("fleet: %s ready (%s, %d GPU)", spec.label, check.python, check.gpus)
    all_local = all(_is_loopback(s.address) for s in specs)
    security = batch_security()
    material = tls_material(security)

    def bind(check: HostCheck) -> str:
        return "127.0.0.1" if all_local else check.facing

    first, first_check = specs[0], checks[0]
    scheduler_kwargs: dict[str, Any] = {"port": fleet.scheduler_port, "host": bind(first_check),
                                        "dashboard_address": f"127.0.0.1:{fleet.dashboard_port}"
                                        if fleet.dashboard_port is not None else None}
    scheduler = {"cls": TlsScheduler, "options": {
        "address": first.address, "connect_options": connect_options(first), "kwargs": scheduler_kwargs,
        "material": material, "remote_base": first_check.home, "remote_python": first_check.python}}
    workers: dict[str, dict[str, Any]] = {}
    for spec, check in zip(specs, checks, strict=True):
        gpus = check.gpus
        count = spec.workers or max(1, gpus * fleet.workers_per_gpu)
        for i in range(count):
            name = f"{spec.label}#{i}"
            kwargs: dict[str, Any] = {"name": name, "nthreads": spec.threads, "memory_limit": spec.memory_limit,
                                      "host": bind(check), "env": thread_env(check.cores, count, spec.threads)}
            if gpus:
                kwargs["resources"] = {"GPU": 1}
                share = max(1, -(-count // gpus))
                kwargs["env"].update({"CUDA_VISIBLE_DEVICES": str(i % gpus), GPU_SHARE_ENV: str(share)})
            workers[name] = {"cls": TlsWorker, "options": {
                "address": spec.address, "connect_options": connect_options(spec), "kwargs": kwargs,
                "worker_class": "distributed.Nanny", "material": material, "remote_base": check.home,
                "remote_python": check.python}}
    try:
        with glibc_malloc_defaults():
            cluster = SpecCluster(workers, scheduler, name="SSHCluster", security=security)
    except Exception as exc:
        raise TangramError(f"starting Dask over SSH failed: {_one_line(exc)}") from None
    client = Client(cluster, timeout=fleet.connect_timeout_s, security=security)
    try:
        client.wait_for_workers(len(workers), timeout=max(60.0, 6 * fleet.connect_timeout_s))
    except TimeoutError:
        log.warning("fleet: only %d of %d workers joined", len(client.scheduler_info()["workers"]), len(workers))
    log.info("fleet: SSH cluster (TLS), scheduler %s on %s, %d worker(s) on %s", cluster.scheduler_address,
             first.label, len(workers), ", ".join(labels))
    return FleetCluster("ssh", client, cluster, ships_input=True, hosts={s.label: s for s in specs},
                        local_price_per_hour=fleet.local_price_per_hour)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def open_cluster(config: TangramConfig, workers: int | None = None, hosts: list[FleetHost] | None = None,
                 scheduler: str | None = None, insecure: bool = False,
                 tls: tuple[str | None, str | None, str | None] = (None, None, None)) -> FleetCluster:
    """The cluster for a batch; TangramError (exit 2) for bad settings, before anything starts."""
    scheduler = scheduler or config.fleet.scheduler
    hosts = hosts if hosts is not None else list(config.fleet.hosts)
    if scheduler and hosts:
        raise TangramError("give either --scheduler or hosts, not both")
    if scheduler:
        return connect_scheduler(config, scheduler, insecure=insecure, tls=tls)
    if hosts:
        return start_ssh(config, hosts)
    return start_local(config, workers)
