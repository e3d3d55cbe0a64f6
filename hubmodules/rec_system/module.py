"""rec_system: PP-ShiTu image recognition behind `hub serving start -m rec_system`.

Glue only; the engine lives in `clas_system.tasks.recognition`, the settings in params.py. Works
under --use_multiprocess: the workers share the gallery (see clas_system.gallery).
"""
import dataclasses

from paddlehub.module.module import moduleinfo, serving

from clas_system.client.encode import read_image_bytes
from clas_system.errors import GalleryError
from clas_system.ops.decode import blank_image
from clas_system.serving.http_app import current_authorization
from clas_system.serving.hubserving import install_concurrent_runners
from clas_system.serving.recognition import recognition_request
from clas_system.serving.startup import exit_on_startup_error
from clas_system.tasks.recognition import build_recognizer
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
        with exit_on_startup_error("rec_system"):
            settings = load_recognition_settings(PARAMS, init_args)
            self.recognizer = build_recognizer(settings)
        install_concurrent_runners(settings.serving)

    def predict(self, images):
        """Python API: image paths, bytes, numpy arrays (RGB) or PIL images -> recognised regions per image."""
        return self.recognizer.recognize([read_image_bytes(image) for image in images])

    def serve_request(self, request):
        """What `POST /predict/rec_system` runs (our HTTP front calls it with the JSON object)."""
        return recognition_request(self.recognizer, request, current_authorization())

    def warm_up(self):
        """Load the models in this process (each gunicorn worker) before it serves (the blank image
        is not offered to the review queue)."""
        dataclasses.replace(self.recognizer, review=None).recognize([blank_image()])

    def readiness(self):
        """Ready while the gallery answers (a Milvus server may be down); the threshold in use."""
        gallery = self.recognizer.gallery
        try:
            return {"ready": True, "gallery": gallery.describe(), "items": gallery.count(),
                    "calibration": self.recognizer.calibration_state()}
        except GalleryError as err:
            return {"ready": False, "gallery": gallery.describe(), "error": str(err)}

    def close(self):
        """On a graceful stop: the gallery closes its log."""
        self.recognizer.gallery.close()

    @serving
    def serving_method(self, **request):
        return self.serve_request(request)
