"""The model of examples/imdb_conv1d.rs (Keras 2's imdb_cnn.py) in Keras 3, timed per epoch on this machine.

Embedding(5000, 50) on sequences of 400, Dropout 0.2, Conv1D(250, 3, valid, relu), GlobalMaxPooling1D,
Dense 250, Dropout 0.2, relu, Dense 1, sigmoid: 350,751 parameters; binary cross-entropy, Adam, batch 32. On
random data of IMDB's shapes (imdb_shapes.py); prints seconds per epoch (training only).

    KERAS_BACKEND=jax python benches/peers/imdb_conv1d_keras.py [--samples 25000] [--epochs 1] [--threads 2]
"""
import time

from imdb_shapes import keras_threads_after_import, limit_keras_threads, parse_args, random_imdb, report


def main():
    a = parse_args(__doc__.splitlines()[0])
    limit_keras_threads(a.threads)
    import keras
    from keras import layers
    keras_threads_after_import(keras, a.threads)
    max_features, maxlen = 5000, 400
    x, y = random_imdb(a.samples, maxlen, max_features)
    model = keras.Sequential([
        keras.Input(shape=(maxlen,), dtype="int32"),
        layers.Embedding(max_features, 50),
        layers.Dropout(0.2),
        layers.Conv1D(250, 3, padding="valid", activation="relu", strides=1),
        layers.GlobalMaxPooling1D(),
        layers.Dense(250),
        layers.Dropout(0.2),
        layers.Activation("relu"),
        layers.Dense(1),
        layers.Activation("sigmoid"),
    ])
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    history = model.fit(x, y, batch_size=32, epochs=a.epochs, verbose=0, callbacks=[Timer()])
    report("keras", times, model.count_params(), history.history["loss"][-1])


if __name__ == "__main__":
    main()
