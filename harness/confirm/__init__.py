"""The confirmation stage: the chosen configurations again over fresh seeds, each paired with its
scratch twin; the Student-t intervals and paired gains; arms against a reference arm.

Imports the base modules, `distill`, `data`, `teacher`, `deploy` and `training`; never `search`, whose
trials it reads only as `TrialRecord`s.
"""
