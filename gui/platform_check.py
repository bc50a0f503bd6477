"""Pre-flight check for the Qt platform plugin, run before Qt starts (issue 20).

Loads every DT_NEEDED library of PyQt6's ``libqxcb.so`` with ctypes (no subprocess), so a
missing ``libxcb-icccm.so.4`` becomes one sentence and exit 2 instead of Qt's SIGABRT.
"""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

# .so soname -> Debian/Ubuntu package (from `dpkg -S` on a Debian 12 reference machine).
PACKAGES: dict[str, str] = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
}


def xcb_plugin() -> Path | None:
    """Path of PyQt6's xcb platform plugin, or None when PyQt6 is not installed."""
    try:
        import PyQt6
    except ImportError:
        return None
    path = Path(PyQt6.__file__).parent / "Qt6" / "plugins" / "platforms" / "libqxcb.so"
    return path if path.exists() else None


def missing_libraries(plugin: Path) -> list[str]:
    """Sonames the plugin cannot resolve: dlopen it (ctypes, no subprocess) and parse the error.

    The dynamic loader stops at the first unresolvable DT_NEEDED entry, so this names one
    library per call; installing it and rerunning names the next, if any.
    """
    try:
        ctypes.CDLL(str(plugin), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError as exc:
        found = re.findall(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", str(exc))
        return found or [str(exc)]
    return []


def check() -> str | None:
    """One-sentence problem that stops the GUI from starting, or None when it can start."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("No display: DISPLAY and WAYLAND_DISPLAY are unset; run with "
                "QT_QPA_PLATFORM=offscreen or use the CLI (python main.py --input VIDEO).")
    plugin = xcb_plugin()
    if plugin is None:
        return None
    missing = missing_libraries(plugin)
    if missing:
        pkgs = " ".join(sorted({PACKAGES.get(m, m) for m in missing}))
        return (f"Qt's xcb platform plugin cannot load {', '.join(missing)}; install them with "
                f"sudo apt-get install {pkgs} (or bash scripts/setup_gui.sh as root).")
    return None
