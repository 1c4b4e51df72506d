"""The Optuna search: one trial's life, the search space, the scratch twins, what every run of a
process shares (`Context`), the stores, worker processes, where a trial's time goes, and Ctrl-C.

Imports the base modules, `distill`, `data`, `teacher` and `deploy`.
"""
