import dataclasses

import numpy as np
import pytest

from harness import config
from harness.data import evaluate
from harness.teacher import trained as teacher


def _cfg(members=1):
    return config.parse({
        "name": "t", "dataset": {"limit": 2000},
        "teacher": {"widths": [32], "epochs": 1, "members": members, "dropout": 0.0,
                    "input_dropout": 0.0, "jitter": 1,
                    "jit_compile": False},  # the cache is the subject: XLA's compile would cost more than the training
    })


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = teacher._train_member

    def wrapper(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher, "_train_member", wrapper)
    return calls


def test_second_call_loads_instead_of_training(small_splits, tmp_path, counted):
    first = teacher.load_or_train(_cfg(), small_splits, tmp_path)
    second = teacher.load_or_train(_cfg(), small_splits, tmp_path)
    assert counted == [0]
    assert not first.from_cache and second.from_cache
    np.testing.assert_array_equal(first.transfer_logits, second.transfer_logits)
    assert first.transfer_logits.shape == (2000, 10)
    x = small_splits.validation.images[:32]
    np.testing.assert_allclose(evaluate.predict_logits(first.members[0], x),
                               evaluate.predict_logits(second.members[0], x), atol=1e-5)


def test_a_different_config_is_a_cache_miss(small_splits, tmp_path, counted):
    teacher.load_or_train(_cfg(), small_splits, tmp_path)
    other = dataclasses.replace(_cfg(), seed=1)
    assert teacher.cache_key(other, "d") != teacher.cache_key(_cfg(), "d")
    teacher.load_or_train(other, small_splits, tmp_path)
    assert len(counted) == 2


@pytest.mark.parametrize("damage", ["truncate_logits", "flip_weights", "bad_manifest"])
def test_damaged_cache_is_rebuilt_not_used(small_splits, tmp_path, counted, damage):
    first = teacher.load_or_train(_cfg(), small_splits, tmp_path)
    entry = first.path
    if damage == "truncate_logits":
        p = entry / "transfer_logits.npy"
        p.write_bytes(p.read_bytes()[:1000])
    elif damage == "flip_weights":
        p = entry / "member_0.keras"
        b = bytearray(p.read_bytes())
        b[len(b) // 2] ^= 0xFF
        p.write_bytes(bytes(b))
    else:
        (entry / "manifest.json").write_text("{not json")
    again = teacher.load_or_train(_cfg(), small_splits, tmp_path)
    assert not again.from_cache and len(counted) == 2
    assert teacher.load_or_train(_cfg(), small_splits, tmp_path).from_cache


def test_ensemble_caches_every_members_logits(small_splits, tmp_path, counted):
    t = teacher.load_or_train(_cfg(members=2), small_splits, tmp_path)
    assert counted == [0, 1]
    assert t.transfer_logits.shape == (2000, 2, 10)
    assert not np.allclose(t.transfer_logits[:, 0], t.transfer_logits[:, 1])
    # each slot is its member's, and the teacher's accuracy is the ensemble's: the mean of the
    # members' softmaxes (Hinton et al. 2015, section 2), not a member's nor the mean of logits
    x = small_splits.transfer.images[:64]
    for m, member in enumerate(t.members):
        np.testing.assert_allclose(t.transfer_logits[:64, m], evaluate.predict_logits(member, x), atol=1e-5)
    for split, got in ((small_splits.validation, t.val_accuracy), (small_splits.test, t.test_accuracy)):
        z = np.stack([evaluate.predict_logits(member, split.images) for member in t.members]).astype(np.float64)
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        assert got == np.mean(p.mean(axis=0).argmax(-1) == split.labels)


def test_the_same_file_and_seed_train_the_same_teacher(small_splits, tmp_path):
    """Dropout, input dropout, jitter and shuffling all drawn from the study's seed."""
    cfg = config.parse({"name": "t", "dataset": {"limit": 2000},
                        "teacher": {"widths": [32], "epochs": 2, "dropout": 0.3, "input_dropout": 0.1,
                                    "jitter": 2}})
    first = teacher.load_or_train(cfg, small_splits, tmp_path / "a")
    second = teacher.load_or_train(cfg, small_splits, tmp_path / "b")
    assert not second.from_cache
    np.testing.assert_array_equal(first.transfer_logits, second.transfer_logits)
    other = teacher.load_or_train(dataclasses.replace(cfg, seed=1), small_splits, tmp_path / "c")
    assert not np.array_equal(first.transfer_logits, other.transfer_logits)
