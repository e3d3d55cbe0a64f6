"""Mainbody detection: settings in, a detector out, either kind answering the same calls.

    detector = build_detector(load_detector_settings({}))   # the built-in saliency detector
    detector.detect_images([rgb_image])  # -> [[{"bbox": [x1, y1, x2, y2], "score", "label"}, ...]]

paddledet: a PaddleDetection export (PP-ShiTu's PicoDet); saliency: the built-in U²-Net-p
detector; boxes: what both do with their boxes.
"""
from params.detector import SaliencySettings

from ...ops.detect_preprocess import build_detect_preprocess
from ...runtime.batching import serving_batcher
from ...runtime.predictor import LazyPredictor
from .paddledet import Detector
from .saliency import build_saliency_detector


def build_detector(settings):
    """DetectorSettings -> Detector, or SaliencySettings -> the built-in SaliencyDetector. Checks
    the model files now; loads the model on first use."""
    if isinstance(settings, SaliencySettings):
        return build_saliency_detector(settings)
    return Detector(settings=settings,
                    predictor=LazyPredictor(settings.model_path, settings.predictor, settings.serving.batch_size),
                    preprocess=build_detect_preprocess(settings.preprocess))


def build_batcher(detector):
    """A DynamicBatcher merging concurrent requests' images into model batches."""
    return serving_batcher(detector.predict_inputs, detector.settings.serving)
