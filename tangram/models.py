"""Finding model weights the way users expect.

Order: an existing path; the file name inside $TANGRAM_MODEL_DIR; TANGRAM's cache
(~/.cache/tangram/models or $TANGRAM_CACHE_DIR/models); else a download from the official
source when online. Offline with nothing local: a one-line TangramError naming the setting.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from tangram.errors import TangramError

log = logging.getLogger(__name__)

# Official SAM checkpoints. The hex in each file name is the start of the file's MD5 digest;
# a download is accepted only when it matches.
SAM_CHECKPOINTS: dict[str, str] = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}


def cache_dir() -> Path:
    root = os.environ.get("TANGRAM_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "tangram"


def find_local(name_or_path: str) -> Path | None:
    """An existing file for this setting, or None."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    search = [Path(d).expanduser() for d in os.environ.get("TANGRAM_MODEL_DIR", "").split(os.pathsep) if d]
    search.append(cache_dir() / "models")
    for folder in search:
        if (folder / candidate.name).is_file():
            return (folder / candidate.name).resolve()
    return None


def is_online(timeout: float = 2.0) -> bool:
    """Cheap check that does not hang offline: DNS lookup of the download host."""
    if os.environ.get("TANGRAM_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        socket.getaddrinfo("github.com", 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(old)


def resolve_yolo_weights(setting: str) -> Path:
    """A local YOLO weights file for the `tracking.weights` setting, downloading when online."""
    local = find_local(setting)
    if local:
        return local
    hint = "set TANGRAM_YOLO_WEIGHTS or --yolo-weights to a local .pt/.onnx/.tflite file"
    if Path(setting).parent != Path(".") or not setting.endswith(".pt"):
        raise TangramError(f"YOLO weights not found: {setting} ({hint})")
    if not is_online():
        raise TangramError(f"YOLO weights '{setting}' are not on this machine and it is offline: {hint}")
    target = cache_dir() / "models" / setting
    target.parent.mkdir(parents=True, exist_ok=True)
    from ultralytics.utils.downloads import attempt_download_asset

    log.info("downloading %s (Ultralytics release assets) to %s", setting, target)
    try:
        downloaded = Path(attempt_download_asset(str(target)))
    except Exception as exc:  # ultralytics raises several types for network trouble
        raise TangramError(f"could not download YOLO weights '{setting}': {exc}; {hint}") from None
    if not downloaded.is_file():
        raise TangramError(f"could not download YOLO weights '{setting}'; {hint}")
    return downloaded


def resolve_sam_checkpoint(model: str, setting: str | None, allow_download: bool) -> Path | None:
    """The SAM checkpoint for `model`, or None when none is to be had (caller decides)."""
    if setting:
        local = find_local(setting)
        if local is None:
            raise TangramError(f"SAM checkpoint not found: {setting} (segmentation.sam_checkpoint)")
        return local
    url = SAM_CHECKPOINTS[model]
    name = url.rsplit("/", 1)[1]
    local = find_local(name)
    if local or not allow_download or not is_online():
        return local
    target = cache_dir() / "models" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return _download_checked(url, target, md5_prefix=name.rsplit("_", 1)[1].split(".")[0])


def _download_checked(url: str, target: Path, md5_prefix: str) -> Path | None:
    import hashlib

    import torch.hub

    partial = target.with_suffix(".partial")
    log.info("downloading %s to %s", url, target)
    try:
        torch.hub.download_url_to_file(url, str(partial), progress=True)
        digest = hashlib.md5(partial.read_bytes()).hexdigest()
        if not digest.startswith(md5_prefix):
            raise ValueError(f"checksum mismatch: md5 {digest[:12]}..., expected {md5_prefix}...")
        partial.replace(target)
        return target
    except Exception as exc:  # network errors come in many types; the caller falls back
        log.warning("download of %s failed: %s", url, exc)
        return None
    finally:
        partial.unlink(missing_ok=True)
