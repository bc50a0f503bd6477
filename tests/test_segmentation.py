"""Segmentation wiring: SAM gets one embedding per keyframe and one batched decoder call."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from conftest import real_file

from tangram.errors import TangramError
from tangram.runner import Pipeline
from tangram.stages.segmentation import load_masks


@pytest.fixture(scope="session")
def random_sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vit_b checkpoint file with random weights: real SAM code and tensors, no downloadable weights
    needed. Masks from it are meaningless; this checks the plumbing, not quality."""
    import torch
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_random.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), path)
    return path


@pytest.mark.slow
def test_sam_one_embedding_per_keyframe_and_one_batched_decoder_call(
        make_config, random_sam_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segment_anything import SamPredictor

    calls = {"set_image": 0, "predict_torch": []}
    set_image, predict_torch = SamPredictor.set_image, SamPredictor.predict_torch

    def counting_set_image(self, *args, **kwargs):
        calls["set_image"] += 1
        return set_image(self, *args, **kwargs)

    def counting_predict(self, *args, **kwargs):
        calls["predict_torch"].append(len(kwargs["boxes"]))
        return predict_torch(self, *args, **kwargs)

    monkeypatch.setattr(SamPredictor, "set_image", counting_set_image)
    monkeypatch.setattr(SamPredictor, "predict_torch", counting_predict)
    config = make_config(segmentation={"backend": "sam", "sam_checkpoint": str(random_sam_checkpoint),
                                       "max_keyframes": 1})
    result = Pipeline(config).run(real_file("tum_office_desk"), name="desk", until="segmentation")
    record = result.record("segmentation")
    assert record["status"] == "done" and record["backend"] == "sam:vit_b"

    masks = load_masks(result.run_dir / "segmentation")
    (keyframe,) = masks["keyframes"]
    n_boxes = len(keyframe["masks"])
    assert n_boxes >= 2, "the desk frame should have several tracked objects"
    assert calls == {"set_image": 1, "predict_torch": [n_boxes]}
    mask = cv2.imread(keyframe["masks"][0]["mask"], cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (480, 640) and set(mask.ravel().tolist()) <= {0, 255}
    assert all(isinstance(m["score"], float) for m in keyframe["masks"])


def test_segmenter_sam_without_checkpoint_is_a_clear_error(make_config, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setenv("TANGRAM_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("TANGRAM_OFFLINE", "1")
    config = make_config(segmentation={"backend": "sam"})
    with pytest.raises(TangramError, match="no SAM checkpoint"):
        Pipeline(config).run(real_file("bus.jpg"), name="bus", until="segmentation")


def test_grabcut_masks_stay_inside_boxes(make_config) -> None:
    result = Pipeline(make_config(segmentation={"backend": "grabcut"})).run(
        real_file("bus.jpg"), name="bus", until="segmentation")
    masks = load_masks(result.run_dir / "segmentation")
    (keyframe,) = masks["keyframes"]
    assert masks["backend"] == "grabcut" and len(keyframe["masks"]) >= 3  # bus + people
    for entry in keyframe["masks"]:
        mask = cv2.imread(entry["mask"], cv2.IMREAD_GRAYSCALE) > 0
        x1, y1, x2, y2 = (round(v) for v in entry["box_xyxy"])
        box_area = (x2 - x1) * (y2 - y1)
        assert 0.1 * box_area < entry["area"] <= box_area + 2 * (x2 - x1 + y2 - y1)
        assert mask[:, : max(0, x1 - 1)].sum() == 0 and mask[: max(0, y1 - 1)].sum() == 0
