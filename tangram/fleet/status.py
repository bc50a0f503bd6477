"""`tangram batch status BATCH`: a running or finished batch, summarised from its folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from tangram.errors import TangramError
from tangram.fileio import read_json
from tangram.fleet.driver import BATCH_FILE, BATCH_FORMAT

STAGE_MARK = {"done": "✓", "failed": "✗", "skipped": "-", "pending": "…", "running": "▶"}


def find_batch(batch: str, exports_dir: Path) -> Path:
    """BATCH as a folder path, or a name under exports/."""
    for candidate in (Path(batch), exports_dir / batch):
        if (candidate / BATCH_FILE).is_file():
            return candidate
        if candidate.name == BATCH_FILE and candidate.is_file():
            return candidate.parent
    raise TangramError(f"no batch {batch!r}: no {BATCH_FILE} in {batch} or {exports_dir / batch}")


def load_batch(batch_dir: Path) -> dict[str, Any]:
    try:
        data = read_json(batch_dir / BATCH_FILE)
    except (OSError, ValueError) as exc:
        raise TangramError(f"cannot read {batch_dir / BATCH_FILE}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != BATCH_FORMAT:
        raise TangramError(f"{batch_dir / BATCH_FILE} is not a {BATCH_FORMAT} file")
    _refresh_from_manifests(batch_dir, data)
    return data


def _refresh_from_manifests(batch_dir: Path, data: dict[str, Any]) -> None:
    """Stages imported after the last batch.json write (or by a killed client) from the run folders."""
    for entry in data.get("inputs", []):
        manifest = batch_dir / entry.get("run_dir", entry.get("name", "")) / "manifest.json"
        try:
            stages = read_json(manifest).get("stages", {})
        except (OSError, ValueError):
            continue
        for stage, rec in stages.items():
            if stage in data.get("stages", stages) and stage not in entry["stages"]:
                entry["stages"][stage] = {"status": rec.get("status"), "where": rec.get("where"),
                                          "seconds": rec.get("seconds", 0.0), "bytes_up": 0, "bytes_down": 0}


def summary_table(data: dict[str, Any]) -> Table:
    stages = data.get("stages") or sorted({s for e in data["inputs"] for s in e["stages"]})
    table = Table(title=f"batch {data['name']}: {data['status']} (started {data['started_at']}"
                        f"{', finished ' + data['finished_at'] if data.get('finished_at') else ''})")
    for column in ("input", "status", *stages, "seconds", "cost $", "reason"):
        table.add_column(column)
    for entry in data["inputs"]:
        marks = []
        for stage in stages:
            rec = entry["stages"].get(stage)
            marks.append(f"{STAGE_MARK.get(rec['status'], '?')} {rec.get('where') or ''}".strip() if rec else "")
        table.add_row(entry["name"], entry["status"], *marks, f"{entry.get('seconds', 0):.1f}",
                      f"{entry.get('cost_usd', 0):.4f}", str(entry.get("reason") or ""))
    return table


def totals_lines(data: dict[str, Any]) -> list[str]:
    t = data.get("totals") or {}
    cluster = data.get("cluster") or {}
    lines = [f"inputs {t.get('inputs', len(data['inputs']))}: {t.get('done', 0)} done, {t.get('failed', 0)} failed, "
             f"{t.get('remaining', 0)} remaining; wall {t.get('wall_s', 0):.1f} s",
             f"cluster {cluster.get('kind')} {cluster.get('address', '')}, {len(cluster.get('workers', []))} "
             f"worker(s); dashboard {cluster.get('dashboard') or '-'}"]
    hosts = ", ".join(f"{h} {s:.1f} s" for h, s in (t.get("host_seconds") or {}).items())
    lines.append(f"host-seconds: {hosts or '-'}; moved {t.get('bytes_up', 0) / 1e6:.1f} MB up, "
                 f"{t.get('bytes_down', 0) / 1e6:.1f} MB down; cost ${t.get('cost_usd', 0):.4f}; "
                 f"this machine alone: ~{t.get('local_estimate_s', 0):.0f} s")
    return lines


def print_status(batch_dir: Path) -> int:
    from rich.console import Console

    console = Console(width=200) if not Console().is_terminal else Console()
    data = load_batch(batch_dir)
    console.print(summary_table(data))
    for line in totals_lines(data):
        console.print(line)
    return 0
