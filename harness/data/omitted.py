"""Classes omitted from the student's transfer set, and the paper's bias correction for them.

A student that never saw a class during training learns a logit bias for it
that is far too low, even when the teacher's soft targets taught its weights
what the class looks like (Hinton et al. 2015, section 3: on MNIST without
any 3, raising the bias of class 3 by 3.5 took the errors from 206 to 109).
The correction adds one scalar to the final logit bias of every omitted class.
The paper chose that scalar on the test set; here it is chosen on the
VALIDATION split (the grid value with the best validation accuracy; ties go to
the shift nearest 0, and 0 is on the grid, so it never lowers validation
accuracy), and the test split only reports, before and after.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from harness.data import sources
from harness.data.evaluate import accuracy, per_class_accuracy, predict_logits

FIELDS = ("omitted_accuracy", "corrected_accuracy", "corrected_omitted_accuracy", "bias_shift")  # `summary`
GRID = np.round(np.arange(-5.0, 20.0 + 1e-9, 0.05), 2)  # logit units; sorted by |shift| when chosen


def shifted(logits: np.ndarray, classes: list[int], shift: float) -> np.ndarray:
    """The logits with `shift` added to the given classes (what the corrected bias gives)."""
    out = np.array(logits, dtype=np.float32, copy=True)
    out[:, list(classes)] += np.float32(shift)
    return out


def choose_shift(val_logits: np.ndarray, val_labels: np.ndarray, classes: list[int],
                 grid: np.ndarray = GRID) -> float:
    """The shift with the best accuracy on these (validation) logits; ties: the smallest |shift|."""
    best, best_acc = 0.0, -1.0
    for s in sorted(grid, key=lambda g: (abs(g), g)):
        acc = accuracy(shifted(val_logits, classes, s), val_labels)
        if acc > best_acc:
            best, best_acc = float(s), acc
    return best


def scores(logits: np.ndarray, labels: np.ndarray, classes: list[int], num_classes: int,
           prefix: str = "") -> dict[str, float]:
    """`test_accuracy`, `test_accuracy_class_K` for every class and `omitted_class_test_accuracy`
    (over the examples of the omitted classes), each name after `prefix`."""
    out = {f"{prefix}test_accuracy": accuracy(logits, labels)}
    for k, acc in enumerate(per_class_accuracy(logits, labels, num_classes)):
        out[f"{prefix}test_accuracy_class_{k}"] = acc
    if classes:
        mask = np.isin(labels, classes)
        out[f"{prefix}omitted_class_test_accuracy"] = float(np.mean(np.argmax(logits[mask], -1) == labels[mask]))
    return out


@dataclass
class Correction:
    shift: float  # chosen on validation
    before: dict[str, float]  # test scores (see `scores`), uncorrected
    after: dict[str, float]  # the same names, prefixed `corrected_`

    def metrics(self) -> dict[str, float]:
        return {**self.before, **self.after, "bias_shift": self.shift}

    def summary(self) -> dict[str, float]:
        """What a confirmation row keeps (`confirm.Row`'s omitted-class fields)."""
        return {"omitted_accuracy": self.before["omitted_class_test_accuracy"],
                "corrected_accuracy": self.after["corrected_test_accuracy"],
                "corrected_omitted_accuracy": self.after["corrected_omitted_class_test_accuracy"],
                "bias_shift": self.shift}



def correct(model: keras.Model, splits: sources.Splits, classes: list[int],
            test_logits: np.ndarray | None = None) -> Correction:
    """Choose the shift on the validation split, then score the test split before and after."""
    val_logits = predict_logits(model, splits.validation.images)
    shift = choose_shift(val_logits, splits.validation.labels, classes)
    test = predict_logits(model, splits.test.images) if test_logits is None else test_logits
    n = splits.num_classes
    return Correction(shift, scores(test, splits.test.labels, classes, n),
                      scores(shifted(test, classes, shift), splits.test.labels, classes, n, prefix="corrected_"))


def _logit_layer(model: keras.Model):
    """The layer whose bias is the logits' (`logits`, else a final linear layer with a bias), or None."""
    names = [layer.name for layer in model.layers]
    layer = model.get_layer("logits") if "logits" in names else (model.layers[-1] if names else None)
    bias = getattr(layer, "bias", None)
    linear = getattr(getattr(layer, "activation", None), "__name__", "linear") == "linear"
    return layer if bias is not None and linear and tuple(bias.shape) == (model.output_shape[-1],) else None


def corrected_model(model: keras.Model, classes: list[int], shift: float) -> keras.Model:
    """A copy of the student whose final layer (`logits`) has `shift` added to the omitted classes' bias.

    A user's student (`student.builder`) without such a layer (or one Keras cannot clone) is
    wrapped instead: its logits go through a frozen `bias_correction` Dense layer, kernel the
    identity and bias the shift on the omitted classes (num_classes^2 + num_classes more weights).
    """
    try:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        layer = _logit_layer(copy)
    except (ValueError, TypeError, AttributeError):
        layer = None
    if layer is None:
        return _shifted_model(model, classes, shift)
    bias = layer.bias.numpy()
    bias[list(classes)] += np.float32(shift)
    layer.bias.assign(bias)
    return copy


def _shifted_model(model: keras.Model, classes: list[int], shift: float) -> keras.Model:
    n = int(model.output_shape[-1])
    inputs = keras.Input(shape=tuple(model.input_shape[1:]), dtype="float32", name="images")
    correction = keras.layers.Dense(n, trainable=False, name="bias_correction", dtype="float32")
    out = correction(model(inputs))
    bias = np.zeros(n, np.float32)
    bias[list(classes)] = np.float32(shift)
    correction.set_weights([np.eye(n, dtype=np.float32), bias])
    return keras.Model(inputs, out, name=f"{model.name}_corrected")


def lines(summary, teacher_omitted: float | None = None) -> list[str]:
    """The confirmed omitted-class figures (test split, mean ± 95% CI over seeds), per configuration."""
    out = []

    def pm(iv) -> str:
        return f"{100 * iv.mean:.2f} ± {100 * iv.half_width:.2f}"

    for c in summary:
        if c.omitted is None:
            continue
        name = f"trial {c.trial}" + (f" {c.arm}" if c.arm else "")
        out += [f"{name}: omitted classes, test accuracy on them before -> after the bias correction "
                f"(shift chosen on validation, distilled {c.bias_shift.mean:+.2f} on average):",
                f"  distilled {pm(c.omitted)} -> {pm(c.corrected_omitted)}; all classes {pm(c.test)} -> "
                f"{pm(c.corrected)}",
                f"  scratch   {pm(c.scratch_omitted)} -> {pm(c.scratch_corrected_omitted)}; all classes "
                f"{pm(c.scratch_test)} -> {pm(c.scratch_corrected)}",
                f"  corrected distilled - corrected scratch (paired): {c.corrected_gain.points()} points"]
    if out and teacher_omitted is not None:
        out.append(f"  teacher (saw every class): {100 * teacher_omitted:.2f} on the omitted classes")
    return out
