"""fitnets: hints from the teacher's features (Romero, Ballas, Kahou, Chassang, Gatta, Bengio; ICLR 2015,
*FitNets: Hints for Thin Deep Nets*), on top of kd.

    total = alpha * CE(labels, softmax(student))  +  (1 - alpha) * T^2 * KL(p_teacher^T || p_student^T)
            + hint_weight * mean((adapter(student_hint) - teacher_hint)^2)

`student_hint`: the output of the student's hint layer; `teacher_hint`: the teacher's hint layer's,
computed online inside the step by the frozen teacher (no gradient); `adapter`: the paper's
regressor, a 1x1 Conv2D for feature maps (bilinearly resized first when the student's map has
another height and width), a Dense layer for flat features (a student's feature map is flattened
first). It trains with the student (the Distiller trains every trainable weight) and is dropped
afterwards: the student alone is saved. The paper trains the hint stage first, then KD; here both
terms train together from the first step (as most re-implementations, e.g. mdistiller's FitNet).

Section `distillation.fitnets: {hint_weight, student_layer, teacher_layer}`; `search.fitnets`
searches `hint_weight` (a float range) and the layers (`{choices: [...]}` of layer names). A layer is
named as Keras names it (`model.summary()`); null: the model's last feature map (the last layer whose
output is [batch, h, w, c] from a Conv2D on: a built-in CNN's last conv block, `pool_<depth-1>`), else its last hidden
Dense layer (an MLP's `hidden_<depth-1>`). A loaded teacher's layers are those of the model in its
file (a `.keras` file or an MLflow Keras model); a SavedModel folder has none to read.

Errors (one line: a `ConfigError` from `check_study`, a ValueError from the Distiller): a layer that
does not exist (the available ones are named), a teacher without layers (a SavedModel), an ensemble
teacher, features that no adapter maps (flat student features against a teacher's feature map).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.distill.methods.base import DistillMethod, Fail, FloatRange, register


@dataclass(frozen=True)
class FitNetsConfig:
    hint_weight: float = 1.0  # weight of the hint regression's mean squared error in the total loss
    student_layer: str | None = None  # null: the student's last feature map (else its last hidden Dense layer)
    teacher_layer: str | None = None  # null: likewise in the teacher


@dataclass(frozen=True)
class LayerChoices:
    choices: list[str]  # layer names, suggested as a categorical dimension


@dataclass(frozen=True)
class FitNetsSpace:
    hint_weight: FloatRange | None = None
    student_layer: LayerChoices | None = None
    teacher_layer: LayerChoices | None = None


class HintError(ValueError):
    """A hint layer the models cannot give: `field` is the study file's (`distillation.fitnets.student_layer`)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


# ---------------------------------------------------------------- layers of a model

def _layers(model):
    """Every layer of `model`, nested models' layers included (a loaded teacher sits inside its wrapper)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def _output_rank(layer) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer called more than once, or never
        return 0


def default_layer(model) -> str | None:
    """The last layer whose output is a feature map [batch, h, w, c] at or after the first Conv2D, else
    the last Dense layer before the output (None when there is neither)."""
    import keras

    layers = list(_layers(model))
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D)]
    maps = [layer for layer in layers[convs[0]:] if _output_rank(layer) == 4] if convs else []
    if maps:
        return maps[-1].name
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)][:-1]  # the last one: the logits
    return dense[-1].name if dense else None


def _tensor(model, name: str):
    """The symbolic output of layer `name` in `model`'s graph (through a nested model), or None."""
    import keras

    if name in [layer.name for layer in model.layers]:
        return model.get_layer(name).output
    for layer in model.layers:
        if isinstance(layer, keras.Model) and (inner := _tensor(layer, name)) is not None:
            return keras.Model(layer.inputs, inner)(layer._inbound_nodes[-1].input_tensors[0])
    return None


def hint_model(model, name: str | None, field: str, whose: str, with_output: bool = False):
    """A model from `model`'s input to layer `name`'s output (and its own output first, with
    `with_output`); the hint layer's name. HintError when there is no such layer."""
    import keras

    if not isinstance(model, keras.Model) or not list(_layers(model)) or any(isinstance(layer, keras.layers.TFSMLayer) for layer in _layers(model)):
        raise HintError(field, f"the {whose} has no Keras layers to read a hint from (a SavedModel folder): "
                               "give a .keras file or an MLflow Keras model, or use another method")
    name = name or default_layer(model)
    tensor = _tensor(model, name) if name else None
    if tensor is None:
        have = ", ".join(layer.name for layer in _layers(model))
        raise HintError(field, f"the {whose} has no layer {name!r}; its layers: {have}")
    outputs = [model.outputs[0], tensor] if with_output else tensor
    return keras.Model(model.inputs[0], outputs, name=f"{whose}_hint"), name


def adapter(student_shape, teacher_shape, field: str):
    """The regressor from the student's hint [b, ...] to the teacher's, a built keras.Sequential with a
    fixed-seed initialisation (every run starts it alike: reproducible). HintError when none fits."""
    import keras

    s, t = tuple(student_shape[1:]), tuple(teacher_shape[1:])
    init = {"kernel_initializer": keras.initializers.GlorotUniform(seed=0)}
    if len(s) == 3 and len(t) == 3:
        layers = [keras.layers.Resizing(t[0], t[1], name="hint_resize")] if s[:2] != t[:2] else []
        layers.append(keras.layers.Conv2D(t[2], 1, name="hint_conv1x1", **init))
    elif len(t) == 1 and len(s) in (1, 3):
        layers = ([keras.layers.Flatten(name="hint_flatten")] if len(s) == 3 else []) + \
                 [keras.layers.Dense(t[0], name="hint_dense", **init)]
    else:
        raise HintError(field, f"no 1x1 convolution or dense adapter maps the student's hint {list(s)} to the "
                               f"teacher's {list(t)}: choose a teacher layer with flat features, or a CNN student")
    model = keras.Sequential([keras.Input(s, dtype="float32"), *layers], name="hint_adapter")
    return model


def hint_loss(adapted, teacher_hint):
    """mean((adapted - teacher_hint)^2) over every element of the batch, float32 scalar."""
    import tensorflow as tf

    return tf.reduce_mean(tf.square(tf.cast(adapted, tf.float32) - tf.cast(teacher_hint, tf.float32)))


class _Hints:
    """What a Distiller holds for FitNets, out of Keras' tracking (the feature models share the
    student's and the teacher's layers; only `adapter` is a layer of the Distiller's own)."""

    def __init__(self, student_model, teacher_model):
        self.student_model, self.teacher_model = student_model, teacher_model


@register
class FitNets(DistillMethod):
    name = "fitnets"
    Config = FitNetsConfig
    Space = FitNetsSpace
    short = {"hint_weight": "w", "student_layer": "student", "teacher_layer": "teacher"}
    needs_teacher = True

    @classmethod
    def check(cls, section, where: str, fail: Fail) -> None:
        if section.hint_weight < 0:
            fail(f"{where}.hint_weight", f"must be 0 or more (got {section.hint_weight:g})")

    @classmethod
    def _plan(cls, student, teachers, own: dict, where: str = "distillation.fitnets"):
        """(student model -> [logits, hint], teacher model -> hint, adapter); HintError as it says."""
        if len(teachers) != 1:
            raise HintError("teacher.members", f"fitnets reads one teacher's features, not an ensemble of "
                                               f"{len(teachers)}")
        smodel, _ = hint_model(student, own.get("fitnets_student_layer"), f"{where}.student_layer", "student",
                               with_output=True)
        tmodel, _ = hint_model(teachers[0], own.get("fitnets_teacher_layer"), f"{where}.teacher_layer", "teacher")
        return smodel, tmodel, adapter(smodel.outputs[1].shape, tmodel.output.shape, f"{where}.teacher_layer")

    @classmethod
    def check_study(cls, cfg, student, teachers) -> None:
        from harness.config.errors import ConfigError

        section = cfg.distillation.fitnets or FitNetsConfig()
        space = cfg.search.fitnets
        s_names = space.student_layer.choices if space and space.student_layer else [section.student_layer]
        t_names = space.teacher_layer.choices if space and space.teacher_layer else [section.teacher_layer]
        built, members = student(), teachers()
        try:
            for s in s_names:
                for t in t_names:
                    cls._plan(built, members, {"fitnets_student_layer": s, "fitnets_teacher_layer": t})
        except HintError as e:
            raise ConfigError(cfg.source, e.field, str(e)) from None

    @classmethod
    def attach(cls, distiller, method) -> None:
        smodel, tmodel, adapt = cls._plan(distiller.student, distiller.teachers, method.own())
        tmodel.trainable = False
        distiller._hints = _Hints(smodel, tmodel)
        distiller.hint_adapter = adapt  # a tracked layer: it trains with the student
        distiller._hint_start = [v.numpy() for v in adapt.weights]

    @classmethod
    def reset(cls, distiller) -> None:
        for v, start in zip(distiller.hint_adapter.weights, distiller._hint_start):
            v.assign(start)

    @classmethod
    def forward(cls, distiller, x, y):
        import tensorflow as tf

        logits, hint = distiller._hints.student_model(x, training=True)
        return tf.cast(logits, tf.float32), {"student_hint": hint, "x": x}

    @classmethod
    def loss(cls, labels, student_logits, teacher_logits, temperature, alpha, own: dict, epoch=None,
             masked: bool = False, hints=None):
        """kd's `(total, hard, soft)`, with `hint_weight * hint_loss(*hints)` added to the total when
        `hints` = (adapted student hint, teacher hint) is given."""
        from harness.distill.losses import distillation_loss

        total, hard, soft = distillation_loss(labels, student_logits, teacher_logits, temperature, alpha)
        if hints is not None:
            total = total + own["fitnets_hint_weight"] * hint_loss(*hints)
        return total, hard, soft

    @classmethod
    def step_loss(cls, distiller, labels, student_logits, teacher_logits, extra: dict, epoch):
        import tensorflow as tf

        teacher_hint = tf.stop_gradient(distiller._hints.teacher_model(extra["x"], training=False))
        adapted = distiller.hint_adapter(tf.cast(extra["student_hint"], tf.float32))
        return cls.loss(labels, student_logits, teacher_logits, distiller._temperature, distiller._alpha,
                        distiller._own, hints=(adapted, teacher_hint))
