"""K = 10 CNN students (w 12, GAP) as one model of grouped convolutions (`Conv2D(groups=K)`, per-member
`EinsumDense` heads) against one lone run x K, XLA off and on. `.venv/bin/python
docs/probes/grouped_population.py`: slow, about 1 hour on 2 cores, as the grouped model is."""
import os, time
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import numpy as np, keras, tensorflow as tf
K=10; B=128; w=12
def lone():
    i = keras.Input((28,28,1)); x = i
    for c in (w,2*w,4*w):
        x = keras.layers.Conv2D(c,3,padding="same",activation="relu")(x); x = keras.layers.MaxPool2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x); x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(i, keras.layers.Dense(10)(x))
def grouped():
    i = keras.Input((28,28,K)); x = i
    for c in (w,2*w,4*w):
        x = keras.layers.Conv2D(K*c,3,padding="same",activation="relu",groups=K)(x); x = keras.layers.MaxPool2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)  # [B, K*4w]
    x = keras.layers.Reshape((K,4*w))(x)
    x = keras.layers.EinsumDense("bkc,kcd->bkd", (K,32), bias_axes="kd", activation="relu")(x)
    return keras.Model(i, keras.layers.EinsumDense("bkc,kcd->bkd", (K,10), bias_axes="kd")(x))
n=128*100
x = np.random.rand(n,28,28,1).astype("float32"); y = np.random.randint(0,10,n)
xs = np.repeat(x, K, axis=3); ys = np.repeat(y[:,None], K, axis=1)
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
for rep in range(2):
    m = lone(); m.compile("adam", loss, jit_compile=False)
    ds = tf.data.Dataset.from_tensor_slices((x,y)).batch(B)
    m.fit(ds.take(5), verbose=0); t=time.perf_counter(); m.fit(ds, verbose=0); tl=time.perf_counter()-t
    for jit in (False, True):
        g = grouped(); g.compile("adam", loss, jit_compile=jit)
        dg = tf.data.Dataset.from_tensor_slices((xs,ys)).batch(B)
        g.fit(dg.take(5), verbose=0); t=time.perf_counter(); g.fit(dg, verbose=0); tg=time.perf_counter()-t
        print(f"lone {tl:.2f}s x K={K}: {K*tl:.1f}s; grouped jit={jit} {tg:.2f}s; speedup {K*tl/tg:.2f}", flush=True)
