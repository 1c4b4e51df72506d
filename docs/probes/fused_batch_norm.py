"""Keras' BatchNormalization against a subclass calling tf.compat.v1.nn.fused_batch_norm, and no
batch norm, in a 3-block CNN: seconds per 200 batches of 128, twice each.
`.venv/bin/python docs/probes/fused_batch_norm.py` (about 2 minutes)."""
import os, time
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import numpy as np, keras, tensorflow as tf

class FusedBN(keras.layers.BatchNormalization):
    def call(self, x, training=None):
        if training and x.shape.rank == 4 and self.axis in (-1, 3):
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(x, self.gamma, self.beta, epsilon=self.epsilon,
                                                            is_training=True)
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), x.dtype)
            var = var * (n - 1.0) / n  # fused returns Bessel-corrected variance; Keras keeps the biased one
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1 - m))
            self.moving_variance.assign(self.moving_variance * m + var * (1 - m))
            return y
        return super().call(x, training=training)

def net(bn):
    i = keras.Input((28,28,1)); x = i
    for c in (16,32,64):
        x = keras.layers.Conv2D(c, 3, padding="same", use_bias=False)(x)
        x = keras.layers.MaxPool2D()(keras.layers.ReLU()(bn()(x)))
    x = keras.layers.GlobalAveragePooling2D()(x); x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(i, keras.layers.Dense(10)(x))
x = np.random.rand(54000,28,28,1).astype("float32"); y = np.random.randint(0,10,54000)
ds = tf.data.Dataset.from_tensor_slices((x,y)).batch(128).prefetch(2)
for rep in range(2):
  for name, bn in (("keras", keras.layers.BatchNormalization), ("fused", FusedBN),
                   ("none", lambda: keras.layers.Identity())):
    keras.utils.set_random_seed(0)
    m = net(bn); m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    m.fit(ds.take(10), verbose=0)
    t = time.perf_counter()
    m.fit(ds.take(200), epochs=1, verbose=0)
    print(name, f"{time.perf_counter() - t:.2f}s/200 batches", flush=True)
