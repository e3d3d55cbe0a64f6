"""Run model work that start-up needs in a forked child, so the serving process never runs a model
before gunicorn forks its workers.

A process that has run OpenVINO or Paddle Inference cannot hand working runtimes to forked
children: their thread pools do not survive a fork (OpenVINO's workers abort with
`std::system_error`, Paddle's deadlock). Start-up work that must run a model (probing the
embedding size, building a gallery from a list) runs here instead; only its result comes back.
"""
import os
import pickle
import traceback


class ChildFailed(RuntimeError):
    """The child process died or raised something that could not be sent back."""


def run_in_child(function, *args):
    """function(*args) in a forked child -> its (picklable) result; its exception re-raised here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, leave without running the parent's exit handlers
        os.close(read_end)
        try:
            outcome = ("ok", function(*args))
        except BaseException as err:  # noqa: BLE001 - every failure is handed to the parent
            outcome = ("error", err)
        try:
            payload = pickle.dumps(outcome)
        except Exception:  # noqa: BLE001 - an unpicklable error still gets its text across
            payload = pickle.dumps(("error", ChildFailed("".join(traceback.format_exception(outcome[1])))))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise ChildFailed(f"the start-up child process died (wait status {status}) before answering")
    kind, value = pickle.loads(payload)
    if kind == "error":
        raise value
    return value
