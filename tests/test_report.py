"""The HTML report (tangram.report) of real runs, opened in headless Debian chromium with the network
cut off: every request that is not file:// is aborted and counted. Screenshots of every section go
to test-artifacts/report/ (look at them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, real_file

from tangram.report import write_batch_report, write_run_report
from tangram.runner import Pipeline

SHOTS = ROOT / "test-artifacts" / "report"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SECTIONS = ["overview", "tracking", "segmentation", "reconstruction", "scene_graph", "planning", "simulation"]
FAKE_KEY = "sk-test-TANGRAMreportFAKEKEY0123456789abcdef"


def _config(exports: Path, yolo_weights: str, env: dict[str, str] | None = None, **sections: dict) -> Any:
    from tangram.settings import load_config

    overrides: dict[str, dict] = {"run": {"exports_dir": str(exports)}, "tracking": {"weights": yolo_weights},
                                  "segmentation": {"backend": "grabcut"}}
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(env=env or {}, overrides=overrides)


@pytest.fixture(scope="session")
def static_run(tmp_path_factory: pytest.TempPathFactory, yolo_weights: str) -> Path:
    """The static-camera clip: reconstruction fails (no parallax), every later stage is skipped."""
    video = real_file("coffee_static_camera.mp4")
    exports = tmp_path_factory.mktemp("report_exports_static")
    result = Pipeline(_config(exports, yolo_weights, tracking={"frame_stride": 10},
                              segmentation={"max_keyframes": 2})).run(video, name="coffee")
    stages = result.manifest["stages"]
    assert stages["tracking"]["status"] == "done" and stages["reconstruction"]["status"] == "failed", stages
    return result.run_dir


# -- the browser -------------------------------------------------------------------------------------


class Page:
    """What one page load in chromium showed: failed requests, console errors, timings."""

    def __init__(self, page: Any, url: str):
        self.page, self.url = page, url
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        page.route("**/*", self._route)
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", self._request_failed)
        started = time.perf_counter()
        page.goto(url, wait_until="load")
        self.load_s = time.perf_counter() - started
        self.timing = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")

    def _route(self, route: Any) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:  # the network is off: anything else is a defect of the report
            self.blocked.append(route.request.url)
            route.abort()

    def _request_failed(self, request: Any) -> None:
        # Chromium cancels a <video>'s range request once it has buffered what preload asked for
        # (net::ERR_ABORTED); that video is checked by readyState/error instead.
        if request.resource_type == "media" and "ERR_ABORTED" in (request.failure or ""):
            return
        self.failed.append(f"{request.url}: {request.failure}")

    def problems(self) -> list[str]:
        return [f"blocked {u}" for u in self.blocked] + [f"failed {f}" for f in self.failed] + self.errors

    def draw_figures(self) -> float | None:
        """Draw the lazy 3D figures now; seconds from navigation start until they are drawn."""
        if not self.page.query_selector(".plotly-fig"):
            return None
        self.page.evaluate("window.tangramDrawFigures()")
        self.page.wait_for_selector(".plotly-fig[data-state=drawn], .plotly-fig[data-state=failed]", timeout=90_000)
        assert self.page.query_selector(".plotly-fig[data-state=failed]") is None, self.page.inner_text(".plotly-fig")
        return self.page.evaluate("performance.now()") / 1000

    def shoot_sections(self, prefix: str) -> list[Path]:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.add_style_tag(content="nav.toc { position: static !important; }")  # not over the shots
        paths = []
        for element in self.page.query_selector_all("section[data-section]"):
            name = element.get_attribute("data-section")
            element.scroll_into_view_if_needed()
            self.page.wait_for_timeout(150)
            path = SHOTS / f"{prefix}-{name}.png"
            element.screenshot(path=str(path))
            paths.append(path)
        return paths


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not at {CHROMIUM} (scripts/setup_test_deps.sh installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(browser: Any, html: Path) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    return Page(page, html.resolve().as_uri())


def _sections(page: Page) -> dict[str, str]:
    return page.page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('section[data-section]'))"
        ".map(s => [s.dataset.section, s.dataset.status || '']))")


def _videos(page: Page) -> list[dict[str, Any]]:
    page.page.wait_for_function(
        "Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 1 || v.error)", timeout=30_000)
    return page.page.evaluate("Array.from(document.querySelectorAll('video')).map(v => ({src: v.currentSrc, "
                              "ready: v.readyState, error: v.error && v.error.code, width: v.videoWidth, "
                              "duration: v.duration}))")


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# -- tests -------------------------------------------------------------------------------------------


def test_sample_report_in_chromium(sample_run: Path, browser: Any) -> None:
    html = sample_run / "report.html"
    assert html.is_file(), "the runner writes report.html at the end of a run"
    page = _open(browser, html)
    figures_s = page.draw_figures()
    assert page.problems() == []
    sections = _sections(page)
    assert list(sections) == SECTIONS
    assert all(sections[s] == "done" for s in SECTIONS[1:]), sections

    videos = _videos(page)
    assert [Path(v["src"]).name for v in videos] == ["preview.mp4", "execution.mp4"]
    for v in videos:  # H.264 that chromium decodes, at the size the stages wrote
        assert v["error"] is None and v["ready"] >= 1 and v["width"] == 640 and v["duration"] > 1, v

    text = page.page.inner_text("main")
    manifest = json.loads((sample_run / "manifest.json").read_text())
    for stage, record in manifest["stages"].items():  # the manifest table names every backend
        assert record["backend"] in page.page.inner_text(f"#manifest tr[data-stage={stage}]")
    assert "put the cup in the bowl" in text and "offline:astar" in text
    # what the gripper can take, where the robot stands and what the physics held in place: as written
    plan = json.loads((sample_run / "planning" / "plan.json").read_text())
    grasp = page.page.inner_text("xpath=//h3[text()='What the gripper can take']/following-sibling::div[1]")
    assert len(plan["graspability"]) >= 5
    for verdict in plan["graspability"].values():
        assert verdict["reason"] in grasp
    assert f"Robot base: {plan['robot_placement']['reason']}" in text
    world = json.loads((sample_run / "simulation" / "result.json").read_text())["world_check"]
    for reason in world["settling"]["reasons"].values():
        assert reason in text
    # the timeline has one labelled row per track and the 3D view drew real points, boxes, cameras
    tracks = json.loads((sample_run / "tracking" / "tracks.json").read_text())["tracks"]
    labels = page.page.eval_on_selector_all("svg.timeline text[text-anchor=end]", "ts => ts.map(t => t.textContent)")
    assert len(labels) == len(tracks) and "#1 cup ▸ 3D" in labels
    traces = page.page.evaluate("document.getElementById('fig-scene').data.map(t => [t.name, t.type])")
    names = [n for n, _ in traces if n]  # the boxes' text labels have no legend name
    objects = json.loads((sample_run / "reconstruction" / "objects.json").read_text())["objects"]
    assert sum(n.startswith("points (") for n in names) == 1 and "table top" in names
    assert {f"#{o['track_id']} {o['class_name']}" for o in objects} <= set(names)
    assert any(n.startswith("camera path (") for n in names) and "viewing directions" in names
    assert page.page.query_selector("#fig-scene canvas") is not None
    # overlays and keyframes are real images the browser decoded
    broken = page.page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0)"
                                ".map(i => i.src)")
    assert broken == []
    shots = page.shoot_sections("sample")
    assert len(shots) == len(SECTIONS) and all(p.stat().st_size > 10_000 for p in shots)
    report = html.stat().st_size
    assets = _folder_size(sample_run / "report_files")
    print(f"\nsample report: load event {page.timing['loadEventEnd'] / 1000:.2f} s "
          f"(DOMContentLoaded {page.timing['domContentLoadedEventEnd'] / 1000:.2f} s), 3D view drawn "
          f"{figures_s:.2f} s after navigation; report.html {report / 1e3:.0f} kB + report_files "
          f"{assets / 1e6:.1f} MB; run folder {_folder_size(sample_run) / 1e6:.1f} MB")


def test_failed_reconstruction_says_why(static_run: Path, browser: Any) -> None:
    html = static_run / "report.html"
    assert html.is_file()
    manifest = json.loads((static_run / "manifest.json").read_text())["stages"]
    page = _open(browser, html)
    assert page.problems() == []
    sections = _sections(page)
    assert list(sections) == SECTIONS
    assert sections["tracking"] == sections["segmentation"] == "done"
    assert sections["reconstruction"] == "failed"
    assert all(sections[s] == "skipped" for s in ("scene_graph", "planning", "simulation")), sections
    recon = page.page.inner_text("section#reconstruction")
    assert "This stage failed" in recon and manifest["reconstruction"]["reason"] in recon
    assert "camera barely moves" in recon
    # what the stage got as far as is kept and shown, so a static camera is told from a missed plane
    diag = json.loads((static_run / "reconstruction" / "failed" / "diagnostics.json").read_text())
    kf = diag["keyframes"]
    assert kf["analysed"] >= 10 and kf["max_displacement"] < kf["static_threshold"], kf
    assert "frames analysed" in recon.lower() and "largest image shift" in recon.lower()
    for stage in ("scene_graph", "planning", "simulation"):
        assert manifest[stage]["reason"] in page.page.inner_text(f"section#{stage}")
    assert page.page.query_selector(".plotly-fig") is None
    assert not (static_run / "report_files" / "plotly.min.js").exists()  # nothing to draw: no 4.8 MB copy
    assert _videos(page)[0]["error"] is None  # the tracking preview still plays
    page.shoot_sections("static")


def test_report_never_shows_a_key(sample_run: Path, tmp_path: Path, yolo_weights: str) -> None:
    """Planning with an API key set (an LLM server that refuses the connection): the key is nowhere."""
    exports = tmp_path / "exports"
    shutil.copytree(sample_run, exports / "sample")
    env = {"OPENAI_API_KEY": FAKE_KEY, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    config = _config(exports, yolo_weights, env=env, planning={"max_retries": 0, "timeout_s": 5})
    from tangram.runner import default_input

    result = Pipeline(config).run(default_input(), name="sample", until="planning", force=["planning"])
    plan = json.loads((result.run_dir / "planning" / "plan.json").read_text())
    assert plan["llm"] and plan["llm"]["api_key_set"] is True  # the LLM path ran with the key...
    html = (result.run_dir / "report.html").read_text()
    assert "api key set" in html and "offline:astar" in html  # ...and the report shows the call and the fallback
    for path in result.run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".json", ".log", ".js", ".txt", ""):
            assert FAKE_KEY not in path.read_text(errors="replace"), path


def test_older_or_damaged_run_folders_still_get_a_report(sample_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(sample_run, run)
    (run / "report.html").unlink()
    (run / "tracking" / "preview.mp4").unlink()
    (run / "reconstruction" / "objects.json").unlink()
    (run / "planning" / "plan.json").write_text("{not json")
    html = write_run_report(run).read_text()
    assert "Annotated preview" in html and "no video in this run folder" in html
    assert "planning/plan.json is missing or unreadable" in html  # that section says so; the rest is there
    assert "Objects in 3D" not in html and "fig-scene-spec" in html  # the cloud and cameras still draw
    with pytest.raises(Exception, match="not a TANGRAM run folder"):
        write_run_report(tmp_path)


def test_cli_rebuilds_run_and_batch_reports(sample_run: Path, static_run: Path, tmp_path: Path) -> None:
    batch = _batch_folder(tmp_path, sample_run, static_run)
    run_report = batch / "sample" / "report.html"
    run_report.unlink()
    for folder, made in ((batch / "sample", run_report), (batch, batch / "report.html")):
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "report", str(folder)], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(made) and made.is_file()
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "report", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a TANGRAM run or batch folder" in proc.stderr


def _batch_folder(root: Path, *runs: Path) -> Path:
    """A batch folder of real run folders and a batch.json in the fleet's format, built from their manifests."""
    batch = root / "batch"
    batch.mkdir()
    inputs, hosts = [], {}
    for run in runs:
        shutil.copytree(run, batch / run.name)
        manifest = json.loads((run / "manifest.json").read_text())
        stages = {}
        for stage, record in manifest["stages"].items():
            execution = record.get("execution") or {}
            stages[stage] = {"status": record["status"], "where": record.get("where", "local"),
                             "seconds": record.get("seconds"), "bytes_up": execution.get("bytes_up", 0),
                             "bytes_down": execution.get("bytes_down", 0)}
            host = record.get("where") or "local"
            hosts[host] = hosts.get(host, 0.0) + (record.get("seconds") or 0.0)
        failed = next((s for s, r in manifest["stages"].items() if r["status"] == "failed"), None)
        inputs.append({"input": manifest["input"]["path"], "name": run.name, "run_dir": run.name,
                       "status": "failed" if failed else "done",
                       "reason": manifest["stages"][failed]["reason"] if failed else None,
                       "seconds": round(sum(r.get("seconds") or 0 for r in manifest["stages"].values()), 3),
                       "cost_usd": 0.0, "stages": stages})
    total = sum(i["seconds"] for i in inputs)
    (batch / "batch.json").write_text(json.dumps({
        "format": "tangram.batch/1", "name": "two-clips", "started_at": "2026-01-01T10:00:00+00:00",
        "finished_at": "2026-01-01T10:05:00+00:00", "status": "done",
        "cluster": {"kind": "local", "address": "tcp://127.0.0.1:8786", "workers": ["tcp://127.0.0.1:40001"],
                    "dashboard": "http://127.0.0.1:8787/status"},
        "inputs": inputs,
        "totals": {"inputs": len(inputs), "done": sum(i["status"] == "done" for i in inputs),
                   "failed": sum(i["status"] == "failed" for i in inputs), "wall_s": total,
                   "host_seconds": hosts, "bytes_up": 0, "bytes_down": 0, "cost_usd": 0.0,
                   "local_estimate_s": total},
    }))
    return batch


def test_batch_report_in_chromium(sample_run: Path, static_run: Path, tmp_path: Path, browser: Any) -> None:
    batch = _batch_folder(tmp_path, sample_run, static_run)
    html = write_batch_report(batch)
    page = _open(browser, html)
    assert page.problems() == []  # the dashboard address is text, not a link that would be fetched
    rows = page.page.eval_on_selector_all("#inputs-table tbody tr[data-status]", "rs => rs.map(r => r.dataset.status)")
    assert rows == ["done", "failed"]
    assert "camera barely moves" in page.page.inner_text("#inputs-table")
    links = page.page.eval_on_selector_all("#inputs-table a", "as => as.map(a => a.getAttribute('href'))")
    assert links == ["sample/report.html", "coffee/report.html"]
    assert all((batch / link).is_file() for link in links)
    summary = page.page.inner_text("section#summary")
    assert "1 of 2 inputs failed" in summary and "local" in page.page.inner_text("#hosts")
    page.shoot_sections("batch")
    # following the link opens the run's own report, still offline
    run_page = _open(browser, batch / links[1])
    assert run_page.problems() == [] and _sections(run_page)["reconstruction"] == "failed"


def test_a_report_that_fails_never_fails_the_run(sample_run: Path, tmp_path: Path, yolo_weights: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    import tangram.report

    exports = tmp_path / "exports"
    shutil.copytree(sample_run, exports / "sample")
    (exports / "sample" / "report.html").unlink()

    def broken(run_dir: Path) -> Path:
        raise RuntimeError("disk full")

    monkeypatch.setattr(tangram.report, "write_run_report", broken)
    from tangram.runner import default_input

    result = Pipeline(_config(exports, yolo_weights)).run(default_input(), name="sample")
    assert result.ok  # every stage reused, and the failed report is only a warning
    assert not (result.run_dir / "report.html").exists()
    assert "report.html not written: RuntimeError: disk full" in caplog.text
