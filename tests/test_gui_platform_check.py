"""The --gui pre-flight check (issue 20): no display -> one line, exit 2; the check passes when the
xcb plugin's libraries load and names every library that does not.

The failing case uses a copy of PyQt6's real libqxcb.so beside a link to PyQt6's Qt6/lib (so its
RUNPATH still finds Qt), with two DT_NEEDED names rewritten in place to sonames of the same length
that this Debian does not have installed: libxcb-xkb.so.1 -> libxcb-res.so.0 and
libxcb-shape.so.0 -> libxcb-xtest.so.0 (packages libxcb-res0, libxcb-xtest0).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gui import platform_check

ROOT = Path(__file__).resolve().parents[1]
SWAPS = {b"libxcb-xkb.so.1": b"libxcb-res.so.0", b"libxcb-shape.so.0": b"libxcb-xtest.so.0"}


def _resolvable(soname: str) -> bool:
    proc = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True)
    return f"{soname} " in proc.stdout


@pytest.fixture
def broken_plugin(tmp_path: Path) -> Path:
    plugin = platform_check.xcb_plugin()
    if plugin is None:
        pytest.skip("PyQt6's xcb plugin is not installed")
    if shutil.which("ldconfig") is None or any(_resolvable(new.decode()) for new in SWAPS.values()):
        pytest.skip("cannot tell that libxcb-res.so.0 / libxcb-xtest.so.0 are absent here")
    data = plugin.read_bytes()
    for old, new in SWAPS.items():
        assert len(old) == len(new) and data.count(old + b"\0") == 1, old
        data = data.replace(old + b"\0", new + b"\0")
    qt6 = tmp_path / "Qt6"
    copy = qt6 / "plugins" / "platforms" / "libqxcb.so"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(data)
    (qt6 / "lib").symlink_to(plugin.parents[2] / "lib")
    return copy


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
    assert platform_check.missing_by_dlopen(plugin) == []


def test_every_missing_library_is_named(broken_plugin: Path, monkeypatch) -> None:
    assert sorted(platform_check.missing_libraries(broken_plugin)) == ["libxcb-res.so.0", "libxcb-xtest.so.0"]
    monkeypatch.setattr(platform_check, "xcb_plugin", lambda: broken_plugin)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    message = platform_check.check()
    assert message is not None and message.count("\n") == 0
    assert "libxcb-res.so.0, libxcb-xtest.so.0" in message
    assert "sudo apt-get install libxcb-res0 libxcb-xtest0 " in message


def test_without_ldd_dlopen_names_the_first(broken_plugin: Path) -> None:
    # fresh interpreter: this process may already hold the Qt libraries from another test
    code = ("from pathlib import Path; from gui import platform_check as p; "
            f"print(repr(p.missing_by_dlopen(Path({str(broken_plugin)!r}))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    missing = ast.literal_eval(out)
    assert len(missing) == 1 and missing[0] in ("libxcb-res.so.0", "libxcb-xtest.so.0")


def test_setup_gui_prints_the_packages(broken_plugin: Path) -> None:
    env = {**os.environ, "TANGRAM_QXCB_PLUGIN": str(broken_plugin),
           "TANGRAM_VENV": str(Path(sys.executable).parents[1])}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "setup_gui.sh"), "--print"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "cannot load: libxcb-res.so.0 libxcb-xtest.so.0" in proc.stderr
    assert "sudo apt-get install -y libxcb-res0 libxcb-xtest0" in proc.stderr


@pytest.mark.parametrize(("soname", "package"), [
    ("libxcb-icccm.so.4", "libxcb-icccm4"),        # table
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),  # table: stem ends in a digit
    ("libglib-2.0.so.0", "libglib2.0-0"),          # table: not the policy rule
    ("libxcb-xinput.so.0", "libxcb-xinput0"),      # policy rule
    ("libX11-xcb.so.1", "libx11-xcb1"),            # table, lower case
    ("libfoo2.so.3", "libfoo2-3"),                 # policy rule, hyphen after a digit
])
def test_package_names(soname: str, package: str) -> None:
    assert platform_check.package_for(soname) == package


def test_table_matches_debian() -> None:
    """Where dpkg is there, every package the table names is one apt knows."""
    if shutil.which("apt-cache") is None:
        pytest.skip("no apt-cache (not Debian/Ubuntu)")
    names = sorted(set(platform_check.PACKAGES.values()))
    proc = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], capture_output=True,
                          text=True, timeout=60)
    shown = {line.split(":", 1)[1].strip() for line in proc.stdout.splitlines()
             if line.startswith("Package:")}
    # Ubuntu 24.04 renamed some for 64-bit time_t; setup_gui.sh tries NAMEt64
    assert {n for n in names if n not in shown and f"{n}t64" not in shown} == set()
