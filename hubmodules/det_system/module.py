"""det_system: mainbody detection (built-in U²-Net-p saliency, or a PaddleDetection export) behind
`hub serving start -m det_system`.

Glue only; the engine lives in `clas_system.tasks.detect`, the settings in params.py.
"""
from paddlehub.module.module import moduleinfo, serving

from clas_system.client.encode import read_image_bytes
from clas_system.ops.decode import blank_image, decode_image
from clas_system.serving.detect import detect_request
from clas_system.serving.http_app import current_authorization
from clas_system.serving.hubserving import install_concurrent_runners
from clas_system.serving.startup import exit_on_startup_error
from clas_system.tasks.detect import build_batcher, build_detector
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
        with exit_on_startup_error("det_system"):
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
