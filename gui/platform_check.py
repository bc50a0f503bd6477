"""Pre-flight check for the Qt platform plugin, run before Qt starts (issue 20).

Loads every DT_NEEDED library of PyQt6's ``libqxcb.so`` with ctypes (no subprocess), so a
missing ``libxcb-icccm.so.4`` becomes one sentence and exit 2 instead of Qt's SIGABRT.
"""

from __future__ import annotations

import ctypes
import os
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
    """Sonames the plugin needs (DT_NEEDED, read with pyelftools if present) that fail to load."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with plugin.open("rb") as f:
        elf = ELFFile(f)
        needed = [t.needed for s in elf.iter_sections() if isinstance(s, DynamicSection)
                  for t in s.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    qt_lib = plugin.parents[2] / "lib"
    missing = []
    for name in needed:
        local = qt_lib / name
        try:
            ctypes.CDLL(str(local) if local.exists() else name)
        except OSError:
            missing.append(name)
    return missing


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
