//! Recurrent layers (SimpleRNN, LSTM, GRU): Keras' own outputs on a left-padded masked batch (both directions,
//! last output or sequences, final states), one training step under Adam and RMSprop, padding that changes
//! nothing, weights named as Keras names them, configs that round-trip, summaries, and the errors a user meets.
mod common;
use common::assert_close;

use common::fixture_tensor as tensor;
use kerust::autodiff::{ParamStore, Tape, Tensor};
use kerust::layers::{layer_from_config, CallContext, Dense, Input, Layer, SimpleRNN, GRU, LSTM};
use kerust::models::Sequential;
use kerust::optimizers::{Adam, RMSprop};
use ndarray::{s, Axis};
use rand::SeedableRng;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/keras_recurrent.json")).unwrap()
}

const CELLS: [&str; 4] = ["simple", "lstm", "gru", "gru_reset_before"];

/// The fixture's layer `cell` with these settings.
fn layer(cell: &str, return_sequences: bool, go_backwards: bool) -> Box<dyn Layer> {
    match cell {
        "simple" => Box::new(SimpleRNN::new(3).return_sequences(return_sequences).go_backwards(go_backwards)),
        "lstm" => Box::new(LSTM::new(3).return_sequences(return_sequences).go_backwards(go_backwards)),
        "gru" => Box::new(GRU::new(3).return_sequences(return_sequences).go_backwards(go_backwards)),
        _ => Box::new(
            GRU::new(3).reset_after(false).return_sequences(return_sequences).go_backwards(go_backwards),
        ),
    }
}

/// Output and states of the fixture's layer on `x` (with `mask`), through `call_with_state`.
fn run(cell: &str, rs: bool, gb: bool, weights: &[Tensor], x: &Tensor, mask: Option<&Tensor>) -> Vec<Tensor> {
    let mut params = ParamStore::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    macro_rules! go {
        ($l:expr) => {{
            let mut l = $l;
            l.build(&x.shape()[1..], &mut params, &mut rng).unwrap();
            for (&id, w) in l.weights().iter().zip(weights) {
                params.set_value(id, w.view()).unwrap();
            }
            let tape = Tape::inference(&params, Default::default());
            let xv = tape.constant(x.view());
            let m = mask.map(|m| tape.constant(m.view()));
            let mut ctx = CallContext::new(false, &mut rng);
            let (out, states) = l.call_with_state(xv, m, &mut ctx);
            // The plain call agrees with the first output of call_with_state.
            let masks = [m];
            let plain = l.call_masked(&[xv], &masks, &mut ctx).value();
            assert_eq!(plain, out.value(), "{cell}: call_masked and call_with_state differ");
            std::iter::once(out.value()).chain(states.iter().map(|s| s.value())).collect()
        }};
    }
    match cell {
        "simple" => go!(SimpleRNN::new(3).return_sequences(rs).go_backwards(gb)),
        "lstm" => go!(LSTM::new(3).return_sequences(rs).go_backwards(gb)),
        "gru" => go!(GRU::new(3).return_sequences(rs).go_backwards(gb)),
        _ => go!(GRU::new(3).reset_after(false).return_sequences(rs).go_backwards(gb)),
    }
}

#[test]
fn outputs_and_states_match_keras_on_a_left_padded_batch() {
    let fx = fixture();
    let (x, mask) = (tensor(&fx["x"]), tensor(&fx["mask"]));
    for cell in CELLS {
        let case = &fx["cells"][cell];
        let weights: Vec<Tensor> = case["weights"].as_array().unwrap().iter().map(tensor).collect();
        for r in case["runs"].as_array().unwrap() {
            let (rs, gb) = (r["return_sequences"].as_bool().unwrap(), r["go_backwards"].as_bool().unwrap());
            for (key, m) in [("masked", Some(&mask)), ("plain", None)] {
                let got = run(cell, rs, gb, &weights, &x, m);
                let what = format!("{cell} return_sequences={rs} go_backwards={gb} {key}");
                assert_close(&format!("{what}: output"), &got[0], &tensor(&r[key]), 1e-5);
                let states = r[format!("{key}_states")].as_array().unwrap();
                assert_eq!(got.len() - 1, states.len(), "{what}: states");
                for (k, (g, w)) in got[1..].iter().zip(states).enumerate() {
                    assert_close(&format!("{what}: state {k}"), g, &tensor(w), 1e-5);
                }
            }
        }
    }
}

#[test]
fn a_padded_sequence_ends_as_it_does_alone() {
    let fx = fixture();
    let (x, mask) = (tensor(&fx["x"]), tensor(&fx["mask"]));
    for cell in CELLS {
        let weights: Vec<Tensor> =
            fx["cells"][cell]["weights"].as_array().unwrap().iter().map(tensor).collect();
        let batch = run(cell, false, false, &weights, &x, Some(&mask));
        for b in 0..x.shape()[0] {
            let n = mask.index_axis(Axis(0), b).iter().filter(|&&m| m == 1.0).count();
            let alone = x.slice(s![b..b + 1, 5 - n.., ..]).to_owned().into_dyn();
            let got = run(cell, false, false, &weights, &alone, None);
            for (k, (a, w)) in got.iter().zip(&batch).enumerate() {
                let row = w.index_axis(Axis(0), b).to_owned().insert_axis(Axis(0));
                assert_close(&format!("{cell}: sequence {b}, result {k}"), a, &row.into_dyn(), 1e-6);
            }
        }
    }
}

#[test]
fn one_training_step_under_adam_and_rmsprop_matches_keras() {
    let fx = fixture();
    let x = tensor(&fx["x"]);
    for cell in CELLS {
        let case = &fx["cells"][cell];
        let mut weights: Vec<Tensor> = case["weights"].as_array().unwrap().iter().map(tensor).collect();
        weights.extend(case["dense"].as_array().unwrap().iter().map(tensor));
        let y = tensor(&case["y"]);
        for opt in ["adam", "rmsprop"] {
            let mut m = Sequential::new();
            m.add(Input::new([5, 2])).unwrap();
            m.add_boxed(layer(cell, false, false)).unwrap();
            m.add(Dense::new(1)).unwrap();
            m.set_weights(&weights).unwrap();
            if opt == "adam" {
                m.compile("mse", Adam::new().learning_rate(0.01), []).unwrap();
            } else {
                m.compile("mse", RMSprop::new().learning_rate(0.01), []).unwrap();
            }
            let logs = m.train_on_batch(&x, &y).unwrap();
            let want = &case["training"][opt];
            let (loss, want_loss) = (logs.get("loss").unwrap(), want["loss"].as_f64().unwrap() as f32);
            assert!((loss - want_loss).abs() < 1e-5, "{cell} {opt}: loss {loss}, Keras {want_loss}");
            for (i, (got, w)) in
                m.get_weights().iter().zip(want["weights_after"].as_array().unwrap()).enumerate()
            {
                assert_close(&format!("{cell} {opt}: weight {i} after the step"), got, &tensor(w), 1e-5);
            }
        }
    }
}

#[test]
fn weights_are_named_and_shaped_as_keras() {
    let mut m = Sequential::new();
    m.add(Input::new([5, 3])).unwrap();
    m.add(LSTM::new(4).return_sequences(true)).unwrap();
    m.add(GRU::new(2).return_sequences(true)).unwrap();
    m.add(GRU::new(2).reset_after(false).return_sequences(true)).unwrap();
    m.add(SimpleRNN::new(2)).unwrap();
    let got: Vec<(String, Vec<usize>)> =
        m.params().iter().map(|(_, p)| (p.name.clone(), p.value.shape().to_vec())).collect();
    let want = [
        ("lstm/lstm_cell/kernel", vec![3, 16]),
        ("lstm/lstm_cell/recurrent_kernel", vec![4, 16]),
        ("lstm/lstm_cell/bias", vec![16]),
        ("gru/gru_cell/kernel", vec![4, 6]),
        ("gru/gru_cell/recurrent_kernel", vec![2, 6]),
        ("gru/gru_cell/bias", vec![2, 6]),
        ("gru_1/gru_cell/kernel", vec![2, 6]),
        ("gru_1/gru_cell/recurrent_kernel", vec![2, 6]),
        ("gru_1/gru_cell/bias", vec![6]),
        ("simple_rnn/simple_rnn_cell/kernel", vec![2, 2]),
        ("simple_rnn/simple_rnn_cell/recurrent_kernel", vec![2, 2]),
        ("simple_rnn/simple_rnn_cell/bias", vec![2]),
    ];
    assert_eq!(got, want.map(|(n, s)| (n.to_string(), s)).to_vec());
    // unit_forget_bias: the forget gate's quarter of the LSTM bias starts at 1, the rest at 0.
    let bias = m.get_weights()[2].clone();
    assert!(
        bias.iter().enumerate().all(|(i, &b)| b == if (4..8).contains(&i) { 1.0 } else { 0.0 }),
        "{bias}"
    );
    // The recurrent kernel starts orthogonal.
    let u = m.get_weights()[1].clone().into_dimensionality::<ndarray::Ix2>().unwrap();
    let gram = u.dot(&u.t());
    for ((i, j), &v) in gram.indexed_iter() {
        assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-5, "U Uᵀ[{i}, {j}] = {v}");
    }
}

#[test]
fn summary_lines_match_keras() {
    let mut m = Sequential::new();
    m.add(Input::new([5, 3])).unwrap();
    m.add(LSTM::new(4).return_sequences(true)).unwrap();
    m.add(GRU::new(2)).unwrap();
    m.add(Dense::new(1)).unwrap();
    let s = m.summary_string();
    // Keras 3.15's own lines for this model.
    for line in [
        "│ lstm (LSTM)                     │ (None, 5, 4)           │           128 │",
        "│ gru (GRU)                       │ (None, 2)              │            48 │",
        "│ dense (Dense)                   │ (None, 1)              │             3 │",
        " Total params: 179 (716.00 B)",
    ] {
        assert!(s.contains(line), "summary lacks {line:?}:\n{s}");
    }
}

#[test]
fn configs_round_trip_and_refuse_another_layers_settings() {
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(
            SimpleRNN::new(5).activation("relu").use_bias(false).go_backwards(true).dropout(0.25).name("s"),
        ),
        Box::new(
            LSTM::new(3)
                .recurrent_activation("tanh")
                .unit_forget_bias(false)
                .return_sequences(true)
                .return_state(true)
                .recurrent_initializer(kerust::initializers::Initializer::Orthogonal { gain: 2.0 })
                .recurrent_dropout(0.5),
        ),
        Box::new(GRU::new(2).reset_after(false).input_shape([7, 3]).kernel_initializer("he_normal")),
    ];
    for l in &layers {
        let config = l.config().unwrap();
        let again = layer_from_config(&config).unwrap();
        assert_eq!(again.config().unwrap(), config);
        assert_eq!(again.class_name(), l.class_name());
    }
    let simple = layers[0].config().unwrap();
    assert!(
        simple.config.get("recurrent_activation").is_none() && simple.config.get("reset_after").is_none()
    );
    let mut wrong = layers[2].config().unwrap();
    wrong.class_name = "LSTM".into();
    let err = layer_from_config(&wrong).err().unwrap().to_string();
    assert!(err.contains("`unit_forget_bias` is missing in a LSTM config"), "{err}");
    let mut extra = layers[0].config().unwrap();
    extra.config["recurrent_activation"] = layers[1].config().unwrap().config["recurrent_activation"].clone();
    let err = layer_from_config(&extra).err().unwrap().to_string();
    assert!(err.contains("`recurrent_activation` is unexpected in a SimpleRNN config"), "{err}");
}

#[test]
fn the_mask_passes_on_only_with_return_sequences() {
    let params = ParamStore::new();
    let tape = Tape::inference(&params, Default::default());
    let x = tape.constant(ndarray::ArrayD::zeros(ndarray::IxDyn(&[1, 2, 1])).view());
    let m = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[1, 2])).view());
    assert!(LSTM::new(2).supports_masking());
    assert!(LSTM::new(2).compute_mask(&[x], &[Some(m)]).is_none());
    assert_eq!(
        LSTM::new(2).return_sequences(true).compute_mask(&[x], &[Some(m)]).map(|v| v.id()),
        Some(m.id())
    );
}

fn build_err(mut l: impl Layer, shape: &[usize]) -> String {
    let mut params = ParamStore::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let e = l.build(shape, &mut params, &mut rng).unwrap_err().to_string();
    assert!(params.is_empty(), "a failed build left weights behind");
    e
}

#[test]
fn bad_settings_and_inputs_are_errors_naming_what_was_expected() {
    let e = build_err(LSTM::new(3), &[5]);
    assert!(e.contains("(None, time, features)") && e.contains("(None, 5)"), "{e}");
    let e = build_err(GRU::new(3), &[2, 5, 3]);
    assert!(e.contains("(None, time, features)") && e.contains("(None, 2, 5, 3)"), "{e}");
    let e = build_err(SimpleRNN::new(0), &[5, 3]);
    assert!(e.contains("units") && e.contains("positive"), "{e}");
    let e = build_err(LSTM::new(2).activation("tanhh"), &[5, 3]);
    assert!(e.contains("tanhh") && e.contains("tanh"), "{e}");
    let e = build_err(GRU::new(2).recurrent_activation("softmax"), &[5, 3]);
    assert!(e.contains("recurrent_activation") && e.contains("element-wise"), "{e}");
    let e = build_err(LSTM::new(2).dropout(1.0), &[5, 3]);
    assert!(e.contains("dropout"), "{e}");
}

#[test]
fn dropout_acts_in_training_only_and_trains() {
    let mut m = Sequential::new();
    m.add(Input::new([6, 2])).unwrap();
    m.add(LSTM::new(4).dropout(0.5).recurrent_dropout(0.5)).unwrap();
    m.add(Dense::new(1)).unwrap();
    m.compile("mse", Adam::new(), []).unwrap();
    let x = ndarray::Array3::from_shape_fn((3, 6, 2), |(a, b, c)| ((a + 2 * b + 3 * c) % 5) as f32 / 5.0)
        .into_dyn();
    let y = ndarray::Array2::from_elem((3, 1), 0.5f32).into_dyn();
    let before = m.predict(&x).unwrap();
    assert_eq!(before, m.predict(&x).unwrap(), "inference is deterministic");
    for _ in 0..3 {
        let loss = m.train_on_batch(&x, &y).unwrap().get("loss").unwrap();
        assert!(loss.is_finite());
    }
    assert_ne!(before, m.predict(&x).unwrap(), "the weights moved");
}
