"""Classification outputs -> results, as PaddleClas's Topk / MultiLabelThreshOutput / ThreshOutput.

Each result is {"class_ids": [...], "scores": [...], "label_names": [...]}; label_names is empty
when the model has no labels, as in PaddleClas.
"""
import numpy as np

from params import ops as op_settings


def names(labels, class_ids):
    return [labels[i] if i < len(labels) else str(i) for i in class_ids] if labels else []


def result(class_ids, scores, labels):
    class_ids = [int(i) for i in class_ids]
    return {"class_ids": class_ids, "scores": [float(s) for s in scores], "label_names": names(labels, class_ids)}


def topk(op, labels):
    def run(probs, top_k=None):
        k = min(top_k or op.topk, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [result(ids, row[ids], labels) for row, ids in zip(probs, order)]
    return run


def multilabel(op, labels):
    def run(probs, top_k=None):
        return [result(np.flatnonzero(row >= op.threshold), row[row >= op.threshold], labels) for row in probs]
    return run


def threshold(op, labels):
    def run(probs, top_k=None):
        out = []
        for row in probs:
            score = float(row[1] if row.shape[0] > 1 else row[0])
            out.append(result([1], [score], labels) if score >= op.threshold else result([0], [1 - score], labels))
        return out
    return run


BUILDERS = {op_settings.Topk: topk, op_settings.MultiLabelThreshOutput: multilabel,
            op_settings.ThreshOutput: threshold}


def build_postprocess(op, labels):
    """Typed postprocess settings -> callable (probs [N, C], top_k=None) -> list of N results."""
    return BUILDERS[type(op)](op, labels)
