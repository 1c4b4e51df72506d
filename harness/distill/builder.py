"""A user's student: `student.builder: "package.module:function"`, resolved and checked.

The function is found with `pkgutil.resolve_name`, the study file's folder
first on `sys.path` (so a `my_students.py` next to the study file imports, in
this process and in every worker process, which resolves it again from the
study file's path). It is called as `function(width, input_shape, num_classes)`
and must return a `keras.Model` with one input `[batch, *input_shape]` (float32
images, values 0-255, as the harness's own models take) and one output
`[batch, num_classes]` of logits. `check` calls it once before anything is
written and turns every way it can go wrong into one `ConfigError` line naming
`student.builder` and the study file: a module that does not import, a missing
function, a function that raises, something that is not a Keras model, a wrong
input or output shape, a final softmax (probabilities, not logits), a model
Keras cannot save and load back with `safe_mode` (a `Lambda` layer, a custom
layer not registered with `keras.saving.register_keras_serializable`).

`identity` is what cache keys hold: the "module:function" string and the
SHA-256 of the function's source file, so an edited builder never reuses a
scratch twin, confirmation run or compiled model of the old one.
"""

from __future__ import annotations

import contextlib
import inspect
import pkgutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness import files
from harness.config import ConfigError

FIELD = "student.builder"


def _folder(source: str) -> str:
    return str(Path(source).resolve().parent) if source else str(Path.cwd())


def resolve(name: str, source: str) -> Callable:
    """The function `name` ("module:function"), with the folder of the study file `source`
    importable (ConfigError naming `student.builder` and `source` when it cannot be found)."""
    folder = _folder(source)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        fn = pkgutil.resolve_name(name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(source, FIELD, f"cannot resolve {name!r} (with {folder} importable): "
                                         f"{type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the module raised while importing: the user's code
        raise ConfigError(source, FIELD, f"importing {name!r} raised {type(e).__name__}: {e}") from None
    if not callable(fn):
        raise ConfigError(source, FIELD, f"{name!r} is a {type(fn).__name__}, not a function")
    return fn


def identity(name: str, source: str) -> dict:
    """What cache keys hold: {"builder": name, "sha256": of the function's source file (None: none)}."""
    fn = resolve(name, source)
    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        path = None
    return {"builder": name, "sha256": files.sha256(Path(path)) if path else None}


@contextlib.contextmanager
def _dtype_policy(dtype: str | None):
    import keras

    if dtype in (None, "float32"):
        yield
        return
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def _extra(fn: Callable, depth: int | None, width: int) -> dict:
    """The keyword arguments the function's signature accepts among `depth` (student.depth, or the
    trial's searched depth) and `width_multiplier` (width / 100, for a builder whose knob is a
    multiplier such as MobileNet's alpha): passed only when named, or when it takes **kwargs."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    anything = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    offered = {"depth": depth, "width_multiplier": width / 100.0}
    return {k: v for k, v in offered.items() if v is not None and (anything or k in params)}


def build(name: str, source: str, width: int, input_shape, num_classes: int, dtype: str | None = None,
          depth: int | None = None):
    """The user's student at `width`: the function's model, its output shape checked. `depth` and
    `width_multiplier` are passed as keywords where the signature takes them (`_extra`).

    `dtype` (a Keras dtype policy, e.g. "mixed_bfloat16"; None: float32) is Keras' global
    policy while the function runs, then put back. Raises ConfigError (see the module).
    """
    import keras

    fn = resolve(name, source)
    input_shape = tuple(int(d) for d in input_shape)
    try:
        with _dtype_policy(dtype):
            model = fn(width, input_shape, num_classes, **_extra(fn, depth, width))
    except Exception as e:  # noqa: BLE001 - the user's code: its error, in one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ConfigError(source, FIELD, f"{name}(width={width}, input_shape={input_shape}, "
                                         f"num_classes={num_classes}) raised {type(e).__name__}: {first}"
                                         f"{_size_hint(fn, width, input_shape, num_classes, dtype)}") from None
    if not isinstance(model, keras.Model):
        raise ConfigError(source, FIELD, f"{name} returned a {type(model).__name__}, not a keras.Model")
    _check_shapes(name, source, model, width, input_shape, num_classes,
                  lambda: _size_hint(fn, width, input_shape, num_classes, dtype))
    return model


def _works(fn, width: int, shape: tuple, num_classes: int, dtype: str | None) -> bool:
    try:
        with _dtype_policy(dtype):
            model = fn(width, shape, num_classes)
            out = model(np.zeros((1, *shape), np.float32), training=False)
        return tuple(out.shape) == (1, num_classes)
    except Exception:  # noqa: BLE001 - any failure: this size does not work
        return False


def _size_hint(fn, width: int, input_shape: tuple, num_classes: int, dtype: str | None) -> str:
    """Where the images are too small for the builder's model: the smallest size that works among
    the image size times 2, 4, ... 64 (height and width scaled together), said in a clause."""
    h, w, *rest = input_shape
    if len(input_shape) != 3 or h * w > 64 * 64:  # large images: the failure is not their size
        return ""
    for f in (2, 4, 8, 16, 32, 64):
        if _works(fn, width, (h * f, w * f, *rest), num_classes, dtype):
            return (f"; the images ({h}x{w}) are too small for it: the smallest size that works is {h * f}x{w * f} "
                    f"(give dataset.image_size: [{h * f}, {w * f}])")
    return ""


def _check_shapes(name: str, source: str, model, width: int, input_shape: tuple, num_classes: int,
                  hint=lambda: "") -> None:
    import keras

    def fail(message: str):
        raise ConfigError(source, FIELD, f"{name} at width {width}: {message}")

    try:
        out = model(np.zeros((2, *input_shape), np.float32), training=False)
    except Exception as e:  # noqa: BLE001
        fail(f"the model cannot take float32 images [batch, {', '.join(map(str, input_shape))}]: "
             f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}{hint()}")
    if isinstance(out, (list, tuple, dict)):
        fail(f"the model has {len(out)} outputs; it must have one, the logits [batch, {num_classes}]")
    if tuple(out.shape) != (2, num_classes):
        fail(f"the model outputs shape {tuple(out.shape)} for 2 images; it must output logits "
             f"[batch, {num_classes}] (the dataset has {num_classes} classes)")
    last = model.layers[-1] if model.layers else None
    if isinstance(last, keras.layers.Softmax) or \
            getattr(getattr(last, "activation", None), "__name__", "") == "softmax":
        fail("the model ends in a softmax; it must output logits (drop the final softmax: the "
             "harness applies it inside the losses and metrics)")


def _check_model(name: str, source: str, width: int, input_shape: tuple, num_classes: int) -> None:
    import keras

    model = build(name, source, width, input_shape, num_classes)
    x = np.random.default_rng(0).uniform(0, 255, (4, *input_shape)).astype(np.float32)
    want = np.asarray(model(x, training=False))
    if np.all(want >= 0) and np.allclose(want.sum(-1), 1.0, atol=1e-4):
        raise ConfigError(source, FIELD, f"{name} at width {width}: its outputs are probabilities (each row "
                                         "sums to 1); it must output logits (drop the final softmax)")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "student.keras"
        try:
            model.save(path)
            back = keras.models.load_model(path, safe_mode=True, compile=False)
            np.testing.assert_allclose(np.asarray(back(x, training=False)), want, rtol=1e-4, atol=1e-4)
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise ConfigError(source, FIELD, f"{name}: the model does not save and load back as .keras with "
                              f"safe_mode (trials, the champion and exports need it; register custom layers "
                              f"with keras.saving.register_keras_serializable, avoid Lambda layers): "
                              f"{type(e).__name__}: {first}") from None


def check(name: str | None, source: str, widths, input_shape, num_classes: int) -> None:
    """Before anything is written: the builder resolves, and at the smallest and largest of
    `widths` returns a logits model of the right shapes that saves and loads back (ConfigError)."""
    if name is None:
        return
    ws = sorted({int(w) for w in widths})
    for w in dict.fromkeys([ws[0], ws[-1]]):
        _check_model(name, source, w, tuple(input_shape), int(num_classes))
