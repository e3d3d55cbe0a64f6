"""The client is usable without the server's packages: importing it, and running clas-client up to
a server that does not answer, loads neither OpenCV, Pillow, PyYAML, Paddle nor OpenVINO."""
import json
import subprocess
import sys

from harness.payloads import REPO

SERVER_ONLY = ("cv2", "PIL", "yaml", "paddle", "openvino", "onnxruntime", "faiss", "paddlehub", "flask")
PROBE = f"""
import json, sys
from clas_system import Client, ServerUnreachable
from clas_system.client.cli import main
try:
    Client("http://127.0.0.1:9", retries=0).classify([b"not sent"])
except ServerUnreachable:
    pass
code = main(["gallery", "stats", "--url", "http://127.0.0.1:9", "--timeout", "1"])
print(json.dumps({{"code": code, "loaded": [m for m in {SERVER_ONLY!r} if m in sys.modules]}}))
"""


def test_client_and_cli_load_no_server_package():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome == {"code": 3, "loaded": []}  # 3: the server could not be used
