//! Layers that contain layers (Bidirectional, TimeDistributed) and masks end to end: Keras' own outputs on a
//! masked left-padded batch (tests/fixtures/keras_bidirectional.py) for every merge mode, one Adam step, weight
//! names and order, summaries byte for byte; a left-padded batch giving each sequence's own result through
//! Embedding(mask_zero) and every recurrent layer, in Sequential and functional models; configs and model files
//! that round-trip nested layers; and the errors a user meets.
mod common;
use common::assert_close;

use common::fixture_tensor as tensor;
use kerust::autodiff::Tensor;
use kerust::layers::{
    layer_from_config, Bidirectional, Dense, Embedding, Input, Layer, SimpleRNN, TimeDistributed, GRU, LSTM,
};
use kerust::models::{load_model, Graph, Model, Sequential};
use kerust::optimizers::Adam;
use ndarray::{s, Axis};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/keras_bidirectional.json")).unwrap()
}

fn tensors(v: &Value) -> Vec<Tensor> {
    v.as_array().unwrap().iter().map(tensor).collect()
}

/// `Embedding(10, 2, mask_zero) -> layer`, the fixture's model.
fn embedded(layer: impl Layer + 'static) -> Sequential {
    let mut m = Sequential::new();
    m.add(Embedding::new(10, 2).mask_zero(true).input_shape([5])).unwrap();
    m.add(layer).unwrap();
    m
}

#[test]
fn every_merge_mode_matches_keras_on_a_masked_left_padded_batch() {
    let fx = fixture();
    let tokens = tensor(&fx["tokens"]);
    let cases = fx["merge"].as_object().unwrap();
    assert_eq!(cases.len(), 8);
    for (name, case) in cases {
        let (mode, kind) = name.split_once('_').unwrap();
        let mut m =
            embedded(Bidirectional::new(LSTM::new(3).return_sequences(kind == "seq")).merge_mode(mode));
        m.set_weights(&tensors(&case["weights"])).unwrap();
        assert_close(name, &m.predict(&tokens).unwrap(), &tensor(&case["output"]), 1e-5);
    }
}

#[test]
fn simple_rnn_and_gru_inside_match_keras_with_keras_weight_names() {
    let fx = fixture();
    let tokens = tensor(&fx["tokens"]);
    for cell in ["simple_rnn", "gru"] {
        let case = &fx["cells"][cell];
        let mut m = match cell {
            "gru" => embedded(Bidirectional::new(GRU::new(3).return_sequences(true))),
            _ => embedded(Bidirectional::new(SimpleRNN::new(3).return_sequences(true))),
        };
        m.set_weights(&tensors(&case["weights"])).unwrap();
        assert_close(cell, &m.predict(&tokens).unwrap(), &tensor(&case["output"]), 1e-5);
        assert_names(cell, &m, &case["paths"]);
    }
}

/// The model's weights are named, shaped and ordered as Keras' `model.weights` paths.
fn assert_names(what: &str, m: &Sequential, paths: &Value) {
    let got: Vec<(String, Vec<usize>)> =
        m.params().iter().map(|(_, p)| (p.name.clone(), p.value.shape().to_vec())).collect();
    let want: Vec<(String, Vec<usize>)> = paths
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let shape = p["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (p["path"].as_str().unwrap().to_owned(), shape)
        })
        .collect();
    assert_eq!(got, want, "{what}");
}

fn train_model() -> Sequential {
    let mut m = embedded(Bidirectional::new(LSTM::new(3).return_sequences(true)));
    m.add(Bidirectional::new(GRU::new(2)).merge_mode("ave")).unwrap();
    m.add(Dense::new(1)).unwrap();
    m
}

#[test]
fn one_adam_step_with_masks_matches_keras_and_so_does_the_summary() {
    let fx = fixture();
    let (tokens, t) = (tensor(&fx["tokens"]), &fx["train"]);
    let mut m = train_model();
    assert_names("train", &m, &t["paths"]);
    let weights = tensors(&t["weights"]);
    m.set_weights(&weights).unwrap();
    // get_weights gives Keras' list back unchanged.
    assert_eq!(m.get_weights(), weights);
    assert_close("output", &m.predict(&tokens).unwrap(), &tensor(&t["output"]), 1e-5);
    let (got, want) = (m.summary_string(), t["summary"].as_str().unwrap());
    assert!(got == want, "--- kerust:\n{got}--- Keras:\n{want}");
    m.compile("mse", Adam::new().learning_rate(0.01), []).unwrap();
    let logs = m.train_on_batch(&tokens, &tensor(&t["y"])).unwrap();
    let (loss, want) = (logs.get("loss").unwrap(), t["loss"].as_f64().unwrap() as f32);
    assert!((loss - want).abs() < 1e-5, "loss {loss}, Keras {want}");
    for (i, (got, w)) in m.get_weights().iter().zip(tensors(&t["weights_after"])).enumerate() {
        assert_close(&format!("weight {i} after the step"), got, &w, 1e-5);
    }
}

#[test]
fn time_distributed_dense_matches_keras() {
    let fx = fixture();
    let (tokens, t) = (tensor(&fx["tokens"]), &fx["time_distributed"]);
    let mut m = embedded(TimeDistributed::new(Dense::new(4).activation("tanh")));
    m.add(LSTM::new(2)).unwrap();
    assert_names("time_distributed", &m, &t["paths"]);
    m.set_weights(&tensors(&t["weights"])).unwrap();
    // The LSTM reads the embedding's mask through TimeDistributed.
    assert_close("output", &m.predict(&tokens).unwrap(), &tensor(&t["output"]), 1e-5);
    let (got, want) = (m.summary_string(), t["summary"].as_str().unwrap());
    assert!(got == want, "--- kerust:\n{got}--- Keras:\n{want}");
    // Gradients reach the inner Dense through the folded time axis.
    m.compile("mse", Adam::new().learning_rate(0.01), []).unwrap();
    let logs = m.train_on_batch(&tokens, &tensor(&t["y"])).unwrap();
    let (loss, want) = (logs.get("loss").unwrap(), t["loss"].as_f64().unwrap() as f32);
    assert!((loss - want).abs() < 1e-5, "loss {loss}, Keras {want}");
    for (i, (got, w)) in m.get_weights().iter().zip(tensors(&t["weights_after"])).enumerate() {
        assert_close(&format!("weight {i} after the step"), got, &w, 1e-5);
    }
}

/// The sequence layers of the end-to-end mask test, by name.
fn sequence_layer(name: &str) -> Box<dyn Layer> {
    match name {
        "lstm" => Box::new(LSTM::new(3)),
        "gru" => Box::new(GRU::new(3)),
        "simple_rnn" => Box::new(SimpleRNN::new(3)),
        "bidirectional" => Box::new(Bidirectional::new(LSTM::new(3))),
        "bidirectional_seq" => {
            Box::new(Bidirectional::new(GRU::new(2).return_sequences(true)).merge_mode("mul"))
        }
        _ => Box::new(TimeDistributed::new(Dense::new(3))),
    }
}

/// Runs `predict` on a left-padded batch and on each sequence alone (batch of 1, its true length), with the
/// same weights, through `model(time)`: the results agree (the last output, or the real steps of a sequence).
fn padding_changes_nothing(name: &str, model: impl Fn(usize) -> Model) {
    let tokens =
        ndarray::array![[0.0f32, 0.0, 3.0, 1.0, 4.0], [5.0, 9.0, 2.0, 6.0, 5.0], [0.0, 0.0, 0.0, 0.0, 8.0]];
    let full = model(5);
    let batch = full.predict(&tokens).unwrap();
    for (b, row) in tokens.outer_iter().enumerate() {
        let n = row.iter().filter(|&&t| t != 0.0).count();
        let mut alone_model = model(n);
        alone_model.set_weights(&full.get_weights()).unwrap();
        let alone = alone_model.predict(&row.slice(s![5 - n..]).insert_axis(Axis(0)).to_owned()).unwrap();
        let mine = batch.index_axis(Axis(0), b).insert_axis(Axis(0));
        let mine = if mine.ndim() == 3 {
            mine.slice_axis(Axis(1), (5 - n..).into()).to_owned()
        } else {
            mine.to_owned()
        };
        assert_close(&format!("{name}: sequence {b} alone"), &alone, &mine.into_dyn(), 1e-5);
    }
}

#[test]
fn a_left_padded_batch_gives_each_sequence_its_own_result() {
    for name in ["lstm", "gru", "simple_rnn", "bidirectional", "bidirectional_seq"] {
        padding_changes_nothing(&format!("sequential {name}"), |time| {
            let mut m = Sequential::new();
            m.add(Embedding::new(10, 2).mask_zero(true).input_shape([time])).unwrap();
            m.add_boxed(sequence_layer(name)).unwrap();
            m.into()
        });
        padding_changes_nothing(&format!("functional {name}"), |time| {
            let mut g = Graph::with_seed(7);
            let x = g.input(Input::new([time])).unwrap();
            let e = g.apply(Embedding::new(10, 2).mask_zero(true), x).unwrap();
            let y = g.apply(sequence_layer(name), e).unwrap();
            Model::new(g, x, y).unwrap()
        });
    }
}

#[test]
fn configs_nest_the_inner_layers_and_round_trip() {
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Bidirectional::new(LSTM::new(4).return_sequences(true)).input_shape([5, 2])),
        Box::new(Bidirectional::new(GRU::new(2).reset_after(false)).merge_mode("ave").name("bi")),
        Box::new(
            Bidirectional::new(SimpleRNN::new(3).name("fwd"))
                .backward_layer(SimpleRNN::new(3).activation("relu").go_backwards(true).name("bwd")),
        ),
        Box::new(TimeDistributed::new(Dense::new(3).activation("relu")).input_shape([4, 2]).name("td")),
        Box::new(TimeDistributed::new(Bidirectional::new(LSTM::new(2)))),
    ];
    for layer in layers {
        let config = layer.config().unwrap();
        let again = layer_from_config(&config).unwrap();
        assert_eq!(again.config().unwrap(), config, "{}", config.class_name);
    }
    // Keras' nesting and names: the forward and backward copies, with go_backwards set on the second.
    let c = Bidirectional::new(LSTM::new(4)).config().unwrap().config;
    assert_eq!(c["merge_mode"], "concat");
    assert_eq!(c["layer"]["class_name"], "LSTM");
    assert_eq!(c["layer"]["config"]["name"], "forward_lstm");
    assert_eq!(c["layer"]["config"]["go_backwards"], false);
    assert_eq!(c["backward_layer"]["config"]["name"], "backward_lstm");
    assert_eq!(c["backward_layer"]["config"]["go_backwards"], true);
    let c = TimeDistributed::new(Dense::new(3)).config().unwrap().config;
    assert_eq!(
        (c["layer"]["class_name"].as_str(), c["layer"]["config"]["name"].as_str()),
        (Some("Dense"), Some("dense"))
    );
}

#[test]
fn models_with_nested_layers_save_and_load_in_kerust_format() {
    let fx = fixture();
    let tokens = tensor(&fx["tokens"]);
    let mut m = train_model();
    m.set_weights(&tensors(&fx["train"]["weights"])).unwrap();
    let dir = std::env::temp_dir().join(format!("kerust-bidirectional-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bi.safetensors");
    m.save(&path).unwrap();
    let loaded = load_model(&path).unwrap();
    assert_eq!(loaded.predict(&tokens).unwrap(), m.predict(&tokens).unwrap(), "bit-exact after loading");
    assert_eq!(loaded.get_weights(), m.get_weights());
    assert_eq!(loaded.summary_string(), m.summary_string());
    let names = |m: &Model| m.params().iter().map(|(_, p)| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&loaded), names(&m));

    let mut g = Graph::with_seed(3);
    let x = g.input(Input::new([5])).unwrap();
    let e = g.apply(Embedding::new(10, 2).mask_zero(true), x).unwrap();
    let t = g.apply(TimeDistributed::new(Dense::new(3)), e).unwrap();
    let y = g.apply(Bidirectional::new(LSTM::new(2)).merge_mode("mul"), t).unwrap();
    let f = Model::new(g, x, y).unwrap();
    let path = dir.join("graph.safetensors");
    f.save(&path).unwrap();
    let loaded = load_model(&path).unwrap();
    assert_eq!(loaded.predict(&tokens).unwrap(), f.predict(&tokens).unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

/// The message of the error adding `layer` to a model of sequences `(5, 2)`.
fn error_adding(layer: impl Layer + 'static) -> String {
    let mut m = Sequential::new();
    m.add(Input::new([5, 2])).unwrap();
    m.add(layer).unwrap_err().to_string()
}

#[test]
fn bad_wrappers_are_clear_errors() {
    let e = error_adding(Bidirectional::new(Dense::new(3)));
    assert!(e.contains("Bidirectional wraps a recurrent layer") && e.contains("Dense"), "{e}");
    let e = error_adding(Bidirectional::new(LSTM::new(3)).merge_mode("max"));
    assert!(e.contains("merge mode `max`") && e.contains(r#""sum", "mul", "ave", "concat", None"#), "{e}");
    // merge_mode None and a wrapped return_state give several outputs: tests/bidirectional_outputs.rs.
    let e = error_adding(Bidirectional::new(LSTM::new(3)).backward_layer(LSTM::new(3)));
    assert!(e.contains("different `go_backwards`"), "{e}");
    let e = error_adding(
        Bidirectional::new(LSTM::new(3))
            .backward_layer(LSTM::new(3).go_backwards(true).return_sequences(true)),
    );
    assert!(e.contains("return_sequences"), "{e}");
    let e = error_adding(
        Bidirectional::new(LSTM::new(3)).backward_layer(LSTM::new(4).go_backwards(true)).merge_mode("sum"),
    );
    assert!(e.contains("backward layer output"), "{e}");
    let mut m = Sequential::new();
    m.add(Input::new([3])).unwrap();
    let e = m.add(TimeDistributed::new(Dense::new(2))).unwrap_err().to_string();
    assert!(e.contains("TimeDistributed input") && e.contains("(None, 3)"), "{e}");
    // A failed add leaves no weights behind.
    assert!(m.params().is_empty());
}

#[test]
fn a_fully_masked_sequence_gives_the_initial_state_and_an_empty_one_is_an_error() {
    // Every step masked: Keras carries the zero initial state through, so the output is zero.
    let tokens = ndarray::array![[0.0f32, 0.0, 0.0, 0.0], [0.0, 3.0, 1.0, 4.0]];
    for name in ["lstm", "gru", "simple_rnn", "bidirectional"] {
        let mut m = Sequential::new();
        m.add(Embedding::new(10, 2).mask_zero(true).input_shape([4])).unwrap();
        m.add_boxed(sequence_layer(name)).unwrap();
        let y = m.predict(&tokens).unwrap();
        assert!(y.index_axis(Axis(0), 0).iter().all(|&v| v == 0.0), "{name}: {y}");
        assert!(y.index_axis(Axis(0), 1).iter().any(|&v| v != 0.0), "{name}: {y}");
    }
    // No steps at all: a clear error naming the input shape, not a panic.
    for name in ["lstm", "gru", "simple_rnn", "bidirectional"] {
        let mut m = Sequential::new();
        let e = m
            .add(Embedding::new(10, 2).mask_zero(true).input_shape([0]))
            .and_then(|_| m.add_boxed(sequence_layer(name)))
            .map(|_| m.predict(&ndarray::Array2::<f32>::zeros((2, 0))));
        let message = match e {
            Err(e) => e.to_string(),
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(y)) => panic!("{name}: an empty sequence gave {y}"),
        };
        assert!(message.contains("input_shape=[0]") && message.contains("positive"), "{name}: {message}");
    }
}
