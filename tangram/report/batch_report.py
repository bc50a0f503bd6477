"""`exports/<batch>/report.html`: one row per input of a batch, read from `batch.json`.

batch.json ("tangram.batch/1", written by the fleet driver): {"format", "name", "started_at",
"finished_at", "status", "cluster": {"kind", "address", "workers": [...], "dashboard"}, "inputs":
[{"input", "name", "run_dir" (relative to the batch folder), "status", "reason", "seconds",
"cost_usd", "stages": {stage: {"status", "where", "seconds", "bytes_up", "bytes_down"}}}],
"totals": {"inputs", "done", "failed", "wall_s", "host_seconds": {host: s}, "bytes_up",
"bytes_down", "cost_usd", "local_estimate_s"}}. Missing fields show as blanks.

Each input links to its run report; a run folder without one gets it written here.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tangram import __version__
from tangram.errors import TangramError
from tangram.report.common import REPORT_NAME, now_text, read_json_or_none, render, when_text
from tangram.report.run_report import write_run_report
from tangram.stages import STAGE_SHORT_TITLES, STAGE_TITLES

log = logging.getLogger("tangram.report")

BATCH_FILE = "batch.json"


def write_batch_report(batch_dir: Path) -> Path:
    """Write `batch_dir/report.html` (atomically) from `batch_dir/batch.json`; returns its path."""
    batch_dir = Path(batch_dir)
    batch = read_json_or_none(batch_dir / BATCH_FILE)
    if not isinstance(batch, dict):
        raise TangramError(f"not a TANGRAM batch folder (no readable {BATCH_FILE}): {batch_dir}")
    rows = [_row(batch_dir, item) for item in batch.get("inputs") or [] if isinstance(item, dict)]
    totals = dict(batch.get("totals")) if isinstance(batch.get("totals"), dict) else {}
    for key in ("inputs", "done", "failed", "remaining", "wall_s", "bytes_up", "bytes_down", "cost_usd",
                "local_estimate_s"):  # numbers only (batch.json is data from outside); others recounted
        if key in totals and _number(totals[key]) is None:
            del totals[key]
    totals.setdefault("inputs", len(rows))
    totals.setdefault("done", sum(1 for r in rows if r["status"] == "done"))
    totals.setdefault("failed", sum(1 for r in rows if r["status"] == "failed"))
    if "cost_usd" not in totals:
        totals["cost_usd"] = sum(r["cost_usd"] or 0.0 for r in rows)
    hosts = totals.get("host_seconds") if isinstance(totals.get("host_seconds"), dict) else {}
    peak = max([float(v) for v in hosts.values() if isinstance(v, int | float)] or [0.0])
    wall, local = totals.get("wall_s"), totals.get("local_estimate_s")
    cluster = batch.get("cluster") if isinstance(batch.get("cluster"), dict) else {}
    context = {
        "title": f"TANGRAM batch {_text(batch.get('name')) or batch_dir.name}",
        "name": _text(batch.get("name")) or batch_dir.name,
        "status": _text(batch.get("status")) or "unknown",
        "started": when_text(_text(batch.get("started_at"))),
        "finished": when_text(_text(batch.get("finished_at"))),
        "cluster": cluster,
        "workers": [str(w.get("address") or w.get("name") or w) if isinstance(w, dict) else str(w)
                    for w in (cluster.get("workers") if isinstance(cluster.get("workers"), list) else [])],
        "rows": rows,
        "stage_names": [s for s in STAGE_TITLES if any(s in r["stages"] for r in rows)],
        "stage_titles": STAGE_TITLES,
        "short": STAGE_SHORT_TITLES,
        "totals": totals,
        "hosts": sorted(((h, float(s), (float(s) / peak if peak else 0.0)) for h, s in hosts.items()
                         if isinstance(s, int | float)), key=lambda x: -x[1]),
        "speedup": (float(local) / float(wall)) if isinstance(wall, int | float) and wall > 0
        and isinstance(local, int | float) and local > 0 else None,
        "generated": now_text(),
        "version": __version__,
    }
    out = render("batch.html.j2", batch_dir / REPORT_NAME, **context)
    log.info("batch report: %s", out)
    return out


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    """A text field of batch.json as text (a number or list shown as its JSON), None when absent."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _plain_name(value: Any) -> str | None:
    """A run folder named in batch.json: one plain folder inside the batch, else None (not linked)."""
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\\" in value or "\0" in value:
        return None
    return value


def _row(batch_dir: Path, item: dict[str, Any]) -> dict[str, Any]:
    run_dir_text = _plain_name(item.get("run_dir"))
    run_dir = (batch_dir / run_dir_text) if run_dir_text else None
    report = None
    if run_dir is not None and (run_dir / "manifest.json").is_file():
        if not (run_dir / REPORT_NAME).is_file():
            try:
                write_run_report(run_dir)
            except Exception as exc:
                log.warning("batch report: no run report for %s: %s", run_dir, exc)
        if (run_dir / REPORT_NAME).is_file():
            report = Path(os.path.relpath(run_dir / REPORT_NAME, batch_dir)).as_posix()
    stages = item.get("stages") if isinstance(item.get("stages"), dict) else {}
    where: list[str] = []
    moved = 0
    for record in stages.values():
        if not isinstance(record, dict):
            continue
        host = _text(record.get("where"))
        if host and record.get("status") == "done" and host not in where:
            where.append(host)
        moved += int(_number(record.get("bytes_up")) or 0) + int(_number(record.get("bytes_down")) or 0)
    cost = item.get("cost_usd")
    return {
        "name": _text(item.get("name")) or Path(str(item.get("input") or "?")).stem,
        "input": _text(item.get("input")),
        "status": _text(item.get("status")) or "unknown",
        "reason": _text(item.get("reason")),
        "seconds": _number(item.get("seconds")),
        "cost_usd": float(cost) if isinstance(cost, int | float) else None,
        "where": where,
        "bytes_moved": moved or None,
        "report": report,
        "run_dir": run_dir_text,
        "stages": {str(s): {**r, "status": _text(r.get("status")), "where": _text(r.get("where")),
                            "seconds": _number(r.get("seconds"))}
                   for s, r in stages.items() if isinstance(r, dict)},
    }
