"""Train a teacher the way a user would, outside the harness: plain Keras, nothing from `harness`.

    python examples/own_model/train_teacher.py examples/own_model/data/fashion_mnist_png \
        examples/own_model/data/teacher.keras

Reads ``DIR/train/<class>/*.png`` and ``DIR/test/<class>/*.png`` with
``keras.utils.image_dataset_from_directory`` (grayscale 28x28, class i = i-th folder name sorted,
as the harness reads a folder), trains a small CNN whose first layer is ``Rescaling(1/255)`` (it
takes pixel values 0-255) and whose last is a softmax (it outputs probabilities), prints its test
accuracy and saves it as ``.keras``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras


def read_folder(folder: Path, batch_size: int = 128, shuffle: bool = True, seed: int = 0):
    """A ``tf.data.Dataset`` of ``(float32 [b, 28, 28, 1] values 0-255, int32 [b])`` batches, and
    the class names (the sorted folder names)."""
    ds = keras.utils.image_dataset_from_directory(
        folder, labels="inferred", label_mode="int", color_mode="grayscale",
        image_size=(28, 28), batch_size=batch_size, shuffle=shuffle, seed=seed)
    return ds, ds.class_names


def build_teacher(input_shape=(28, 28, 1), num_classes: int = 10) -> keras.Model:
    """A small CNN: Rescaling(1/255) -> 2 x (conv 3x3 -> conv 3x3 -> max-pool) -> dense -> softmax."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(num_classes, activation="softmax"),
    ], name="teacher")


def train_teacher(data: Path, out: Path, epochs: int = 5, batch_size: int = 128,
                  seed: int = 0, verbose: int = 2) -> float:
    """Train on ``data/train``, save to ``out`` (``.keras``), return the test accuracy."""
    keras.utils.set_random_seed(seed)
    train, names = read_folder(data / "train", batch_size, shuffle=True, seed=seed)
    test, test_names = read_folder(data / "test", batch_size, shuffle=False)
    if names != test_names:
        raise SystemExit(f"train and test class folders differ: {names} vs {test_names}")
    model = build_teacher((28, 28, 1), len(names))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train.cache(), epochs=epochs, verbose=verbose)
    _, accuracy = model.evaluate(test, verbose=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return float(accuracy)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder with train/ and test/ class folders")
    parser.add_argument("out", type=Path, help="where to save the teacher (.keras)")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    accuracy = train_teacher(args.data, args.out, args.epochs)
    print(f"teacher test accuracy {accuracy:.4f}; saved {args.out} "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
