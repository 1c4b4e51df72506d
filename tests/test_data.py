import gzip

import numpy as np
import pytest

from harness import config
from harness.data import fashion_mnist, pipelines, sources


def test_splits_are_disjoint_and_cover_train(small_splits):
    full = sources.load_splits(config.DatasetConfig(), seed=0)
    t, v = set(full.transfer.index), set(full.validation.index)
    assert not t & v
    assert len(t | v) == 60000 and len(v) == 6000
    assert len(full.test) == 10000


def test_splits_are_deterministic_per_seed():
    a = sources.load_splits(config.DatasetConfig(limit=500), seed=3)
    b = sources.load_splits(config.DatasetConfig(limit=500), seed=3)
    c = sources.load_splits(config.DatasetConfig(limit=500), seed=4)
    np.testing.assert_array_equal(a.validation.index, b.validation.index)
    np.testing.assert_array_equal(a.transfer.images, b.transfer.images)
    assert not np.array_equal(a.validation.index, c.validation.index)


def test_a_split_read_again_in_one_process_is_decoded_only_where_it_grows(monkeypatch):
    from harness.data import tfds_data

    monkeypatch.setenv("KD_HARNESS_CACHE", "off")  # the process's memo alone (the disk: the next test)
    monkeypatch.setattr(tfds_data, "_MEMO", {})  # what earlier tests in this process read is not held
    first = sources.load_splits(config.DatasetConfig(limit=700), seed=5)
    decoded = []
    real = tfds_data._decode
    monkeypatch.setattr(tfds_data, "_decode", lambda builder, split, *a: decoded.append(split) or
                        real(builder, split, *a))
    again = sources.load_splits(config.DatasetConfig(limit=700), seed=5)
    assert decoded == [] and again.digest == first.digest
    first.transfer.images[0] = 0  # a split's arrays are its own: the held ones stay as read
    held = [x for x, _ in tfds_data._MEMO.values()]
    assert held and not any(x.flags.writeable for x in held)
    more = sources.load_splits(config.DatasetConfig(limit=900), seed=5)  # 1,800 test candidates, not 1,400
    assert "test[:1800]" in decoded and len(decoded) <= 2  # the longer prefixes only (train's may grow too)
    monkeypatch.setattr(tfds_data, "_MEMO", {})
    fresh = sources.load_splits(config.DatasetConfig(limit=900), seed=5)
    assert fresh.digest == more.digest
    assert sources.load_splits(config.DatasetConfig(limit=700), seed=5).digest == again.digest
    monkeypatch.setattr(tfds_data, "_MEMO", {})
    monkeypatch.setattr(tfds_data, "MEMO_MB", 1)  # a split over the cap is read each time, not held
    decoded.clear()
    for _ in range(2):
        assert sources.load_splits(config.DatasetConfig(limit=700), seed=5).digest == again.digest
    assert len(decoded) == 4 and tfds_data._MEMO == {}


def test_a_split_decoded_once_is_loaded_from_disk_by_the_next_process(monkeypatch, tmp_path):
    """A fresh process (its memo empty) loads what an earlier one decoded, the same arrays; a longer
    prefix is decoded and replaces the kept one; a damaged file is decoded afresh; `off` keeps nothing."""
    from harness.data import tfds_data

    monkeypatch.setenv("KD_HARNESS_CACHE", str(tmp_path / "cache"))
    decoded = []
    real = tfds_data._decode
    monkeypatch.setattr(tfds_data, "_decode", lambda builder, split, *a: decoded.append(split) or
                        real(builder, split, *a))

    def fresh_process(limit):
        monkeypatch.setattr(tfds_data, "_MEMO", {})
        return sources.load_splits(config.DatasetConfig(limit=limit), seed=5)

    first = fresh_process(300)
    assert len(decoded) == 2 and len(list((tmp_path / "cache" / "tfds").glob("*/x.npy"))) == 2
    decoded.clear()
    again = fresh_process(300)
    assert decoded == [] and again.digest == first.digest
    assert not any(x.flags.writeable for x, _ in tfds_data._MEMO.values())
    longer = fresh_process(400)  # 800 test candidates, not 600: the longer prefixes are decoded and kept
    assert "test[:800]" in decoded and len(decoded) <= 2
    decoded.clear()
    assert longer.digest == fresh_process(400).digest and decoded == []
    assert fresh_process(300).digest == first.digest and decoded == []  # a slice of the longer ones
    for f in (tmp_path / "cache" / "tfds").glob("*/x.npy"):
        f.write_bytes(f.read_bytes()[:100])  # cut short: not an array
    assert fresh_process(300).digest == first.digest and len(decoded) == 2
    monkeypatch.setenv("KD_HARNESS_CACHE", "off")
    assert tfds_data.disk_cache() is None and fresh_process(300).digest == first.digest and len(decoded) == 4


def test_limit_and_shapes(small_splits):
    s = small_splits
    assert len(s.transfer) == len(s.validation) == len(s.test) == 2000
    assert s.image_shape == (28, 28, 1) and s.num_classes == 10
    assert s.transfer.images.dtype == np.uint8 and s.transfer.images.max() > 200


def test_pipeline_gives_float_images_with_raw_values(small_splits):
    x, y = next(iter(pipelines.pipeline(small_splits.test.images, small_splits.test.labels, 64)))
    assert x.dtype.name == "float32" and tuple(x.shape) == (64, 28, 28, 1)
    np.testing.assert_array_equal(x.numpy(), small_splits.test.images[:64].astype(np.float32))


def test_jitter_shifts_each_example_within_bounds_as_its_seed_says(small_splits):
    import tensorflow as tf

    x = tf.constant(small_splits.test.images[:64], tf.float32)
    shifted = pipelines.jitter(x, 2, tf.constant([1, 2])).numpy()
    assert shifted.shape == x.shape
    assert np.all(shifted.sum(axis=(1, 2, 3)) <= x.numpy().sum(axis=(1, 2, 3)) + 1e-3)
    assert not np.array_equal(shifted, x.numpy())
    np.testing.assert_array_equal(shifted, pipelines.jitter(x, 2, tf.constant([1, 2])).numpy())
    assert not np.array_equal(shifted, pipelines.jitter(x, 2, tf.constant([1, 3])).numpy())


def test_a_seeded_jittered_pipeline_repeats_itself_but_not_across_epochs(small_splits):
    def epochs(ds, n=2):
        return [np.concatenate([x.numpy() for x, _ in ds]) for _ in range(n)]

    imgs, labels = small_splits.test.images[:300], small_splits.test.labels[:300]
    first = epochs(pipelines.pipeline(imgs, labels, 64, shuffle_seed=3, max_shift=2))
    again = epochs(pipelines.pipeline(imgs, labels, 64, shuffle_seed=3, max_shift=2))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])


def test_a_limit_draws_from_the_same_splits(small_splits):
    """A limit is a stratified draw (tests/test_own_files.py) from the splits without one: the
    validation slice stays the validation slice, and the same index holds the same image."""
    from harness.data import splitting

    s = sources.load_splits(config.DatasetConfig(limit=500), seed=0)
    transfer, val, _ = splitting.partition(60000, config.DatasetConfig(), 0)
    assert set(s.transfer.index) <= set(transfer) and set(s.validation.index) <= set(val)
    for small, big in ((s.transfer, small_splits.transfer), (s.validation, small_splits.validation),
                       (s.test, small_splits.test)):
        assert len(small) == 500
        common, a, b = np.intersect1d(small.index, big.index, return_indices=True)
        assert len(common) > 100
        np.testing.assert_array_equal(small.images[a], big.images[b])
        np.testing.assert_array_equal(small.labels[a], big.labels[b])


def test_tampered_debian_file_is_rejected(tmp_path):
    src = tmp_path / "debian"
    src.mkdir()
    for stem in fashion_mnist.FASHION_MNIST_IDX_SHA256:
        (src / f"{stem}.gz").write_bytes((fashion_mnist.DEBIAN_DIR / f"{stem}.gz").read_bytes())
    raw = bytearray(gzip.decompress((src / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(fashion_mnist.DataError, match="t10k-labels.*SHA-256"):
        fashion_mnist.prepare_fashion_mnist(str(tmp_path / "tfds"), src_dir=src)
    assert not (tmp_path / "tfds" / "fashion_mnist" / "3.0.1" / "dataset_info.json").exists()


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(config.ConfigError, match="dataset.name: unknown TFDS dataset 'no_such_set'"):
        sources.load_splits(config.DatasetConfig(name="no_such_set"), seed=0)
