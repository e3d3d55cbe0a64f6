"""Boxes as both detectors give them: arrays [k, 6] of (class, score, x1, y1, x2, y2) in the
original image's pixels, best first, and the results a request gets from them."""
import numpy as np


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


class BoxResults:
    """What both detectors share: boxes -> results, with the settings' threshold and
    max_det_results unless a request gives its own."""

    def to_results(self, boxes, threshold=None, max_det_results=None):
        """predict_inputs's array for one image -> its list of {"bbox", "score", "label"}."""
        settings = self.settings
        return boxes_to_results(boxes, settings.labels, settings.threshold if threshold is None else threshold,
                                settings.max_det_results if max_det_results is None else max_det_results)

    def detect_images(self, images, threshold=None, max_det_results=None):
        """HWC RGB uint8 arrays -> one list of boxes per image, in batches of batch_size."""
        inputs = [self.preprocess(image) for image in images]
        size = self.settings.serving.batch_size
        boxes = [b for start in range(0, len(inputs), size) for b in self.predict_inputs(inputs[start:start + size])]
        return [self.to_results(b, threshold, max_det_results) for b in boxes]
