"""Speak PaddleClas's reference hubserving protocol: the client preprocesses and sends one
float32 NCHW batch as base64 with revert_params. Kept for clients written against PaddleClas's
own hub module; sending image files (classify.py) is ~6x fewer bytes and no client-side work.

    hub serving start -m clas_system
    python client_examples/reference_ndarray_protocol.py ../shared/images/textline/*.png
"""
import argparse

import numpy as np
import requests

from clas_system.client.encode import ndarray_to_b64
from clas_system.ops.decode import decode_image
from clas_system.ops.preprocess import build_preprocess, decode_settings
from params import load_classifier_settings


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--url", default="http://127.0.0.1:8866/predict/clas_system")
    parser.add_argument("--preset", default="text_line_orientation",
                        help="preprocess the way the served model expects (its params preset)")
    parser.add_argument("--top-k", type=int, default=1)
    args = parser.parse_args()

    settings = load_classifier_settings({"preset": args.preset})
    preprocess = build_preprocess(settings.preprocess)
    to_rgb, _ = decode_settings(settings.preprocess)
    batch = np.stack([preprocess(decode_image(open(p, "rb").read(), p, to_rgb=to_rgb)) for p in args.paths])
    images, revert_params = ndarray_to_b64(batch)
    body = requests.post(args.url, json={"images": images, "revert_params": revert_params, "top_k": args.top_k},
                         timeout=60).json()
    if body["status"] != "000":
        raise SystemExit(f"server error {body['status']}: {body['msg']}")
    for path, result in zip(args.paths, body["results"]["prediction"]):
        print(path, result["clas_ids"], result["scores"])


if __name__ == "__main__":
    main()
