"""The mainbody detection engine for PaddleDetection exports: settings in, a Detector out
(the built-in saliency detector, clas_system.saliency, is built here too).

    detector = build_detector(load_detector_settings({"model_dir": "picodet_PPLCNet_x2_5_mainbody"}))
    detector.detect_images([rgb_image])  # -> [[{"bbox": [x1, y1, x2, y2], "score", "label"}, ...]]

Same arithmetic as PaddleDetection's deploy/python/preprocess.py (cv2 resize by fx/fy, float32
normalisation, zero padding to the stride). The model divides its boxes by scale_factor, so they
come out in the original image's pixels; this engine clips them to the image and keeps the best.
"""
import dataclasses
import functools
import math
import time
from typing import Callable, Tuple

import cv2
import numpy as np

from params import detector as det_ops

from .batching import DynamicBatcher
from .codec import decode_image
from .predictor import LazyPredictor, ModelError
from .preprocess import PreprocessError
from .serving import RequestError, check_fields, check_token, image_list, positive_int, prepare_all

MODEL_INPUTS = ("image", "im_shape", "scale_factor")


@dataclasses.dataclass(frozen=True)
class DetectorInput:
    """One preprocessed image: what the model is fed, and the size its boxes are clipped to."""
    tensor: np.ndarray  # CHW float32
    im_shape: np.ndarray  # [height, width] after resizing, float32
    scale_factor: np.ndarray  # [scale_y, scale_x], float32
    image_size: Tuple[int, int]  # (height, width) of the original image


# ---- preprocess: each step maps (image, (im_shape, scale_factor)) to the same pair ----------

def resize_scales(op, height, width):
    """(scale_y, scale_x) as PaddleDetection's Resize.generate_scale."""
    target_h, target_w = op.target_size
    if not op.keep_ratio:
        return target_h / float(height), target_w / float(width)
    target_min, target_max = min(op.target_size), max(op.target_size)
    scale = float(target_min) / min(height, width)
    if np.round(scale * max(height, width)) > target_max:
        scale = float(target_max) / max(height, width)
    return scale, scale


def resize_step(op):
    def run(img, geometry):
        height, width = img.shape[:2]
        scale_y, scale_x = resize_scales(op, height, width)
        if round(height * scale_y) < 1 or round(width * scale_x) < 1:
            raise PreprocessError(f"image of {width}x{height} is too thin to resize to {op.target_size}")
        img = cv2.resize(img, None, None, fx=scale_x, fy=scale_y, interpolation=op.interp)
        _, (earlier_y, earlier_x) = geometry
        return img, (img.shape[:2], (earlier_y * scale_y, earlier_x * scale_x))
    return run


def normalize_step(op):
    mean = np.array(op.mean, np.float32).reshape(1, 1, 3)
    std = np.array(op.std, np.float32).reshape(1, 1, 3)

    def run(img, geometry):
        img = img.astype(np.float32)
        if op.is_scale:
            img *= np.float32(1.0 / 255.0)
        if op.norm_type == "mean_std":
            img = (img - mean) / std
        return img, geometry
    return run


def permute_step(_op):
    return lambda img, geometry: (img.transpose((2, 0, 1)), geometry)


def pad_stride_step(op):
    def run(img, geometry):
        if op.stride <= 0:
            return img, geometry
        channels, height, width = img.shape
        padded = np.zeros((channels, math.ceil(height / op.stride) * op.stride,
                           math.ceil(width / op.stride) * op.stride), np.float32)
        padded[:, :height, :width] = img
        return padded, geometry
    return run


STEP_BUILDERS = {
    det_ops.DetResize: resize_step,
    det_ops.DetNormalizeImage: normalize_step,
    det_ops.DetPermute: permute_step,
    det_ops.DetPadStride: pad_stride_step,
}


def build_preprocess(ops):
    """Typed detection ops -> callable HWC RGB uint8 image -> DetectorInput."""
    steps = [STEP_BUILDERS[type(op)](op) for op in ops]

    def preprocess(img):
        image_size = img.shape[:2]
        geometry = (image_size, (1.0, 1.0))
        for step in steps:
            img, geometry = step(img, geometry)
        im_shape, scale_factor = geometry
        return DetectorInput(tensor=np.ascontiguousarray(img, np.float32),
                             im_shape=np.array(im_shape, np.float32),
                             scale_factor=np.array(scale_factor, np.float32),
                             image_size=(int(image_size[0]), int(image_size[1])))
    return preprocess


# ---- model outputs -> boxes ------------------------------------------------------------------

def model_feeds(inputs, input_names):
    """Stack same-shaped DetectorInputs into the feeds this model asks for."""
    unknown = [name for name in input_names if name not in MODEL_INPUTS]
    if unknown:
        raise ModelError(f"detection model asks for input(s) {', '.join(unknown)}; "
                         f"a PaddleDetection export has {', '.join(MODEL_INPUTS)}")
    feeds = {"image": np.stack([item.tensor for item in inputs]),
             "im_shape": np.stack([item.im_shape for item in inputs]),
             "scale_factor": np.stack([item.scale_factor for item in inputs])}
    return {name: feeds[name] for name in input_names}


def split_per_image(outputs, batch_size):
    """PaddleDetection outputs (boxes [M, 6], boxes_num [N], ...) -> N arrays [k, 6]."""
    if len(outputs) < 2:
        raise ModelError("detection model must output boxes [M, 6] and boxes_num [N]")
    boxes, boxes_num = outputs[0], np.asarray(outputs[1]).reshape(-1)
    if boxes.ndim != 2 or boxes.shape[1] != 6 or len(boxes_num) != batch_size or boxes_num.sum() > len(boxes):
        raise ModelError(f"detection model output boxes {list(boxes.shape)} and boxes_num {boxes_num.tolist()} "
                         f"for {batch_size} images; expected [M, 6] (class, score, x1, y1, x2, y2) and [N]")
    return np.split(boxes[:int(boxes_num.sum())], np.cumsum(boxes_num)[:-1])


def clip_and_sort(boxes, image_size):
    """Boxes clipped to the image, best first, without PaddleDetection's class -1 placeholder
    (what it returns when nothing is found) and without boxes left empty by clipping."""
    height, width = image_size
    boxes = boxes.astype(np.float32)
    boxes[:, [2, 4]] = boxes[:, [2, 4]].clip(0, width)
    boxes[:, [3, 5]] = boxes[:, [3, 5]].clip(0, height)
    keep = (boxes[:, 0] >= 0) & (boxes[:, 4] > boxes[:, 2]) & (boxes[:, 5] > boxes[:, 3])
    boxes = boxes[keep]
    return boxes[np.argsort(-boxes[:, 1], kind="stable")]


def boxes_to_results(boxes, labels, threshold, max_det_results):
    """Sorted boxes [k, 6] -> [{"bbox", "score", "label"}], score >= threshold, at most max_det_results."""
    results = []
    for class_id, score, x1, y1, x2, y2 in boxes[boxes[:, 1] >= threshold][:max_det_results].tolist():
        class_id = int(class_id)
        results.append({"bbox": [x1, y1, x2, y2], "score": score,
                        "label": labels[class_id] if class_id < len(labels) else str(class_id)})
    return results


@dataclasses.dataclass(frozen=True)
class Detector:
    settings: object  # params.detector.DetectorSettings
    predictor: LazyPredictor
    preprocess: Callable  # HWC RGB uint8 image -> DetectorInput

    def image_to_input(self, data, where="image"):
        """Encoded image bytes -> DetectorInput. Always decoded at full size: boxes are in its pixels."""
        image = decode_image(data, where, max_pixels=self.settings.serving.max_image_pixels)
        return self.preprocess(image)

    def predict_inputs(self, inputs):
        """DetectorInputs -> one array [k, 6] per input: boxes in original pixels, clipped, best
        first. The batch function for DynamicBatcher: same-shaped inputs run as one batch."""
        by_shape = {}
        for index, item in enumerate(inputs):
            by_shape.setdefault(item.tensor.shape, []).append(index)
        results = [None] * len(inputs)
        for indices in by_shape.values():
            group = [inputs[i] for i in indices]
            outputs = self.predictor.run(model_feeds(group, self.predictor.input_names))
            for index, boxes in zip(indices, split_per_image(outputs, len(group))):
                results[index] = clip_and_sort(boxes, inputs[index].image_size)
        return results

    def to_results(self, boxes, threshold=None, max_det_results=None):
        """predict_inputs's array for one image -> its list of {"bbox", "score", "label"}."""
        threshold = self.settings.threshold if threshold is None else threshold
        max_det_results = self.settings.max_det_results if max_det_results is None else max_det_results
        return boxes_to_results(boxes, self.settings.labels, threshold, max_det_results)

    def detect_images(self, images, threshold=None, max_det_results=None):
        """HWC RGB uint8 arrays -> one list of boxes per image, in batches of batch_size."""
        inputs = [self.preprocess(image) for image in images]
        size = self.settings.serving.batch_size
        boxes = [b for start in range(0, len(inputs), size) for b in self.predict_inputs(inputs[start:start + size])]
        return [self.to_results(b, threshold, max_det_results) for b in boxes]


def build_detector(settings):
    """DetectorSettings -> Detector, or SaliencySettings -> the built-in SaliencyDetector. Checks
    the model files now; loads the model on first use."""
    if isinstance(settings, det_ops.SaliencySettings):
        from .saliency import build_saliency_detector  # saliency builds on this module's box helpers

        return build_saliency_detector(settings)
    return Detector(settings=settings,
                    predictor=LazyPredictor(settings.model_path, settings.predictor, settings.serving.batch_size),
                    preprocess=build_preprocess(settings.preprocess))


def build_batcher(detector):
    """A DynamicBatcher merging concurrent requests' images into model batches."""
    serving = detector.settings.serving
    return DynamicBatcher(detector.predict_inputs, serving.batch_size, serving.batch_wait_ms / 1000.0)


def score_threshold(request, default):
    value = request.get("threshold", default)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise RequestError(f"threshold: expected a number from 0 to 1, got {value!r}")
    return float(value)


def detect_request(detector, batcher, request, authorization=None):
    """A det_system request {"images": [base64 image files], "threshold", "max_det_results"}
    -> {"prediction": [[{"bbox", "score", "label"}, ...] per image], "elapse": seconds}."""
    started = time.perf_counter()
    serving = detector.settings.serving
    check_token(serving, authorization)
    check_fields(request, ("images", "threshold", "max_det_results"))
    threshold = score_threshold(request, detector.settings.threshold)
    max_det_results = positive_int(request, "max_det_results", detector.settings.max_det_results, maximum=1000)
    images = image_list(request, serving)
    boxes = batcher(functools.partial(prepare_all, images, detector.image_to_input))
    prediction = [detector.to_results(b, threshold, max_det_results) for b in boxes]
    return {"prediction": prediction, "elapse": time.perf_counter() - started}
