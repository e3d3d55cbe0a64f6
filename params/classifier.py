"""Settings of the clas_system module: which model, its pre/post-processing, how it runs."""
import dataclasses
import os
from typing import Any, Optional, Tuple


from .common import (PREDICTOR_GLOBAL_KEYS, PredictorParams, ServingParams, merge, read_yaml_mapping,
                     resolve_path, split_overrides)
from .ops import MultiLabelThreshOutput, ThreshOutput, Topk, parse_ops, parse_postprocess
from .presets import CLASSIFIER_PRESETS
from .schema import ParamsError, parse, setting


@dataclasses.dataclass(frozen=True)
class ClassifierParams:
    """What a deployer writes in hubmodules/clas_system/params.py (validated as-is)."""
    preset: Optional[str] = setting("text_line_orientation", choices=tuple(CLASSIFIER_PRESETS) + (None,),
                                    doc="a built-in model; None to use model_dir / inference_config")
    model_dir: Optional[str] = setting(None, doc="Paddle inference folder or .onnx file (pkg:// allowed)")
    inference_config: Optional[str] = setting(None, doc="a PaddleClas inference_*.yaml, read as-is")
    preprocess: Optional[Tuple[Any, ...]] = setting(None, doc="PaddleClas transform_ops list")
    postprocess: Optional[dict] = setting(None, doc="PaddleClas PostProcess section, e.g. {'Topk': {'topk': 5}}")
    predictor: PredictorParams = setting(PredictorParams())
    serving: ServingParams = setting(ServingParams())


@dataclasses.dataclass(frozen=True)
class ClassifierSettings:
    """Everything resolved and checked: paths exist, ops parsed, labels read."""
    model_path: str
    preprocess: tuple
    postprocess: Any  # Topk | MultiLabelThreshOutput | ThreshOutput
    labels: Optional[Tuple[str, ...]]
    predictor: PredictorParams
    serving: ServingParams


# PaddleClas Global keys this package uses, and where they go; its other Global keys only
# drive PaddleClas's offline runner (infer_imgs, enable_benchmark, ...) and are ignored.
GLOBAL_KEYS = {
    "inference_model_dir": (None, "model_dir"),
    "batch_size": ("serving", "batch_size"),
    **PREDICTOR_GLOBAL_KEYS,
}


def read_inference_yaml(path):
    """A PaddleClas inference_*.yaml as a ClassifierParams-shaped dict (paths relative to it)."""
    config = read_yaml_mapping(path, "inference_config", "Global/PreProcess/PostProcess")
    out = {}
    for key, value in (config.get("Global") or {}).items():
        if key in GLOBAL_KEYS:
            section, name = GLOBAL_KEYS[key]
            if section is None:
                out[name] = value
            else:
                out.setdefault(section, {})[name] = value
    if "PreProcess" in config:
        out["preprocess"] = (config["PreProcess"] or {}).get("transform_ops")
    if "PostProcess" in config:
        out["postprocess"] = config["PostProcess"]
    return out


def read_label_file(path, where):
    """PaddleClas class_id_map_file: 'class_id label' per line; the label may contain spaces."""
    labels = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            class_id, _, label = line.partition(" ")
            if not class_id.isdigit():
                class_id, _, label = line.partition("\t")
            if not class_id.isdigit():
                raise ParamsError(f"{where}: line {number} of {path} does not start with a class id: {line!r}")
            labels[int(class_id)] = label.strip()
    if sorted(labels) != list(range(len(labels))):
        raise ParamsError(f"{where}: class ids in {path} are not 0..{len(labels) - 1} without gaps")
    return tuple(labels[i] for i in range(len(labels)))


def load_classifier_settings(module_params, overrides=None, where="clas_system"):
    """params.py dict (+ config.json init_args) -> ClassifierSettings, or ParamsError naming the key."""
    sections = {f.name: (f.type if dataclasses.is_dataclass(f.type) else None)
                for f in dataclasses.fields(ClassifierParams)}
    raw = merge(module_params or {}, split_overrides(overrides, sections))
    declared = parse(ClassifierParams, raw, where)

    base_dir = None
    if declared.preset is not None and declared.inference_config is not None:
        raise ParamsError(f"{where}.preset: set preset to None when using inference_config")
    given = {k: v for k, v in raw.items() if v is not None}
    if declared.preset is not None:
        layered = merge(CLASSIFIER_PRESETS[declared.preset], given)
    elif declared.inference_config is not None:
        yaml_path = resolve_path(declared.inference_config, f"{where}.inference_config", kind="file")
        base_dir = os.path.dirname(yaml_path)
        layered = merge(read_inference_yaml(yaml_path), given)
    else:
        layered = given
    full = parse(ClassifierParams, {**layered, "preset": declared.preset}, where)

    if full.model_dir is None:
        raise ParamsError(f"{where}.model_dir: no model given; set a preset, model_dir or inference_config")
    model_path = resolve_path(full.model_dir, f"{where}.model_dir", base_dir, kind="model path")
    if full.preprocess is None:
        raise ParamsError(f"{where}.preprocess: no preprocess ops given (and none from a preset or yaml)")
    preprocess = parse_ops(full.preprocess, f"{where}.preprocess")
    postprocess = parse_postprocess(full.postprocess or {"Topk": {}}, f"{where}.postprocess")
    labels = resolve_labels(postprocess, f"{where}.postprocess", base_dir)
    return ClassifierSettings(model_path=model_path, preprocess=preprocess, postprocess=postprocess,
                              labels=labels, predictor=full.predictor, serving=full.serving)


def resolve_labels(post, where, base_dir):
    if isinstance(post, ThreshOutput):
        return (post.label_0, post.label_1)
    if isinstance(post, (Topk, MultiLabelThreshOutput)):
        if post.label_list is not None:
            return tuple(str(label) for label in post.label_list)
        if post.class_id_map_file is not None:
            path = resolve_path(post.class_id_map_file, f"{where}.class_id_map_file", base_dir, kind="file")
            return read_label_file(path, f"{where}.class_id_map_file")
    return None
