"""Device selection on a host that runs stages: the GPU with most free memory, capped per process."""

from __future__ import annotations

import os
from typing import Any


def select_device(config: Any, gpu_memory_fraction: float) -> tuple[Any, dict[str, Any]]:
    """On a CUDA host: pick the GPU with most free memory for the stages that leave `device`
    unset, and cap this process's share of it so several jobs can share one GPU."""
    if not (os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")):
        return config, {"device": "cpu"}
    try:
        import torch
    except ImportError:
        return config, {"device": "cpu", "note": "torch missing"}
    if not torch.cuda.is_available():
        return config, {"device": "cpu", "note": "CUDA not available to torch"}
    free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
    index = max(range(len(free)), key=free.__getitem__)
    torch.cuda.set_device(index)
    torch.cuda.set_per_process_memory_fraction(gpu_memory_fraction, index)
    device = f"cuda:{index}"
    update = {}
    for section in ("tracking", "segmentation"):
        part = getattr(config, section)
        if part.device is None:
            update[section] = part.model_copy(update={"device": device})
    return config.model_copy(update=update), {
        "device": device, "gpu": torch.cuda.get_device_name(index), "free_mib": free[index] >> 20,
        "memory_fraction": gpu_memory_fraction, "fp16": bool(config.segmentation.fp16)}
