"""Consistent views, cached (`distillation.teacher: views`; data/views.py, teacher/views.py): a view
is a pure function of (seed, index, v); the cache holds the teacher's logits on exactly that view;
a run and its scratch twin see the same views; a study runs end to end with them."""

import dataclasses

import keras
import numpy as np
import pytest
from helpers import cli, load_study, workdir_with_teacher, write_study

from harness import config
from harness.data import sources, views
from harness.search import stores
from harness.teacher import views as view_cache
from harness.teacher.trained import Teacher
from harness.training import twin
from harness.training.context import Context

SPEC = config.ViewsConfig(count=3, shift=2, flip=True, crop=[10, 9], mixup=0.4)


@pytest.fixture(scope="module")
def pool():
    return np.random.default_rng(1).integers(0, 256, (40, 12, 12, 1)).astype(np.uint8)


@pytest.fixture(scope="module")
def teacher_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten(),
                             keras.layers.Dense(10)])


def _teacher(model, n):
    return Teacher([model], np.zeros((n, 10), np.float32), 0.5, 0.5, "teacher-key", None, from_cache=True)


def test_a_view_s_stored_logits_equal_the_teacher_s_logits_on_that_view(pool, teacher_model, tmp_path):
    stored = view_cache.logits(_teacher(teacher_model, len(pool)), pool, SPEC, 7, tmp_path)
    assert stored.shape == (3, 40, 10) and stored.dtype == np.float32
    for i, v in [(0, 0), (5, 2), (39, 1), (17, 0)]:  # each view built alone, outside any batch
        x = views.view(pool, np.array([i]), np.array([v]), SPEC, 7)
        np.testing.assert_allclose(stored[v, i], teacher_model(x, training=False).numpy()[0], atol=1e-5)
    # read back from the cache; a damaged entry is computed again, not used
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    np.testing.assert_array_equal(view_cache.logits(_teacher(teacher_model, 40), pool, SPEC, 7, tmp_path), stored)
    np.save(entry / "logits.npy", np.zeros_like(stored))
    np.testing.assert_array_equal(view_cache.logits(_teacher(teacher_model, 40), pool, SPEC, 7, tmp_path), stored)
    # keyed by the spec (V included), the seed and the teacher
    keys = {view_cache.cache_key("t", SPEC, 7), view_cache.cache_key("t", SPEC, 8),
            view_cache.cache_key("u", SPEC, 7)}
    keys |= {view_cache.cache_key("t", dataclasses.replace(SPEC, **{f.name: v}), 7)
             for f, v in zip(dataclasses.fields(SPEC), (4, 1, False, [8, 8], 0.0))}
    assert len(keys) == 3 + len(dataclasses.fields(SPEC))


def test_a_view_depends_on_seed_index_and_v_alone(pool):
    index, v = np.array([3, 9, 3, 20]), np.array([0, 1, 1, 2])
    batch = views.view(pool, index, v, SPEC, 7).numpy()
    np.testing.assert_array_equal(batch, views.view(pool, index, v, SPEC, 7).numpy())
    for j in range(4):  # the same alone as in a batch
        np.testing.assert_array_equal(batch[j], views.view(pool, index[j:j + 1], v[j:j + 1], SPEC, 7).numpy()[0])
    assert not np.array_equal(batch[0], batch[2])  # index 3, views 0 and 1
    assert not np.array_equal(batch, views.view(pool, index, v, SPEC, 8).numpy())  # another seed
    assert batch.dtype == np.float32 and batch.min() >= 0 and batch.max() <= 255
    plain = config.ViewsConfig(count=2, shift=0)
    np.testing.assert_array_equal(views.view(pool, index, v, plain, 7).numpy(), pool[index].astype(np.float32))
    # views differ across v for most examples (shifts of 5 x 5 offsets, flips, crops)
    all_v = views.view(pool, np.repeat(np.arange(40), 3), np.tile(np.arange(3), 40), SPEC, 7).numpy()
    distinct = [len({a.tobytes() for a in all_v[3 * i:3 * i + 3]}) for i in range(40)]
    assert sum(d == 3 for d in distinct) >= 35


def test_beta_quantile_inverts_the_beta_cdf():
    from scipy import stats

    u = np.linspace(0.01, 0.99, 9, dtype=np.float32)
    np.testing.assert_allclose(views.beta_quantile(u, 0.4).numpy(), stats.beta.ppf(u, 0.4, 0.4), atol=1e-5)


def _splits(pool):
    def split(x):
        return sources.Split(x, np.arange(len(x), dtype=np.int64) % 10, np.arange(len(x)))
    return sources.Splits(split(pool), split(pool[:20]), split(pool[:20]), 10, (12, 12, 1), "synthetic")


def test_a_run_and_its_twin_see_the_same_views_each_with_its_teacher_logits(pool, teacher_model, tmp_path):
    cfg = config.parse({"name": "v", "student": {"family": "mlp", "depth": 1},
                        "training": {"batch_size": 16, "jit_compile": False},
                        "distillation": {"teacher": "views", "views": dataclasses.asdict(SPEC)}}, "v.yaml")
    ctx = Context(cfg, stores.Workspace.resolve(tmp_path), _splits(pool), _teacher(teacher_model, 40), "0", "p")
    _, distilled = ctx.inputs(8, 3)
    _, scratch = ctx.inputs(8, 3, distilled=False)
    epochs = []
    for _ in range(2):
        seen = []
        for (x, y), (xs, ys) in zip(distilled, scratch):
            np.testing.assert_array_equal(x.numpy(), xs.numpy())  # the twin's views: the same
            np.testing.assert_array_equal(y["labels"].numpy(), ys.numpy())
            np.testing.assert_allclose(y["teacher_logits"].numpy(), teacher_model(x, training=False).numpy(),
                                       atol=1e-5)  # the logits of the very view the student sees
            seen.append(x.numpy())
        epochs.append(np.concatenate(seen))
    assert epochs[0].shape == (40, 12, 12, 1) and not np.array_equal(epochs[0], epochs[1])  # new views each epoch
    _, other = ctx.inputs(8, 4)  # another run seed: other views
    assert not np.array_equal(np.concatenate([x.numpy() for x, _ in other]), epochs[0])
    # a views twin is keyed apart from a cached one, and by its views
    cached = dataclasses.replace(cfg, distillation=dataclasses.replace(cfg.distillation, teacher="cached",
                                                                        views=None))
    fewer = dataclasses.replace(cfg, distillation=dataclasses.replace(cfg.distillation, views=SPEC.__class__(
        count=2)))
    assert len({twin.key(c, 8, 3, data="d") for c in (cfg, cached, fewer)}) == 3


def test_a_study_distils_from_cached_views_end_to_end(smoke_teacher_cache, tmp_path):
    study = write_study(tmp_path, name="views", **{"distillation.teacher": "views",
                                                   "distillation.views": {"count": 2, "shift": 1, "flip": True},
                                                   "n_trials": 1, "training.epochs": 1,
                                                   "search.width": {"choices": [16]},
                                                   "confirm": {"seeds": 2, "arms": [{"name": "cached"},
                                                                                    {"name": "views",
                                                                                     "teacher": "views"}]}})
    workdir = workdir_with_teacher(tmp_path / "work", smoke_teacher_cache)
    proc = cli("study", study, "--workdir", workdir, "--no-export")
    assert "flips were asked for" in proc.stdout
    entries = sorted(p.name for p in (workdir / "teacher_cache").iterdir() if p.name.startswith("views-"))
    assert len(entries) == 2 and entries[1] == entries[0] + ".lock"
    logits = np.load(workdir / "teacher_cache" / entries[0] / "logits.npy")
    assert logits.shape[0] == 2 and logits.shape[2] == 10 and np.all(np.isfinite(logits))
    confirmed = load_study(workdir, "views").user_attrs["confirmed"]
    assert sorted(c["arm"] for c in confirmed) == ["cached", "views"]
    assert "wall time by arm" in proc.stdout and "views" in proc.stdout
    assert "wall time by arm" in cli("report", study, "--workdir", workdir).stdout  # from the stores


def test_a_study_stored_before_views_existed_resumes_with_the_same_file():
    """Its stored fingerprint lacks `distillation.views`; the file's holds it as null: no difference.
    With views set, the field differs."""
    from helpers import SMOKE

    cfg = config.load(SMOKE)
    now = config.study_fingerprint(cfg.to_dict())
    stored = {k: v for k, v in now.items() if k != "distillation.views"}
    assert "distillation.views" in now and config.fingerprint_differences(stored, now) == []
    views_on = dataclasses.replace(cfg, distillation=dataclasses.replace(cfg.distillation, teacher="views",
                                                                          views=config.ViewsConfig()))
    fields = [d[0] for d in config.fingerprint_differences(stored, config.study_fingerprint(views_on.to_dict()))]
    assert "distillation.teacher" in fields and any(f.startswith("distillation.views") for f in fields)


def test_with_unlabeled_rest_the_distilled_run_also_sees_the_rest_s_views(pool, teacher_model, tmp_path):
    cfg = config.parse({"name": "v", "student": {"family": "mlp", "depth": 1},
                        "training": {"batch_size": 16, "jit_compile": False},
                        "transfer": {"fraction": 0.5, "unlabeled_rest": True},
                        "distillation": {"teacher": "views", "views": {"count": 2}}}, "v.yaml")
    ctx = Context(cfg, stores.Workspace.resolve(tmp_path), _splits(pool), _teacher(teacher_model, 40), "0", "p")
    labels = np.concatenate([y["labels"].numpy() for _, y in ctx.inputs(8, 3)[1]])
    twin_labels = np.concatenate([y.numpy() for _, y in ctx.inputs(8, 3, distilled=False)[1]])
    assert (len(labels), int((labels == -1).sum())) == (40, 20) and len(twin_labels) == 20
    assert (twin_labels >= 0).all()
    for x, y in ctx.inputs(8, 3)[1]:  # the rest's logits are of their views too
        np.testing.assert_allclose(y["teacher_logits"].numpy(), teacher_model(x, training=False).numpy(), atol=1e-5)
