"""Sections every served module shares: how the model runs, and how requests are served."""
import dataclasses
import importlib.resources
import os
from typing import Optional

import yaml

from .schema import ParamsError, setting, unknown_key_message

PACKAGE_SCHEME = "pkg://"
CACHE_ENV = "CLAS_SYSTEM_CACHE"
# The most results one image may ask for: top_k, max_det_results, return_k, a gallery search's k.
MAX_RESULTS_PER_IMAGE = 1000


def cache_dir():
    """Where derived models and default galleries live: $CLAS_SYSTEM_CACHE, else ~/.cache/clas_system."""
    return os.path.expanduser(os.environ.get(CACHE_ENV) or "~/.cache/clas_system")


@dataclasses.dataclass(frozen=True)
class PredictorParams:
    backend: str = setting("auto", choices=("auto", "openvino", "paddle", "onnxruntime"),
                           doc="auto: on CPU OpenVINO (Paddle 3 inference.json folders: Paddle Inference); "
                               "with use_gpu Paddle Inference for folders, ONNX Runtime for .onnx")
    use_gpu: bool = setting(False, doc="needs paddlepaddle-gpu (pip install '.[gpu]')")
    gpu_id: int = setting(0, min=0)
    gpu_mem: int = setting(500, min=1, doc="initial GPU memory pool, MB")
    use_fp16: bool = setting(False, doc="half precision on GPU")
    use_tensorrt: bool = setting(False, doc="Paddle-TensorRT subgraphs on GPU")
    trt_precision: str = setting("fp32", choices=("fp32", "fp16", "int8"))
    trt_min_subgraph_size: int = setting(15, min=1)
    enable_mkldnn: bool = setting(True, doc="oneDNN on CPU (Paddle Inference)")
    cpu_threads: Optional[int] = setting(None, min=1, max=256,
                                         doc="math threads per predictor (every backend); None: this process's "
                                             "share of the CPUs, CPUs / gunicorn workers (at least 1), halved "
                                             "for rec_system's detector and feature model, which run side by side")
    ir_optim: bool = setting(True, doc="graph optimisation passes")
    cpu_precision: str = setting("fp32", choices=("fp32", "bf16", "auto"),
                                 doc="OpenVINO on CPU; bf16 (CPUs with AVX512-BF16/AMX) moves scores and is faster on "
                                     "some CPUs, slower on others; auto: each process times the model at fp32 and "
                                     "bf16 on its first batch (about 2 s) and keeps the faster, fp32 unless the other is "
                                     "10 % faster (/ready shows it; other backends: fp32)")
    int8_model_dir: Optional[str] = setting(None, doc="an INT8 OpenVINO IR of the same model (clas-quantize's output "
                                                      "folder): cpu_precision auto times it beside fp32 and bf16 and "
                                                      "keeps it when it is the fastest")


@dataclasses.dataclass(frozen=True)
class ServingParams:
    batch_size: int = setting(8, min=1, max=1024, doc="largest model batch; requests are merged up to it")
    batch_wait_ms: float = setting(5.0, min=0.0, max=1000.0,
                                   doc="how long a batch waits for more requests before it runs")
    request_threads: int = setting(16, min=0, max=1024,
                                   doc="requests one server process works on at once (a fixed pool of threads); "
                                       "0 keeps PaddleHub's one-at-a-time runner (no batching across requests)")
    max_waiting_requests: int = setting(64, min=0, max=100_000,
                                        doc="requests that may wait for a request thread; past that the answer "
                                            "is 'overloaded' (HTTP 503) at once")
    max_wait_ms: float = setting(2000.0, min=1.0, doc="a request that waited longer than this for a request "
                                                      "thread is answered 'overloaded' without being run")
    graceful_stop_s: float = setting(10.0, min=0.0, max=600.0,
                                     doc="on SIGTERM, how long requests in flight may take to finish")
    host: str = setting("0.0.0.0", doc="address `hub serving start -m` binds (127.0.0.1 behind a proxy)")
    api_token: Optional[str] = setting(None, doc="when set, every request must carry this token")
    metrics_token: Optional[str] = setting(None, doc="when set, GET /metrics needs this token instead of api_token "
                                                     "(a scraper need not hold the API's)")
    max_images_per_request: int = setting(64, min=1)
    max_image_pixels: int = setting(40_000_000, min=1, doc="width x height of one decoded image")
    max_request_bytes: int = setting(64 * 1024 * 1024, min=1, doc="encoded image bytes in one request")
    reduced_decode: bool = setting(True, doc="decode large JPEGs at 1/2, 1/4 or 1/8 size when the "
                                             "model input is much smaller (false: bit-exact PaddleClas parity)")


# PaddleClas inference yaml Global keys that set how the model runs -> (section, key) here.
PREDICTOR_GLOBAL_KEYS = {
    "use_gpu": ("predictor", "use_gpu"),
    "gpu_mem": ("predictor", "gpu_mem"),
    "enable_mkldnn": ("predictor", "enable_mkldnn"),
    "cpu_num_threads": ("predictor", "cpu_threads"),
    "use_fp16": ("predictor", "use_fp16"),
    "use_tensorrt": ("predictor", "use_tensorrt"),
    "ir_optim": ("predictor", "ir_optim"),
}


def resolve_path(value, where, base_dir=None, kind="path"):
    """An existing file or folder: `pkg://package/inner/path`, absolute, or relative to base_dir."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ParamsError(f"{where}: expected a {kind}, got {value!r}")
    if value.startswith(PACKAGE_SCHEME):
        package, _, inner = value[len(PACKAGE_SCHEME):].partition("/")
        try:
            path = str(importlib.resources.files(package).joinpath(inner))
        except ModuleNotFoundError as err:
            raise ParamsError(f"{where}: package {package!r} is not installed ({value})") from err
    else:
        path = os.path.expanduser(value)
        if not os.path.isabs(path) and base_dir and os.path.exists(os.path.join(base_dir, path)):
            path = os.path.join(base_dir, path)
    if not os.path.exists(path):
        raise ParamsError(f"{where}: {kind} not found: {path}")
    return os.path.abspath(path)


def read_yaml_mapping(path, where, expected):
    """A YAML file that must hold a mapping (`expected` says of what, for the error)."""
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ParamsError(f"{where}: cannot read {path}: {err}") from err
    if not isinstance(config, dict):
        raise ParamsError(f"{where}: {path} is not a mapping with {expected}")
    return config


def split_overrides(overrides, sections):
    """PaddleHub's config.json init_args are flat (use_gpu, batch_size, ...): route each key to
    the section that owns it. Nested dicts pass through as they are. Returns {section: {key: v}}."""
    routed = {}
    owners = {}
    for section, cls in sections.items():
        if cls is None:
            continue
        for f in dataclasses.fields(cls):
            owners.setdefault(f.name, section)
    for key, value in (overrides or {}).items():
        if key in sections:
            routed.setdefault(key, {})
            if isinstance(value, dict) and sections[key] is not None:
                routed[key].update(value)
            else:
                routed[key] = value
        elif key in owners:
            routed.setdefault(owners[key], {})[key] = value
        else:
            allowed = {k: None for k in list(sections) + list(owners)}
            raise ParamsError(unknown_key_message("init_args", key, allowed))
    return routed


def merge(base, routed):
    """base params dict updated section by section with routed overrides."""
    merged = dict(base)
    for section, value in routed.items():
        if isinstance(value, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **value}
        else:
            merged[section] = value
    return merged
