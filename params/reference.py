"""The settings reference, rendered from the schema: every key a module's params.py (or
config.json's init_args) may set, with its default, what is allowed and what it does.

    python -m params.reference > docs/settings.md

docs/settings.md is this text; a test keeps the two equal, so the reference cannot drift from
the schema that checks the settings.
"""
from .classifier import ClassifierParams
from .detector import DetectorParams
from .recognition import RecognitionParams
from .schema import describe

MODULES = (
    ("clas_system", ClassifierParams, "image classification: a PaddleClas model, its pre- and post-processing"),
    ("det_system", DetectorParams, "mainbody detection: the built-in saliency detector or a PaddleDetection export"),
    ("rec_system", RecognitionParams, "PP-ShiTu recognition: feature model, optional detector, gallery, search"),
)

INTRODUCTION = """\
# Settings reference

Generated from the schema in `params/` (`python -m params.reference`); do not edit by hand.

Each module reads `hubmodules/<module>/params.py`, which holds only what differs from the
defaults below; config.json's `init_args` override it. Every key is checked when the module
starts: an unknown key or a bad value stops `hub serving start` with one line naming the key,
e.g. `clas_system.serving.bach_size: unknown setting (did you mean 'batch_size'?)`. Flat
`init_args` keys are routed to the section that owns them (`use_gpu` -> `predictor`,
`batch_size` -> `serving`, `index_dir` -> `gallery`, ...).
"""


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def module_table(cls):
    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, default, rule, doc in describe(cls):
        lines.append(f"| `{key}` | `{cell(repr(default))}` | {cell(rule)} | {cell(doc)} |")
    return "\n".join(lines)


def render_markdown():
    """The whole reference as markdown: one table per module."""
    parts = [INTRODUCTION]
    for name, cls, what in MODULES:
        parts.append(f"## {name}\n\n{what[0].upper()}{what[1:]}.\n\n{module_table(cls)}\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render_markdown(), end="")
