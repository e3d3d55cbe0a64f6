"""Preprocess and postprocess operators by name, with PaddleClas's parameter names.

A PaddleClas config lists ops as ``[{"ResizeImage": {"resize_short": 256}}, {"ToCHWImage": None}]``;
`parse_ops` turns that list into typed op settings the engine builds functions from.
"""
import dataclasses
from typing import Any, Optional, Tuple

from .schema import ParamsError, parse, setting

INTERPOLATIONS = ("nearest", "bilinear", "area", "bicubic", "lanczos")


def size_pair(value, where):
    """PaddleClas sizes are an int (square) or [w, h]."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return (value[0], value[1])
    raise ParamsError(f"{where}: expected a positive int or [width, height], got {value!r}")


def number(value, where):
    """A number, or a fraction written as a string the way PaddleClas configs do ("1.0/255.0")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            num, _, den = value.partition("/")
            return float(num) / float(den) if den else float(num)
        except (ValueError, ZeroDivisionError):
            pass
    raise ParamsError(f"{where}: expected a number or a fraction like '1.0/255.0', got {value!r}")


@dataclasses.dataclass(frozen=True)
class DecodeImage:
    to_rgb: bool = setting(True, doc="convert OpenCV's BGR to RGB (PaddleClas does)")
    channel_first: bool = setting(False, doc="only False is supported; use ToCHWImage")


@dataclasses.dataclass(frozen=True)
class ResizeImage:
    size: Any = setting(None, doc="int or [width, height]")
    resize_short: Optional[int] = setting(None, min=1, doc="resize the short side to this, keep aspect")
    interpolation: Optional[str] = setting(None, choices=INTERPOLATIONS)
    backend: str = setting("cv2", choices=("cv2", "pil"))
    return_numpy: bool = setting(True)


@dataclasses.dataclass(frozen=True)
class CropImage:
    size: Any = setting(224, doc="int or [width, height]; a centre crop")


@dataclasses.dataclass(frozen=True)
class NormalizeImage:
    scale: Any = setting(None, doc="number or '1.0/255.0'; default 1/255")
    mean: Tuple[float, ...] = setting((0.485, 0.456, 0.406))
    std: Tuple[float, ...] = setting((0.229, 0.224, 0.225))
    order: str = setting("chw", choices=("chw", "hwc", ""))
    output_fp16: bool = setting(False)
    channel_num: int = setting(3, choices=(3, 4))


@dataclasses.dataclass(frozen=True)
class ToCHWImage:
    pass


@dataclasses.dataclass(frozen=True)
class ResizeByHeight:
    """PaddleOCR text-line style: fixed height, width from the aspect ratio (rounded up), capped."""
    height: int = setting(48, min=1)
    max_width: int = setting(192, min=1)


@dataclasses.dataclass(frozen=True)
class PadToSize:
    """Pad on the right and bottom up to [width, height] (after normalisation, so 0 is the mean)."""
    size: Any = setting(None, doc="[width, height]")
    value: float = setting(0.0)


PREPROCESS_OPS = {cls.__name__: cls for cls in
                  (DecodeImage, ResizeImage, CropImage, NormalizeImage, ToCHWImage, ResizeByHeight, PadToSize)}


def parse_op(entry, where, known):
    if isinstance(entry, str):
        entry = {entry: None}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ParamsError(f"{where}: each op is a one-key mapping like {{'ResizeImage': {{'resize_short': 256}}}}, got {entry!r}")
    (name, args), = entry.items()
    if name not in known:
        raise ParamsError(f"{where}: unknown op {name!r}; supported: {', '.join(known)}")
    return validate_op(parse(known[name], args, f"{where}.{name}"), f"{where}.{name}")


def validate_op(op, where):
    if isinstance(op, ResizeImage):
        if op.resize_short is None and op.size is None:
            raise ParamsError(f"{where}: set either 'size' or 'resize_short'")
        if op.resize_short is None:
            return dataclasses.replace(op, size=size_pair(op.size, f"{where}.size"))
    if isinstance(op, CropImage):
        return dataclasses.replace(op, size=size_pair(op.size, f"{where}.size"))
    if isinstance(op, PadToSize):
        return dataclasses.replace(op, size=size_pair(op.size, f"{where}.size"))
    if isinstance(op, NormalizeImage):
        scale = 1.0 / 255.0 if op.scale is None else number(op.scale, f"{where}.scale")
        if len(op.mean) != len(op.std) or len(op.mean) not in (1, 3):
            raise ParamsError(f"{where}: mean and std need 3 values each (or 1), got {op.mean} and {op.std}")
        if any(s == 0 for s in op.std):
            raise ParamsError(f"{where}.std: must not contain 0")
        return dataclasses.replace(op, scale=scale)
    if isinstance(op, DecodeImage) and op.channel_first:
        raise ParamsError(f"{where}.channel_first: only false is supported; add a ToCHWImage op instead")
    return op


def parse_ops(entries, where):
    if not isinstance(entries, (list, tuple)):
        raise ParamsError(f"{where}: expected a list of ops, got {entries!r}")
    ops = tuple(parse_op(e, f"{where}[{i}]", PREPROCESS_OPS) for i, e in enumerate(entries))
    for i, op in enumerate(ops):
        if isinstance(op, DecodeImage) and i != 0:
            raise ParamsError(f"{where}[{i}]: DecodeImage must be the first op")
    return ops


# ---- postprocess -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Topk:
    topk: int = setting(5, min=1)
    class_id_map_file: Optional[str] = setting(None, doc="PaddleClas label file: 'id label' per line")
    label_list: Optional[Tuple[str, ...]] = setting(None, doc="labels in class-id order (instead of a file)")


@dataclasses.dataclass(frozen=True)
class MultiLabelThreshOutput:
    threshold: float = setting(0.5, min=0.0, max=1.0)
    class_id_map_file: Optional[str] = setting(None)
    label_list: Optional[Tuple[str, ...]] = setting(None)


@dataclasses.dataclass(frozen=True)
class ThreshOutput:
    """PULC binary models: one score, label_1 when it reaches the threshold."""
    threshold: float = setting(0.5, min=0.0, max=1.0)
    label_0: str = setting("0")
    label_1: str = setting("1")


POSTPROCESS_OPS = {cls.__name__: cls for cls in (Topk, MultiLabelThreshOutput, ThreshOutput)}
# Entries of a PaddleClas PostProcess section that only its offline runner uses.
RUNNER_ONLY_POSTPROCESS = ("main_indicator", "SavePreLabel")


def parse_postprocess(section, where):
    """A PaddleClas PostProcess section, e.g. {'main_indicator': 'Topk', 'Topk': {...}}."""
    if not isinstance(section, dict):
        raise ParamsError(f"{where}: expected a mapping like {{'Topk': {{'topk': 5}}}}, got {section!r}")
    wanted = section.get("main_indicator")
    candidates = [k for k in section if k not in RUNNER_ONLY_POSTPROCESS]
    for key in candidates:
        if key not in POSTPROCESS_OPS:
            raise ParamsError(f"{where}: unknown postprocess {key!r}; supported: {', '.join(POSTPROCESS_OPS)}")
    if wanted is not None:
        if wanted not in section:
            raise ParamsError(f"{where}.main_indicator: {wanted!r} has no settings in this section")
        candidates = [wanted]
    if len(candidates) != 1:
        raise ParamsError(f"{where}: name exactly one of {', '.join(POSTPROCESS_OPS)} (or set main_indicator)")
    name = candidates[0]
    return parse(POSTPROCESS_OPS[name], section[name], f"{where}.{name}")
