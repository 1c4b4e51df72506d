"""A run that re-uses an earlier run's compiled model computes what a fresh build computes."""

import numpy as np
import pytest

from harness import config
from harness.distill.distiller import Distiller, compile_plain
from harness.distill.recipe import Recipe
from harness.search import stores
from harness.teacher.trained import Teacher
from harness.training.context import Context
from harness.training.run import train_distilled


def _context(splits, tmp_path, **student):
    cfg = config.parse({"name": "t", "dataset": {"limit": 2000}, "student": student,
                        "training": {"epochs": 2, "schedule": "cosine", "learning_rate": 0.003}})
    logits = np.random.default_rng(0).normal(size=(len(splits.transfer), 10)).astype(np.float32) * 3
    teacher = Teacher([], logits, 0.0, 0.0, "k", tmp_path, from_cache=True)
    return Context(cfg, stores.Workspace.resolve(tmp_path), splits, teacher, "0", "parent")


def _weights(model):
    return [v.numpy() for v in model.variables]


@pytest.mark.parametrize("student", [{}, {"dropout": 0.2, "input_dropout": 0.1}], ids=["plain", "dropout"])
def test_a_re_armed_distiller_trains_bit_for_bit_like_a_fresh_one(small_splits, tmp_path, student, monkeypatch):
    # A step's Python body runs only while TensorFlow traces it: the count is of traces.
    traces = {"train": 0}
    step = Distiller.train_step
    monkeypatch.setattr(Distiller, "train_step",
                        lambda self, data: traces.__setitem__("train", traces["train"] + 1) or step(self, data))
    recipe = Recipe.of(_context(small_splits, tmp_path).cfg.training)
    fresh_ctx = _context(small_splits, tmp_path, **student)
    want, _ = train_distilled(fresh_ctx, 16, 5, 2.0, 0.5, recipe, [])
    want = _weights(want)

    ctx = _context(small_splits, tmp_path, **student)
    first, _ = train_distilled(ctx, 16, 7, 5.0, 0.2, recipe, [])  # another seed, T and alpha first
    other = _weights(first)
    traced = dict(traces)
    assert traced["train"] >= 1  # the count is live
    got, _ = train_distilled(ctx, 16, 5, 2.0, 0.5, recipe, [])
    assert ctx.compiled.hits == 1 and got is first  # the same compiled model, re-armed
    assert traces == traced  # and its train step is not traced again (no retracing)
    assert ctx.forward._fns[first].experimental_get_tracing_count() == 1  # nor its validation pass
    for a, b in zip(want, _weights(got)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(other[-2], want[-2])  # and the first run did differ
    # A start seen before (width 16, seed 7): its fresh values were kept, so no student is built
    # (a study's trials share one seed), and the run trains bit for bit as the first did.
    built, fresh = [], ctx.fresh
    monkeypatch.setattr(ctx, "fresh", lambda *a: built.append(a) or fresh(*a))
    again, _ = train_distilled(ctx, 16, 7, 5.0, 0.2, recipe, [])
    assert built == [] and ctx.compiled.hits == 2
    for a, b in zip(other, _weights(again)):
        np.testing.assert_array_equal(a, b)
    train_distilled(ctx, 32, 5, 2.0, 0.5, recipe, [])  # another width compiles anew
    assert ctx.compiled.hits == 2 and len(built) == 1


def test_a_re_armed_scratch_student_trains_like_a_fresh_one(small_splits, tmp_path):
    ctx = _context(small_splits, tmp_path)
    recipe = Recipe.of(ctx.cfg.training)

    def train(c, seed):
        fresh, batches = c.inputs(16, seed, distilled=False)
        _, student = c.compiled.get(c.compile_key("scratch", 16, recipe), fresh,
                                    lambda s: compile_plain(s, recipe.optimizer_for(len(small_splits.transfer)),
                                                            jit_compile=c.jit))
        student.fit(batches, epochs=recipe.epochs, verbose=0)
        return _weights(student)

    want = train(_context(small_splits, tmp_path), 3)
    train(ctx, 4)
    for a, b in zip(want, train(ctx, 3)):
        np.testing.assert_array_equal(a, b)
    assert ctx.compiled.hits == 1
