"""Structure from motion with pycolmap: SIFT features, matching, mapping, the largest model.

pycolmap is imported only through this package, whose `__init__` loads the system zlib first (a
pycolmap loaded first breaks every later deflate in the process; see tangram/__init__.py).

Facts this relies on (see ../shared/NOTES.md): with known intrinsics the bundle adjustment must not
refine focal length, principal point or distortion (it drifts otherwise); incremental mapping may
return several disconnected models, of which we keep the one with most registered images.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pycolmap

pycolmap.logging.minloglevel = 2  # warnings and errors only: COLMAP's INFO log is very chatty

Matcher = Literal["sequential", "exhaustive", "retrieval"]
Mapper = Literal["incremental", "global"]


@dataclass
class SfmOptions:
    matcher: Matcher = "sequential"
    mapper: Mapper = "incremental"
    camera_model: str = "SIMPLE_RADIAL"
    intrinsics: Sequence[float] | None = None  # [fx, fy, cx, cy] in pixels of the written images
    max_image_size: int = 1600
    max_num_features: int = 8192
    overlap: int = 10  # sequential and retrieval matching: each image is matched to this many successors
    neighbours: int = 10  # retrieval matching: and to this many most similar images (tangram.geometry.pairs)
    seed: int = 0
    # SIFT extraction and matching on every core: features are per image, and two-view verification
    # seeds its RANSAC per image pair (identical poses from 2 threads and from 1, on 17 and 46 real
    # frames). The mappers run on `solver_threads` (1 by default): the incremental mapper's RANSAC
    # generators are per thread (two runs registered 27 and 31 of 46 frames), and the global mapper on
    # every core gave, once in CI, a model 1e-3 rotated with one 3D point more than the run before it
    # (work shared among threads in a different order sums in a different order). On one thread it is
    # as fast on 2 cores (map 2.0 s vs 2.2 s on the sample) and bit-identical.
    num_threads: int = -1
    solver_threads: int = 1


@dataclass
class SfmResult:
    reconstruction: pycolmap.Reconstruction | None  # the model with most registered images
    num_input: int
    num_models: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_registered(self) -> int:
        return self.reconstruction.num_reg_images() if self.reconstruction is not None else 0


def run_sfm(
    image_dir: Path,
    image_names: Sequence[str],
    options: SfmOptions,
    progress: Callable[[str], None] = lambda _: None,
) -> SfmResult:
    """Reconstruct the images (names relative to image_dir); the database lives in a temp folder."""
    timings: dict[str, float] = {}
    pycolmap.set_random_seed(options.seed)  # COLMAP's global generator (RANSAC everywhere)
    with tempfile.TemporaryDirectory(prefix="tangram-sfm-") as tmp:
        db = Path(tmp) / "database.db"
        progress("extracting SIFT features")
        _timed(timings, "extract", lambda: _extract(db, image_dir, image_names, options))
        progress(f"{options.matcher} matching")
        _timed(timings, "match", lambda: _match(db, options, Path(tmp) / "pairs.txt"))
        progress(f"{options.mapper} mapping")
        models = _timed(timings, "map", lambda: _map(db, image_dir, Path(tmp) / "sparse", options))
    best = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
    return SfmResult(best, len(image_names), len(models), timings)


def _timed(timings: dict[str, float], name: str, fn: Callable):
    start = time.perf_counter()
    result = fn()
    timings[name] = round(time.perf_counter() - start, 3)
    return result


def _extract(db: Path, image_dir: Path, names: Sequence[str], options: SfmOptions) -> None:
    reader = pycolmap.ImageReaderOptions()
    if options.intrinsics is not None:
        fx, fy, cx, cy = options.intrinsics
        reader.camera_model = "PINHOLE"
        reader.camera_params = f"{fx},{fy},{cx},{cy}"
    else:
        reader.camera_model = options.camera_model
    # Images enter the database first, one thread, in name order: their ids (which decide the mapper's
    # visiting order) are then the same on every run; extraction in parallel would number them by
    # whichever thread finished first, and the model would differ from run to run.
    pycolmap.Database.open(db).close()  # creates the empty database
    mode = camera_mode(image_dir, names)
    pycolmap.import_images(db, image_dir, mode, list(names), reader)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = options.max_image_size
    extraction.num_threads = options.num_threads
    extraction.sift.max_num_features = options.max_num_features
    pycolmap.extract_features(
        db,
        image_dir,
        image_names=list(names),
        camera_mode=mode,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )


def image_sizes(image_dir: Path, names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(width, height) of each image, from its header where the format allows (no full decode)."""
    from PIL import Image

    out = {}
    for name in names:
        with Image.open(image_dir / name) as image:
            out[name] = image.size
    return out


def camera_mode(image_dir: Path, names: Sequence[str]) -> pycolmap.CameraMode:
    """One camera with shared intrinsics when every image has one size (a video, a photo series);
    else one camera per image (photos from several phones, zooms or orientations), each calibrated
    on its own."""
    sizes = set(image_sizes(image_dir, names).values())
    return pycolmap.CameraMode.SINGLE if len(sizes) == 1 else pycolmap.CameraMode.PER_IMAGE


def _match(db: Path, options: SfmOptions, pair_list: Path) -> None:
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = options.seed
    if options.matcher == "retrieval":
        from tangram.geometry.pairs import write_retrieval_pairs

        write_retrieval_pairs(db, pair_list, options.overlap, options.neighbours, options.seed)
        pycolmap.match_image_pairs(
            db,
            matching_options=matching,
            pairing_options=pycolmap.ImportedPairingOptions(match_list_path=pair_list),
            verification_options=verification,
            device=pycolmap.Device.cpu,
        )
        return
    if options.matcher == "exhaustive":
        pycolmap.match_exhaustive(
            db, matching_options=matching, verification_options=verification, device=pycolmap.Device.cpu
        )
        return
    # Loop detection needs a vocabulary-tree file that is downloaded on first use; offline we widen the
    # (quadratic) overlap instead, which also links the ends of short orbits.
    pairing = pycolmap.SequentialPairingOptions(overlap=options.overlap, quadratic_overlap=True)
    pycolmap.match_sequential(
        db,
        matching_options=matching,
        pairing_options=pairing,
        verification_options=verification,
        device=pycolmap.Device.cpu,
    )


def _map(db: Path, image_dir: Path, out: Path, options: SfmOptions) -> dict[int, pycolmap.Reconstruction]:
    out.mkdir(parents=True, exist_ok=True)
    known = options.intrinsics is not None
    if options.mapper == "global":
        glob = pycolmap.GlobalPipelineOptions(random_seed=options.seed, num_threads=options.solver_threads)
        glob.min_model_size = 3
        if known:
            ba = glob.mapper.bundle_adjustment
            ba.refine_focal_length = ba.refine_principal_point = ba.refine_extra_params = False
        return dict(pycolmap.global_mapping(db, image_dir, out, glob))
    inc = pycolmap.IncrementalPipelineOptions(random_seed=options.seed, num_threads=options.solver_threads)
    inc.min_model_size = 3
    inc.mapper.random_seed = options.seed
    inc.triangulation.random_seed = options.seed
    if known:
        inc.ba_refine_focal_length = inc.ba_refine_principal_point = inc.ba_refine_extra_params = False
        inc.mapper.abs_pose_refine_focal_length = inc.mapper.abs_pose_refine_extra_params = False
    return dict(pycolmap.incremental_mapping(db, image_dir, out, inc))


# --- reading a model --------------------------------------------------------------------------------


def world_from_camera(image: pycolmap.Image) -> np.ndarray:
    """4x4 pose of a registered image: camera (OpenCV: x right, y down, z forward) to world."""
    cam_from_world = np.eye(4)
    cam_from_world[:3] = image.cam_from_world().matrix()
    return np.linalg.inv(cam_from_world)


def registered_images(rec: pycolmap.Reconstruction) -> list[pycolmap.Image]:
    return sorted((rec.image(i) for i in rec.reg_image_ids()), key=lambda im: im.name)


def point_arrays(rec: pycolmap.Reconstruction) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids, xyz Nx3, rgb Nx3 uint8, reprojection error N) of all 3D points."""
    ids = np.array(sorted(rec.point3D_ids()), dtype=np.int64)
    xyz = np.array([rec.point3D(i).xyz for i in ids]).reshape(-1, 3)
    rgb = np.array([rec.point3D(i).color for i in ids], dtype=np.uint8).reshape(-1, 3)
    err = np.array([rec.point3D(i).error for i in ids], dtype=float)
    return ids, xyz, rgb, err


def camera_intrinsics(camera: pycolmap.Camera) -> dict:
    return {
        "model": camera.model.name,
        "width": int(camera.width),
        "height": int(camera.height),
        "params": [float(p) for p in camera.params],
        "fx": float(camera.focal_length_x),
        "fy": float(camera.focal_length_y),
        "cx": float(camera.principal_point_x),
        "cy": float(camera.principal_point_y),
    }


def observations(rec: pycolmap.Reconstruction, image: pycolmap.Image) -> tuple[np.ndarray, np.ndarray]:
    """(point3D ids, Nx2 pixel positions) of the triangulated keypoints of one image."""
    ids, uv = [], []
    for p2d in image.points2D:
        if p2d.has_point3D():
            ids.append(p2d.point3D_id)
            uv.append(p2d.xy)
    return np.array(ids, dtype=np.int64), np.array(uv, dtype=float).reshape(-1, 2)


def similarity_transform(rec: pycolmap.Reconstruction, new_from_old: np.ndarray) -> None:
    """Apply a 4x4 similarity (scale * rotation, translation) to the model in place."""
    linear = new_from_old[:3, :3]
    scale = float(np.cbrt(np.linalg.det(linear)))
    rotation = pycolmap.Rotation3d(linear / scale)
    rec.transform(pycolmap.Sim3d(scale, rotation, new_from_old[:3, 3].reshape(3, 1)))
