"""The Optuna search: one trial's life (the objective), the search space, the stores and the worker
processes. Each trial trains through `training/`.

Imports the base modules, `distill`, `data`, `teacher`, `deploy` and `training`.
"""
