"""Whether a loaded teacher's outputs are the data's classes in another order.

A teacher trained elsewhere numbers its classes its own way (an IDX or CSV label order, a
dictionary's order), the data number them by sorted folder name or by the .npz's labels. Such a
teacher can still score above chance where a few classes keep their place, and a study would
distil the wrong soft targets. From the teacher's confusion matrix on the validation split
(rows: the data's class, columns: the teacher's argmax), the assignment of outputs to classes
that gets the most examples right is found (the Hungarian method,
`scipy.optimize.linear_sum_assignment`; Kuhn 1955) and compared with the identity:

* far better (`FAR`: at least 0.25 more of the validation split right, and at least `FAR_COUNT`
  more examples): the teacher is refused in one line giving the data's class order and the order
  the teacher seems to use (exit 2, nothing cached);
* somewhat better (`NEAR`: at least 0.05 more, and at least `NEAR_COUNT` examples): a warning,
  logged and repeated in the end-of-study summary.

A teacher in the data's order gains nothing from reordering (its diagonal is its largest
assignment) unless it systematically confuses pairs of classes, which the thresholds tolerate.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from harness.config import ConfigError

FAR, FAR_COUNT = 0.25, 10
NEAR, NEAR_COUNT = 0.05, 3
SHOWN = 20  # class names shown in a message


def predictions(logits: np.ndarray) -> np.ndarray:
    """The argmax class of logits [n, classes], or of an ensemble's [n, members, classes] (the
    members' softmax averaged, as `ensemble_accuracy` scores it)."""
    if logits.ndim == 3:
        z = logits - logits.max(-1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        return p.mean(1).argmax(-1)
    return logits.argmax(-1)


def best_order(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> tuple[np.ndarray, int, int]:
    """(assignment: data class i -> teacher output, examples right as is, examples right reordered)."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    rows, cols = linear_sum_assignment(-confusion)
    assign = np.empty(num_classes, np.int64)
    assign[rows] = cols
    return assign, int(np.trace(confusion)), int(confusion[rows, cols].sum())


def _names(names: list[str]) -> str:
    return "[" + ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "") + "]"


def check(source: str, field: str, what: str, val_logits: np.ndarray, labels: np.ndarray,
          class_names: list[str]) -> str | None:
    """Raise ConfigError when the teacher's classes are far better matched in another order; return
    a warning (one line) when somewhat better, else None. `val_logits`: [n, classes] or
    [n, members, classes] over the validation split, `labels` its int class ids."""
    n, k = len(labels), len(class_names)
    if not n:
        return None
    assign, as_is, reordered = best_order(labels, predictions(val_logits), k)
    gain = reordered - as_is
    if gain <= 0 or np.array_equal(assign, np.arange(k)):
        return None
    teacher_order = [""] * k
    for i, j in enumerate(assign):
        teacher_order[j] = class_names[i]
    moved = [class_names[i] for i in range(k) if assign[i] != i]
    figures = (f"validation accuracy {as_is / n:.2f} as it is, {reordered / n:.2f} with its outputs reordered; "
               f"{len(moved)} of {k} classes move")
    if gain / n >= FAR and gain >= FAR_COUNT:
        raise ConfigError(source, field, f"{what}: its classes seem to be in another order than the data's: the "
                                         f"data's order is {_names(class_names)}, the teacher's seems to be "
                                         f"{_names(teacher_order)} ({figures}); give a teacher whose output i is "
                                         "the data's class i (folders sort by name), or reorder its outputs")
    if gain / n >= NEAR and gain >= NEAR_COUNT:
        return (f"{what} may number its classes in another order than the data's ({figures}: "
                f"{', '.join(moved[:SHOWN])}); check its class order")
    return None
