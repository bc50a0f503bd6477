"""The Thunder status light: the connection test of `thunder.thunder_client`, reduced to a colour
and a sentence. Any failure, including Thunder not being installed, is a state, never an exception.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from config import TangramConfig, ThunderConfig
from tangram.errors import TangramError

log = logging.getLogger(__name__)

PROBE_BYTES = 1 << 20  # enough to see that transfers work; the full test (`tangram thunder test`) uses 16 MB


@dataclass
class ThunderStatus:
    state: str  # "ok" (green), "error" (red), "off" (grey: disabled, not configured, not installed)
    short: str  # a few words beside the light
    text: str  # the whole sentence (tooltip, log)
    details: list[str] = field(default_factory=list)


def switched_on(config: TangramConfig) -> ThunderConfig:
    """The Thunder section as the GUI's switch uses it: on, whatever config.py's default says."""
    return config.thunder.model_copy(update={"enabled": True})


def configured_status(cfg: ThunderConfig) -> ThunderStatus | None:
    """Grey status when nothing can be tested (no host, or Thunder not installed); None otherwise."""
    try:
        from thunder.thunder_client import check_configured
    except ImportError as exc:
        return ThunderStatus("off", "not installed", f"Thunder is not installed ({exc.name or exc})")
    try:
        check_configured(cfg)
    except TangramError as exc:
        return ThunderStatus("off", "not configured", str(exc))
    return None


def connection_test(cfg: ThunderConfig) -> ThunderStatus:
    """Connect, authenticate and probe the host (slow: run it off the UI thread)."""
    status = configured_status(cfg)
    if status is not None:
        return status
    from thunder.thunder_client import ThunderClient, probe_host

    try:
        with ThunderClient(cfg) as client:
            report = probe_host(client, PROBE_BYTES)
    except TangramError as exc:
        return ThunderStatus("error", "connection failed", str(exc))
    except Exception as exc:  # paramiko and socket errors the client did not classify
        log.exception("Thunder connection test failed")
        return ThunderStatus("error", "connection failed", f"connection test failed: {type(exc).__name__}: {exc}")
    _save_report(cfg, report)
    gpu = report.gpu
    gpu_text = f"{gpu['name']}" if gpu else "no GPU"
    return ThunderStatus("ok", f"connected ({gpu_text})",
                         f"{report.host}: {gpu_text}, {report.latency_s * 1000:.0f} ms latency", report.lines())


def _save_report(cfg: ThunderConfig, report: object) -> None:
    """Keep the measured figures for the offload scorer, as `tangram thunder test` does."""
    try:
        from thunder.scorer import save_host_report
    except ImportError:
        return
    try:
        save_host_report(cfg, report)
    except (TangramError, OSError) as exc:
        log.warning("could not save the Thunder host report: %s", exc)
