"""Live terminal progress of a batch (rich): per input its stage and host, totals and an ETA."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tangram.logs import console

STATUS_STYLE = {"done": "green", "failed": "red", "running": "cyan", "pending": "dim"}
MAX_ROWS = 30


def eta_seconds(done: int, remaining: int, elapsed: float) -> float | None:
    """Remaining inputs x the mean time per finished input so far (the batch's own throughput)."""
    if done <= 0 or remaining <= 0:
        return None if remaining else 0.0
    return elapsed / done * remaining


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def render(driver: Any) -> Group:
    totals = driver.totals()
    finished = totals["done"] + totals["failed"]
    elapsed = time.perf_counter() - driver.started
    eta = eta_seconds(finished, totals["remaining"], elapsed)
    head = Text.assemble(
        (f"batch {driver.batch.get('name')} ", "bold"),
        (f"{totals['done']} done", "green"), " / ", (f"{totals['failed']} failed", "red"), " / ",
        f"{totals['remaining']} remaining of {totals['inputs']}", f"   elapsed {_fmt_s(elapsed)}",
        f"   ETA {_fmt_s(eta)}", f"   cost ${totals['cost_usd']:.4f}")
    table = Table(box=None, pad_edge=False)
    for column in ("input", "status", "stage", "host", "stages done"):
        table.add_column(column)
    states = sorted(driver.states, key=lambda s: {"running": 0, "pending": 2}.get(s.entry["status"], 1))
    for state in states[:MAX_ROWS]:
        entry = state.entry
        stage, host = state.current or ("", "")
        if not stage and entry["status"] == "running":
            stage = next((s for s in state.stages if entry["stages"].get(s, {}).get("status") == "pending"), "")
            host = "queued" if stage else ""
        done = sum(1 for r in entry["stages"].values() if r.get("status") == "done")
        status = entry["status"] if not entry.get("reason") else f"{entry['status']}: {entry['reason']}"
        table.add_row(entry["name"], Text(status[:60], style=STATUS_STYLE.get(entry["status"], "")), stage, host,
                      f"{done}/{len(state.stages)}")
    if len(states) > MAX_ROWS:
        table.add_row(f"... {len(states) - MAX_ROWS} more", "", "", "", "")
    return Group(head, table)


class RichBatchProgress:
    """BatchObserver drawing a live table; a summary table stays on screen at the end."""

    def __init__(self) -> None:
        self._driver: Any = None
        self._live = Live(console=console, refresh_per_second=2, transient=True,
                          get_renderable=self._renderable)

    def _renderable(self) -> Any:
        if self._driver is None or not self._driver.batch:
            return Text("starting the cluster...")
        try:
            return render(self._driver)
        except (RuntimeError, KeyError):  # a dict changed size while drawing: next refresh
            return Text("")

    def __enter__(self) -> RichBatchProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.__exit__(*exc)

    def batch_started(self, driver: Any) -> None:
        self._driver = driver

    def changed(self, driver: Any) -> None:
        self._driver = driver

    def batch_finished(self, driver: Any) -> None:
        self._driver = driver
