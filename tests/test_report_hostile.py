"""A run folder is data from outside (it may come from a remote worker or host): hostile strings in
tracks.json members and class names, in stage failure reasons and in the run name go through
`tangram report` and stay text. The page is parsed by an HTML5 parser (html5lib, the WHATWG tree
builder) and, where Debian's chromium is installed, loaded in headless chromium: no injected
element, no script run, every section present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tangram.report.run_report import write_run_report

HOSTILE = ['</title><i id="x1">z</i>', "cup<!--<script>", '</script><i id="x2">',
           '"><img id="x3" src=x onerror="window.pwned=1">', "<svg onload=window.pwned=2>"]


def _hostile_run(root: Path) -> Path:
    run = root / "run"
    (run / "tracking").mkdir(parents=True)
    stages = {"tracking": {"status": "done", "backend": HOSTILE[3], "seconds": 1.0, "summary": {}},
              "segmentation": {"status": "failed", "reason": HOSTILE[2] + HOSTILE[1]},
              "reconstruction": {"status": "failed", "reason": HOSTILE[4]}}
    (run / "manifest.json").write_text(json.dumps({"run": HOSTILE[0], "input": {"path": HOSTILE[3]},
                                                    "stages": stages}))
    frames = [{"frame_index": f, "detections": [
        {"track_id": t, "class_id": 0, "class_name": HOSTILE[t % len(HOSTILE)], "confidence": 0.9,
         "bbox": [1, 2, 3, 4], "detected_class_name": HOSTILE[1]} for t in (1, 2, 3)]} for f in range(5)]
    tracks = {"format": "tangram.tracks/2", "tracker": HOSTILE[2], "frame_stride": 1,
              "video": {"num_frames": 5, "fps": 5, "width": 8, "height": 8},
              "frames": frames,
              "tracks": {str(t): {"class_name": HOSTILE[t % len(HOSTILE)], "num_frames": 5, "first_frame": 0,
                                  "last_frame": 4, "mean_confidence": 0.9,
                                  "members": [t, HOSTILE[0], HOSTILE[2]], "class_votes": {HOSTILE[1]: 1.0}}
                         for t in (1, 2, 3)}}
    (run / "tracking" / "tracks.json").write_text(json.dumps(tracks))
    return run


def test_hostile_run_folder_stays_text_in_an_html5_parser(tmp_path: Path) -> None:
    html5lib = pytest.importorskip("html5lib")
    html = write_run_report(_hostile_run(tmp_path)).read_text()
    doc = html5lib.parse(html, namespaceHTMLElements=False)
    assert all(not e.get("id") for e in doc.findall(".//i"))  # the legend's own swatches are <i> without id
    assert not doc.findall(".//img") and not doc.findall(".//svg/svg")
    assert not any(e.get("id", "").startswith("x") for e in doc.iter())
    assert not any(k.startswith("on") for e in doc.iter() for k in e.attrib)
    scripts = doc.findall(".//script")
    assert all((s.get("type") == "application/json") or "pwned" not in (s.text or "") for s in scripts)
    titles = "".join("".join(t.itertext()) for t in doc.iter() if isinstance(t.tag, str) and t.tag.endswith("title"))
    assert '</title><i id="x1">z</i>' in titles  # the member is there, as text
    sections = {s.get("data-section") for s in doc.iter() if s.get("data-section")}
    assert {"tracking", "segmentation", "reconstruction"} <= sections
    text = "".join(doc.itertext())
    assert "cup<!--<script>" in text and '"><img id="x3"' in text


def test_hostile_run_folder_stays_text_in_chromium(tmp_path: Path) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.is_file():
        pytest.skip(f"Debian's chromium is not at {chromium} (scripts/setup_test_deps.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    report = write_run_report(_hostile_run(tmp_path))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--headless=new"])
        try:
            page = browser.new_page()
            page.goto(report.resolve().as_uri())
            injected = page.evaluate("document.querySelectorAll('img, i[id], svg svg, #x1, #x2, #x3').length")
            assert injected == 0
            assert page.evaluate("window.pwned === undefined")
            titles = page.evaluate("[...document.querySelectorAll('title')].map(t => t.textContent).join('\\n')")
            assert '</title><i id="x1">z</i>' in titles
            sections = page.evaluate("[...document.querySelectorAll('section[data-section]')]"
                                     ".map(s => s.dataset.section)")
            assert {"tracking", "segmentation", "reconstruction"} <= set(sections)
        finally:
            browser.close()


def _wrong_types_run(root: Path) -> Path:
    """A run folder whose JSON has values of the wrong type where ids, numbers, lists and objects belong."""
    run = root / "wrong"
    for stage in ("tracking", "segmentation", "reconstruction", "planning"):
        (run / stage).mkdir(parents=True)
    stages = {"tracking": {"status": "done", "seconds": "fast", "where": ["x"], "execution": "remote",
                           "summary": "none", "backend": 7},
              "segmentation": {"status": "done", "seconds": [1], "finished_at": 5},
              "reconstruction": {"status": 3, "reason": {"why": "<b id='x4'>"}},
              "planning": "done", "simulation": ["failed"], "7": None}
    (run / "manifest.json").write_text(json.dumps({"run": ["r"], "input": "/no/such.mp4", "stages": stages,
                                                    "tangram_version": {"v": 1}}))
    frames = [{"frame_index": f, "detections": [
        {"track_id": "seven<i id='x5'>", "class_name": 3, "bbox": "wide"},
        {"track_id": 2, "class_name": "cup", "bbox": [1, 2, 3, 4]}, "not a detection", {"track_id": [2]}]}
        for f in (0, 1, "two", None)] + ["not a frame", {"frame_index": 4, "detections": "none"}]
    tracks = {"tracker": 5, "frame_stride": "x", "video": {"num_frames": "many", "fps": "x"}, "frames": frames,
              "tracks": {"2": {"class_name": ["cup"], "members": "abc", "mean_confidence": "high"},
                         "seven<i id='x5'>": "not a dict", "3": {"members": [{"id": 1}], "num_frames": "x"}}}
    (run / "tracking" / "tracks.json").write_text(json.dumps(tracks))
    (run / "segmentation" / "masks.json").write_text(json.dumps(
        {"backend": 5, "keyframes": [{"image": 7, "masks": "x"}, "kf", {"image": "a.png", "masks": [3]}]}))
    (run / "reconstruction" / "objects.json").write_text(json.dumps(
        {"objects": [{"track_id": "<b id='x6'>", "box": {"center": "abc", "size": 3}, "members": 4}, "obj"],
         "unplaced": "none"}))
    (run / "reconstruction" / "stats.json").write_text(json.dumps(["not", "a", "dict"]))
    (run / "reconstruction" / "cameras.json").write_text(json.dumps({"scale": "big", "frames": "none"}))
    (run / "planning" / "plan.json").write_text(json.dumps({"actions": "pick", "validation": ["x"], "llm": 3}))
    return run


def test_values_of_the_wrong_type_never_break_the_page(tmp_path: Path) -> None:
    """Strings where ids or numbers belong, lists where objects belong: the report is still written,
    each value shown as text or its section says in a sentence what could not be read; the batch
    report the same for a batch.json with wrong types."""
    html5lib = pytest.importorskip("html5lib")
    from tangram.report.batch_report import write_batch_report

    run = _wrong_types_run(tmp_path)
    doc = html5lib.parse(write_run_report(run).read_text(), namespaceHTMLElements=False)
    assert not any(e.get("id", "").startswith("x") for e in doc.iter())
    sections = {s.get("data-section") for s in doc.iter() if s.get("data-section")}
    assert {"tracking", "segmentation", "reconstruction", "scene_graph", "planning", "simulation"} <= sections
    text = "".join(doc.itertext())
    assert "seven<i id='x5'>" in text  # a string track id, shown as text
    assert "#2 cup" in text  # the well-typed track still drawn
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "batch.json").write_text(json.dumps({
        "name": ["b"], "status": 5, "started_at": 7, "cluster": {"workers": "w", "kind": 3},
        "inputs": [{"name": "a", "run_dir": "../wrong", "status": "done", "seconds": "long", "cost_usd": "free",
                    "stages": {"tracking": {"status": "done", "where": ["h"], "bytes_up": "many",
                                            "seconds": "x"}, "segmentation": "done"}},
                   {"name": 5, "run_dir": 3, "stages": ["tracking"]}, "not an input"],
        "totals": {"inputs": "two", "host_seconds": "none", "wall_s": "x", "cost_usd": "y", "bytes_up": [],
                   "bytes_down": "x", "done": "all"}}))
    (run / "report.html").unlink()
    doc = html5lib.parse(write_batch_report(batch).read_text(), namespaceHTMLElements=False)
    rows = [r for r in doc.iter("tr") if r.find("td") is not None and r.get("class") != "total"]
    assert len(rows) == 2  # the two object entries; the string entry is left out
    assert {"".join(r.find("td").itertext()).strip() for r in rows} == {"a", "5"}
    assert not doc.findall(".//a[@href='../wrong/report.html']") and not (run / "report.html").exists(), \
        "a run_dir outside the batch folder is neither linked nor written"
