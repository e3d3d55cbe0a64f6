"""hubmodules/*/params.py hold only what differs from the schema's defaults, and point at the
generated reference for the rest."""
import runpy

import pytest

from harness.payloads import REPO
from params import describe
from params.reference import MODULES


def leaves(params, prefix=""):
    for key, value in params.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("module, schema", [(name, cls) for name, cls, _what in MODULES])
def test_params_py_holds_only_what_differs_from_the_defaults(module, schema):
    path = REPO / "hubmodules" / module / "params.py"
    defaults = {key: default for key, default, _rule, _doc in describe(schema)}
    params = runpy.run_path(str(path))["PARAMS"]
    same = [key for key, value in leaves(params) if key in defaults and defaults[key] == value]
    assert not same, f"{path}: {same} equal the defaults; remove them"
    assert "docs/settings.md" in path.read_text(encoding="utf-8")
