"""The detector for PaddleDetection exports (PP-ShiTu's PicoDet mainbody detector).

The model divides its boxes by scale_factor, so they come out in the original image's pixels;
this detector clips them to the image and keeps the best.
"""
import dataclasses
from typing import Callable

import numpy as np

from ...errors import ModelError
from ...ops.decode import decode_image
from ...runtime.predictor import LazyPredictor
from .boxes import BoxResults, clip_and_sort

MODEL_INPUTS = ("image", "im_shape", "scale_factor")


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


@dataclasses.dataclass(frozen=True)
class Detector(BoxResults):
    settings: object  # params.detector.DetectorSettings
    predictor: LazyPredictor
    preprocess: Callable  # HWC RGB uint8 image -> DetectorInput

    def image_to_input(self, data, where=None):
        """Encoded image bytes -> DetectorInput. Always decoded at full size: boxes are in its pixels."""
        return self.preprocess(decode_image(data, where, max_pixels=self.settings.serving.max_image_pixels))

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
