"""det_system: mainbody detection (built-in U²-Net-p saliency, or a PaddleDetection export) behind
`hub serving start -m det_system`.

Glue only; the engine lives in `clas_system.detection`, the settings in params.py.
"""
from paddlehub.module.module import moduleinfo, serving

from clas_system.codec import blank_image, decode_image, read_image_bytes
from clas_system.detection import build_batcher, build_detector, detect_request
from clas_system.hubserving import current_authorization, install_concurrent_runners
from params.detector import load_detector_settings

from .params import PARAMS


@moduleinfo(
    name="det_system",
    version="1.0.0",
    summary="Mainbody detection (U²-Net-p saliency or a PaddleDetection export, PP-ShiTu's first stage)",
    author="paddleclas-serving",
    author_email="",
    type="cv/object_detection",
)
class DetSystem:
    def __init__(self, **init_args):
        settings = load_detector_settings(PARAMS, init_args)
        self.detector = build_detector(settings)
        self.batcher = build_batcher(self.detector)
        install_concurrent_runners(settings.serving)

    def predict(self, images, threshold=None, max_det_results=None):
        """Python API: image paths, bytes, numpy arrays (RGB) or PIL images -> boxes per image."""
        arrays = [decode_image(read_image_bytes(image), f"images[{i}]") for i, image in enumerate(images)]
        return self.detector.detect_images(arrays, threshold, max_det_results)

    def serve_request(self, request):
        """What `POST /predict/det_system` runs (our HTTP front calls it with the JSON object)."""
        return detect_request(self.detector, self.batcher, request, current_authorization())

    def warm_up(self):
        """Load the model in this process (each gunicorn worker) before it serves."""
        self.detector.detect_images([decode_image(blank_image())])

    @serving
    def serving_method(self, **request):
        return self.serve_request(request)
