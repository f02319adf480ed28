"""The model of examples/functional.rs in Keras 3 and in PyTorch, timed per epoch on this machine.

Two inputs (the MNIST image, four ink features), two outputs (the digit, "is it even"), a residual Add and a
Concatenate; Adam, batch 64, validation_split 0.1, loss weight 0.5 on "even". Prints seconds per epoch
(training and validation) and the test accuracies.

    python benches/peers/functional.py keras|torch [--epochs 3] [--threads 2] [--mnist DIR]
"""
import argparse, gzip, os, time

import numpy as np


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def ink_features(images):
    ink = images.astype(np.float32) / 255.0
    n = 28 * 28
    f = np.empty((len(images), 4), np.float32)
    f[:, 0] = ink.sum((1, 2)) / n
    f[:, 1] = (ink > 0.5).sum((1, 2)) / n
    f[:, 2] = (ink[:, :14].sum((1, 2)) - ink[:, 14:].sum((1, 2))) / n
    f[:, 3] = (ink[:, :, :14].sum((1, 2)) - ink[:, :, 14:].sum((1, 2))) / n
    return f


def keras_run(a, data):
    import keras
    from keras import layers
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    (x, f, d, e), (xt, ft, dt, et) = data
    image = keras.Input(shape=(28, 28), name="image")
    features = keras.Input(shape=(4,), name="features")
    h = layers.Flatten()(layers.Rescaling(1 / 255)(image))
    h = layers.Dense(64, activation="relu")(h)
    r = layers.Dense(64, activation="relu")(h)
    h = layers.Add()([h, r])
    g = layers.Dense(8, activation="relu")(features)
    z = layers.Concatenate()([h, g])
    digit = layers.Dense(10, activation="softmax", name="digit")(z)
    even = layers.Dense(1, activation="sigmoid", name="even")(z)
    model = keras.Model([image, features], [digit, even])
    model.compile(optimizer="adam", loss={"digit": "categorical_crossentropy", "even": "binary_crossentropy"},
                  loss_weights={"digit": 1.0, "even": 0.5}, metrics={"digit": ["accuracy"], "even": ["accuracy"]})
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit([x, f], [d, e], batch_size=64, epochs=a.epochs, validation_split=0.1, verbose=0,
              callbacks=[Timer()])
    logs = model.evaluate([xt, ft], [dt, et], verbose=0, return_dict=True)
    return times, logs["digit_accuracy"], logs["even_accuracy"]


def torch_run(a, data):
    import torch
    from torch import nn
    torch.set_num_threads(a.threads)
    (x, f, d, e), (xt, ft, dt, et) = data
    split = int(len(x) * 0.9)
    t = lambda v: torch.from_numpy(np.ascontiguousarray(v))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.d1, self.d2, self.f = nn.Linear(784, 64), nn.Linear(64, 64), nn.Linear(4, 8)
            self.digit, self.even = nn.Linear(72, 10), nn.Linear(72, 1)

        def forward(self, image, features):
            h = torch.relu(self.d1(image.flatten(1) / 255.0))
            h = h + torch.relu(self.d2(h))
            z = torch.cat([h, torch.relu(self.f(features))], 1)
            return self.digit(z), self.even(z)

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    ce, bce = nn.CrossEntropyLoss(), nn.BCEWithLogitsLoss()
    X, F, D, E = t(x.astype(np.float32)), t(f), t(d.argmax(1)), t(e)
    times = []
    for _ in range(a.epochs):
        start = time.perf_counter()
        net.train()
        for idx_ in torch.randperm(split).split(64):
            opt.zero_grad()
            p, q = net(X[idx_], F[idx_])
            loss = ce(p, D[idx_]) + 0.5 * bce(q, E[idx_])
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            p, q = net(X[split:], F[split:])
            _ = ce(p, D[split:]) + 0.5 * bce(q, E[split:])
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        p, q = net(t(xt.astype(np.float32)), t(ft))
    return times, float((p.argmax(1).numpy() == dt.argmax(1)).mean()), float(((q.numpy() > 0) == (et > 0.5)).mean())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("peer", choices=["keras", "torch"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mnist", default=os.path.join(os.path.dirname(__file__), "../../../shared/data/mnist"))
    a = p.parse_args()
    load = lambda name: idx(os.path.join(a.mnist, name))
    x, y = load("train-images-idx3-ubyte.gz"), load("train-labels-idx1-ubyte.gz")
    xt, yt = load("t10k-images-idx3-ubyte.gz"), load("t10k-labels-idx1-ubyte.gz")
    onehot = lambda v: np.eye(10, dtype=np.float32)[v]
    even = lambda v: (v % 2 == 0).astype(np.float32)[:, None]
    data = ((x, ink_features(x), onehot(y), even(y)), (xt, ink_features(xt), onehot(yt), even(yt)))
    times, digit, even_acc = (keras_run if a.peer == "keras" else torch_run)(a, data)
    print(f"{a.peer}: seconds per epoch {' '.join(f'{s:.2f}' for s in times)}; median "
          f"{sorted(times)[len(times) // 2]:.2f}; test digit accuracy {digit:.4f}, even accuracy {even_acc:.4f}")


if __name__ == "__main__":
    main()
