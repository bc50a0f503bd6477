"""TANGRAM's typed defaults.

Edit the values here for machine-wide defaults. Per run they are overridden, in this order, by a
TOML file or a run's ``config.json`` (``--config FILE``, sections named like the fields below), by
environment variables (``TANGRAM_<SECTION>_<FIELD>``, e.g. ``TANGRAM_THUNDER_SSH_HOST``, plus the
short aliases in ``ENV_ALIASES``) and by command-line flags. ``tangram.settings.load_config`` applies them.

The Thunder section users edit is ``HARDWARE_CONFIG["thunder_compute"]``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(_Section):
    exports_dir: str = "exports"
    log_level: str = "INFO"
    # recording.rrd (Rerun) and simulation/robot.mcap (ROS 2) after every run; off: --no-recording
    recording: bool = True


class TrackingConfig(_Section):
    # A path, a file name looked up in $TANGRAM_MODEL_DIR, or an Ultralytics asset name that
    # Ultralytics downloads when online (.pt, .onnx and .tflite exports all work).
    weights: str = "yolov8n.pt"
    # Any Ultralytics tracker config (botsort.yaml, bytetrack.yaml, a file); the fields below
    # override the keys it has, and the effective config is saved as tracking/tracker.yaml.
    tracker: str = "botsort.yaml"
    conf: float = Field(0.25, ge=0.0, le=1.0)  # to start a track or match first (track_high/new_track_thresh)
    low_conf: float = Field(0.1, ge=0.0, le=1.0)  # down to this, detections keep tracks alive (track_low_thresh)
    match_thresh: float = Field(0.8, ge=0.0, le=1.0)
    track_buffer_s: float = Field(2.0, gt=0.0)  # seconds of video a lost track waits to be found again
    # camera-motion compensation. sparseOptFlow keeps small objects tracked while a camera turns (a
    # cup on hololens_office, lost without it), but bench_realdata measured it worse overall: sample
    # IDF1 0.85 -> 0.83 (fast scenario 0.81 -> 0.74), and apple_orbit's pick lost (2026-12-04)
    gmc_method: Literal["sparseOptFlow", "orb", "sift", "ecc", "none"] = "none"
    with_reid: bool = True  # BoT-SORT ReID from the detector's own features (PyTorch detectors only)
    agnostic_nms: bool = True  # one box per place across classes: no duplicate ids from class flicker
    image_fps: float = Field(2.0, gt=0.0)  # frame rate assumed for image folders (they have none)
    stitch: bool = True  # join fragments of one object offline (tangram.tracklets.stitch)
    stitch_max_gap_s: float = Field(3.0, ge=0.0)
    stitch_min_appearance: float = Field(0.6, ge=0.0, le=1.0)  # colour-histogram similarity to join
    iou: float = Field(0.7, ge=0.0, le=1.0)
    imgsz: int = Field(640, ge=32)
    frame_stride: int = Field(1, ge=1)  # track every n-th frame
    classes: list[int] | None = None  # COCO class ids to keep; None keeps all
    device: str | None = None  # "cpu", "cuda:0"; None lets Ultralytics choose
    # frames per detector call (fewer for big frames); ids do not depend on it. PyTorch and dynamic-batch
    # ONNX run them as one network batch, fixed-batch exports (the int8 TFLite/ONNX) one by one
    batch: int = Field(8, ge=1)
    # CPU threads for a LiteRT (.tflite) detector; None: every core this process may use (decoding runs in
    # its own thread). Ultralytics alone takes one core fewer than the machine has (one on 2 cores).
    # ONNX Runtime and PyTorch already use every core.
    inference_threads: int | None = Field(None, ge=1)
    write_preview: bool = True


class SegmentationConfig(_Section):
    # auto: SAM when a checkpoint is available, else GrabCut; sam: SAM or a clear error.
    backend: Literal["auto", "sam", "grabcut"] = "auto"
    sam_model: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"
    sam_checkpoint: str | None = None  # path; None: $TANGRAM_MODEL_DIR, cache, then download
    sam_download: bool = True  # fetch the official checkpoint when online
    keyframe_stride: int = Field(10, ge=1)
    max_keyframes: int = Field(30, ge=1)
    min_box_area: float = Field(64.0, ge=0.0)  # px²; tinier boxes are not worth a mask
    grabcut_iterations: int = Field(4, ge=1)
    device: str | None = None
    fp16: bool = True  # autocast on CUDA only


class ReconstructionConfig(_Section):
    max_keyframes: int = Field(60, ge=3)
    min_keyframes: int = Field(5, ge=3)
    # auto: every pair (exhaustive) while that is no more pairs than retrieval would match, else
    # retrieval: each keyframe with its sequential_overlap successors and its retrieval_neighbours
    # most similar keyframes by a vocabulary built from the clip (closes loops; tangram.geometry.pairs).
    # sequential: successors plus a quadratic overlap, no retrieval.
    matcher: Literal["auto", "sequential", "exhaustive", "retrieval"] = "auto"
    # global (rotation averaging + global positioning): on the real hololens walk it registered every
    # keyframe where incremental mapping split into several models; incremental is the classic
    mapper: Literal["incremental", "global"] = "global"
    camera_model: Literal["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"] = "SIMPLE_RADIAL"
    # Known intrinsics (pixels, OpenCV convention: pixel centres at integers) switch off focal,
    # principal-point and distortion refinement in bundle adjustment.
    intrinsics: list[float] | None = None  # [fx, fy, cx, cy]
    max_image_size: int = Field(1600, ge=256)  # SIFT runs on images downscaled to this side
    max_features: int = Field(8192, ge=256)  # SIFT features per image
    known_object_size: tuple[str, float] | None = None  # (class name, height in metres)
    keyframe_min_motion: float = Field(0.03, gt=0.0)  # image-diagonal fractions between keyframes
    static_threshold: float = Field(0.01, ge=0.0)  # below this largest image shift: a static camera
    sequential_overlap: int = Field(5, ge=1)  # sequential/retrieval matching: successors matched per image
    retrieval_neighbours: int = Field(10, ge=0)  # retrieval matching: most similar images matched per image
    exhaustive_max_images: int | None = Field(None, ge=2)  # None: where exhaustive is the cheaper (see matcher)
    min_object_points: int = Field(8, ge=1)  # fewer supporting 3D points: position from rays (fallback)
    # Tracks seen in fewer than this share of the tracked frames are detector noise, not objects.
    min_track_fraction: float = Field(0.1, ge=0.0, le=1.0)
    # ...unless they triangulate consistently from this many registered keyframes (a walk past it).
    min_object_views: int = Field(4, ge=2)
    # An object whose 3D position nothing cross-checks (its own SIFT points, or three or more views
    # agreeing on its triangulation) enters the scene only at this mean detection confidence: a
    # two-view triangulation always "agrees" with itself, and a false detection seen twice is placed
    # as confidently as a real object. What falls short goes under `unplaced`, with the numbers.
    min_uncorroborated_confidence: float = Field(0.5, ge=0.0, le=1.0)
    # Detections of these classes are the supporting furniture itself, not objects on it.
    surface_classes: list[str] = ["dining table", "desk", "bed"]
    # Furniture stands on the floor, never on the table: placed by triangulation, it votes on the
    # metric scale (chair and sofa heights above a found floor) and is never `on` the table.
    furniture_classes: list[str] = ["chair", "couch", "bench", "toilet"]
    # Objects no detector class names: clusters of the 3D points standing on the table that no placed
    # object explains become objects of class "object", source "geometry" (tangram.geometry.discovery).
    discover_objects: bool = True
    seed: int = 0  # RANSAC and mapper seeds: the same input gives the same model


class SceneGraphConfig(_Section):
    near_factor: float = Field(1.5, gt=0.0)  # "near" when gap < factor * mean object size
    contact_tolerance: float = Field(0.02, ge=0.0)  # metres


class PlanningConfig(_Section):
    task: str | None = None  # None: a sensible default task for the scene
    planner: Literal["auto", "llm", "offline"] = "auto"
    model: str = "gpt-4o-mini"
    base_url: str | None = None  # OPENAI_BASE_URL also works
    api_key: SecretStr | None = None  # OPENAI_API_KEY also works; never written anywhere
    max_retries: int = Field(2, ge=0)
    timeout_s: float = Field(60.0, gt=0)


class SimulationConfig(_Section):
    gui: bool = False
    seed: int = 0
    record_video: bool = True
    video_size: tuple[int, int] = (640, 480)
    video_fps: int = Field(12, ge=1, le=60)  # frames per simulated second; each 640x480 frame costs ~0.16 s


class ThunderConfig(_Section):
    enabled: bool = False
    ssh_host: str = ""
    ssh_user: str = ""
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_key_path: str = "~/.ssh/id_ed25519"
    remote_data_dir: str = "/tmp/tangram"
    known_hosts_path: str = "~/.ssh/known_hosts"
    trust_on_first_use: bool = False  # record an unknown host key instead of refusing it
    remote_python: str = "/usr/bin/python3"  # absolute: remote PATH differs per user
    remote_home: str = "~/.tangram"  # on the host: worker installs (venvs) and cached model weights
    price_per_hour: float = Field(0.0, ge=0.0)  # USD, for the cost figures in the manifest
    connect_timeout_s: float = Field(10.0, gt=0)
    command_timeout_s: float = Field(3600.0, gt=0)
    retries: int = Field(2, ge=0)  # extra attempts after a transient failure (connection, transfer)
    retry_backoff_s: float = Field(1.0, ge=0.0)  # wait before retry n: backoff * 2**(n-1)
    offload: Literal["auto", "always", "never"] = "auto"
    gpu_memory_fraction: float = Field(0.9, gt=0.0, le=1.0)


class FleetHost(_Section):
    """One host of a fleet (`tangram batch --hosts`); unset SSH fields come from the thunder section."""

    host: str
    user: str | None = None  # default: thunder.ssh_user
    port: int | None = Field(None, ge=1, le=65535)  # default: thunder.ssh_port
    key_path: str | None = None  # default: thunder.ssh_key_path
    known_hosts_path: str | None = None  # default: thunder.known_hosts_path
    remote_home: str | None = None  # default: thunder.remote_home (the `tangram thunder setup` venvs)
    remote_python: str | None = None  # python3 that creates the worker venv; default thunder.remote_python
    gpus: int | None = Field(None, ge=0)  # CUDA GPUs (GPU=1 per worker on one); None: nvidia-smi on the host
    workers: int | None = Field(None, ge=1)  # worker processes; default: one per GPU, else one
    threads: int = Field(1, ge=1)  # threads per worker (stages are CPU-heavy: one is right)
    price_per_hour: float | None = Field(None, ge=0.0)  # USD; default thunder.price_per_hour
    memory_limit: str = "auto"  # per worker, as Dask takes it ("auto", "8GB", 0 for none)


class FleetConfig(_Section):
    hosts: list[FleetHost] = []  # SSH hosts of the fleet; empty: a LocalCluster on this machine
    scheduler: str | None = None  # tcp://HOST:PORT of a Dask cluster you already run
    workers: int | None = Field(None, ge=1)  # LocalCluster workers; default: half the cores, at least 1
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "auto"  # LocalCluster, per worker
    local_price_per_hour: float = Field(0.0, ge=0.0)  # USD per hour of this machine, for cost figures
    retries: int = Field(2, ge=0)  # extra attempts of a task that raised (a worker's death is retried anyway)
    window: int | None = Field(None, ge=1)  # inputs in flight at once; default 2 x workers (bounds memory)
    metrics_port: int | None = Field(None, ge=0, le=65535)  # Prometheus endpoint; None: off, 0: any free port
    dashboard_port: int | None = Field(8787, ge=0, le=65535)  # Dask dashboard (and its /metrics); None: off
    scheduler_port: int = Field(0, ge=0, le=65535)  # SSH fleets: the scheduler's port on the first host
    connect_timeout_s: float = Field(10.0, gt=0)  # SSH and scheduler connections
    gpu_memory_fraction: float = Field(0.9, gt=0.0, le=1.0)  # of one GPU, split among the workers sharing it
    workers_per_gpu: int = Field(1, ge=1)  # several workers may share one GPU (memory fraction split)


class TangramConfig(_Section):
    run: RunConfig = RunConfig()
    tracking: TrackingConfig = TrackingConfig()
    segmentation: SegmentationConfig = SegmentationConfig()
    reconstruction: ReconstructionConfig = ReconstructionConfig()
    scene_graph: SceneGraphConfig = SceneGraphConfig()
    planning: PlanningConfig = PlanningConfig()
    simulation: SimulationConfig = SimulationConfig()
    thunder: ThunderConfig = ThunderConfig()
    fleet: FleetConfig = FleetConfig()


# The Thunder Compute host, as users edit it. `thunder` in TangramConfig starts from these values.
HARDWARE_CONFIG: dict[str, dict] = {
    "thunder_compute": {
        "enabled": False,
        "ssh_host": "",
        "ssh_user": "",
        "ssh_port": 22,
        "ssh_key_path": "~/.ssh/id_ed25519",
        "remote_data_dir": "/tmp/tangram",
        "known_hosts_path": "~/.ssh/known_hosts",
        "remote_python": "/usr/bin/python3",
        "price_per_hour": 0.0,
    },
}

# Short environment names users already know, mapped to (section, field).
ENV_ALIASES: dict[str, tuple[str, str]] = {
    "TANGRAM_YOLO_WEIGHTS": ("tracking", "weights"),
    "TANGRAM_SAM_CHECKPOINT": ("segmentation", "sam_checkpoint"),
    "TANGRAM_LOG_LEVEL": ("run", "log_level"),
    "TANGRAM_EXPORTS_DIR": ("run", "exports_dir"),
    "OPENAI_API_KEY": ("planning", "api_key"),
    "OPENAI_BASE_URL": ("planning", "base_url"),
}


def default_config() -> TangramConfig:
    return TangramConfig(thunder=ThunderConfig(**HARDWARE_CONFIG["thunder_compute"]))
