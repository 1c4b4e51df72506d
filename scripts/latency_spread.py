"""Is the per-trial latency stable enough to rank students? Repeat it and look at the spread.

    python scripts/latency_spread.py WORKDIR STUDY_NAME [--repeats 5]

Takes the study's saved students (WORKDIR/trials/STUDY_NAME/trial-*.keras), one per width,
converts each to float TFLite once, and measures it as a trial does (`latency.tflite_ms`: one
image, one thread, median of 300 calls after 50 warm-up calls), `--repeats` times, the widths
interleaved (A B C A B C ...). Prints each width's medians, their spread (max - min, and as a
share of the median), and whether every repeat ranks the widths the same way.
"""

import argparse
import sys
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.deploy import latency, tflite
from harness.distill import models


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("workdir")
    p.add_argument("study")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    by_width = {}
    for path in sorted((Path(args.workdir) / "trials" / args.study).glob("trial-*.keras")):
        m = keras.models.load_model(path, compile=False)
        by_width.setdefault(m.get_layer("hidden_0").units, (path.name, m))
    image = np.random.default_rng(0).integers(0, 256, (28, 28, 1)).astype(np.float32)
    blobs = {w: tflite.convert(m, "tflite") for w, (_, m) in sorted(by_width.items())}
    runs = {w: [] for w in blobs}
    for _ in range(args.repeats):
        for w, blob in blobs.items():
            runs[w].append(latency.tflite_ms(blob, image))
    print(f"{'width':>5} {'params':>8} {'student':>14} " + " ".join(f"{'rep' + str(i + 1):>7}" for i in
                                                                      range(args.repeats)) + "  spread (max-min)")
    for w, ms in runs.items():
        name, m = by_width[w]
        a = np.array(ms)
        print(f"{w:>5} {models.param_count(m):>8,} {name:>14} " + " ".join(f"{v * 1e3:>6.2f}u" for v in a) +
              f"  {(a.max() - a.min()) * 1e3:.2f} us ({100 * (a.max() - a.min()) / np.median(a):.0f}% of the median)")
    order = [tuple(sorted(runs, key=lambda w: runs[w][i])) for i in range(args.repeats)]
    print("same ranking in every repeat:", len(set(order)) == 1, "| rankings seen:", sorted(set(order)))


if __name__ == "__main__":
    main()
