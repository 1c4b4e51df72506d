"""The teacher: trained here (one model or an ensemble; trained.py) or loaded from the user's
files or the MLflow registry (`teacher.model`; loaded.py), checked on the data, its transfer-set
logits cached under a key of everything that determines them (cache.py; over unlabeled images:
unlabeled.py; over every view of `teacher: views`: views.py), and its MLflow run; a
loaded model's signature read (signature.py) and its class order checked (class_order.py).

Imports the base modules, `distill` and `data`.
"""
