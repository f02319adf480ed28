"""What the IMDB-shaped peer scripts share: random data of IMDB's shapes, their command line and their report.

The data is random token ids (no download): `samples` sequences of `maxlen` ids below `vocabulary`, each of a
random length left-padded with 0 as `pad_sequences` does, and random 0/1 labels. The scripts time training,
which does not depend on what the tokens mean.
"""
import argparse
import os

import numpy as np


def random_imdb(samples, maxlen, vocabulary, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, vocabulary, size=(samples, maxlen), dtype=np.int64)
    lengths = rng.integers(maxlen // 8, maxlen + 1, size=samples)
    x[np.arange(maxlen)[None, :] < (maxlen - lengths)[:, None]] = 0
    y = rng.integers(0, 2, size=(samples, 1)).astype(np.float32)
    return x, y


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--samples", type=int, default=25000, help="training sequences (default: IMDB's 25,000)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def limit_keras_threads(threads):
    """Call before importing keras: the thread count of Keras' backend (jax: XLA's flags; tensorflow: its
    thread pools, set after import by `keras_threads_after_import`)."""
    if os.environ.get("KERAS_BACKEND", "jax") == "jax":
        os.environ.setdefault("KERAS_BACKEND", "jax")
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
                                   f" intra_op_parallelism_threads={threads}").strip()


def keras_threads_after_import(keras, threads):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def report(peer, times, params, last_loss):
    print(f"{peer}: seconds per epoch {' '.join(f'{s:.2f}' for s in times)}; median "
          f"{sorted(times)[len(times) // 2]:.2f}; {params:,} params; last training loss {last_loss:.4f}")


def train_torch(net, x, y, epochs):
    """Times `epochs` epochs of `net` (logits out) on `x`, `y` in PyTorch: BCEWithLogitsLoss, Adam with Keras'
    defaults, batch 32, shuffled; reports them."""
    import time

    import torch
    from torch import nn
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.BCEWithLogitsLoss()
    X, Y = torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y))
    times, loss = [], torch.tensor(float("nan"))
    net.train()
    for _ in range(epochs):
        start = time.perf_counter()
        for idx in torch.randperm(len(X)).split(32):
            opt.zero_grad()
            loss = loss_fn(net(X[idx]), Y[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    report("torch", times, sum(p.numel() for p in net.parameters()), loss.item())
