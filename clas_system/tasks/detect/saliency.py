"""The built-in mainbody detector: U²-Net-p salient-object segmentation turned into boxes.

    detector = build_saliency_detector(load_detector_settings({}))
    detector.detect_images([rgb_image])  # -> [[{"bbox": [x1, y1, x2, y2], "score", "label"}, ...]]

Like PP-ShiTu's mainbody detector it is class-agnostic: it finds what stands out. The model
(rembg's u2netp.onnx, derived to take any size) takes one square RGB image (saliency.input_size:
256 by default; it was trained at 320) scaled by its own maximum and normalised with ImageNet
mean/std; its first output is the saliency map. The map is min-max normalised,
thresholded at mask_threshold, split into connected regions (those under min_area of the image
dropped), and each region becomes a box in original pixels scored by its mean saliency.
It answers the same calls as the PaddleDetection Detector, so det_system and the recognizer
use either.
"""
import dataclasses
from typing import Tuple

import cv2
import numpy as np

from ...errors import ModelError
from ...ops.decode import decode_image
from ...runtime.derived_models import prepare_derived_model
from ...runtime.predictor import LazyPredictor
from .boxes import BoxResults

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclasses.dataclass(frozen=True)
class SaliencyInput:
    tensor: np.ndarray  # [3, side, side] float32
    image_size: Tuple[int, int]  # (height, width) of the original image


def preprocess(image, side):
    """HWC RGB uint8 image -> SaliencyInput for a side x side map."""
    resized = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    resized /= max(float(resized.max()), 1e-6)
    tensor = ((resized - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return SaliencyInput(tensor=np.ascontiguousarray(tensor, np.float32), image_size=tuple(image.shape[:2]))


def normalised_map(saliency, side):
    """The model's side x side map, min-max normalised to [0, 1] (a flat map becomes all zeros)."""
    saliency = np.asarray(saliency, np.float32).reshape(side, side)
    low, high = float(saliency.min()), float(saliency.max())
    return (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)


def saliency_boxes(saliency, image_size, mask_threshold, min_area):
    """A normalised square map -> boxes [k, 6] (class 0, mean saliency, x1, y1, x2, y2) in the
    original image's pixels, best first."""
    side = saliency.shape[0]
    mask = (saliency >= mask_threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    height, width = image_size
    scale_x, scale_y = width / side, height / side
    rows = []
    for region in range(1, count):
        left, top, region_w, region_h, area = stats[region]
        if area < min_area * side * side:
            continue
        score = float(saliency[labels == region].mean())
        rows.append([0.0, score, left * scale_x, top * scale_y,
                     min((left + region_w) * scale_x, width), min((top + region_h) * scale_y, height)])
    boxes = np.array(rows, np.float32).reshape(-1, 6)
    return boxes[np.argsort(-boxes[:, 1], kind="stable")]


@dataclasses.dataclass(frozen=True)
class SaliencyDetector(BoxResults):
    settings: object  # params.detector.SaliencySettings
    predictor: LazyPredictor

    def preprocess(self, image):
        return preprocess(image, self.settings.input_size)

    def image_to_input(self, data, where=None):
        """Encoded image bytes -> SaliencyInput. Decoded at full size: boxes are in its pixels."""
        return self.preprocess(decode_image(data, where, max_pixels=self.settings.serving.max_image_pixels))

    def predict_inputs(self, inputs):
        """SaliencyInputs -> one array [k, 6] per input. The model takes one image per run."""
        name = self.predictor.input_names[0]
        side = self.settings.input_size
        results = []
        for item in inputs:
            outputs = self.predictor.run({name: item.tensor[None]})
            if not outputs or np.asarray(outputs[0]).size != side * side:
                raise ModelError(f"{self.settings.model_path}: expected a {side}x{side} saliency map "
                                 f"as the first output")
            results.append(saliency_boxes(normalised_map(outputs[0], side), item.image_size,
                                          self.settings.mask_threshold, self.settings.min_area))
        return results


def build_saliency_detector(settings):
    """SaliencySettings -> SaliencyDetector: the model derived now if its cache lacks it, loaded
    on first use."""
    prepare_derived_model(settings.derived_from)
    return SaliencyDetector(settings=settings, predictor=LazyPredictor(settings.model_path, settings.predictor, 1))
