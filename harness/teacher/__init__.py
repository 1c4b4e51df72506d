"""The teacher: trained here (one model or an ensemble; trained.py) or loaded from the user's
files or the MLflow registry (`teacher.model`; loaded.py), checked on the data, its transfer-set
logits cached under a key of everything that determines them (cache.py), and its MLflow run.

Imports the base modules, `distill` and `data`.
"""
