"""rec_system: PP-ShiTu image recognition behind `hub serving start -m rec_system`.

Glue only; the engine lives in `clas_system.recognition`, the settings in params.py. One
process only: the gallery is live state (see clas_system.recognition.check_process).
"""
from paddlehub.module.module import moduleinfo, serving

from clas_system.codec import read_image_bytes
from clas_system.hubserving import current_authorization, install_concurrent_runners
from clas_system.recognition import build_recognizer, recognition_request
from params.recognition import load_recognition_settings

from .params import PARAMS


@moduleinfo(
    name="rec_system",
    version="1.0.0",
    summary="PP-ShiTu image recognition: mainbody detection, feature extraction, live gallery search",
    author="paddleclas-serving",
    author_email="",
    type="cv/image_recognition",
)
class RecSystem:
    def __init__(self, **init_args):
        settings = load_recognition_settings(PARAMS, init_args)
        self.recognizer = build_recognizer(settings)
        install_concurrent_runners(settings.serving)

    def predict(self, images):
        """Python API: image paths, bytes, numpy arrays (RGB) or PIL images -> recognised regions per image."""
        return self.recognizer.recognize([read_image_bytes(image) for image in images])

    @serving
    def serving_method(self, **request):
        return recognition_request(self.recognizer, request, current_authorization())
