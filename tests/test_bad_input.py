"""Bad input: one line on stderr, exit code 2, no traceback, earlier results untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import real_file


def _assert_clean_error(proc, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tangram: error:")
    assert needle in lines[0]


def _bad_inputs(tmp: Path, apple: Path) -> dict[str, tuple[Path, str]]:
    text = tmp / "notes.mp4"
    text.write_text("this is not a video")
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(apple.read_bytes()[:600_000])  # the moov atom is at the end: unreadable
    empty_video = tmp / "empty.mp4"
    empty_video.write_bytes(b"")
    empty_dir = tmp / "no_images"
    empty_dir.mkdir()
    (empty_dir / "readme.txt").write_text("no images here")
    corrupt_png = tmp / "broken.png"
    corrupt_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    return {
        "missing": (tmp / "does_not_exist.mp4", "input not found"),
        "not_a_video": (text, "cannot open video"),
        "truncated": (truncated, "cannot open video"),
        "zero_bytes": (empty_video, "video is empty"),
        "empty_folder": (empty_dir, "no images in folder"),
        "corrupt_image": (corrupt_png, "cannot read image"),
        "wrong_suffix": (empty_dir / "readme.txt", "unsupported input"),
    }


@pytest.mark.parametrize("case", ["missing", "not_a_video", "truncated", "zero_bytes", "empty_folder",
                                  "corrupt_image", "wrong_suffix"])
def test_bad_input_is_one_line_exit_2(case: str, tmp_path: Path, run_cli, apple_video: Path) -> None:
    path, needle = _bad_inputs(tmp_path, apple_video)[case]
    proc = run_cli("--input", str(path), "--mode", "track", "--name", "bad")
    _assert_clean_error(proc, needle)


def test_unreadable_weights_and_earlier_results_kept(tmp_path: Path, run_cli) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(real_file("bus.jpg"), frames / "a.jpg")
    ok = run_cli("--input", str(frames), "--mode", "track", "--name", "keep")
    assert ok.returncode == 0, ok.stderr
    tracks = tmp_path / "exports/keep/tracking/tracks.json"
    before = tracks.read_bytes()

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    bad = run_cli("--input", str(frames), "--mode", "track", "--name", "keep", "--force", "tracking",
                  "--yolo-weights", str(garbage))
    _assert_clean_error(bad, "cannot load YOLO weights")
    missing = run_cli("--input", str(frames), "--mode", "track", "--name", "keep", "--force", "tracking",
                      env={"TANGRAM_YOLO_WEIGHTS": str(tmp_path / "nope.pt")})
    _assert_clean_error(missing, "YOLO weights not found")
    assert tracks.read_bytes() == before  # the finished result of the earlier run survived both


def test_unknown_config_section_is_clear(tmp_path: Path, run_cli, apple_video: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[trackin]\nconf = 0.3\n")
    _assert_clean_error(run_cli("--input", str(apple_video), "--config", str(cfg)), "unknown config section")
    cfg.write_text("[tracking]\nconf = 7\n")
    _assert_clean_error(run_cli("--input", str(apple_video), "--config", str(cfg)), "tracking.conf")
