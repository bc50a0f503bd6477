#!/usr/bin/env bash
# System packages the tests start for real: OpenSSH server (Thunder tests).
set -euo pipefail
if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tangram test setup: installing openssh-server" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; }
  else
    echo "tangram test setup: no sshd and cannot install it (need root + apt); Thunder tests will skip" >&2
  fi
fi
