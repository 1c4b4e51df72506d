"""The teacher: trained here (one model or an ensemble), its transfer-set logits cached under a
key of everything that determines them, and its MLflow run.

Imports the base modules, `distill` and `data`.
"""
