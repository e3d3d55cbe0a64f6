"""PaddleHub integration: our HTTP front under the user's own `hub serving start`.

PaddleHub serves one request at a time per process: `-m` runs Flask with threaded=False and
`--use_multiprocess` runs gunicorn *sync* workers. `hub serving start` builds the modules first
and only then looks up its runner (`app_compat.run`, or `StandaloneApplication` for gunicorn),
so a module can swap in a runner that serves the same modules through `http_app.ServingApp`
on uvicorn:

- `-m`: one process, uvicorn bound to params `serving.host`;
- `--use_multiprocess`: gunicorn forks `workers` processes, each running uvicorn (ServingWorker).

Both stop gracefully on SIGTERM: no new connections, in-flight requests finish within
`serving.graceful_stop_s`, then every module's `close()` runs (the gallery flushes its log).
`request_threads: 0` in params leaves PaddleHub's runners untouched.
"""
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import sys
import threading
import time

from ..runtime.predictor import SERVING_PROCESSES_ENV
from . import webui
from .http_app import HttpLimits, ServingApp, own_method
from .metrics_dir import remove_metrics_dir, use_fresh_metrics_dir
from .open_inference import OpenInferenceFront

log = logging.getLogger("clas_system")

_installed = {}


M_ARENA_MAX = -8  # glibc mallopt parameter
TRIM_EVERY_S = 10.0


def glibc():
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name and "libc" in name else None


def limit_malloc_arenas(count=2):
    """glibc gives each thread that allocates its own malloc arena, up to 8 per core; capping
    them (what MALLOC_ARENA_MAX=2 does, set from inside since `hub serving start` is the
    user's) keeps fragmentation across request threads bounded."""
    libc = glibc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, count)


def return_freed_memory_every(seconds):
    """A daemon thread handing memory that glibc keeps after free() back to the system
    (malloc_trim). Bodies and images of every size are allocated in one thread and freed in
    another; without it RSS crept up by about 1 MB a minute under a mixed soak."""
    libc = glibc()
    if libc is None:
        return

    def trim_forever():
        while True:
            time.sleep(seconds)
            libc.malloc_trim(0)

    threading.Thread(target=trim_forever, name="malloc-trim", daemon=True).start()


def http_limits(serving):
    """The front's limits from one module's serving settings, widened by earlier modules'."""
    # base64 grows bytes by 4/3; the rest is JSON around them.
    body = serving.max_request_bytes * 4 // 3 + (1 << 20)
    previous = _installed.get("limits")
    if previous is None:
        return HttpLimits(serving.request_threads, serving.max_waiting_requests, serving.max_wait_ms / 1000.0, body)
    return HttpLimits(max(previous.request_threads, serving.request_threads),
                      max(previous.max_waiting_requests, serving.max_waiting_requests),
                      max(previous.max_wait_s, serving.max_wait_ms / 1000.0),
                      max(previous.max_body_bytes, body))


def keep_stop_signals_handled():
    """uvicorn re-raises SIGTERM/SIGINT once it has stopped gracefully; with a Python handler in
    place (this no-op) the process then carries on to close its modules and exit 0, instead of
    dying by the signal."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)


def uvicorn_options(graceful_stop_s):
    return {"loop": "uvloop", "http": "httptools", "lifespan": "off", "access_log": False,
            "timeout_graceful_shutdown": graceful_stop_s, "timeout_keep_alive": 30}


def close_modules(module_infos):
    for name, info in module_infos.items():
        close = own_method(info.get("module"), "close")
        if close is not None:
            try:
                close()
            except Exception as err:  # noqa: BLE001 - every module gets its chance to close
                log.error("closing %s failed", name, exc_info=err)


def module_infos():
    from paddlehub.serving.model_service.base_model_service import v2_module_info
    return v2_module_info.modules_info


def freeze_startup_objects():
    """Move everything built so far (Paddle, PaddleHub and their imports: millions of objects)
    out of the garbage collector's reach. Measured: a full collection over them took ~10 s,
    at exit and whenever one ran while serving; frozen, they are skipped. Before a fork it
    also keeps the workers' copies of those pages shared."""
    gc.collect()
    gc.freeze()


def serve_one_process(flask_app, host, port):
    """`hub serving start -m`: uvicorn in this process until SIGTERM/SIGINT."""
    import uvicorn

    limits, graceful = _installed["limits"], _installed["graceful_stop_s"]
    app = OpenInferenceFront(ServingApp(webui.register(flask_app), module_infos(), limits,
                                        _installed["metrics_tokens"]))
    log.warning("serving on %s:%s: %d request threads, %d more may wait up to %.0f ms",
                host, port, limits.request_threads, limits.max_waiting_requests, limits.max_wait_s * 1000)
    config = uvicorn.Config(app, host=host, port=int(port), log_level="warning", **uvicorn_options(graceful))
    freeze_startup_objects()
    keep_stop_signals_handled()
    return_freed_memory_every(TRIM_EVERY_S)
    try:
        app.start()
    except Exception as err:  # noqa: BLE001 - any failure to load stops the start, with its reason
        log.error("a module could not warm up; not serving: %s", err, exc_info=err)
        close_modules(module_infos())
        raise SystemExit(1) from err
    try:
        uvicorn.Server(config).run()
    finally:
        close_modules(module_infos())
    log.warning("stopped")


def metrics_token(serving):
    """The token GET /metrics asks of a scraper for this module: metrics_token, else api_token."""
    return serving.metrics_token if serving.metrics_token is not None else serving.api_token


def install_concurrent_runners(serving):
    """Make the running `hub serving start` serve through our front with `serving`'s limits.

    Called from a module's __init__; with several modules the largest limits win."""
    if serving.request_threads == 0:
        return
    from paddlehub.commands import serving as hub_serving_command
    from paddlehub.serving import app_compat

    _installed["limits"] = http_limits(serving)
    _installed["graceful_stop_s"] = max(serving.graceful_stop_s, _installed.get("graceful_stop_s", 0))
    _installed.setdefault("host", serving.host)
    _installed.setdefault("metrics_tokens", [])
    if metrics_token(serving) is not None:
        _installed["metrics_tokens"].append(metrics_token(serving))

    def run(configs=None, port=8866):
        limit_malloc_arenas()
        app_compat.config_with_file(configs)
        serve_one_process(app_compat.create_app(init_flag=True), _installed["host"], port)
        raise SystemExit(0)  # a graceful stop; `hub` itself would exit 1 when its command returns

    _installed.setdefault("original_app", hub_serving_command.StandaloneApplication)

    class ServingStandaloneApplication(_installed["original_app"]):
        def load_config(self):
            super().load_config()
            self.application = OpenInferenceFront(ServingApp(webui.register(self.application), module_infos(),
                                                             _installed["limits"], _installed["metrics_tokens"]))
            freeze_startup_objects()
            os.environ[SERVING_PROCESSES_ENV] = str(self.cfg.workers)  # the workers' models share the CPUs
            metrics_dir = use_fresh_metrics_dir()
            self.cfg.set("child_exit", forget_worker_metrics)
            self.cfg.set("on_exit", lambda _arbiter: remove_metrics_dir(metrics_dir))
            self.cfg.set("worker_class", "clas_system.serving.hubserving.ServingWorker")
            self.cfg.set("graceful_timeout", int(_installed["graceful_stop_s"]) + 2)
            if _installed["host"] != "0.0.0.0":
                port = self.cfg.bind[0].rsplit(":", 1)[1]
                self.cfg.set("bind", [f"{_installed['host']}:{port}"])

    app_compat.run = run
    hub_serving_command.StandaloneApplication = ServingStandaloneApplication


def forget_worker_metrics(_arbiter, worker):
    """gunicorn's child_exit hook, in the master: a dead worker's live gauges stop counting."""
    from .metrics import mark_worker_dead  # here: prometheus_client is imported after the metrics folder is set

    mark_worker_dead(worker.pid)


def _serving_worker_class():
    import warnings

    from gunicorn.arbiter import Arbiter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from uvicorn.workers import UvicornWorker

    class ServingWorker(UvicornWorker):
        """A gunicorn worker running uvicorn with our options; closes the modules on exit."""

        CONFIG_KWARGS = uvicorn_options(_installed.get("graceful_stop_s", 10.0))

        def init_process(self):
            limit_malloc_arenas()
            return_freed_memory_every(TRIM_EVERY_S)
            super().init_process()

        def init_signals(self):
            super().init_signals()
            keep_stop_signals_handled()

        def run(self):
            try:
                self.wsgi.start()
            except Exception as err:  # noqa: BLE001 - the arbiter stops every worker on a boot error
                self.log.error("a module could not warm up in worker %s: %s", self.pid, err)
                sys.exit(Arbiter.WORKER_BOOT_ERROR)
            try:
                super().run()
            finally:
                close_modules(module_infos())

    return ServingWorker


def __getattr__(name):
    # gunicorn imports the worker class by name, in the master before forking workers.
    if name == "ServingWorker":
        return _serving_worker_class()
    raise AttributeError(name)
