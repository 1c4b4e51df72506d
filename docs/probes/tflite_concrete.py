"""A 2x32 MLP student to float TFLite two ways, three times: Keras' SavedModel path (the harness's,
`deploy/tflite.py`: write, then convert) against `TFLiteConverter.from_concrete_functions`, with the
flatbuffers' sizes (the concrete-function one held no weights here).
From a checkout: `PYTHONPATH=. .venv/bin/python docs/probes/tflite_concrete.py` (under a minute)."""
import tempfile
import time

import numpy as np
import tensorflow as tf

from harness import config
from harness.deploy import tflite
from harness.distill.models import build_student

s = build_student(config.StudentConfig(family="mlp", depth=2), 32, (28,28,1), 10)
x = np.random.default_rng(0).uniform(0,255,(4,28,28,1)).astype(np.float32)
for i in range(3):
    t=time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tflite._saved_model(s, d); t1=time.perf_counter()
        c = tf.lite.TFLiteConverter.from_saved_model(d, signature_keys=["serving_default"]); a=c.convert()
    t2=time.perf_counter()
    spec = tf.TensorSpec([None,28,28,1], tf.float32, name="images")
    fn = tf.function(lambda x: s(x, training=False), input_signature=[spec])
    c = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], s); b=c.convert()
    t3=time.perf_counter()
    print("savedmodel write %.2f convert %.2f | concrete %.2f | sizes %d %d" % (t1-t, t2-t1, t3-t2, len(a), len(b)))
