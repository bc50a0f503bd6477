"""HTML reports a person opens in a browser, read from run and batch folders.

- `write_run_report(run_dir)` writes `<run_dir>/report.html`: a header (input, version, where each
  stage ran, time, cost), the manifest as a table and one section per stage, each saying why when
  its stage failed or was skipped.
- `write_batch_report(batch_dir)` writes `<batch_dir>/report.html` from `batch.json`: one row per
  input with a link to its run report, and the batch totals.

Reports open from the file system with no network: images and videos are referenced relative to
the folder (zip it and send it), plotly's bundled `plotly.min.js` is copied to `report_files/`
beside the report, fonts are the system's. A report only reads folders: it never changes a
stage's artefacts, and it works with older run folders (sections say what is missing).
"""

from tangram.report.batch_report import write_batch_report
from tangram.report.run_report import write_run_report

__all__ = ["write_batch_report", "write_run_report"]
