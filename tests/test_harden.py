"""Security hardening (issue 16): a real loopback LocalCluster on TLS refuses a client without the
batch's certificate, the Prometheus endpoint stays on loopback, batch run names never collide and
do not depend on the input order, `--name` stays one folder under exports/, and the remote
scratch clean-up deletes only folders TANGRAM created and marked."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from config import TangramConfig
from tangram.errors import TangramError
from tangram.fleet.inputs import expand_inputs, safe_batch_name

pytestmark = pytest.mark.timeout(240)


def _touch(root: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0")
        out.append(path)
    return out


def test_clashing_stems_give_distinct_names_whatever_the_order(tmp_path: Path) -> None:
    paths = _touch(tmp_path, "a/clip.mp4", "b/clip.mp4", "c/clip-2.mp4", "d/café.mp4", "e/Clip.MP4")
    first = {i.path: i.name for i in expand_inputs(list(paths))}
    again = {i.path: i.name for i in expand_inputs(list(reversed(paths)))}
    shuffled = {i.path: i.name for i in expand_inputs([paths[2], paths[0], paths[4], paths[3], paths[1]])}
    assert first == again == shuffled  # a name belongs to its input, not to its place in the list
    assert len({n.casefold() for n in first.values()}) == len(paths)
    assert first[paths[2].resolve()] == "clip-2"  # a stem nobody shares keeps its readable name
    assert first[paths[3].resolve()] == "café"  # non-ASCII stays readable
    assert all(n.lower().startswith("clip-") and len(n) == len("clip-") + 8
               for p, n in first.items() if p.stem.lower() == "clip")


def test_a_stem_that_looks_like_a_hashed_name_still_cannot_clash(tmp_path: Path) -> None:
    a, b = _touch(tmp_path, "a/x.mp4", "b/x.mp4")
    probe = {i.path: i.name for i in expand_inputs([a, b])}
    (decoy,) = _touch(tmp_path, f"c/{probe[a.resolve()]}.mp4")
    names = [i.name for i in expand_inputs([a, b, decoy])]
    assert len(set(names)) == 3


@pytest.mark.parametrize("bad", ["/x", "../x", "x/y", "..", ".", "", "-x", "a\\b"])
def test_batch_name_must_be_one_plain_folder(bad: str) -> None:
    with pytest.raises(TangramError, match="bad batch name"):
        safe_batch_name(bad)
    assert safe_batch_name("batch-1_ok.2") == "batch-1_ok.2"


@pytest.mark.parametrize("bad", ["/x", "../x", "x/y"])
def test_cli_refuses_a_name_outside_exports(tmp_path: Path, bad: str) -> None:
    from fleet_helpers import batch_cmd

    (clip,) = _touch(tmp_path, "clip.mp4")
    proc = subprocess.run(batch_cmd(str(clip), "--name", bad, "--exports-dir", str(tmp_path / "exports"),
                                    "--no-progress"), capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "bad batch name" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not Path("/x").exists() or bad != "/x" or Path("/x").stat().st_mtime < time.time() - 300


def test_local_cluster_is_tls_and_refuses_clients_without_the_certificate() -> None:
    from distributed import Client
    from distributed.security import Security

    from tangram.fleet.cluster import start_local

    fleet = start_local(TangramConfig(), 1)
    try:
        address = fleet.address
        assert address.startswith("tls://127.0.0.1:"), address
        assert fleet.client.submit(sum, [1, 2, 3]).result(timeout=60) == 6  # the batch's own client works
        hostport = address.split("://", 1)[1]
        with pytest.raises((OSError, TimeoutError)):  # plain TCP to a TLS listener: no handshake
            Client(f"tcp://{hostport}", timeout=5)
        with pytest.raises((OSError, TimeoutError)):  # TLS with another certificate: refused
            Client(address, timeout=5, security=Security.temporary())
        for w in fleet.client.scheduler_info()["workers"]:
            assert w.startswith("tls://127.0.0.1:"), w
    finally:
        fleet.close()


def _non_loopback_address() -> str | None:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return next((a for a in out if ":" not in a and not a.startswith("127.")), None)


def test_metrics_endpoint_is_loopback_only() -> None:
    from tangram.fleet.metrics import BatchMetrics

    metrics = BatchMetrics("b", "local", None)
    port = metrics.serve(0)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert "tangram_batch_info" in body
        other = _non_loopback_address()
        if other is None:
            pytest.skip("this machine has no non-loopback IPv4 address to probe")
        with pytest.raises(OSError), socket.create_connection((other, port), timeout=3):
            pass
    finally:
        metrics.stop()


# -- remote clean-up -------------------------------------------------------------------------------


def _aged(folder: Path, days: float = 2.0) -> Path:
    old = time.time() - days * 86400
    os.utime(folder, (old, old))
    return folder


def test_collect_garbage_removes_only_marked_scratch(tmp_path: Path) -> None:
    from thunder.worker import SCRATCH_MARKER, collect_garbage

    data = tmp_path / "tangram_data"
    marked = data / "run-0123456789abcdef"
    marked.mkdir(parents=True)
    (marked / SCRATCH_MARKER).write_text("tangram scratch 0123456789abcdef\n")
    forged = data / "photos-0123456789abcdef"  # right name pattern, marker with another token
    forged.mkdir()
    (forged / SCRATCH_MARKER).write_text("tangram scratch ffffffffffffffff\n")
    unmarked = data / "thesis-deadbeef"
    unmarked.mkdir()
    (unmarked / "chapter1.tex").write_text("mine")
    fresh = data / "run-aaaaaaaaaaaaaaaa"
    fresh.mkdir()
    (fresh / SCRATCH_MARKER).write_text("tangram scratch aaaaaaaaaaaaaaaa\n")
    jobs = data / "jobs"
    jobs.mkdir()
    for folder in (marked, forged, unmarked, jobs):
        _aged(folder)
    removed = collect_garbage(data)
    assert removed == [str(marked.resolve())]
    assert not marked.exists()
    assert (unmarked / "chapter1.tex").read_text() == "mine"
    assert forged.is_dir() and fresh.is_dir() and jobs.is_dir()


def test_collect_garbage_refuses_home_and_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from thunder.worker import collect_garbage

    home = tmp_path / "home"
    (home / "Documents").mkdir(parents=True)
    _aged(home / "Documents")
    monkeypatch.setenv("HOME", str(home))
    for bad in (home, Path("~"), Path("/"), tmp_path):
        with pytest.raises(ValueError, match="refusing to clean up"):
            collect_garbage(bad)
    assert (home / "Documents").is_dir()


def test_resume_with_a_changed_list_keeps_names_and_old_entries(tmp_path: Path, yolo_weights: str) -> None:
    from tangram.fileio import write_json
    from tangram.fleet.driver import BATCH_FORMAT, BatchDriver, BatchOptions

    a, b, gone = _touch(tmp_path, "a/clip.mp4", "b/clip.mp4", "g/gone.mp4")
    exports = tmp_path / "exports"
    batch = exports / "lab"
    batch.mkdir(parents=True)
    entry = {"status": "done", "reason": None, "seconds": 1.0, "cost_usd": 0.0, "stages": {}}
    write_json(batch / "batch.json", {"format": BATCH_FORMAT, "name": "lab", "mode": "track", "inputs": [
        {**entry, "input": str(a.resolve()), "name": "clip", "run_dir": "clip"},
        {**entry, "input": str(gone.resolve()), "name": "gone", "run_dir": "gone"},
        {**entry, "input": "/elsewhere/x.mp4", "name": "../../evil", "run_dir": "x"}]})
    gone.unlink()
    from tangram.settings import load_config

    config = load_config(env={}, overrides={"run": {"exports_dir": str(exports)},
                                            "tracking": {"weights": yolo_weights}})
    # the batch's own list: the deleted input fails alone, the rest go on
    driver = BatchDriver(config, BatchOptions(inputs=[], name="lab", mode="track", resume=True))
    driver.prepare()
    try:
        entries = {e["input"]: e for e in driver.batch["inputs"]}
        assert entries[str(a.resolve())]["name"] == "clip"
        assert entries[str(gone.resolve())]["status"] == "failed"
        assert "input not found" in entries[str(gone.resolve())]["reason"]
    finally:
        driver._batch_lock.close()
    # a changed list: a.mp4 keeps its folder although b/clip.mp4 now shares its stem; old entries stay
    driver = BatchDriver(config, BatchOptions(inputs=[str(b), str(a)], name="lab", mode="track", resume=True))
    driver.prepare()
    try:
        names = {e["input"]: e["name"] for e in driver.batch["inputs"]}
        assert names[str(a.resolve())] == "clip"
        assert names[str(b.resolve())] not in ("clip", "") and names[str(b.resolve())].startswith("clip-")
        assert str(gone.resolve()) in names and "/elsewhere/x.mp4" in names  # kept as they were
        assert all(s.run_dir.parent == batch for s in driver.states)
    finally:
        driver._batch_lock.close()


def test_a_refused_archive_fails_only_its_input_and_scratch_is_pruned(  # type: ignore[no-untyped-def]
        make_config, apple_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker returns a tracking archive holding a symlink for one input (its SHA-256 made to
    match): that input fails with the refusal as its reason, its segmentation is skipped, the other
    input finishes, no `.tmp-*` folder is left; and once an input's stages are imported, the
    upstream archives extracted for it are gone from the workers' scratch."""
    import threading

    import fleet_helpers

    import tangram.fleet.driver as driver_module
    from tangram.fleet.driver import BatchDriver, BatchObserver, BatchOptions
    from tangram.runner import default_input

    config = make_config(tracking={"frame_stride": 5}, segmentation={"backend": "grabcut"},
                         fleet={"dashboard_port": None, "retries": 0})
    inputs = [apple_video, default_input()]
    forged = expand_inputs([str(p) for p in inputs])[1].name
    monkeypatch.setenv(fleet_helpers.FORGED_INPUT_ENV, forged)
    monkeypatch.setattr(driver_module, "run_stage_task", fleet_helpers.forged_stage_task)
    seen: dict[str, list[str]] = {}
    lock = threading.Lock()

    class Watch(BatchObserver):
        def changed(self, driver: BatchDriver) -> None:
            with lock:
                for state in driver.states:
                    name = state.inp.name
                    if state.entry["status"] == "done" and name not in seen and driver.cluster is not None:
                        listing = driver.cluster.client.run(fleet_helpers.scratch_listing)
                        seen[name] = sorted(set().union(*listing.values()))
                        seen[f"{name}:digests"] = sorted(state.digests)

    driver = BatchDriver(config, BatchOptions(inputs=[str(p) for p in inputs], name="forged", mode="segment",
                                              workers=1), Watch())
    assert driver.run() == 1
    batch = Path(config.run.exports_dir) / "forged"
    entries = {e["name"]: e for e in driver.batch["inputs"]}
    bad = entries[forged]
    good = entries[next(n for n in entries if n != forged)]
    assert bad["status"] == "failed" and "archive was refused" in bad["reason"]
    assert "not a plain file" in bad["reason"], bad["reason"]
    assert bad["stages"]["segmentation"]["status"] == "skipped"
    assert good["status"] == "done" and good["stages"]["segmentation"]["status"] == "done"
    for entry in (bad, good):
        run = batch / entry["run_dir"]
        assert not list(run.glob(".tmp-*")), list(run.iterdir())
    assert not (batch / bad["run_dir"] / "tracking").exists() and not list(batch.rglob("tracks-link.json"))
    assert (batch / good["run_dir"] / "segmentation").is_dir()
    name = good["name"]
    assert seen.get(f"{name}:digests"), "the good input's tracking archive went to segmentation"
    leftovers = [d for d in seen[f"{name}:digests"] if f"upstream/{d[:24]}" in seen[name]]
    assert not leftovers, seen
