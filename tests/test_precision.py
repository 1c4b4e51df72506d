"""training.precision: bfloat16 students train, the loss stays float32, auto reads the hardware,
and cache keys hold the precision without changing the float32 keys of before."""

import dataclasses
import math
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import config
from harness.distill import models, precision
from harness.distill.distiller import Distiller
from harness.distill.losses import distillation_loss
from harness.distill.recipe import Recipe
from harness.teacher import trained as teacher
from harness.training import twin
from harness.training.context import Context

DEFAULT = "studies/fashion_mnist.yaml"


def _with_precision(cfg, value):
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, precision=value))


def test_a_bfloat16_student_trains_with_a_finite_float32_loss(random_data):
    x, y = random_data
    keras.utils.set_random_seed(0)
    student = models.mlp(x.shape[1:], 10, [32, 32], dtype=precision.policy("bfloat16"))
    hidden = student.get_layer("hidden_0")
    assert hidden.compute_dtype == "bfloat16" and hidden.kernel.dtype == "float32"
    assert student.output.dtype == "float32"  # logits leave the model in float32
    teacher_logits = np.random.default_rng(1).normal(size=(len(x), 10)).astype(np.float32)
    d = Distiller(student, temperature=2.0, alpha=0.5)
    d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    ds = tf.data.Dataset.from_tensor_slices(
        (x.astype(np.float32), {"labels": y, "teacher_logits": teacher_logits})).batch(64)
    hist = d.fit(ds, epochs=2, verbose=0, shuffle=False)
    assert all(math.isfinite(v) for v in hist.history["loss"])
    assert hist.history["loss"][-1] < hist.history["loss"][0]

    # bfloat16 logits into the loss: every output float32, and equal to the loss of their float32 copy.
    s16 = tf.cast(student(x[:64].astype(np.float32)), tf.bfloat16)
    out = distillation_loss(y[:64], s16, teacher_logits[:64], 2.0, 0.5)
    ref = distillation_loss(y[:64], tf.cast(s16, tf.float32), teacher_logits[:64], 2.0, 0.5)
    assert all(t.dtype == tf.float32 for t in out)
    np.testing.assert_allclose([float(t) for t in out], [float(t) for t in ref], rtol=1e-6)


def test_the_config_refuses_an_unknown_precision():
    with pytest.raises(config.ConfigError, match=r"training\.precision: unknown precision 'fp8'"):
        config.parse({"name": "x", "training": {"precision": "fp8"}}, "f.yaml")
    assert config.parse({"name": "x", "training": {"precision": "auto"}}).training.precision == "auto"


def test_auto_resolves_from_the_hardware_it_is_given():
    bf16_cpu = "processor : 0\nflags : fpu sse2 avx512f avx512_bf16 amx_tile\n"
    amx_cpu = "flags\t\t: fpu avx2 amx_bf16\n"
    plain_cpu = "flags : fpu sse2 avx2 avx512f\nbugs : avx512_bf16\n"  # a flag outside `flags` counts not
    assert precision.resolve("auto", cpuinfo=bf16_cpu, gpus=[]) == "bfloat16"
    assert precision.resolve("auto", cpuinfo=amx_cpu, gpus=[]) == "bfloat16"
    assert precision.resolve("auto", cpuinfo=plain_cpu, gpus=[]) == "float32"
    assert precision.resolve("auto", cpuinfo=plain_cpu, gpus=[(8, 0)]) == "bfloat16"
    assert precision.resolve("auto", cpuinfo=bf16_cpu, gpus=[(7, 5)]) == "float32"  # the GPU computes
    assert precision.resolve("float32", cpuinfo=bf16_cpu, gpus=[]) == "float32"
    assert precision.resolve("bfloat16", cpuinfo=plain_cpu, gpus=[]) == "bfloat16"


def test_cache_keys_hold_the_precision_and_float32_keys_are_unchanged():
    cfg = config.load(DEFAULT)
    assert cfg.training.precision == "float32"
    # The default study's keys (its teacher cache, a twin's file) for a stand-in data digest "d": float32
    # adds nothing to them. (Pinned again when the keys took the data's digest in place of the dataset
    # section; before that they were 598db656f54ef0fb6bbb and 137a70c0b02f7d307141.)
    assert teacher.cache_key(cfg, "d") == "b02cb148365b591c5c04"
    assert twin.key(cfg, 128, 4, data="d") == "747d5b6a34e155fb005b"
    bf = _with_precision(cfg, "bfloat16")
    assert teacher.cache_key(bf, "d") != teacher.cache_key(cfg, "d")
    assert twin.key(bf, 128, 4, data="d") != twin.key(cfg, 128, 4, data="d")

    def compile_key(c):
        fake = types.SimpleNamespace(cfg=c, transfer_examples=10, unlabeled_examples=0, distill_examples=10, online=False,
                                     jit=True, precision=precision.resolved(c))
        return Context.compile_key(fake, "distilled", 64, Recipe.of(c.training))
    assert compile_key(cfg) != compile_key(bf)
    assert "precision" not in compile_key(cfg)
