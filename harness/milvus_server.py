"""A standalone Milvus Lite server for tests and CI, started as a real Milvus server runs.

    python -m harness.milvus_server --data-dir /tmp/milvus --port 0   # prints its URI, serves until killed

Milvus Lite locks its data file to one process, but `milvus-lite` also runs as a standalone
server speaking Milvus's gRPC protocol; every rec_system worker and server then connects to
http://127.0.0.1:PORT like to a Milvus cluster. Tests use the `milvus_uri` fixture (conftest):
the server named by $CLAS_MILVUS_URI when set (CI starts one), else one started for the session.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .ports import free_port

READY_TIMEOUT_S = 60


def start_milvus_server(data_dir, port, log_path):
    """A Milvus Lite server process on 127.0.0.1:port, answering once this returns."""
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    wait_until_answering(uri, proc, log_path)
    return proc, uri


def wait_until_answering(uri, proc, log_path):
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Milvus Lite server exited with {proc.returncode}:\n"
                               f"{Path(log_path).read_text()[-3000:]}")
        try:
            MilvusClient(uri=uri, timeout=2).close()
            return
        except MilvusException:
            time.sleep(0.3)
    stop_milvus_server(proc)
    raise RuntimeError(f"Milvus Lite server at {uri} did not answer within {READY_TIMEOUT_S}s")


def stop_milvus_server(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run a standalone Milvus Lite server until killed.")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, default=19530, help="0: a free one")
    parser.add_argument("--log", default=None, help="server log file (default: <data-dir>.log)")
    options = parser.parse_args(argv)
    port = options.port or free_port()
    proc, uri = start_milvus_server(options.data_dir, port, options.log or f"{options.data_dir}.log")
    print(uri, flush=True)  # once it answers: scripts wait for this line

    def forward(signum, _frame):
        # only signal here: waiting would deadlock with the proc.wait() this interrupts
        os.killpg(proc.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    proc.wait()


if __name__ == "__main__":
    main()
