"""The distillation itself: the losses, the `Distiller` and its `train_step`, the model families,
the training recipe (optimizer, schedule), the compute precision and models compiled once per shape.

Imports only the top-level base modules (`config`, `files`, `logs`, `tracking`, `record`): nothing here
knows where the images come from, how a teacher is had, or that a study exists.
"""
