"""`exports/<run>/report.html`: one page per run, read from the run folder.

Each stage's section is built by one function from that stage's artefacts (formats in the stage
modules' docstrings). A section whose stage did not finish says why (the manifest's status and
reason); a section whose artefacts cannot be read says that, and the rest of the report is still
written. Fields added by newer versions of a stage are shown when present and never required.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from tangram import __version__
from tangram.errors import TangramError
from tangram.report import figures
from tangram.report.common import (
    ASSETS_DIR,
    REPORT_NAME,
    copy_asset,
    fmt_num,
    now_text,
    plotly_js,
    read_json_or_none,
    render,
    when_text,
)
from tangram.stages import STAGE_TITLES

log = logging.getLogger("tangram.report")

MAX_GALLERY = 30  # keyframe overlays shown; the rest are linked from the folder


def write_run_report(run_dir: Path) -> Path:
    """Write `run_dir/report.html` (atomically) from the run folder; returns its path."""
    run_dir = Path(run_dir)
    manifest = read_json_or_none(run_dir / "manifest.json")
    if not isinstance(manifest, dict):
        raise TangramError(f"not a TANGRAM run folder (no readable manifest.json): {run_dir}")
    manifest = _clean_manifest(manifest)
    records: dict[str, dict[str, Any]] = manifest["stages"]
    stages = [s for s in STAGE_TITLES if s in records] + [s for s in records if s not in STAGE_TITLES]
    for stage in STAGE_TITLES:  # stages that never ran still get a section that says so
        if stage not in stages:
            stages.append(stage)
    sections = [_section(run_dir, stage, records.get(stage)) for stage in STAGE_TITLES]
    context = {
        "title": f"TANGRAM run {manifest.get('run') or run_dir.name}",
        "run": manifest.get("run") or run_dir.name,
        "header": _header(run_dir, manifest, records),
        "manifest_rows": [_manifest_row(s, records.get(s)) for s in stages],
        "sections": sections,
        "plotly_src": _plotly(run_dir, any(s.get("needs_plotly") for s in sections)),
        "generated": now_text(),
        "version": __version__,
        "log_file": "tangram.log" if (run_dir / "tangram.log").is_file() else None,
        "config": read_json_or_none(run_dir / "config.json"),
        "recordings": _recordings(run_dir, manifest),
    }
    try:
        out = render("run.html.j2", run_dir / REPORT_NAME, **context)
    except (TypeError, ValueError, AttributeError, jinja2.TemplateError):
        # a value of a type no builder checked: the section that cannot be shown says so, the rest stays
        for section in sections:
            if section.get("data") and not _renders(context, section):
                section["data"], section["needs_plotly"] = None, False
                section["error"] = ("its files hold values of a type this report cannot show (edited or "
                                    "written by another program); see the files in the folder")
        out = render("run.html.j2", run_dir / REPORT_NAME, **context)
    log.info("report: %s", out)
    return out


def _renders(context: dict[str, Any], section: dict[str, Any]) -> bool:
    """Whether the page renders with `section` as its only section holding data."""
    from tangram.report.common import environment

    only = [s if s is section else {**s, "data": None} for s in context["sections"]]
    try:
        environment().get_template("run.html.j2").render(**{**context, "sections": only})
    except (TypeError, ValueError, AttributeError, jinja2.TemplateError):
        return False
    return True


_TEXT_FIELDS = ("status", "reason", "backend", "where", "finished_at", "input_hash")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _number(value: Any) -> int | float | None:
    """A number from a run folder's JSON, or None for anything else (a string, a list, a bool)."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _clean_record(record: Any) -> dict[str, Any]:
    """A manifest stage record with each field of the type the report reads (a run folder is data
    from outside): text fields as text, numbers or nothing, objects or empty; a record that is not
    an object is shown as unreadable with a sentence saying so."""
    if not isinstance(record, dict):
        return {"status": "unreadable",
                "reason": f"manifest.json holds {type(record).__name__} {_text(record)[:80]} for this stage, "
                          "not a stage record"}
    out = dict(record)
    for key in _TEXT_FIELDS:
        if key in out and out[key] is not None and not isinstance(out[key], str):
            out[key] = _text(out[key])
    seconds = out.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)):
        out["seconds"] = None
    for key in ("execution", "summary"):
        if key in out and not isinstance(out[key], dict):
            out[key] = {}
    return out


def _clean_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    stages = manifest.get("stages")
    stages = stages if isinstance(stages, dict) else {}
    source = manifest.get("input") if isinstance(manifest.get("input"), dict) else {}
    source = {**source, "path": source.get("path") if isinstance(source.get("path"), str) else "",
              "stat": source.get("stat") if isinstance(source.get("stat"), list) else []}
    run = manifest.get("run")
    version = manifest.get("tangram_version")
    return {**manifest, "stages": {str(k): _clean_record(v) for k, v in stages.items()}, "input": source,
            "run": _text(run) if run is not None else None,
            "tangram_version": _text(version) if version is not None else None}


def _plotly(run_dir: Path, needed: bool) -> str | None:
    """Copy plotly.min.js beside the report when a figure needs it (and drop a stale copy when not)."""
    if needed:
        return copy_asset(plotly_js(), run_dir)
    assets = run_dir / ASSETS_DIR
    (assets / plotly_js().name).unlink(missing_ok=True)
    if assets.is_dir() and not any(assets.iterdir()):
        assets.rmdir()
    return None


# -- header and manifest --------------------------------------------------------------------------


def _header(run_dir: Path, manifest: dict[str, Any], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    source = manifest.get("input") or {}
    path = Path(source.get("path") or "")
    tracks = read_json_or_none(run_dir / "tracking" / "tracks.json")
    video = tracks.get("video") if isinstance(tracks, dict) and isinstance(tracks.get("video"), dict) else {}
    video = {k: _number(video.get(k)) for k in ("num_frames", "width", "height", "fps")}
    if not any(video.values()):
        video = {}
    if not video and path.exists():  # no tracks: ask the input itself (guarded: it may be gone)
        try:
            from tangram.media import open_media

            info = open_media(path).info
            video = {"num_frames": getattr(info, "num_frames", None), "width": getattr(info, "width", None),
                     "height": getattr(info, "height", None), "fps": getattr(info, "fps", None)}
        except Exception:
            video = {}
    stat = source.get("stat") or []
    size = _number(stat[0]) if stat else (path.stat().st_size if path.is_file() else None)
    seconds = [r.get("seconds") for r in records.values() if isinstance(r.get("seconds"), int | float)]
    finished = sorted(r.get("finished_at") for r in records.values() if r.get("finished_at"))
    where: dict[str, list[str]] = {}
    for stage, record in records.items():
        if record.get("status") == "done":
            where.setdefault(record.get("where") or "local", []).append(STAGE_TITLES.get(stage, stage))
    done = sum(1 for r in records.values() if r.get("status") == "done")
    problems = [(s, r) for s, r in records.items() if r.get("status") in ("failed", "skipped")]
    width, height = video.get("width"), video.get("height")
    return {
        "input_name": path.name or "?",
        "input_path": str(path) if path.name else "",
        "input_size": size,
        "frames": video.get("num_frames"),
        "fps": video.get("fps"),
        "resolution": f"{width}×{height}" if width and height else None,
        "date": when_text(finished[-1]) if finished else None,
        "tangram_version": manifest.get("tangram_version"),
        "where": where,
        "total_seconds": sum(seconds) if seconds else None,
        "cost_usd": sum(float(_execution(r).get("cost_usd") or 0.0) for r in records.values()),
        "remote": any((r.get("where") or "local") != "local" for r in records.values()),
        "done": done,
        "count": len(STAGE_TITLES),
        "first_problem": problems[0] if problems else None,
    }


RECORDING_LABELS = {"rrd": "Rerun: tangram view RUN, or rerun FILE", "mcap": "ROS 2 MCAP: Foxglove, ros2 bag"}


def _recordings(run_dir: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's `recordings` (tangram.recording.hook): a link for each file written, else why not."""
    entries = manifest.get("recordings")
    out = []
    for kind, record in (entries.items() if isinstance(entries, dict) else []):
        if not isinstance(record, dict) or not record.get("path"):
            continue
        written = record.get("status") == "done" and (run_dir / str(record["path"])).is_file()
        out.append({"kind": kind, "path": str(record["path"]), "label": RECORDING_LABELS.get(kind, kind),
                    "written": written, "bytes": record.get("bytes"),
                    "reason": record.get("reason") or record.get("status") or "not written"})
    return out


def _execution(record: dict[str, Any] | None) -> dict[str, Any]:
    execution = (record or {}).get("execution")
    return execution if isinstance(execution, dict) else {}


def _manifest_row(stage: str, record: dict[str, Any] | None) -> dict[str, Any]:
    record = record or {}
    execution = _execution(record)
    moved = (execution.get("bytes_up") or 0) + (execution.get("bytes_down") or 0)
    note = execution.get("fallback") or execution.get("reason") or execution.get("note")
    return {
        "stage": stage,
        "title": STAGE_TITLES.get(stage, stage),
        "status": record.get("status") or "not run",
        "backend": record.get("backend"),
        "where": record.get("where") or ("local" if record.get("status") == "done" else None),
        "seconds": record.get("seconds"),
        "bytes_up": execution.get("bytes_up"),
        "bytes_down": execution.get("bytes_down"),
        "bytes_moved": moved or None,
        "cost_usd": execution.get("cost_usd"),
        "reason": record.get("reason") or (f"ran locally: {note}" if note else None),
        "device": execution.get("device"),
    }


# -- sections ---------------------------------------------------------------------------------------


def _section(run_dir: Path, stage: str, record: dict[str, Any] | None) -> dict[str, Any]:
    record = record or {}
    status = record.get("status") or "not run"
    section: dict[str, Any] = {
        "id": stage, "title": STAGE_TITLES[stage], "status": status, "reason": record.get("reason"),
        "backend": record.get("backend"), "where": record.get("where"), "seconds": record.get("seconds"),
        "summary": record.get("summary") or {}, "data": None, "error": None,
    }
    if status == "not run" and not section["reason"]:
        section["reason"] = "this run was not asked to go this far (see --mode), or it was stopped before"
    folder = run_dir / stage
    if status != "done" and not folder.is_dir():
        return section
    try:
        section["data"] = BUILDERS[stage](run_dir, folder)
        section["needs_plotly"] = bool(section["data"].get("scene_spec"))
    except Exception as exc:
        log.warning("report: %s section: %s: %s", stage, type(exc).__name__, exc)
        section["error"] = f"{type(exc).__name__}: {exc}"
    return section


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(items: Any) -> list[dict[str, Any]]:
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _rel(run_dir: Path, path: Path) -> str:
    """A URL relative to the run folder (so the folder can be zipped and sent)."""
    return Path(os.path.relpath(path, run_dir)).as_posix()


def _video(run_dir: Path, path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    codec = _fourcc(path)
    return {"src": _rel(run_dir, path), "codec": codec, "size": path.stat().st_size,
            "playable": codec in ("avc1", "h264", "H264", "avc3", "vp09", "av01", None)}


def _fourcc(path: Path) -> str | None:
    """The video's codec as OpenCV reports it (`avc1` is H.264, which browsers play; `mp4v` is not)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
    finally:
        cap.release()
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")
    return text or None


def _tracking(run_dir: Path, folder: Path) -> dict[str, Any]:
    tracks = read_json_or_none(folder / "tracks.json")
    if not isinstance(tracks, dict):
        raise FileNotFoundError("tracking/tracks.json is missing or unreadable")
    objects = _objects_by_track(run_dir)
    timeline = figures.track_timeline(tracks, objects)
    info = {k: t for k, t in (tracks.get("tracks") or {}).items() if isinstance(t, dict)} \
        if isinstance(tracks.get("tracks"), dict) else {}
    classes: dict[str, int] = {}
    for t in info.values():
        name = str(t.get("class_name", "?"))
        classes[name] = classes.get(name, 0) + 1
    raw = read_json_or_none(folder / "raw_tracks.json")
    raw_count = len(raw.get("tracks") or {}) if isinstance(raw, dict) else None
    stitching = tracks.get("stitching") if isinstance(tracks.get("stitching"), dict) else {}
    if raw_count is None and isinstance(stitching.get("raw_tracks"), int):
        raw_count = stitching["raw_tracks"]
    return {
        "video": _video(run_dir, folder / "preview.mp4"),
        "tracker": tracks.get("tracker"),
        "frame_stride": tracks.get("frame_stride"),
        "track_count": len(info),
        "raw_count": raw_count if raw_count != len(info) else None,
        "stitched": sum(1 for t in info.values() if isinstance(t.get("members"), list) and len(t["members"]) > 1),
        "classes": sorted(classes.items(), key=lambda kv: (-kv[1], kv[0])),
        "timeline": timeline,
        "hidden_tracks": figures.hidden_tracks(tracks),
    }


def _objects_by_track(run_dir: Path) -> dict[int, dict[str, Any]]:
    """3D objects keyed by every track id they stand for (a newer objects.json lists `members`)."""
    data = _dict(read_json_or_none(run_dir / "reconstruction" / "objects.json"))
    out: dict[int, dict[str, Any]] = {}
    for obj in _dicts(data.get("objects")):
        members = obj.get("members") or obj.get("member_tracks") or []
        ids = [obj.get("track_id"), *(members if isinstance(members, list) else [])]
        for tid in ids:
            if isinstance(tid, bool) or not isinstance(tid, int | str):
                continue
            try:
                out[int(tid)] = obj
            except (TypeError, ValueError):
                continue
    return out


def _segmentation(run_dir: Path, folder: Path) -> dict[str, Any]:
    masks = read_json_or_none(folder / "masks.json")
    if not isinstance(masks, dict):
        raise FileNotFoundError("segmentation/masks.json is missing or unreadable")
    keyframes = _dicts(masks.get("keyframes"))
    for kf in keyframes:
        kf["masks"] = _dicts(kf.get("masks"))
    gallery = []
    for kf in keyframes:
        image = kf.get("image") if isinstance(kf.get("image"), str) else ""
        overlay = folder / "overlays" / Path(image).name
        shown = overlay if overlay.is_file() else folder / image
        if not shown.is_file():
            continue
        scores = [m.get("score") for m in kf.get("masks") or [] if isinstance(m.get("score"), int | float)]
        gallery.append({
            "src": _rel(run_dir, shown),
            "frame": kf.get("frame_index"),
            "masks": len(kf.get("masks") or []),
            "labels": ", ".join(f"#{m.get('track_id')} {m.get('class_name')}" for m in kf.get("masks") or []),
            "score": sum(scores) / len(scores) if scores else None,
        })
    backend = masks.get("backend") if isinstance(masks.get("backend"), str) else ""
    return {
        "backend": backend,
        "backend_name": "Segment Anything (SAM)" if backend.startswith("sam") else
        "GrabCut (OpenCV, the offline fallback)" if backend == "grabcut" else backend,
        "keyframes": len(keyframes),
        "masks": sum(len(kf.get("masks") or []) for kf in keyframes),
        "gallery": gallery[:MAX_GALLERY],
        "more": max(0, len(gallery) - MAX_GALLERY),
        "folder": _rel(run_dir, folder / "overlays"),
    }


def _reconstruction(run_dir: Path, folder: Path) -> dict[str, Any]:
    stats = _dict(read_json_or_none(folder / "stats.json"))
    cameras = _dict(read_json_or_none(folder / "cameras.json"))
    data = _dict(read_json_or_none(folder / "objects.json"))
    objects = _dicts(data.get("objects"))
    scale = _dict(cameras.get("scale"))
    scale_rows = [(k, fmt_num(v)) for k, v in scale.items()
                  if k not in ("method", "uncertainty", "metres_per_unit") and isinstance(v, int | float | str | bool)]
    evidence = scale.get("evidence")
    scene, outside = figures.scene_3d(folder, cameras, objects) if cameras else (None, 0)
    return {
        "failed": _failed_reconstruction(run_dir, folder / "failed"),
        "stats": stats,
        "registered": stats.get("frames_registered"),
        "selected": stats.get("frames_selected"),
        "analysed": stats.get("frames_analysed"),
        "points": stats.get("points3D"),
        "reprojection": stats.get("mean_reprojection_error_px"),
        "scale": scale,
        "scale_method": scale.get("method") or stats.get("scale_method"),
        "scale_uncertainty": scale.get("uncertainty", stats.get("scale_uncertainty")),
        "metres_per_unit": scale.get("metres_per_unit"),
        "scale_rows": scale_rows,
        "scale_evidence": _table(evidence) if isinstance(evidence, list) else None,
        "intrinsics": cameras.get("intrinsics") or {},
        "table": cameras.get("table") or {},
        "objects": [_object_row(o) for o in objects],
        "scene_spec": scene,
        "points_outside": outside,
        "unplaced": [_track_text(u) for u in _dicts(data.get("unplaced"))],
        "placement_counts": stats.get("placement") if isinstance(stats.get("placement"), dict) else None,
        "stats_rows": [(k, fmt_num(v)) for k, v in stats.items() if isinstance(v, int | float | str | bool)],
    }


def _failed_reconstruction(run_dir: Path, folder: Path) -> dict[str, Any] | None:
    """What a failed reconstruction kept in `reconstruction/failed/` (see the stage's `write_failure`)."""
    diag = read_json_or_none(folder / "diagnostics.json")
    if not isinstance(diag, dict):
        return None
    sfm = diag.get("sfm") if isinstance(diag.get("sfm"), dict) else {}
    keyframes = diag.get("keyframes") if isinstance(diag.get("keyframes"), dict) else {}
    intrinsics = diag.get("intrinsics") if isinstance(diag.get("intrinsics"), dict) else {}
    table = diag.get("table") if isinstance(diag.get("table"), dict) else {}
    candidates = table.get("candidates") if isinstance(table.get("candidates"), list) else []
    rows = [{k: v for k, v in c.items() if k not in ("normal", "offset")} for c in candidates if isinstance(c, dict)]
    picture = folder / "top_down.png"
    return {
        "reason": str(diag.get("reason") or ""),
        "analysed": keyframes.get("analysed"),
        "selected": keyframes.get("selected", sfm.get("selected")),
        "registered": sfm.get("registered"),
        "models": sfm.get("models"),
        "points": diag.get("points3D"),
        "motion": keyframes.get("max_displacement"),
        "static_threshold": keyframes.get("static_threshold"),
        "focal": intrinsics.get("fx"),
        "focal_source": intrinsics.get("focal_source"),
        "candidates": _table(rows) if rows else None,
        "picture": _rel(run_dir, picture) if picture.is_file() else None,
        "model": _rel(run_dir, folder / "sparse") if (folder / "sparse").is_dir() else None,
    }


def _table(items: list[Any]) -> dict[str, Any] | None:
    """A list of flat dicts as columns and formatted rows (columns in first-seen order)."""
    dicts = [i for i in items if isinstance(i, dict)]
    columns: list[str] = []
    for d in dicts:
        columns += [k for k in d if k not in columns and not isinstance(d[k], dict | list)]
    if not columns:
        return None
    return {"columns": [c.replace("_", " ") for c in columns],
            "rows": [[fmt_num(d.get(c)) if c in d else "" for c in columns] for d in dicts]}


def _object_row(obj: dict[str, Any]) -> dict[str, Any]:
    """One 3D object; `placement` (points / triangulation / fallback) and `members` are newer fields."""
    box = obj.get("box") or {}
    placement = obj.get("placement")
    if isinstance(placement, dict):
        placement = placement.get("method") or placement.get("kind")
    how = [str(h) for h in (placement, obj.get("method")) if h]
    extra = []
    if isinstance(obj.get("support"), int | float):
        extra.append(f"{obj['support']} supporting points")
    if obj.get("fallback") and "fallback" not in how:
        extra.append("fallback")
    members = [m for m in obj.get("members") or obj.get("member_tracks") or [] if m != obj.get("track_id")]
    return {
        "id": obj.get("track_id"),
        "class_name": obj.get("class_name"),
        "position": box.get("center") or obj.get("centroid"),
        "size": box.get("size"),
        "yaw": box.get("yaw"),
        "how": " · ".join(dict.fromkeys(how)),
        "how_extra": ", ".join(extra),
        "views": obj.get("views"),
        "confidence": obj.get("confidence"),
        "members": members,
    }


def _track_text(item: dict[str, Any]) -> str:
    text = f"#{item.get('track_id')} {item.get('class_name') or ''}".strip()
    reason = item.get("reason") or item.get("why")
    return f"{text}: {reason}" if reason else text


def _scene_graph(run_dir: Path, folder: Path) -> dict[str, Any]:
    from tangram.geometry.graph import read_node_link

    graph = read_node_link(folder / "scene_graph.json")
    placed = {o["id"]: o for o in _reconstruction_objects(run_dir)}
    nodes = []
    for node, data in graph.nodes(data=True):
        if data.get("kind") == "table" or node == "table":
            continue
        key = _int(node)
        obj = placed.get(key, {})
        nodes.append({
            "id": node,
            "class_name": data.get("class_name"),
            "position": data.get("position") or data.get("center") or obj.get("position"),
            "size": data.get("size") or obj.get("size"),
            "how": data.get("placement") or data.get("method") or obj.get("how"),
            "how_extra": obj.get("how_extra"),
        })
    label = {n: (f"#{n} {d.get('class_name')}" if d.get("class_name") else str(n)) for n, d in graph.nodes(data=True)}
    relations = sorted(
        ({"subject": label.get(u, u), "relation": d.get("relation"), "object": label.get(v, v),
          "detail": _relation_detail(d)} for u, v, d in graph.edges(data=True)),
        key=lambda r: (str(r["relation"]), str(r["subject"]), str(r["object"])),
    )
    counts: dict[str, int] = {}
    for r in relations:
        counts[str(r["relation"])] = counts.get(str(r["relation"]), 0) + 1
    top = folder / "top_down.png"
    return {
        "top_down": _rel(run_dir, top) if top.is_file() else None,
        "objects": sorted(nodes, key=lambda n: (_int(n["id"]) or 0)),
        "relations": relations,
        "counts": sorted(counts.items()),
        "files": [f for f in ("scene_graph.json", "scene_graph.graphml", "scene.ply") if (folder / f).is_file()],
    }


def _relation_detail(data: dict[str, Any]) -> str:
    parts = []
    for key, value in data.items():
        if key in ("relation", "key") or (isinstance(value, dict | list) and len(str(value)) > 60):
            continue
        parts.append(f"{key} {fmt_num(value)}")
    return ", ".join(parts)


def _reconstruction_objects(run_dir: Path) -> list[dict[str, Any]]:
    data = read_json_or_none(run_dir / "reconstruction" / "objects.json") or {}
    return [_object_row(o) for o in data.get("objects") or []]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _planning(run_dir: Path, folder: Path) -> dict[str, Any]:
    plan = read_json_or_none(folder / "plan.json")
    if not isinstance(plan, dict):
        raise FileNotFoundError("planning/plan.json is missing or unreadable")
    validation = _dict(plan.get("validation"))
    checks = {s.get("index"): s for s in _dicts(validation.get("steps"))}
    steps = []
    actions = plan.get("actions") if isinstance(plan.get("actions"), list) else []
    for i, action in enumerate(actions):
        action = action if isinstance(action, dict) else {"action": str(action)}
        check = checks.get(i) or {}
        steps.append({"n": i + 1, "action": action.get("action"),
                      "args": ", ".join(f"{k}={fmt_num(v)}" for k, v in action.items() if k != "action"),
                      "ok": check.get("ok"), "errors": check.get("errors") or []})
    llm = plan.get("llm") if isinstance(plan.get("llm"), dict) else None
    attempts = (llm or {}).get("attempts") or []
    raw = plan.get("raw_llm_reply")
    return {
        "task": plan.get("task"),
        "task_source": plan.get("task_source"),
        "goal": plan.get("goal"),
        "goal_error": plan.get("goal_error"),
        "planner": plan.get("planner"),
        "fallback_reason": plan.get("fallback_reason"),
        "valid": validation.get("valid"),
        "goal_satisfied": validation.get("goal_satisfied"),
        "errors": validation.get("errors") or [],
        "steps": steps,
        "llm": {k: v for k, v in (llm or {}).items() if k not in ("attempts", "api_key")} if llm else None,
        "attempts": [{"raw": a.get("raw_reply"), "validation": a.get("validation"),
                      "rest": {k: v for k, v in a.items() if k not in ("raw_reply", "validation")}}
                     for a in attempts if isinstance(a, dict)],
        "raw_llm_reply": raw,
        "offline": plan.get("offline") if isinstance(plan.get("offline"), dict) else None,
        "graspability": [
            {"id": str(oid), "graspable": v.get("graspable"), "reason": v.get("reason")}
            for oid, v in sorted(_dict(plan.get("graspability")).items(), key=lambda kv: _id_order(kv[0]))
            if isinstance(v, dict)
        ],
        "robot_placement": _dict(plan.get("robot_placement")).get("reason"),
    }


def _id_order(key: Any) -> tuple[int, str]:
    text = str(key)
    return (int(text), "") if text.isdigit() else (1 << 30, text)


def _simulation(run_dir: Path, folder: Path) -> dict[str, Any]:
    result = read_json_or_none(folder / "result.json")
    if not isinstance(result, dict):
        raise FileNotFoundError("simulation/result.json is missing or unreadable")
    names = [_action_text(a.get("action")) for a in result.get("actions") or []]
    keyframes = []
    for i, name in enumerate(result.get("keyframes") or sorted(p.name for p in (folder / "keyframes").glob("*.png"))):
        path = folder / name if (folder / name).is_file() else folder / "keyframes" / Path(name).name
        if path.is_file():
            keyframes.append({"src": _rel(run_dir, path), "caption": "before the first action" if i == 0
                              else f"after action {i}" + (f": {names[i - 1]}" if i - 1 < len(names) else "")})
    actions = []
    for a in result.get("actions") or []:
        checks = a.get("checks") or {}
        items = checks.items() if isinstance(checks, dict) else enumerate(checks)
        actions.append({
            "n": (a.get("index") or 0) + 1,
            "action": a.get("action", {}).get("action") if isinstance(a.get("action"), dict) else a.get("action"),
            "args": ", ".join(f"{k}={fmt_num(v)}" for k, v in (a.get("action") or {}).items() if k != "action")
            if isinstance(a.get("action"), dict) else "",
            "success": a.get("success"),
            "reason": a.get("reason"),
            "checks": [(str(k), _check_text(v)) for k, v in items],
            "sim_seconds": a.get("sim_seconds"),
        })
    video = (result.get("video") or {}).get("path") or "execution.mp4"
    return {
        "engine": result.get("engine"),
        "robot": (result.get("robot") or {}).get("model"),
        "seed": result.get("seed"),
        "success": result.get("success"),
        "goal_satisfied": result.get("goal_satisfied"),
        "failure_reason": result.get("failure_reason"),
        "video": _video(run_dir, folder / video),
        "keyframes": keyframes,
        "actions": actions,
        "timing": result.get("timing") or {},
        "world": _world_check(result),
    }


def _world_check(result: dict[str, Any]) -> dict[str, Any]:
    """What the physics did to the world as measured: objects held where they were seen (and why),
    objects shrunk apart, and objects that ended below their support."""
    check = _dict(result.get("world_check"))
    settling = _dict(check.get("settling"))
    reasons = _dict(settling.get("reasons"))
    return {
        "held": [str(reasons.get(str(o), f"object {o}")) for o in settling.get("fixed") or []],
        "separated": [(str(o), fmt_num(f)) for o, f in sorted(_dict(check.get("separated")).items())],
        "below": [f"{b.get('label')}: lowest point {fmt_num(b.get('bottom_z'))} m, rested at "
                  f"{fmt_num(b.get('rested_z'))} m" for b in _dicts(check.get("below_support"))],
    }


def _action_text(action: Any) -> str:
    if not isinstance(action, dict):
        return str(action)
    args = " ".join(f"{k}={fmt_num(v)}" for k, v in action.items() if k != "action")
    return f"{action.get('action')} {args}".strip()


def _check_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt_num(v)}" for k, v in value.items())
    return fmt_num(value)


BUILDERS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "tracking": _tracking,
    "segmentation": _segmentation,
    "reconstruction": _reconstruction,
    "scene_graph": _scene_graph,
    "planning": _planning,
    "simulation": _simulation,
}
