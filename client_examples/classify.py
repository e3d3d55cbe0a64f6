"""Classify image files with a running clas_system.

    hub serving start -m clas_system          # in another shell
    python client_examples/classify.py ../shared/images/textline --top-k 2
"""
import argparse
import json

from clas_system import Client, ServerError
from clas_system.client.cli import expand_inputs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("--url", default="http://127.0.0.1:8866")
    parser.add_argument("--top-k", type=int, default=None)
    args = parser.parse_args()

    paths = [image.path for image in expand_inputs(args.paths)]
    try:
        results = Client(args.url).classify(paths, top_k=args.top_k)
    except ServerError as err:
        raise SystemExit(f"the server refused the request: {err.message}")
    for path, result in zip(paths, results):
        print(json.dumps({"file": path, **result}, ensure_ascii=False))


if __name__ == "__main__":
    main()
