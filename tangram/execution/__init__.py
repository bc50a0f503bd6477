"""How a stage runs somewhere: the one place that knows it (the stage contract is `stages/base.py`).

The contract
------------
An executor runs one stage for the runner and leaves the stage's artefacts in `ctx.out_dir` on
this machine::

    class Executor(Protocol):
        def run_stage(self, spec: StageSpec, ctx: StageContext) -> StageOutcome: ...

- It runs `spec.run` on a `StageContext` whose paths are valid where the stage runs: remotely
  through `run_stage_here(stage, input, upstream, out_dir, config, progress)`, the same call a
  local run makes, with the config as `tangram.settings.public_dict` gives it (secrets dropped)
  and the device from `device.select_device` (the GPU with most free memory, a memory cap).
- It returns the stage's `StageOutcome`, with `where` (the host) and `execution` (bytes up and
  down, transfer and compute seconds, cost, attempts, device) filled in. Nothing outside
  `ctx.out_dir` is written on this machine; the runner renames that folder into the run folder,
  hashes, records and skips (`unmet_needs`: the one "skip: needs X" rule).
- A `StageFailed` (the stage's own one-line reason) or a `TangramError` (bad settings) passes
  through unchanged: running the stage elsewhere would say the same. Anything the executor itself
  cannot do (host down, transfer corrupt) is its own exception type, which `FallbackExecutor`
  turns into a local run with `execution.fallback` saying why.
- Files travel as checked tar streams (`archive`: relative names, plain files only, SHA-256).
- A process that runs many inputs keeps its models warm (`warm.enable()`; `warm.loads()` counts).
- Placement decisions use one cost model (`cost.compute_seconds`, seconds per stage on a CPU or
  GPU machine).

The executors
-------------
- `base.LocalExecutor`: this process (`LocalWithNote` adds why it was not offloaded).
- `thunder.ThunderExecutor`: a remote GPU host over SSH, behind `ThunderOffloadPolicy` (the
  `--thunder` runner policy: scorer, retries, `FallbackExecutor`); `thunder/` holds the SSH client,
  the host bootstrap, detached jobs and the worker entry point (`python -m thunder.worker`).
- `dask.run_stage_task`: one (input, stage) task on a Dask worker, driven by `tangram.fleet` (the
  runner's hashes and records over many inputs; `fleet/` holds inputs, cluster, metrics, batch.json).

A new backend (Kubernetes, Ray) is one file here: a class with `run_stage(spec, ctx)` that ships
`ctx`'s input, upstream folders and `public_dict(config)`, calls `run_stage_here` on the other side,
brings `out_dir` back as an archive, and raises its own error type for `FallbackExecutor`.
"""

from tangram.execution.base import (
    Executor,
    FallbackExecutor,
    LocalExecutor,
    LocalWithNote,
    clear_dir,
    first_line,
    run_stage_here,
    unmet_needs,
)

__all__ = ["Executor", "FallbackExecutor", "LocalExecutor", "LocalWithNote", "clear_dir", "first_line",
           "run_stage_here", "unmet_needs"]
