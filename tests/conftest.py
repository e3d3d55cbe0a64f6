"""Real servers for end-to-end tests: `hub serving start` in a subprocess on a free loopback port.

PaddleHub runs with HUB_HOME in a temporary folder and its telemetry server pointed at an
unused loopback address, so tests neither touch ~/.paddlehub nor try the network.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bench.soak import DEAD_TELEMETRY, free_port, hub_env

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "images"
HUB = str(Path(sys.executable).with_name("hub"))


def image_path(relative):
    return str(SHARED_IMAGES / relative)


def image_bytes(relative):
    return (SHARED_IMAGES / relative).read_bytes()


@pytest.fixture(scope="session")
def hub_home(tmp_path_factory):
    """A PaddleHub home with every module under hubmodules/ installed, as `make serve` does."""
    home = tmp_path_factory.mktemp("hub_home")
    env = hub_env(home)
    subprocess.run([HUB, "config", f"server=={DEAD_TELEMETRY}"], env=env, check=True, capture_output=True)
    for module_dir in sorted((REPO / "hubmodules").iterdir()):
        if (module_dir / "module.py").exists():
            done = subprocess.run([HUB, "install", str(module_dir)], env=env, capture_output=True, text=True)
            if done.returncode != 0 or "Successfully installed" not in done.stdout + done.stderr:
                pytest.fail(f"hub install {module_dir.name} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return home


class HubServer:
    def __init__(self, proc, port, log_path):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    def post(self, module, payload, **kwargs):
        return requests.post(f"{self.url}/predict/{module}", json=payload, timeout=120, **kwargs).json()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def launch(hub_home, workdir, modules=None, command=None, use_multiprocess=False, workers=2):
    """Start `hub serving start` (with -m for a plain module list, else -c config.json)."""
    port = free_port()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if command is None:
        config = {"modules_info": {name: {"init_args": {"version": "1.0.0", **init_args}, "predict_args": {}}
                                   for name, init_args in modules.items()},
                  "port": port, "use_multiprocess": use_multiprocess, "workers": workers}
        config_path = workdir / f"config_{port}.json"
        config_path.write_text(json.dumps(config))
        command = ["serving", "start", "-c", str(config_path)]
    else:
        command = [c.replace("{port}", str(port)) for c in command]
    log_path = workdir / f"server_{port}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([HUB, *command], env=hub_env(hub_home), stdout=log, stderr=subprocess.STDOUT,
                            cwd=workdir, start_new_session=True)
    return HubServer(proc, port, log_path)


def wait_ready(server, timeout=120):
    """Until the server answers HTTP; fails with the server's log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"hub serving exited with {server.proc.returncode}:\n{server.log()[-4000:]}")
        try:
            # /ready is ours; PaddleHub's own runner (request_threads 0) answers it 404
            if requests.get(f"{server.url}/ready", timeout=5).status_code != 503:
                return server
        except requests.RequestException:  # not listening yet, or workers still loading models
            pass
        time.sleep(0.3)
    server.stop()
    pytest.fail(f"hub serving did not answer within {timeout}s:\n{server.log()[-4000:]}")


def start_server(hub_home, workdir, modules=None, command=None, use_multiprocess=False, workers=2):
    return wait_ready(launch(hub_home, workdir, modules, command, use_multiprocess, workers))


def run_to_exit(hub_home, workdir, modules, timeout=120):
    """A server that is expected to refuse to start: (exit code, log)."""
    server = launch(hub_home, workdir, modules)
    try:
        server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.stop()
        pytest.fail(f"hub serving kept running; expected a start-up failure:\n{server.log()[-3000:]}")
    return server.proc.returncode, server.log()


@pytest.fixture(scope="session")
def server_factory(hub_home, tmp_path_factory):
    """start(modules=..., command=..., use_multiprocess=...) -> HubServer; all stopped at the end."""
    started = []
    workdir = tmp_path_factory.mktemp("servers")

    def start(**kwargs):
        server = start_server(hub_home, workdir, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def image_b64(relative):
    import base64
    return base64.b64encode(image_bytes(relative)).decode()
