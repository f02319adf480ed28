//! Writes `.keras` files from kerust for Python's Keras to load (`tests/fixtures/keras_interchange.py`, run by
//! `.ci/run`): an MLP (Adam), a convnet with BatchNormalization (RMSprop with momentum), a functional model of two
//! inputs through merge layers (SGD with momentum, two outputs), and a sequence model of the wrappers
//! (TimeDistributed(Dense) -> Bidirectional(LSTM) -> Bidirectional(GRU, "ave"), Adam), a functional masked text
//! model (Embedding(mask_zero) -> Bidirectional(LSTM) -> LSTM, Adam, a left-padded batch), each trained a few steps
//! so that the file holds optimizer state; then `predictions.json` with the inputs, kerust's predictions and
//! optimizer step counts.
//!
//! ```text
//! cargo run --example keras_interchange -- target/kerust-out/interchange
//! KERAS_BACKEND=jax python3 tests/fixtures/keras_interchange.py target/kerust-out/interchange
//! ```
use kerust::layers::{
    Add, BatchNormalization, Bidirectional, Concatenate, Conv2D, Dense, Embedding, Flatten, Input,
    MaxPooling2D, Multiply, Rescaling, TimeDistributed, GRU, LSTM,
};
use kerust::models::{Graph, Model, Sequential};
use kerust::ndarray::{ArrayD, Dimension, IxDyn};
use kerust::optimizers::{RMSprop, SGD};
use serde_json::{json, Value};

fn data(shape: &[usize], seed: u32) -> ArrayD<f32> {
    // A fixed, irregular pattern in [-1, 1]: no generator needed on the Python side.
    ArrayD::from_shape_fn(IxDyn(shape), |i| {
        let k = i.slice().iter().fold(seed, |acc, &d| acc.wrapping_mul(31).wrapping_add(d as u32 + 7));
        ((k.wrapping_mul(2_654_435_761) >> 8) % 2001) as f32 / 1000.0 - 1.0
    })
}

fn onehot(n: usize, k: usize) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[n, k]), |i| f32::from(u8::from((i[0] * 7 + 3) % k == i[1])))
}

fn arr(a: &ArrayD<f32>) -> Value {
    json!({"shape": a.shape(), "values": a.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()})
}

fn main() -> kerust::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "target/kerust-out/interchange".into());
    std::fs::create_dir_all(&dir)?;
    let mut out = serde_json::Map::new();

    let mut mlp = Sequential::new().with_name("mlp");
    mlp.add(Input::new([5]))?;
    mlp.add(Dense::new(8).activation("relu").kernel_initializer("he_normal"))?;
    mlp.add(Dense::new(3).activation("softmax"))?;
    mlp.compile("categorical_crossentropy", "adam", ["accuracy"])?;
    let (x, y) = (data(&[16, 5], 1), onehot(16, 3));
    mlp.fit(&x, &y).batch_size(4).epochs(2).verbose(0).run()?;
    save(&mlp, &dir, "mlp", &[x], &mut out)?;

    let mut conv = Sequential::new().with_name("convnet");
    conv.add(Input::new([8, 8, 1]))?;
    conv.add(Rescaling::new(0.5))?;
    conv.add(Conv2D::new(3, 3).padding("same").activation("relu"))?;
    conv.add(BatchNormalization::new().momentum(0.9))?;
    conv.add(MaxPooling2D::new(2))?;
    conv.add(Flatten::new())?;
    conv.add(Dense::new(4).activation("softmax"))?;
    conv.compile("categorical_crossentropy", RMSprop::new().momentum(0.5), ["accuracy"])?;
    let (x, y) = (data(&[12, 8, 8, 1], 2), onehot(12, 4));
    conv.fit(&x, &y).batch_size(4).epochs(1).verbose(0).run()?;
    save(&conv, &dir, "convnet", &[x], &mut out)?;

    let mut g = Graph::new();
    let a = g.input(Input::new([4]).name("a"))?;
    let b = g.input(Input::new([4]).name("b"))?;
    let ha = g.apply(Dense::new(6).activation("tanh").name("ha"), a)?;
    let hb = g.apply(Dense::new(6).activation("sigmoid").name("hb"), b)?;
    let s = g.apply(Add::new(), [ha, hb])?;
    let m = g.apply(Multiply::new(), [ha, hb])?;
    let c = g.apply(Concatenate::new(-1), [s, m])?;
    let digit = g.apply(Dense::new(3).activation("softmax").name("digit"), c)?;
    let flag = g.apply(Dense::new(1).activation("sigmoid").name("flag"), c)?;
    let mut func = Model::new(g, [a, b], [digit, flag])?.with_name("merges");
    func.compile_with(
        kerust::models::Compile::new(SGD::new().learning_rate(0.05).momentum(0.9))
            .output_loss("digit", "categorical_crossentropy")
            .output_loss("flag", "binary_crossentropy")
            .loss_weight("flag", 0.5)
            .metrics(["accuracy"]),
    )?;
    let (xa, xb) = (data(&[10, 4], 3), data(&[10, 4], 4));
    let (yd, yf) =
        (onehot(10, 3), onehot(10, 2).slice_axis(kerust::ndarray::Axis(1), (0..1).into()).to_owned());
    func.fit([&xa, &xb], [&yd, &yf]).batch_size(5).epochs(1).verbose(0).run()?;
    save(&func, &dir, "merges", &[xa, xb], &mut out)?;

    let mut seq = Sequential::new().with_name("sequences");
    seq.add(Input::new([6, 3]))?;
    seq.add(TimeDistributed::new(Dense::new(4).activation("tanh")))?;
    seq.add(Bidirectional::new(LSTM::new(5).return_sequences(true)))?;
    seq.add(Bidirectional::new(GRU::new(3)).merge_mode("ave"))?;
    seq.add(Dense::new(2).activation("softmax"))?;
    seq.compile("categorical_crossentropy", "adam", ["accuracy"])?;
    let (x, y) = (data(&[8, 6, 3], 5), onehot(8, 2));
    seq.fit(&x, &y).batch_size(4).epochs(1).verbose(0).run()?;
    save(&seq, &dir, "sequences", &[x], &mut out)?;

    // Keras records the Embedding's mask of a functional model as a NotEqual node when it loads this file.
    let mut g = Graph::new();
    let tokens = g.input(Input::new([6]).name("tokens"))?;
    let h = g.apply(Embedding::new(50, 4).mask_zero(true), tokens)?;
    let h = g.apply(Bidirectional::new(LSTM::new(4).return_sequences(true)), h)?;
    let h = g.apply(LSTM::new(4), h)?;
    let p = g.apply(Dense::new(1).activation("sigmoid"), h)?;
    let mut text = Model::new(g, tokens, p)?.with_name("masked_text");
    text.compile("binary_crossentropy", "adam", ["accuracy"])?;
    // Left-padded token ids: each row's first (row % 5) steps are padding.
    let x = ArrayD::from_shape_fn(IxDyn(&[8, 6]), |i| {
        if i[1] < i[0] % 5 {
            0.0
        } else {
            ((i[0] * 13 + i[1] * 7) % 49 + 1) as f32
        }
    });
    let y = onehot(8, 2).slice_axis(kerust::ndarray::Axis(1), (0..1).into()).to_owned();
    text.fit(&x, &y).batch_size(4).epochs(1).verbose(0).run()?;
    save(&text, &dir, "masked_text", &[x], &mut out)?;

    let path = format!("{dir}/predictions.json");
    std::fs::write(&path, serde_json::to_string(&Value::Object(out)).expect("JSON"))?;
    println!("wrote {dir}/*.keras, *.weights.h5 and {path}");
    Ok(())
}

fn save(
    model: &Model,
    dir: &str,
    name: &str,
    x: &[ArrayD<f32>],
    out: &mut serde_json::Map<String, Value>,
) -> kerust::Result<()> {
    model.save(format!("{dir}/{name}.keras"))?;
    model.save_weights(format!("{dir}/{name}.weights.h5"))?;
    let predictions = model.predict_outputs(x.iter().collect::<Vec<_>>())?.into_vec();
    out.insert(
        name.into(),
        json!({
            "x": x.iter().map(arr).collect::<Vec<_>>(),
            "predict": predictions.iter().map(arr).collect::<Vec<_>>(),
            "iterations": model.optimizer().map(|o| o.iterations()),
        }),
    );
    Ok(())
}
