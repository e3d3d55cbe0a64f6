"""The one launcher of `hub serving start`, for the tests and the bench alike.

    install_hub_modules(hub_home)                       # what `make serve` installs, into a temp HUB_HOME
    server = start_hub_server(hub_home, workdir, modules={"clas_system": {"batch_size": 4}})
    server.post("clas_system", {"images": [...]})
    server.stop()                                       # SIGTERM to the whole process group, then SIGKILL

A server runs in its own process group (session), with HUB_HOME set and PaddleHub's telemetry
pointed at an unused loopback address, so nothing touches ~/.paddlehub or the network. It is
ready when /ready answers anything but 503 (ours says 200 once every module is warmed up;
PaddleHub's own runners and PaddleClas's module have no /ready and answer 404).
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from .ports import free_port

REPO = Path(__file__).resolve().parents[1]
HUB_MODULES = REPO / "hubmodules"
HUB = str(Path(sys.executable).with_name("hub"))
DEAD_TELEMETRY = "http://127.0.0.1:9/paddlehub"
STOP_GRACE_S = 20


class HubServerError(RuntimeError):
    """The server exited, or did not get ready in time; the message ends with its log."""


def hub_env(hub_home, **extra):
    env = dict(os.environ, HUB_HOME=str(hub_home), PYTHONUNBUFFERED="1", **extra)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def install_hub_modules(hub_home, module_dirs=None, hub=HUB, env=None, cwd=None):
    """`hub install` each module folder (default: every one under hubmodules/) into hub_home."""
    env = env or hub_env(hub_home)
    module_dirs = module_dirs or sorted(d for d in HUB_MODULES.iterdir() if (d / "module.py").exists())
    subprocess.run([hub, "config", f"server=={DEAD_TELEMETRY}"], env=env, cwd=cwd, check=True, capture_output=True)
    for module_dir in module_dirs:
        done = subprocess.run([hub, "install", str(module_dir)], env=env, cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0 or "Successfully installed" not in done.stdout + done.stderr:
            raise HubServerError(f"hub install {Path(module_dir).name} failed:\n{done.stdout[-3000:]}"
                                 f"{done.stderr[-3000:]}")


def serving_config(modules, port, use_multiprocess=False, workers=2):
    """config.json for `hub serving start -c`: each module's init_args (version 1.0.0 unless given)."""
    return {"modules_info": {name: {"init_args": {"version": "1.0.0", **init_args}, "predict_args": {}}
                             for name, init_args in modules.items()},
            "port": port, "use_multiprocess": use_multiprocess, "workers": workers}


def user_command(module):
    """The command a user types to serve one module with its params.py: `hub serving start -m`."""
    return ["serving", "start", "-m", module, "-p", "{port}"]


class HubServer:
    """A running `hub serving start`: its process (the leader of its process group), port and log."""

    def __init__(self, proc, port, log_path):
        self.proc = proc
        self.pgid = proc.pid
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(log_path)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def predict_url(self, module):
        return f"{self.url}/predict/{module}"

    def post(self, module, payload, **kwargs):
        """The JSON answer to one request (requests' keyword arguments, e.g. headers, pass on)."""
        return requests.post(self.predict_url(module), json=payload, timeout=kwargs.pop("timeout", 120),
                             **kwargs).json()

    def post_body(self, module, body, timeout=60, content_type="application/json"):
        """The JSON answer to pre-encoded body bytes, over a plain connection (no client library)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request("POST", f"/predict/{module}", body, {"Content-Type": content_type})
        return json.loads(conn.getresponse().read())

    def wait_ready(self, timeout_s=180):
        """Until /ready answers anything but 503; HubServerError (after stopping it) when the
        server exits first or the time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise HubServerError(f"hub serving exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.url}/ready", timeout=5).status_code != 503:
                    return self
            except requests.RequestException:  # not listening yet, or workers still loading models
                pass
            time.sleep(0.3)
        self.stop()
        raise HubServerError(f"hub serving did not get ready within {timeout_s} s:\n{self.log()[-4000:]}")

    def wait_exit(self, timeout_s=120):
        """A server expected to refuse to start: its exit code; HubServerError when it keeps running."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise HubServerError(f"hub serving kept running; expected it to stop:\n{self.log()[-3000:]}") from None

    def stop(self, sig=signal.SIGTERM):
        """`sig` to the whole process group; SIGKILL if it has not exited within STOP_GRACE_S."""
        if not self.alive():
            return
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.pgid, signal.SIGKILL)
            self.proc.wait()


def launch_hub_server(hub_home, workdir, modules=None, command=None, use_multiprocess=False, workers=2,
                      hub=HUB, env=None, cwd=None, config=None, port=None):
    """Start `hub serving start` on a free loopback port (or `port`, e.g. a replica restarted where
    its balancer expects it): with -c config.json for `modules` ({name: init_args}) or a whole
    `config` (its port replaced), or as `command` (its "{port}" replaced), e.g.
    user_command("clas_system"). Returns at once (see wait_ready); the log is appended to."""
    port = port or free_port()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if command is None:
        config = {**config, "port": port} if config else serving_config(modules, port, use_multiprocess, workers)
        config_path = workdir / f"config_{port}.json"
        config_path.write_text(json.dumps(config))
        command = ["serving", "start", "-c", str(config_path)]
    else:
        command = [part.replace("{port}", str(port)) for part in command]
    log_path = workdir / f"server_{port}.log"
    with open(log_path, "a") as log:
        proc = subprocess.Popen([hub, *command], env=env or hub_env(hub_home), stdout=log, stderr=subprocess.STDOUT,
                                cwd=cwd or workdir, start_new_session=True)
    return HubServer(proc, port, log_path)


def start_hub_server(hub_home, workdir, timeout_s=180, **options):
    """launch_hub_server, then wait until it is ready."""
    return launch_hub_server(hub_home, workdir, **options).wait_ready(timeout_s)
