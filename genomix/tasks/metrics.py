"""Classification metrics as the DNA benchmarks report them.

GUE ranks models by the Matthews correlation coefficient (MCC), GenomicBenchmarks by accuracy, the
Nucleotide Transformer tasks by MCC or F1; all are computed here from the same logits so one run
reports every one of them. Computed by scikit-learn; binary tasks also get the area under the ROC curve.
"""
from __future__ import annotations

import numpy as np

from ..errors import GenomixError

METRICS = ("mcc", "accuracy", "f1_macro", "auroc")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise class probabilities of (n, K) logits, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def require_finite_logits(logits: np.ndarray, model: str, split: str) -> None:
    """Refuse class logits with NaN or infinities (the metrics would fail on them, or silently rank them), naming
    the rows: the model's weights are broken, or its activations overflowed (bf16 on a GPU)."""
    rows = np.flatnonzero(~np.isfinite(logits).all(axis=1))
    if len(rows):
        raise GenomixError(f"{model} gave NaN or infinite class logits for {len(rows)} of {len(logits)} {split} "
                           f"row(s) (first: row {rows[0]}); check the checkpoint's weights, or run with --device cpu "
                           "(float32) to rule out a half-precision overflow")


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """MCC, accuracy, macro-F1 over the classes present, and (two classes) AUROC of (n, K) logits."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not describe the same examples")
    predictions = logits.argmax(axis=1)
    out = {
        "mcc": float(matthews_corrcoef(labels, predictions)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_macro": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }
    if logits.shape[1] == 2 and len(np.unique(labels)) == 2:
        out["auroc"] = float(roc_auc_score(labels, softmax(logits)[:, 1]))
    return out
