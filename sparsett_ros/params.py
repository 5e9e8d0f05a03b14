"""The node's parameters: declared once, loaded into one typed frozen object, validated.

Every parameter is listed in `PARAMETERS` with its default, description and range; the node
declares them all from that table (`declare_parameters`), reads them into `TrackerParams`
(`load_params`) and validates every change at run time (`validate_changes`, used by the
`add_on_set_parameters_callback`). Thresholds and presentation settings can change at run
time; parameters that need a restart (model, device, topics, QoS) are declared read-only.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

PRESETS = ("", "got10k", "lasot", "trackingnet", "uav123", "otb2015", "lite", "lite_v2")  # = sparsett_core presets (tested)
DEVICES = ("auto", "cuda", "cpu")
PRECISIONS = ("fp32", "fp16", "bf16")
BACKENDS = ("torch", "onnxruntime", "auto")
IMAGE_QOS = ("sensor_data", "reliable")
OUTPUT_QOS = ("reliable", "best_effort")


@dataclass(frozen=True)
class TrackerParams:
    """All node parameters, typed. Field names are the ROS parameter names."""

    # Model
    checkpoint: str = ""
    allow_random_weights: bool = False
    preset: str = ""
    device: str = "auto"
    num_threads: int = 0
    precision: str = "fp32"
    fast_path: bool = False
    backend: str = "torch"
    cuda_graphs: bool = False
    gpu_crop: bool = False
    warmup_iterations: int = 2
    tracker_factory: str = "sparsett_ros.tracker_backend:build_sparsett_tracker"
    # Output
    class_id: str = "target"
    publish_debug_image: bool = True
    # Target loss
    lost_score: float = 0.25
    lost_frames: int = 5
    recover_score: float = 0.4
    # Input
    use_compressed: bool = False
    image_qos: str = "sensor_data"
    image_qos_depth: int = 1
    output_qos: str = "reliable"
    output_qos_depth: int = 10
    process_all_frames: bool = False
    queue_size: int = 100
    frame_buffer_size: int = 30
    init_catchup_frames: int = 5
    click_timeout_s: float = 20.0
    tf_timeout_s: float = 0.1
    warn_throttle_s: float = 2.0


@dataclass(frozen=True)
class ParamSpec:
    """Declaration of one parameter: description, allowed values or range, mutability."""

    name: str
    description: str
    choices: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    read_only: bool = True


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "Path of the SparseTT checkpoint (official .pkl or a sparsett_core checkpoint). "
              "Empty or 'default': the SparseTT-Lite weights shipped with the package; 'random': random "
              "weights (needs allow_random_weights)."),
    ParamSpec("allow_random_weights", "Allow random weights: checkpoint 'random', or instead of a checkpoint that "
              "cannot be loaded (demos and tests only; the tracking is meaningless). Logged as a warning and "
              "flagged in ~/status."),
    ParamSpec("preset", "Tracker hyper-parameter preset; empty uses the model's default.", choices=PRESETS),
    ParamSpec("device", "Inference device: auto (cuda when available), cuda or cpu.", choices=DEVICES),
    ParamSpec("num_threads", "CPU threads for inference (torch.set_num_threads); 0 = torch's default less one "
              "core, which stays free for ROS and the camera driver (1 thread on a 2-core computer).",
              min_value=0, max_value=256),
    ParamSpec("precision", "Inference precision: fp32, fp16 (CUDA autocast) or bf16 (autocast).", choices=PRECISIONS),
    ParamSpec("fast_path", "The fastest inference on this machine, chosen at start-up (= backend auto: CUDA fp16 + "
              "CUDA graphs + GPU crop; on the CPU the fastest of torch fp32, torch bf16 where the CPU has native "
              "bf16 (Swin-T only) and ONNX Runtime, measured; the choice and why are logged). Overrides backend, "
              "precision, cuda_graphs and gpu_crop."),
    ParamSpec("backend", "Inference backend: torch, onnxruntime (the exported model, optional package) or auto "
              "(see fast_path).", choices=BACKENDS),
    ParamSpec("cuda_graphs", "Capture the template/track steps as CUDA graphs (CUDA only; ignored on the CPU)."),
    ParamSpec("gpu_crop", "Crop and normalise with torch ops on the inference device (bit-exact with the cv2 crop)."),
    ParamSpec("warmup_iterations", "Dummy init+update runs before the node reports ready.", min_value=0, max_value=20),
    ParamSpec("tracker_factory", "module:function building the tracker (default: SparseTT + sparsett_core "
              "Tracker); another tracker with the same init/update contract can be plugged in here."),
    ParamSpec("class_id", "results[0].hypothesis.class_id of the published detections.", read_only=False),
    ParamSpec("publish_debug_image", "Render ~/debug_image (only while something subscribes).", read_only=False),
    ParamSpec("lost_score", "Score below which a frame counts as weak; lost_frames weak frames in a row -> LOST.",
              min_value=0.0, max_value=1.0, read_only=False),
    ParamSpec("lost_frames", "Consecutive weak frames that make the state LOST.", min_value=1, max_value=10000,
              read_only=False),
    ParamSpec("recover_score", "Score above which a LOST target is TRACKING again (must be >= lost_score).",
              min_value=0.0, max_value=1.0, read_only=False),
    ParamSpec("use_compressed", "Subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image."),
    ParamSpec("image_qos", "QoS of the image subscription: sensor_data (best effort) or reliable.", choices=IMAGE_QOS),
    ParamSpec("image_qos_depth", "History depth of the image subscription.", min_value=1, max_value=1000),
    ParamSpec("output_qos", "QoS of detections, status and debug image: reliable or best_effort.", choices=OUTPUT_QOS),
    ParamSpec("output_qos_depth", "History depth of the outputs.", min_value=1, max_value=1000),
    ParamSpec("process_all_frames", "Queue frames (up to queue_size) instead of keeping only the newest: for "
              "offline replay and tests where every frame must be tracked. Latency is then unbounded."),
    ParamSpec("queue_size", "Frames kept waiting when process_all_frames is true (older ones are dropped).",
              min_value=1, max_value=10000),
    ParamSpec("frame_buffer_size", "Recent frames kept by stamp for stamped ~/init boxes.", min_value=1,
              max_value=1000),
    ParamSpec("init_catchup_frames", "After a stamped init on a past frame, at most this many buffered newer frames "
              "are tracked to catch up with the live stream.", min_value=0, max_value=1000, read_only=False),
    ParamSpec("click_timeout_s", "Seconds within which the second click (opposite corner) must follow the first.",
              min_value=0.1, max_value=3600.0, read_only=False),
    ParamSpec("tf_timeout_s", "Seconds to wait for a tf2 transform of an RViz click.", min_value=0.0, max_value=10.0,
              read_only=False),
    ParamSpec("warn_throttle_s", "Minimum seconds between two warnings of the same kind.", min_value=0.0,
              max_value=3600.0, read_only=False),
)
SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}
DEFAULTS = TrackerParams()
RUNTIME_PARAMETERS = frozenset(spec.name for spec in PARAMETERS if not spec.read_only)

if set(SPECS) != {field.name for field in dataclasses.fields(TrackerParams)}:  # pragma: no cover
    raise RuntimeError("sparsett_ros.params: PARAMETERS and TrackerParams list different names")


def _field_type(name: str) -> type:
    return type(getattr(DEFAULTS, name))


def check_value(name: str, value: Any) -> str:
    """Return why `value` is not acceptable for parameter `name` ("" when it is)."""
    spec = SPECS.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    expected = _field_type(name)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        return f"{name} must be a {expected.__name__}, got {type(value).__name__} {value!r}"
    if expected is float and not math.isfinite(value):
        return f"{name} must be finite, got {value!r}"
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(repr(c) for c in spec.choices)}, got {value!r}"
    if spec.min_value is not None and value < spec.min_value:
        return f"{name} must be >= {spec.min_value}, got {value!r}"
    if spec.max_value is not None and value > spec.max_value:
        return f"{name} must be <= {spec.max_value}, got {value!r}"
    if name == "class_id" and not value:
        return "class_id must not be empty"
    return ""


def check_params(params: TrackerParams) -> str:
    """Cross-parameter checks; "" when consistent."""
    if params.recover_score < params.lost_score:
        return (f"recover_score ({params.recover_score}) must be >= lost_score ({params.lost_score}); "
                "raise recover_score first (lower lost_score first), or set both atomically")
    return ""


def make_params(values: Mapping[str, Any], base: TrackerParams = DEFAULTS) -> TrackerParams:
    """A new TrackerParams from `base` with `values` replaced; raises ValueError with the reasons."""
    reasons = [r for r in (check_value(k, v) for k, v in values.items()) if r]
    if reasons:
        raise ValueError("; ".join(reasons))
    coerced = {k: float(v) if _field_type(k) is float else v for k, v in values.items()}
    params = dataclasses.replace(base, **coerced)
    reason = check_params(params)
    if reason:
        raise ValueError(reason)
    return params


def validate_changes(current: TrackerParams, changes: Mapping[str, Any]) -> tuple[TrackerParams | None, str]:
    """Validate a run-time change set. Returns (new params, "") or (None, reason)."""
    frozen = sorted(name for name in changes if name in SPECS and name not in RUNTIME_PARAMETERS)
    if frozen:
        return None, f"{', '.join(frozen)} cannot change at run time: restart the node with the new value"
    try:
        return make_params({k: v for k, v in changes.items() if k in SPECS}, base=current), ""
    except ValueError as exc:
        return None, str(exc)


# --- rclpy side -------------------------------------------------------------------------------

def _descriptor(spec: ParamSpec):
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    text = spec.description
    if spec.choices:
        text += f" One of: {', '.join(repr(c) for c in spec.choices)}."
    descriptor = ParameterDescriptor(description=text, read_only=spec.read_only)
    kind = _field_type(spec.name)
    if spec.min_value is not None and kind is float:
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0)]
    elif spec.min_value is not None and kind is int:
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.min_value), to_value=int(spec.max_value), step=1)]
    return descriptor


def declare_parameters(node) -> TrackerParams:
    """Declare every parameter on `node` and return the loaded, validated values.

    Raises:
        ValueError: a value from the params file or command line is invalid (the message names
            the parameter and the allowed values).
    """
    for spec in PARAMETERS:
        node.declare_parameter(spec.name, getattr(DEFAULTS, spec.name), _descriptor(spec))
    return load_params(node)


def load_params(node) -> TrackerParams:
    """Read the declared parameters into a TrackerParams (validated)."""
    values = {spec.name: node.get_parameter(spec.name).value for spec in PARAMETERS}
    return make_params(values)
