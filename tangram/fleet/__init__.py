"""Fleet: batches of inputs over a Dask cluster (`tangram batch`), one ordinary run folder each.

A fleet is another executor plus a driver over many runs, not a second pipeline: workers run stages
through the same `run_stage_here` as a local run (`tangram.execution.dask`), the client imports each finished stage
with the runner's records and atomic renames (`driver`), on a LocalCluster, SSH hosts set up by
`tangram thunder setup`, or a user's scheduler (`cluster`). `exports/<BATCH>/batch.json`
(format "tangram.batch/1", see `driver`) summarises the batch; `tangram batch status BATCH` reads it.
"""
