"""The --gui pre-flight check (issue 20): no display -> one line, exit 2; plugin check passes."""

import os
import subprocess
import sys
from pathlib import Path

from gui import platform_check

ROOT = Path(__file__).resolve().parents[1]


def test_no_display_one_line_exit_2() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "main.py", "--gui"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "No display" in lines[0] and "QT_QPA_PLATFORM=offscreen" in lines[0]


def test_xcb_plugin_libraries_load() -> None:
    plugin = platform_check.xcb_plugin()
    assert plugin is not None
    assert platform_check.missing_libraries(plugin) == []


def test_unresolvable_dependency_is_named(tmp_path: Path, monkeypatch) -> None:
    # A copy of the plugin outside PyQt6: its RPATH ($ORIGIN/../../lib) now points at an empty
    # folder, so its Qt dependency cannot be resolved and must be named.
    plugin = platform_check.xcb_plugin()
    assert plugin is not None
    copy = tmp_path / "plugins" / "platforms" / "libqxcb.so"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(plugin.read_bytes())
    # fresh interpreter: this process may already hold the Qt libraries from another test
    code = ("from pathlib import Path; from gui import platform_check as p; "
            f"print(repr(p.missing_libraries(Path({str(copy)!r}))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    missing = eval(out)
    assert len(missing) == 1 and missing[0].startswith("libQt6") and ".so" in missing[0]
    monkeypatch.setattr(platform_check, "xcb_plugin", lambda: copy)
    monkeypatch.setattr(platform_check, "missing_libraries", lambda _p: missing)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    message = platform_check.check()
    assert message is not None and missing[0] in message and "apt-get install" in message
