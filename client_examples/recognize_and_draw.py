"""Recognise products with a running rec_system and save each image with its boxes, labels and
scores drawn (Chinese labels need a CJK font: apt-get install fonts-wqy-microhei).

    hub serving start -m rec_system           # in another shell, with a gallery
    python client_examples/recognize_and_draw.py ../shared/images/drink --out drawn/
"""
import argparse
import json
from pathlib import Path

from clas_system import Client, ServerError
from clas_system.client.cli import expand_inputs
from clas_system.client.visualize import save_result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="image files, folders or globs")
    parser.add_argument("--url", default="http://127.0.0.1:8866")
    parser.add_argument("--out", default="drawn", help="folder for the result pictures")
    args = parser.parse_args()

    images = expand_inputs(args.paths)
    try:
        results = Client(args.url).recognize([image.path for image in images])
    except ServerError as err:
        raise SystemExit(f"the server refused the request: {err.message}")
    for image, regions in zip(images, results):
        target = Path(args.out) / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        save_result(image.path, regions, target)
        print(json.dumps({"file": image.path, "picture": str(target), "regions": regions}, ensure_ascii=False))


if __name__ == "__main__":
    main()
