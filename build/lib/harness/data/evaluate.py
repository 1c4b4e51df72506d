"""Scoring a trained model: logits over a split, accuracy, the ensemble's prediction."""

from __future__ import annotations

import keras
import numpy as np

from harness.data import pipelines


def predict_logits(model: keras.Model, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    ds = pipelines.pipeline(images, np.zeros(len(images), np.int64), batch_size)
    return np.concatenate([model(x, training=False).numpy() for x, _ in ds], axis=0)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def ensemble_logits(members: list[keras.Model], images: np.ndarray) -> np.ndarray:
    """[n, classes] for one member, [n, members, classes] for an ensemble."""
    outs = [predict_logits(m, images) for m in members]
    return outs[0] if len(outs) == 1 else np.stack(outs, axis=1)


def ensemble_probabilities(logits: np.ndarray) -> np.ndarray:
    """The prediction of a teacher: its softmax, or the mean of its members' softmaxes."""
    return softmax(logits).mean(axis=1) if logits.ndim == 3 else softmax(logits)


def ensemble_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return accuracy(ensemble_probabilities(logits) if logits.ndim == 3 else logits, labels)


# ---------------------------------------------------------------- fidelity and calibration
# Distillation moves agreement and calibration more than accuracy (Stanton et al.
# 2021, "Does Knowledge Distillation Really Work?"), so they are measured too.


def agreement(student_logits: np.ndarray, teacher_probs: np.ndarray) -> float:
    """Top-1 agreement: how often the student predicts the teacher's class."""
    return float(np.mean(np.argmax(student_logits, -1) == np.argmax(teacher_probs, -1)))


def kl_teacher_student(teacher_probs: np.ndarray, student_logits: np.ndarray) -> float:
    """Mean KL(teacher || student) at T = 1, in nats."""
    z = student_logits - student_logits.max(axis=-1, keepdims=True)
    log_q = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    p = teacher_probs.astype(np.float64)
    log_p = np.log(np.where(p > 0, p, 1.0))
    return float(np.mean(np.sum(p * (log_p - log_q), axis=-1)))


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: |accuracy - confidence| over equal-width confidence bins,
    weighted by the share of examples in each bin."""
    conf = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == labels).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # bin k holds (k/B, (k+1)/B]
    total = 0.0
    for k in range(bins):
        in_bin = which == k
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(total)


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    pred = np.argmax(logits, axis=-1)
    return [float(np.mean(pred[labels == k] == k)) if np.any(labels == k) else float("nan")
            for k in range(num_classes)]


def fidelity(student_logits: np.ndarray, labels: np.ndarray, teacher_probs: np.ndarray) -> dict:
    """Accuracy, agreement with the teacher, KL(teacher || student) and ECE on one split."""
    return {"accuracy": accuracy(student_logits, labels),
            "agreement": agreement(student_logits, teacher_probs),
            "kl": kl_teacher_student(teacher_probs, student_logits),
            "ece": ece(softmax(student_logits), labels)}
