#!/usr/bin/env bash
# System packages the tests start for real: OpenSSH server (Thunder tests), Debian's chromium
# (the HTML report tests drive it headless with Playwright's Python API; no browser download), and
# Xvfb plus the libraries of Qt's xcb plugin (the GUI test on a real X display, via setup_gui.sh), and
# Mesa's software Vulkan driver, lavapipe (the Rerun viewer's screenshot test: its wgpu renderer
# cannot use llvmpipe's OpenGL, which lacks R32Float render targets).
set -euo pipefail

apt_install() {  # apt_install COMMAND PACKAGE WHAT: install PACKAGE unless COMMAND exists
  local cmd=$1 pkg=$2 what=$3
  if command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/usr/bin/$cmd" ]; then
    return 0
  fi
  apt_get "$pkg" "$what"
}

apt_get() {  # apt_get PACKAGE WHAT: install PACKAGE (root + apt), or say what will not run
  local pkg=$1 what=$2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tangram test setup: installing $pkg" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; }
  else
    echo "tangram test setup: cannot install $pkg (need root + apt); $what will not run" >&2
  fi
}

apt_install sshd openssh-server "Thunder tests"
apt_install chromium chromium "HTML report browser tests"
apt_install Xvfb xvfb "GUI test on a real X display"
compgen -G "/usr/share/vulkan/icd.d/lvp_icd.*.json" >/dev/null || \
  apt_get mesa-vulkan-drivers "Rerun viewer screenshot test"
bash "$(dirname "${BASH_SOURCE[0]}")/setup_gui.sh" || \
  echo "tangram test setup: Qt's xcb plugin libraries are missing; the xcb GUI test will fail" >&2
