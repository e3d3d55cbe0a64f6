"""PaddleHub imports this folder as the top-level package `clas_system`, which is also the name
of the engine package. Load the engine under that name instead, and add this folder to its
search path, so that both `clas_system.module` (this glue) and `clas_system.tasks.classify` (the
engine) resolve in the serving process."""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _engine_spec():
    hub_modules_dir = os.path.dirname(_HERE)
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if os.path.abspath(p or os.curdir) != hub_modules_dir]
    try:
        for finder in sys.meta_path:
            spec = finder.find_spec(__name__, None) if hasattr(finder, "find_spec") else None
            if spec is not None:
                return spec
    finally:
        sys.path[:] = saved
    raise ImportError("the clas_system engine is not installed in this Python: pip install -c constraints.txt . "
                      "from the paddleclas-serving checkout (make serve does it)")


def _become_engine():
    import importlib.util

    spec = _engine_spec()
    engine = importlib.util.module_from_spec(spec)
    sys.modules[__name__] = engine
    spec.loader.exec_module(engine)
    engine.__path__.append(_HERE)


_become_engine()
