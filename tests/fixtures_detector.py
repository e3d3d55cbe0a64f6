"""A generated stand-in for a PaddleDetection mainbody detector.

No real mainbody detector can be had offline, so the tests export a tiny Paddle inference model
with PaddleDetection's I/O signature instead: inputs `image` [N, 3, H, W], `im_shape` [N, 2] and
`scale_factor` [N, 2]; outputs boxes [M, 6] (class, score, x1, y1, x2, y2) and boxes_num [N].
Every image gets the same FIXTURE_BOXES: fixed fractions of the network input (read from
im_shape), divided by scale_factor as PaddleDetection's exported models do, so each box lands at
a known place in the original image's pixels. One box reaches past the right edge (clipping),
scores are fixed and descending (thresholding and max_det_results).

The export runs in a child process because Paddle picks its program format when it is imported:
"pdmodel" (inference.pdmodel, as the released PP-ShiTu mainbody detector ships) or "json"
(inference.json, what Paddle 3 writes by default under PIR).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

TARGET_SIZE = 320
LABELS = ["foreground", "logo"]
# (class id, score, x1, y1, x2, y2) in the resized TARGET_SIZE x TARGET_SIZE input's pixels.
FIXTURE_BOXES = (
    (0, 0.95, 32.0, 48.0, 288.0, 272.0),
    (0, 0.80, 160.0, 16.0, 352.0, 200.0),  # past the right edge
    (1, 0.60, 8.0, 8.0, 96.0, 120.0),
    (0, 0.40, 100.0, 150.0, 220.0, 310.0),
    (1, 0.15, 0.0, 0.0, 320.0, 320.0),
    (0, 0.05, 50.0, 50.0, 60.0, 60.0),
)
INFER_CFG = {
    "mode": "paddle",
    "arch": "PicoDet",
    "Preprocess": [
        {"type": "Resize", "target_size": [TARGET_SIZE, TARGET_SIZE], "keep_ratio": False, "interp": 2},
        {"type": "NormalizeImage", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
         "is_scale": True},
        {"type": "Permute"},
    ],
    "label_list": LABELS,
}


def fixture_layer():
    import paddle

    class FixtureDetector(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            boxes = np.array(FIXTURE_BOXES, np.float32)
            self.register_buffer("class_score", paddle.to_tensor(boxes[:, :2]))
            self.register_buffer("fractions", paddle.to_tensor(boxes[:, 2:] / TARGET_SIZE))

        def forward(self, image, im_shape, scale_factor):
            height, width = im_shape[:, 0:1], im_shape[:, 1:2]
            scale_y, scale_x = scale_factor[:, 0:1], scale_factor[:, 1:2]
            per_coord = paddle.concat([width / scale_x, height / scale_y] * 2, axis=1)  # [N, 4]
            corners = self.fractions.unsqueeze(0) * per_coord.unsqueeze(1)  # [N, K, 4]
            head = self.class_score.unsqueeze(0) + paddle.zeros_like(corners[:, :, :2])
            boxes = paddle.concat([head, corners], axis=2).reshape([-1, 6])
            images_in_batch = paddle.zeros_like(image[:, 0, 0, 0], dtype="int32")
            return boxes, images_in_batch + len(FIXTURE_BOXES)

    return FixtureDetector()


def save_fixture_model(directory):
    """inference.* files of the fixture detector, in the format this process's Paddle writes."""
    import paddle
    from paddle.static import InputSpec

    layer = fixture_layer()
    layer.eval()
    paddle.jit.save(layer, str(Path(directory) / "inference"), input_spec=[
        InputSpec([-1, 3, -1, -1], "float32", name="image"),
        InputSpec([-1, 2], "float32", name="im_shape"),
        InputSpec([-1, 2], "float32", name="scale_factor"),
    ])


def export_fixture_detector(directory, program_format="pdmodel"):
    """Write inference.<pdmodel|json> + inference.pdiparams + infer_cfg.yml into `directory`.

    Returns {"target_size", "label_list", "boxes"}: boxes as FIXTURE_BOXES, in the resized
    input's pixels; divide x by target/width and y by target/height for original pixels."""
    if program_format not in ("pdmodel", "json"):
        raise ValueError(f"program_format: 'pdmodel' or 'json', got {program_format!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, FLAGS_enable_pir_api="1" if program_format == "json" else "0")
    subprocess.run([sys.executable, __file__, str(directory)], env=env, check=True)
    (directory / "infer_cfg.yml").write_text(yaml.safe_dump(INFER_CFG, sort_keys=False))
    return {"target_size": (TARGET_SIZE, TARGET_SIZE), "label_list": list(LABELS),
            "boxes": [list(box) for box in FIXTURE_BOXES]}


if __name__ == "__main__":
    save_fixture_model(sys.argv[1])
