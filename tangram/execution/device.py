"""Device selection on a host that runs stages: the GPU with most free memory, capped per process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")


def usable_cores() -> int:
    """The CPU cores this process may use: its affinity where the OS has one, capped by
    OMP_NUM_THREADS where that is set (a fleet worker's share of its host, see `thread_env`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(share))) if share.isdigit() and int(share) > 0 else cores


def thread_env(cores: int, processes: int, threads_per_process: int = 1) -> dict[str, str]:
    """The environment that gives each of `processes` worker processes on a host with `cores`
    cores its share for torch, BLAS, OpenCV and the detector (at least one thread). Dask's nanny sets
    these to 1 in every worker (`distributed.nanny.pre-spawn-environ`, against oversubscription
    when a worker runs many small tasks in parallel): right for that, but one TANGRAM worker
    alone on a host would then run each model on a single core."""
    share = str(max(1, cores // max(1, processes * threads_per_process)))
    return dict.fromkeys(THREAD_VARIABLES, share)


@contextmanager
def glibc_malloc_defaults() -> Iterator[None]:
    """Worker processes started inside this block keep glibc's own allocator settings. Dask's nanny
    sets MALLOC_TRIM_THRESHOLD_=65536 before it spawns a worker (to hand freed memory back to the OS
    at once); any such setting also switches off glibc's adaptive mmap threshold, so every frame-sized
    buffer (a 1296x720 BGR frame is 2.8 MB) is a fresh mmap, zero-filled page by page, and freed with
    munmap. The sample's tracking and GrabCut ran 10-15 % slower in such a process. Dask reads this
    when each nanny is made (in this process for a LocalCluster, from the serialised config on an
    SSH host), so the cluster is started inside the block."""
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        yield


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
