"""Pre-flight check for the Qt platform plugin, run before Qt starts (issue 20).

Qt 6.5+ aborts the process (SIGABRT, exit 134) when its xcb plugin cannot load, and its message
blames ``libxcb-cursor0`` whatever is really missing. This module finds the missing libraries first,
so ``--gui`` prints one sentence naming all of them with the apt command, and exits 2.

How: ``ldd`` on PyQt6's ``libqxcb.so`` lists every unresolvable library, direct or indirect (``=>
not found``). Where there is no ``ldd`` (not glibc), the plugin is dlopen'ed with ctypes instead; the
loader stops at the first unresolvable library, so that fallback names one per run.

``python -m gui.platform_check`` prints the check's sentence (exit 2) or nothing (exit 0);
``--packages SONAME...`` prints the Debian package of each soname (used by scripts/setup_gui.sh).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# soname -> Debian/Ubuntu package: every library outside PyQt6 that `ldd` lists for PyQt6 6.11's
# libqxcb.so (direct and indirect), owner from `dpkg -S` on Debian 12 (bookworm). libc6-family
# libraries are left out: a system without them runs no Python. Ubuntu 24.04 renamed some for the
# 64-bit time_t transition (libglib2.0-0 -> libglib2.0-0t64); setup_gui.sh tries the t64 name.
PACKAGES: dict[str, str] = {
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libEGL.so.1": "libegl1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libpng16.so.16": "libpng16-16",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libpcre2-8.so.0": "libpcre2-8-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libexpat.so.1": "libexpat1",
    "libbrotlidec.so.1": "libbrotli1",
    "libbrotlicommon.so.1": "libbrotli1",
    "libzstd.so.1": "libzstd1",
    "libbsd.so.0": "libbsd0",
    "libmd.so.0": "libmd0",
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.MULTILINE)
_SONAME = re.compile(r"^(lib[\w.+-]+?)\.so\.([\w.]+)$")


def package_for(soname: str) -> str:
    """The Debian package that ships SONAME: the table, else Debian policy's library-package name
    (soname stem + major version, a hyphen between when the stem ends in a digit; lower case)."""
    if soname in PACKAGES:
        return PACKAGES[soname]
    match = _SONAME.match(soname)
    if match is None:
        return soname
    stem, version = match.group(1), match.group(2).split(".")[0]
    sep = "-" if stem[-1].isdigit() else ""
    return f"{stem}{sep}{version}".lower().replace("_", "-")


def xcb_plugin() -> Path | None:
    """Path of PyQt6's xcb platform plugin, or None when PyQt6 is not installed."""
    try:
        import PyQt6
    except ImportError:
        return None
    path = Path(PyQt6.__file__).parent / "Qt6" / "plugins" / "platforms" / "libqxcb.so"
    return path if path.exists() else None


def missing_by_ldd(plugin: Path, ldd: str) -> list[str] | None:
    """Every soname `ldd` reports as not found (in its order, once each); None when ldd fails."""
    try:
        proc = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    found = list(dict.fromkeys(_NOT_FOUND.findall(proc.stdout)))
    if proc.returncode != 0 and not found:
        return None  # e.g. "not a dynamic executable": let the loader decide
    return found


def missing_by_dlopen(plugin: Path) -> list[str]:
    """dlopen the plugin (ctypes): the loader names the first library it cannot resolve."""
    try:
        ctypes.CDLL(str(plugin), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError as exc:
        found = re.findall(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", str(exc))
        return found or [str(exc)]
    return []


def missing_libraries(plugin: Path) -> list[str]:
    """Sonames the plugin cannot resolve: all of them from `ldd`, else the first one by dlopen."""
    ldd = shutil.which("ldd")
    if ldd is not None:
        found = missing_by_ldd(plugin, ldd)
        if found is not None:
            return found
    return missing_by_dlopen(plugin)


def check() -> str | None:
    """One-sentence problem that stops the GUI from starting, or None when it can start."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("No display: DISPLAY and WAYLAND_DISPLAY are unset; run with "
                "QT_QPA_PLATFORM=offscreen or use the CLI (python main.py --input VIDEO).")
    if not os.environ.get("DISPLAY") and not platform:
        return None  # Wayland only: Qt picks its wayland plugin, which this check does not cover
    plugin = xcb_plugin()
    if plugin is None:
        return None
    missing = sorted(missing_libraries(plugin))
    if missing:
        pkgs = " ".join(dict.fromkeys(package_for(m) for m in missing))
        return (f"Qt's xcb platform plugin cannot load {', '.join(missing)}; install them with "
                f"sudo apt-get install {pkgs} (or sudo bash scripts/setup_gui.sh).")
    return None


def main(argv: list[str]) -> int:
    if argv[:1] == ["--packages"]:
        for soname in argv[1:]:
            print(package_for(soname))
        return 0
    if argv[:1] == ["--plugin"]:
        plugin = xcb_plugin()
        if plugin is None:
            return 1
        print(plugin)
        return 0
    problem = check()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
