"""Stage `segmentation`: one mask per (keyframe, track) from the tracks' boxes.

Backends (recorded in the manifest and in masks.json):
- `sam:<model>`: Segment Anything prompted with all boxes of a keyframe in ONE batched decoder
  call after ONE image embedding per keyframe.
- `grabcut`: OpenCV GrabCut initialised with each box (the classical fallback when no SAM
  checkpoint can be had; `segmentation.backend = "sam"` turns that case into an error instead).

Keyframes: every `keyframe_stride`-th tracked frame that has detections, evenly thinned to at most
`max_keyframes`.

Artefacts in `segmentation/` (format "tangram.masks/1"):
- `masks.json`: {"format", "backend", "keyframes": [{"frame_index", "image": "frames/frame_000010.jpg",
  "masks": [{"track_id", "class_name", "box_xyxy", "mask": "masks/frame_000010_id0003.png",
  "area": pixels, "score": SAM's predicted IoU, or null for GrabCut}]}]}
- `frames/`: the keyframes as JPEG; `masks/`: 8-bit PNG, 255 inside the object, 0 outside, at full
  frame resolution; `overlays/`: keyframes with the masks, boxes and ids drawn, for people.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from config import SegmentationConfig, TangramConfig
from tangram.errors import StageFailed, TangramError
from tangram.fileio import read_json, write_json
from tangram.media import frame_name, open_media
from tangram.models import resolve_sam_checkpoint
from tangram.stages.base import StageContext, StageOutcome, StageSpec
from tangram.stages.tracking import Detection, Tracks

log = logging.getLogger(__name__)

FORMAT = "tangram.masks/1"
_NO_SAM = ("no SAM checkpoint on this machine and none could be downloaded: set TANGRAM_SAM_CHECKPOINT "
           "or --sam-checkpoint, or use --segmenter auto for the GrabCut fallback")


@dataclass
class ObjectMask:
    track_id: int
    class_name: str
    box_xyxy: list[float]
    mask: np.ndarray  # bool, frame-sized
    score: float | None


class Segmenter(Protocol):
    backend: str

    def segment(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> list[tuple[np.ndarray, float | None]]:
        """Masks (bool HxW) and scores for boxes (N×4 xyxy pixels), in the boxes' order."""
        ...


class SamSegmenter:
    """SAM with box prompts: one embedding per image, one batched decoder call for all boxes."""

    def __init__(self, model: str, checkpoint: Path, device: str | None, fp16: bool):
        import torch
        from segment_anything import SamPredictor, sam_model_registry

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        sam = sam_model_registry[model](checkpoint=str(checkpoint)).to(self.device).eval()
        self.predictor = SamPredictor(sam)
        self.autocast = fp16 and self.device.startswith("cuda")  # fp16 only pays off on a GPU
        self.backend = f"sam:{model}"

    def segment(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> list[tuple[np.ndarray, float | None]]:
        import torch

        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.autocast):
            self.predictor.set_image(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
            prompts = self.predictor.transform.apply_boxes_torch(
                torch.as_tensor(boxes, dtype=torch.float32, device=self.device), frame_bgr.shape[:2])
            masks, scores, _ = self.predictor.predict_torch(
                point_coords=None, point_labels=None, boxes=prompts, multimask_output=False)
        masks_np = masks[:, 0].cpu().numpy()
        scores_np = scores[:, 0].float().cpu().numpy()
        return [(m, round(float(s), 4)) for m, s in zip(masks_np, scores_np, strict=True)]


class GrabCutSegmenter:
    """OpenCV GrabCut seeded by each box: outside the box is background, inside is unknown."""

    backend = "grabcut"
    WORK_SIZE = 512

    def __init__(self, iterations: int):
        self.iterations = iterations

    def segment(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> list[tuple[np.ndarray, float | None]]:
        return [(self._one(frame_bgr, box), None) for box in boxes]

    def _one(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = np.clip(np.round(box).astype(int), 0, [w - 1, h - 1, w, h])
        full = np.zeros((h, w), bool)
        if x2 - x1 < 2 or y2 - y1 < 2:
            return full
        # A crop with a margin, at most WORK_SIZE pixels on its long side: GrabCut's cost grows with
        # the pixels it sees, and its colour models need no more detail than that.
        margin = max(8, int(0.15 * max(x2 - x1, y2 - y1)))
        cx1, cy1 = max(0, x1 - margin), max(0, y1 - margin)
        cx2, cy2 = min(w, x2 + margin), min(h, y2 + margin)
        crop = frame[cy1:cy2, cx1:cx2]
        scale = min(1.0, self.WORK_SIZE / max(crop.shape[:2]))
        small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else crop
        mask = np.zeros(small.shape[:2], np.uint8)
        rect = tuple(round(v * scale) for v in (x1 - cx1, y1 - cy1, x2 - x1, y2 - y1))
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's k-means start comes from OpenCV's global RNG: same input, same mask
        cv2.grabCut(small, mask, rect, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT)
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8) * 255
        if scale < 1:
            fg = cv2.resize(fg, (cx2 - cx1, cy2 - cy1), interpolation=cv2.INTER_LINEAR)
        full[cy1:cy2, cx1:cx2] = fg > 127
        return full


def make_segmenter(cfg: SegmentationConfig) -> Segmenter:
    if cfg.backend == "grabcut":
        return GrabCutSegmenter(cfg.grabcut_iterations)
    checkpoint = resolve_sam_checkpoint(cfg.sam_model, cfg.sam_checkpoint, cfg.sam_download)
    if checkpoint is not None:  # a warm worker (tangram.execution.warm) loads it once per process
        from tangram.execution import warm

        return warm.model(f"sam:{cfg.sam_model}:fp16={cfg.fp16}", checkpoint, cfg.device,
                          lambda: SamSegmenter(cfg.sam_model, checkpoint, cfg.device, cfg.fp16))
    if cfg.backend == "sam":
        raise TangramError(_NO_SAM)
    log.warning("no SAM checkpoint available (offline?): segmenting with the GrabCut fallback")
    return GrabCutSegmenter(cfg.grabcut_iterations)


def select_keyframes(tracks: Tracks, stride: int, cap: int) -> list[int]:
    """Every `stride`-th tracked frame with detections, thinned evenly to at most `cap`."""
    candidates = [i for i, dets in sorted(tracks.frames.items()) if dets][::stride]
    if len(candidates) > cap:
        picks = np.linspace(0, len(candidates) - 1, cap).round().astype(int)
        candidates = [candidates[i] for i in sorted(set(picks))]
    return candidates


def run(ctx: StageContext) -> StageOutcome:
    cfg = ctx.config.segmentation
    tracks = Tracks.load(ctx.upstream_dir("tracking"))
    keyframes = select_keyframes(tracks, cfg.keyframe_stride, cfg.max_keyframes)
    if not keyframes:
        raise StageFailed("no objects were tracked, so there is nothing to segment")
    segmenter = make_segmenter(cfg)
    for sub in ("frames", "masks", "overlays"):
        (ctx.out_dir / sub).mkdir()
    records, areas = [], []
    source = open_media(ctx.input_path)
    for done, (frame_index, frame) in enumerate(source.frames(keyframes), start=1):
        detections = [d for d in tracks.frames[frame_index] if _box_area(d) >= cfg.min_box_area]
        masks = _segment_frame(segmenter, frame, detections)
        records.append(_write_keyframe(ctx.out_dir, frame_index, frame, masks))
        areas += [int(m.mask.sum()) for m in masks]
        ctx.progress(done, len(keyframes), "keyframes")
    write_json(ctx.out_dir / "masks.json", {"format": FORMAT, "backend": segmenter.backend, "keyframes": records})
    return StageOutcome(segmenter.backend, {
        "keyframes": len(records),
        "masks": len(areas),
        "mean_mask_area_px": round(float(np.mean(areas)), 1) if areas else 0.0,
    })


def _box_area(det: Detection) -> float:
    x1, y1, x2, y2 = det.box_xyxy
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _segment_frame(segmenter: Segmenter, frame: np.ndarray, detections: list[Detection]) -> list[ObjectMask]:
    if not detections:
        return []
    boxes = np.array([d.box_xyxy for d in detections], dtype=np.float32)
    results = segmenter.segment(frame, boxes)
    return [ObjectMask(d.track_id, d.class_name, d.box_xyxy, mask, score)
            for d, (mask, score) in zip(detections, results, strict=True)]


def _write_keyframe(out: Path, frame_index: int, frame: np.ndarray, masks: list[ObjectMask]) -> dict[str, Any]:
    image = f"frames/{frame_name(frame_index)}"
    cv2.imwrite(str(out / image), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    entries = []
    for m in masks:
        rel = f"masks/{frame_name(frame_index, '')}_id{m.track_id:04d}.png"
        cv2.imwrite(str(out / rel), m.mask.astype(np.uint8) * 255)
        entries.append({"track_id": m.track_id, "class_name": m.class_name, "box_xyxy": m.box_xyxy,
                        "mask": rel, "area": int(m.mask.sum()), "score": m.score})
    cv2.imwrite(str(out / "overlays" / frame_name(frame_index)), draw_overlay(frame, masks))
    return {"frame_index": frame_index, "image": image, "masks": entries}


def draw_overlay(frame: np.ndarray, masks: list[ObjectMask]) -> np.ndarray:
    """Masks tinted per track id, with boxes and 'id class' labels (supervision's annotators)."""
    import supervision as sv

    if not masks:
        return frame.copy()
    dets = sv.Detections(
        xyxy=np.array([m.box_xyxy for m in masks], dtype=np.float32),
        mask=np.stack([m.mask for m in masks]),
        tracker_id=np.array([m.track_id for m in masks]),
        class_id=np.array([m.track_id for m in masks]),
    )
    labels = [f"#{m.track_id} {m.class_name}" for m in masks]
    out = sv.MaskAnnotator(opacity=0.45).annotate(frame.copy(), dets)
    out = sv.BoxAnnotator(thickness=2).annotate(out, dets)
    return sv.LabelAnnotator(text_scale=0.5).annotate(out, dets, labels=labels)


def load_masks(stage_dir: Path) -> dict[str, Any]:
    """masks.json with paths made absolute."""
    stage_dir = Path(stage_dir)
    data = read_json(stage_dir / "masks.json")
    for kf in data["keyframes"]:
        kf["image"] = str(stage_dir / kf["image"])
        for m in kf["masks"]:
            m["mask"] = str(stage_dir / m["mask"])
    return data


def preflight(config: TangramConfig) -> None:
    cfg = config.segmentation
    if cfg.backend == "sam":  # the one setting that turns a missing checkpoint into an error
        if resolve_sam_checkpoint(cfg.sam_model, cfg.sam_checkpoint, cfg.sam_download) is None:
            raise TangramError(_NO_SAM)
    elif cfg.backend == "auto" and cfg.sam_checkpoint:
        resolve_sam_checkpoint(cfg.sam_model, cfg.sam_checkpoint, False)  # a given path must exist


STAGE = StageSpec(
    name="segmentation",
    requires=("tracking",),
    config_sections=("segmentation",),
    run=run,
    offloadable=True,
    preflight=preflight,
)
