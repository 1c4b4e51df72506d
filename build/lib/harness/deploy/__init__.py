"""What leaves the study: the champion (picked, tested once, registered), its exports (SavedModel,
float32 and int8 TFLite), the fresh-process check of every file and single-image latency.

Imports the base modules, `distill`, `data` and `teacher`; the search imports `tflite` and `latency`
from here for its latency objective, so `deploy` sits below `search`.
"""
