"""What can go wrong with the Thunder host, as exceptions that say whether a retry can help.

Every ThunderError is a TangramError with a one-line message a person can act on. `transient`
errors (connection refused or cut, timeouts while connecting, transfers cut off) are retried with
backoff; the others (authentication, host key, disk full, the worker crashing or hanging) are not,
because trying again would fail the same way. The offload policy turns any ThunderError into a
local run of the stage.
"""

from __future__ import annotations

from tangram.errors import TangramError


class ThunderError(TangramError):
    """The Thunder host could not run the stage."""

    transient = False
    kind = "error"


class ThunderUnavailable(ThunderError):
    """Thunder is disabled or not configured: nothing was attempted."""

    kind = "unavailable"


class ThunderConnectError(ThunderError):
    """The host did not answer, refused the connection, or the connection dropped."""

    transient = True
    kind = "connect"


class ThunderAuthError(ThunderError):
    """The key was refused, missing, unreadable or too open."""

    kind = "auth"


class ThunderHostKeyError(ThunderError):
    """The host's key is unknown (and trust on first use is off) or differs from known_hosts."""

    kind = "host_key"


class ThunderTransferError(ThunderError):
    """An upload or download was cut off or arrived corrupted."""

    transient = True
    kind = "transfer"


class ThunderDiskFull(ThunderError):
    """No space left on the host."""

    kind = "disk_full"


class ThunderRemoteError(ThunderError):
    """The remote worker crashed or could not start."""

    kind = "remote_crash"


class ThunderTimeout(ThunderError):
    """The remote worker ran past thunder.command_timeout_s and was killed."""

    kind = "remote_timeout"


class ThunderSetupError(ThunderError):
    """The host could not be turned into a worker (no python3, venv or pip failed...)."""

    kind = "setup"
