"""keras-io's "Bidirectional LSTM on IMDB" in Keras 3, timed per epoch on this machine.

Embedding(20000, 128) on sequences of 200, Bidirectional(LSTM(64, return_sequences=True)),
Bidirectional(LSTM(64)), Dense(1, sigmoid): 2,757,761 parameters; binary cross-entropy, Adam, batch 32. On
random data of IMDB's shapes (imdb_shapes.py); prints seconds per epoch (training only).

    KERAS_BACKEND=jax python benches/peers/imdb_bilstm_keras.py [--samples 25000] [--epochs 1] [--threads 2]
"""
import time

from imdb_shapes import keras_threads_after_import, limit_keras_threads, parse_args, random_imdb, report


def main():
    a = parse_args(__doc__.splitlines()[0])
    limit_keras_threads(a.threads)
    import keras
    from keras import layers
    keras_threads_after_import(keras, a.threads)
    max_features, maxlen = 20000, 200
    x, y = random_imdb(a.samples, maxlen, max_features)
    inputs = keras.Input(shape=(None,), dtype="int32")
    h = layers.Embedding(max_features, 128)(inputs)
    h = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(h)
    h = layers.Bidirectional(layers.LSTM(64))(h)
    outputs = layers.Dense(1, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
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
