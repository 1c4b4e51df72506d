"""The `teacher` section: a teacher the harness trains (family, widths, recipe, ensemble) or one it
loads (`teacher.model`, its input and outputs), with its checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.config.student import check_model
from harness.config.training import check_recipe


@dataclass(frozen=True)
class TeacherInputConfig:
    """How a loaded teacher's input differs from the harness's (float32 [batch, h, w, c], 0-255):
    `Rescaling(scale, offset)` in front of it, after a `Resizing` to `size` ([h, w]) when given."""
    scale: float = 1.0
    offset: float = 0.0
    size: list[int] | None = None


TEACHER_OUTPUTS = ("auto", "logits", "probabilities")  # see teacher/loaded.py


@dataclass(frozen=True)
class TeacherConfig:
    family: str = "mlp"
    widths: list[int] = field(default_factory=lambda: [1200, 1200])
    head: int = 128  # cnn only: units of the dense layer after the convolutions
    dropout: float = 0.5
    input_dropout: float = 0.2
    jitter: int = 2  # random shifts of up to this many pixels while training
    members: int = 1  # >1: an ensemble, each member with its own seed
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"  # constant | cosine | linear_warmup_cosine
    warmup_epochs: int = 0  # linear_warmup_cosine only
    batch_norm: bool = False  # cnn only: conv -> batch norm -> ReLU
    pooling: str = "flatten"  # cnn only: flatten | gap (global average pooling) before the head
    convs_per_block: int = 1  # cnn only
    jit_compile: bool | None = None  # None: the measured faster choice (see teacher.py)
    # A teacher the harness did not train (docs/own-teacher.md): a .keras file, a SavedModel folder, an
    # MLflow model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH), or a list of these (an
    # ensemble). When given, it replaces training and the fields above are unused.
    model: str | list[str] | None = None
    input: TeacherInputConfig | None = None  # null: it takes the harness's images as they are
    outputs: str = "auto"  # logits | probabilities | auto (decided on the validation split)
    endpoint: str = "serving_default"  # SavedModel folders: the signature to call


def check_teacher(t: TeacherConfig, fail) -> None:
    check_model("teacher", t, fail)
    if any(w < 1 for w in t.widths):
        fail("teacher.widths", "every width must be at least 1")
    if t.jitter < 0:
        fail("teacher.jitter", "must be 0 or more pixels")
    if t.members < 1:
        fail("teacher.members", "must be at least 1")
    _check_loaded_teacher(t, fail)
    check_recipe("teacher", t, fail)


def _check_loaded_teacher(t: TeacherConfig, fail) -> None:
    """`teacher.model` and its companions (the model itself is read once the data are loaded)."""
    if t.model is None:
        for name, default in (("input", None), ("outputs", "auto"), ("endpoint", "serving_default")):
            if getattr(t, name) != default:
                fail(f"teacher.{name}", "only with teacher.model (a teacher the harness loads instead of training)")
        return
    refs = [t.model] if isinstance(t.model, str) else t.model
    if any(not r.strip() for r in refs):
        fail("teacher.model", "must not be empty")
    if t.members != 1:
        fail("teacher.members", "only for a trained teacher; an ensemble of loaded teachers is a list in teacher.model")
    if t.outputs not in TEACHER_OUTPUTS:
        fail("teacher.outputs", f"unknown value {t.outputs!r}; allowed: {', '.join(TEACHER_OUTPUTS)}")
    if not t.endpoint.strip():
        fail("teacher.endpoint", "must not be empty")
    if t.input is not None:
        if t.input.scale == 0:
            fail("teacher.input.scale", "must not be 0")
        if t.input.size is not None and (len(t.input.size) != 2 or any(s < 1 for s in t.input.size)):
            fail("teacher.input.size", f"expected [height, width], each at least 1 (got {t.input.size})")
