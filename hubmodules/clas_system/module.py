"""clas_system: PaddleClas image classification behind `hub serving start -m clas_system`.

Glue only; the engine lives in the `clas_system` package, the settings in params.py.
"""
from paddlehub.module.module import moduleinfo, serving

from clas_system.client.encode import read_image_bytes
from clas_system.ops.decode import blank_image
from clas_system.serving.classify import classify_request
from clas_system.serving.http_app import current_authorization
from clas_system.serving.hubserving import install_concurrent_runners
from clas_system.serving.startup import exit_on_startup_error
from clas_system.tasks.classify import build_batcher, build_classifier, check_classifier_fits
from params import load_classifier_settings

from .params import PARAMS


@moduleinfo(
    name="clas_system",
    version="1.0.0",
    summary="PaddleClas image classification (PaddleClas-compatible pre/post-processing)",
    author="paddleclas-serving",
    author_email="",
    type="cv/classification",
)
class ClasSystem:
    def __init__(self, **init_args):
        with exit_on_startup_error("clas_system"):
            settings = load_classifier_settings(PARAMS, init_args)
            self.classifier = build_classifier(settings)
            check_classifier_fits(self.classifier)
        self.batcher = build_batcher(self.classifier)
        install_concurrent_runners(settings.serving)

    def predict(self, images, top_k=None):
        """Python API: image paths, bytes, numpy arrays or PIL images -> results."""
        return self.classifier.classify([read_image_bytes(image) for image in images], top_k)

    def serve_request(self, request):
        """What `POST /predict/clas_system` runs (our HTTP front calls it with the JSON object)."""
        return classify_request(self.classifier, self.batcher, request, current_authorization())

    def warm_up(self):
        """Load the model in this process (each gunicorn worker) before /ready says so."""
        self.classifier.classify([blank_image()])

    @serving
    def serving_method(self, **request):
        return self.serve_request(request)
