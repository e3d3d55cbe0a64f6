"""clas_system: PaddleClas image classification behind `hub serving start -m clas_system`.

Glue only; the engine lives in the `clas_system` package, the settings in params.py.
"""
from paddlehub.module.module import moduleinfo, serving

from clas_system.classifier import build_batcher, build_classifier
from clas_system.codec import blank_image, read_image_bytes
from clas_system.hubserving import current_authorization, install_concurrent_runners
from clas_system.model_checks import check_classifier_fits
from clas_system.serving import classify_request
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
