"""Warm workers: models loaded once per worker process and reused across inputs.

A process that runs many inputs (a Dask worker) turns the cache on with `enable()`; the stages'
model loaders then go through `model(kind, weights, device, load, reset)`: the first call per
(kind, weights, device, thread) loads, later calls reuse the object after `reset(obj)` clears
per-input state (the tracker's ids). The key holds the thread because a worker with several
threads runs several inputs at once, and a tracker's state must never be shared by two videos.
Off (the default: a local run, the GUI, the benches), `model()` is just `load()`.

`loads()` counts every real load in this process ({kind: count}); the batch driver reads it from
each worker with `client.run(loads)`, so "one load per model per worker" is measured, not assumed.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_enabled = False
_cache: dict[tuple[str, str, str, int], Any] = {}
_loads: Counter[str] = Counter()


def enable(on: bool = True) -> None:
    """Keep models for the life of this process (on), or load them per call again (off: cache cleared)."""
    global _enabled
    with _lock:
        _enabled = on
        if not on:
            _cache.clear()


def enabled() -> bool:
    return _enabled


def model(kind: str, weights: str | Path | None, device: str | None, load: Callable[[], T],
          reset: Callable[[T], None] | None = None) -> T:
    """The model `load()` makes, loaded at most once per (kind, weights, device, thread) while enabled."""
    key = (kind, str(Path(weights).resolve()) if weights else "", str(device or "auto"), threading.get_ident())
    with _lock:
        cached = _cache.get(key) if _enabled else None
    if cached is not None:
        if reset is not None:
            reset(cached)
        return cached
    obj = load()
    with _lock:
        _loads[kind] += 1
        if _enabled:
            _cache[key] = obj
    return obj


def held() -> dict[str, int]:
    """Models kept in this process now, per kind (empty while off): what `cost.ModelLoads` need not charge."""
    with _lock:
        return dict(Counter(key[0] for key in _cache))


def loads(dask_worker: Any = None) -> dict[str, int]:
    """Real model loads in this process so far, per kind (`client.run(loads)` on a Dask cluster)."""
    with _lock:
        return dict(_loads)
