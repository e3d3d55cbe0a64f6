"""det_system's requests, parsed and bounded here, then run on the detector:
{"images": [base64 image files], "threshold", "max_det_results"}."""
import functools
import time

from ..tasks.per_image import each_image
from .fields import check_fields, check_token, image_list, number, whole_number

DETECT_FIELDS = ("images", "threshold", "max_det_results")


def detect_request(detector, batcher, request, authorization=None):
    """-> {"prediction": [[{"bbox", "score", "label"}, ...] per image], "elapse": seconds}."""
    started = time.perf_counter()
    settings = detector.settings
    check_token(settings.serving, authorization)
    check_fields(request, DETECT_FIELDS)
    threshold = number(request, "threshold", settings.threshold, 0, 1)
    max_det_results = whole_number(request, "max_det_results", settings.max_det_results)
    images = image_list(request, settings.serving)
    boxes = batcher(functools.partial(each_image, images, detector.image_to_input))
    prediction = [detector.to_results(b, threshold, max_det_results) for b in boxes]
    return {"prediction": prediction, "elapse": time.perf_counter() - started}
