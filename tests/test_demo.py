"""demo.py / demo_thunder.py: the same pipeline with presets, and the comparison table at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, real_file

from tangram.demo import LOCAL, THUNDER, comparison_rows, main
from tangram.runner import load_manifest


@pytest.fixture(autouse=True)
def _no_thunder_host_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demos read the environment like the CLI; a developer's Thunder host must not leak in."""
    for key in list(os.environ):
        if key.startswith("TANGRAM_THUNDER_"):
            monkeypatch.delenv(key)


@pytest.mark.parametrize(("script", "default"), [("demo.py", "local_demo"), ("demo_thunder.py", "thunder_demo")])
def test_scripts_show_their_presets(script: str, default: str) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert f"(default: {default})" in " ".join(proc.stdout.split())
    for flag in ("--gui", "--video", "--name", "--thunder", "--compare", "--mode"):
        assert flag in proc.stdout


def test_bad_video_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--video", str(tmp_path / "missing.mp4"), "--exports-dir", str(tmp_path)], LOCAL, "demo.py")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"demo.py: error: input not found: {tmp_path / 'missing.mp4'}"]


@pytest.mark.slow
def test_two_runs_and_the_comparison_table(tmp_path: Path, yolo_weights: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    desk = real_file("tum_office_desk")
    common = ["--mode", "track", "--video", str(desk), "--exports-dir", str(tmp_path), "--yolo-weights",
              yolo_weights]
    assert main(common, LOCAL, "demo.py") == 0
    out = capsys.readouterr().out
    assert (tmp_path / "local_demo" / "tracking" / "tracks.json").is_file()
    assert "no exports/thunder_demo/ yet" in out

    assert main([*common, "--name", "second", "--compare", "local_demo"], LOCAL, "demo.py") == 0
    out = capsys.readouterr().out
    assert "second: where" in out and "local_demo: where" in out

    rows = comparison_rows([tmp_path / "second", tmp_path / "local_demo"])
    assert [r["stage"] for r in rows] == ["tracking"]
    for cell, name in zip(rows[0]["runs"], ("second", "local_demo"), strict=True):
        record = load_manifest(tmp_path / name)["stages"]["tracking"]
        assert cell == {"status": "done", "where": "local", "seconds": record["seconds"]}
        assert f"{record['seconds']:.1f}" in out


@pytest.mark.slow
def test_thunder_demo_without_a_host_runs_locally(tmp_path: Path, yolo_weights: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """No Thunder host configured: the offloadable stage falls back to local and the table says so."""
    pytest.importorskip("tangram.execution.thunder", reason="the Thunder executor is not in this checkout")
    desk = real_file("tum_office_desk")
    common = ["--mode", "segment", "--video", str(desk), "--exports-dir", str(tmp_path), "--yolo-weights",
              yolo_weights, "--segmenter", "grabcut"]
    assert main(common, LOCAL, "demo.py") == 0
    capsys.readouterr()
    code = main([*common, "--thunder"], THUNDER, "demo_thunder.py")
    out = capsys.readouterr().out
    assert code == 0
    stages = load_manifest(tmp_path / "thunder_demo")["stages"]
    assert stages["segmentation"]["status"] == "done"
    assert stages["segmentation"]["where"] == "local"
    assert "thunder_demo: where" in out and "local_demo: where" in out
