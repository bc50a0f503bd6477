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
