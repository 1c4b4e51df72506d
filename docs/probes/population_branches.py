"""K = 10 plain CNN students (the bench's `cnn` family: w, 2w, 4w filters, gap, head 32) trained
together as one `Population` against 10 lone runs, each on its own seeded batches of the first 2,000
Fashion-MNIST transfer images, XLA off: the bench's own `_population_row` (alternated, medians of 3),
without the bench's lone XLA rows. Run it in each commit's checkout, one right after the other:
`PYTHONPATH=. .venv/bin/python docs/probes/population_branches.py 6 8 12 22` (about 4 minutes)."""
import sys

import keras
import numpy as np
import tensorflow as tf

from harness.bench import cnn as bench
from harness.config import DatasetConfig
from harness.data import sources

splits = sources.load_splits(DatasetConfig(limit=2000), seed=0)
images, labels = splits.transfer.images[:2000], splits.transfer.labels[:2000]
logits = np.random.default_rng(0).normal(0, 4, (len(labels), splits.num_classes)).astype(np.float32)
examples = tf.data.Dataset.from_tensor_slices((images, {"labels": labels, "teacher_logits": logits}))
product = bench._matmul(bench.MATMUL_N)
for w in map(int, sys.argv[1:] or (6, 8, 12, 22)):
    r = bench._population_row("cnn", w, examples, len(images), splits.image_shape, splits.num_classes, 3, False,
                              product)
    print(f"cnn w={w}: 10 lone {r['lone_epoch_s']:.2f} s, together {r['epoch_s']:.2f} s, "
          f"speed-up {r['speedup']:.2f}x, together at {r['share']:.2f} of a {r['matmul_gflops']:.0f} GFLOP/s matmul",
          flush=True)
    keras.backend.clear_session()
