"""TANGRAM's batch metrics for Prometheus (prometheus_client), on `--metrics-port`.

Names (a registry of our own, so nothing else of the process leaks in):
- tangram_batch_inputs_total{status}            counter: inputs finished, status done|failed
- tangram_batch_inputs_remaining                 gauge
- tangram_batch_queue_length                     gauge: (input, stage) tasks submitted, not finished
- tangram_stage_duration_seconds{stage,host}     histogram: stage compute time on a worker
- tangram_bytes_uploaded_total{host}             counter: input and upstream bytes a worker received
- tangram_bytes_downloaded_total{host}           counter: stage archives brought back to the client
- tangram_host_seconds_total{host}               counter: worker busy time
- tangram_cost_usd_total                          gauge: host-seconds x each host's price per hour
- tangram_batch_info{batch,cluster,dask_metrics}  info-style gauge (1) pointing at Dask's own
  /metrics on the scheduler's dashboard

The final values are written into the batch folder as `metrics.prom` (text format) and into
batch.json's "metrics".
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("tangram.fleet")

STAGE_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1280, float("inf"))


class BatchMetrics:
    def __init__(self, batch: str, cluster_kind: str, dask_metrics: str | None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.inputs = Counter("tangram_batch_inputs", "Inputs finished", ["status"], registry=r)
        self.remaining = Gauge("tangram_batch_inputs_remaining", "Inputs not finished yet", registry=r)
        self.queue = Gauge("tangram_batch_queue_length", "Stage tasks submitted and not finished", registry=r)
        self.duration = Histogram("tangram_stage_duration_seconds", "Stage compute time on a worker",
                                  ["stage", "host"], buckets=STAGE_BUCKETS, registry=r)
        self.bytes_up = Counter("tangram_bytes_uploaded", "Bytes a worker received for its tasks",
                                ["host"], registry=r)
        self.bytes_down = Counter("tangram_bytes_downloaded", "Bytes of stage archives brought back",
                                  ["host"], registry=r)
        self.host_seconds = Counter("tangram_host_seconds", "Worker busy seconds", ["host"], registry=r)
        self.cost = Gauge("tangram_cost_usd", "Estimated cost so far (host-seconds x price)", registry=r)
        info = Gauge("tangram_batch_info", "The batch and where Dask's own metrics are",
                     ["batch", "cluster", "dask_metrics"], registry=r)
        info.labels(batch=batch, cluster=cluster_kind, dask_metrics=dask_metrics or "").set(1)
        for status in ("done", "failed"):
            self.inputs.labels(status=status)
        self._server: Any = None
        self.port: int | None = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the HTTP endpoint on `host` (loopback unless the user opens it; port 0: a free
        one); returns the port. The log line names the address actually bound."""
        from prometheus_client import start_http_server

        try:
            started = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            from tangram.errors import TangramError

            raise TangramError(f"cannot serve metrics on port {port}: {exc.strerror or exc}") from None
        server = started[0] if isinstance(started, tuple) else None
        self._server = server
        self.port = server.server_port if server is not None else port
        bound = server.server_address[0] if server is not None else host
        shown = f"[{bound}]" if ":" in str(bound) else bound
        log.info("fleet: Prometheus metrics on http://%s:%d/metrics", shown, self.port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
            self._server = None

    def stage_done(self, stage: str, host: str, seconds: float, bytes_up: int, bytes_down: int,
                   task_seconds: float) -> None:
        self.duration.labels(stage=stage, host=host).observe(seconds)
        self.bytes_up.labels(host=host).inc(bytes_up)
        self.bytes_down.labels(host=host).inc(bytes_down)
        self.host_seconds.labels(host=host).inc(task_seconds)

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def snapshot(self) -> dict[str, Any]:
        """Final values as JSON: {metric name: [{labels, value}]} (histograms as sum and count)."""
        out: dict[str, Any] = {}
        for family in self.registry.collect():
            rows = []
            for sample in family.samples:
                if sample.name.endswith("_bucket") or sample.name.endswith("_created"):
                    continue
                rows.append({"name": sample.name, "labels": dict(sample.labels), "value": sample.value})
            out[family.name] = rows
        return out
