"""How fast a run's report.html opens in headless Debian chromium, and how big it is.

    .venv/bin/python bench/bench_report.py [RUN_FOLDER] [--repeat 5]

Without RUN_FOLDER it runs the whole pipeline on the sample scene once (offline detector from
$TANGRAM_YOLO_WEIGHTS or ../shared/models). It prints, side by side, the page as written (plotly.min.js
loaded only when the 3D view comes near the screen) and the same page with plotly.min.js loaded
eagerly in <head> (what plotly's own to_html does): load event, and time until the 3D view is drawn.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _sample_run(exports: Path) -> Path:
    from tangram.runner import Pipeline, default_input
    from tangram.settings import load_config

    weights = os.environ.get("TANGRAM_YOLO_WEIGHTS") or str(ROOT.parent / "shared/models/yolov8n_int8.tflite")
    config = load_config(env={}, overrides={"run": {"exports_dir": str(exports)}, "tracking": {"weights": weights},
                                            "segmentation": {"backend": "grabcut"}})
    return Pipeline(config).run(default_input(), name="sample").run_dir


def _eager_copy(report: Path) -> Path:
    """The same page, plotly.min.js in <head> and every figure drawn at once."""
    html = report.read_text()
    html = html.replace("</head>", '<script src="report_files/plotly.min.js"></script>\n</head>', 1)
    html = re.sub(r"(figs\.forEach\(function \(f\) \{ seen\.observe\(f\); \}\);)", r"figs.forEach(draw);", html)
    out = report.with_name("report.eager.html")
    out.write_text(html)
    return out


def _measure(browser, page_path: Path, repeat: int) -> dict[str, float]:
    loads, drawn = [], []
    for _ in range(repeat):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        loads.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000)
        if page.query_selector(".plotly-fig"):
            page.evaluate("window.tangramDrawFigures && window.tangramDrawFigures()")
            page.wait_for_selector(".plotly-fig[data-state=drawn]", timeout=120_000)
            drawn.append(page.evaluate("performance.now()") / 1000)
        page.close()
    return {"load": statistics.median(loads), "drawn": statistics.median(drawn) if drawn else float("nan")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", type=Path, help="a run folder (default: run the sample scene)")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    from tangram.report import write_run_report

    run = args.run or _sample_run(Path(tempfile.mkdtemp(prefix="bench-report-")))
    started = time.perf_counter()
    report = write_run_report(run)
    write_s = time.perf_counter() - started
    eager = _eager_copy(report)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        lazy_t = _measure(browser, report, args.repeat)
        eager_t = _measure(browser, eager, args.repeat)
        browser.close()
    eager.unlink()
    assets = sum(f.stat().st_size for f in (run / "report_files").glob("*")) if (run / "report_files").is_dir() else 0
    folder = sum(f.stat().st_size for f in run.rglob("*") if f.is_file())
    print(f"run folder {run}: {folder / 1e6:.1f} MB; report.html {report.stat().st_size / 1e3:.0f} kB, "
          f"report_files/ {assets / 1e6:.1f} MB; written in {write_s:.2f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'median of ' + str(args.repeat):<22}{'as written (lazy)':>20}{'plotly eager':>16}{'ratio':>8}")
    for key, label in (("load", "load event (s)"), ("drawn", "3D view drawn (s)")):
        ratio = eager_t[key] / lazy_t[key] if lazy_t[key] else float("nan")
        print(f"{label:<22}{lazy_t[key]:>20.2f}{eager_t[key]:>16.2f}{ratio:>7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
