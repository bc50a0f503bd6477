"""Fleet: batches of inputs over a Dask cluster (`tangram batch`), one ordinary run folder each.

A fleet is another executor plus a driver over many runs, not a second pipeline: each input is one
runner run (`driver`) whose stages go to Dask workers through `tangram.execution.dask.DaskExecutor`
(the same `run_stage_here` as a local run), on a LocalCluster, SSH hosts set up by
`tangram thunder setup`, or a user's scheduler (`cluster`). `exports/<BATCH>/batch.json`
(format "tangram.batch/1", see `driver`) summarises the batch; `tangram batch status BATCH` reads it.
"""
