//! Layers of several outputs in a graph: `out, h, c = LSTM(4, return_state=True)(x)` as Keras, the states fed
//! to a Dense, against Keras' predictions and one Adam step (tests/fixtures/keras_return_state.py); the summary,
//! kerust's and Keras' saved configs with `[layer, node, tensor]` references, and the errors (a Sequential, or
//! `Graph::apply`, given such a layer).
mod common;
use common::assert_close;

use common::fixture_tensor as tensor;
use kerust::autodiff::Tensor;
use kerust::layers::{Concatenate, Dense, Input, GRU, LSTM};
use kerust::models::{load_model_from_bytes, Graph, Model, Sequential};
use kerust::optimizers::Adam;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/keras_return_state.json")).unwrap()
}

/// The fixture's model: `x -> LSTM(4, return_state) -> Concatenate([h, c]) -> Dense(2)`, with Keras' names.
fn model() -> Model {
    let mut g = Graph::new();
    let x = g.input(Input::new([5, 3]).name("x")).unwrap();
    let outputs = g.apply_outputs(LSTM::new(4).return_state(true).name("lstm"), x).unwrap();
    assert_eq!(outputs.len(), 3);
    let joined = g.apply(Concatenate::new(-1).name("states"), [outputs[1], outputs[2]]).unwrap();
    let y = g.apply(Dense::new(2).name("head"), joined).unwrap();
    let mut m = Model::new(g, x, y).unwrap().with_name("return_state");
    let weights: Vec<Tensor> = fixture()["weights"].as_array().unwrap().iter().map(tensor).collect();
    m.set_weights(&weights).unwrap();
    m
}

#[test]
fn states_feed_a_dense_and_train_one_step_as_keras() {
    let fx = fixture();
    let (x, y) = (tensor(&fx["x"]), tensor(&fx["y"]));
    let mut m = model();
    assert_close("predict", &m.predict(&x).unwrap(), &tensor(&fx["predict"]), 1e-5);
    m.compile("mse", Adam::new().learning_rate(0.01), []).unwrap();
    let logs = m.train_on_batch(&x, &y).unwrap();
    let (loss, want) = (logs.get("loss").unwrap(), fx["loss"].as_f64().unwrap() as f32);
    assert!((loss - want).abs() < 1e-5, "loss {loss}, Keras {want}");
    for (i, (got, w)) in m.get_weights().iter().zip(fx["weights_after_step"].as_array().unwrap()).enumerate()
    {
        assert_close(&format!("weight {i} after the step"), got, &tensor(w), 1e-5);
    }
}

/// The output, `h` and `c` are Keras' (the output of a last-step LSTM is its `h`).
#[test]
fn every_output_is_keras() {
    let fx = fixture();
    let x = tensor(&fx["x"]);
    let mut g = Graph::new();
    let input = g.input(Input::new([5, 3])).unwrap();
    let outputs = g.apply_outputs(LSTM::new(4).return_state(true), input).unwrap();
    let all = g.apply(Concatenate::new(-1), outputs).unwrap();
    let mut m = Model::new(g, input, all).unwrap();
    let lstm_weights: Vec<Tensor> = fx["weights"].as_array().unwrap()[..3].iter().map(tensor).collect();
    m.set_weights(&lstm_weights).unwrap();
    let got = m.predict(&x).unwrap();
    let states: Vec<Tensor> = fx["states"].as_array().unwrap().iter().map(tensor).collect();
    let views: Vec<_> = states.iter().map(|s| s.view()).collect();
    let want = ndarray::concatenate(ndarray::Axis(1), &views).unwrap();
    assert_close("output, h, c", &got, &want, 1e-5);
}

#[test]
fn summary_shows_every_output_and_tensor_indexes() {
    let text = model().summary_string();
    let want = fixture()["summary"].as_str().unwrap().to_owned();
    assert_eq!(text, want);
}

/// kerust's own format and a `.keras` file keep the `[layer, node, tensor]` references: the model loads back
/// whole, predicting the same.
#[test]
fn saved_models_load_back_with_their_tensor_indexes() {
    let fx = fixture();
    let x = tensor(&fx["x"]);
    let mut m = model();
    m.compile("mse", Adam::new().learning_rate(0.01), []).unwrap();
    let want = m.predict(&x).unwrap();
    let bytes = m.to_bytes().unwrap();
    // The config is a JSON string inside the file's JSON header: its quotes are escaped.
    let config = String::from_utf8_lossy(&bytes).into_owned();
    assert!(config.contains(r#"[\"lstm\",0,1]"#) && config.contains(r#"[\"lstm\",0,2]"#));
    for bytes in [bytes, m.to_keras_bytes().unwrap()] {
        let again = load_model_from_bytes(&bytes).unwrap();
        assert_eq!(again.predict(&x).unwrap(), want);
        assert_eq!(again.get_weights(), m.get_weights());
        assert_eq!(again.summary_string(), m.summary_string());
    }
}

#[test]
fn a_layer_of_several_outputs_in_a_sequential_is_an_error_naming_it() {
    let mut m = Sequential::new();
    m.add(Input::new([5, 3])).unwrap();
    let err = m.add(GRU::new(4).return_state(true).name("encoder")).unwrap_err().to_string();
    assert!(err.contains("`encoder` (GRU)") && err.contains("single output tensor"), "{err}");
    // The model is unchanged: a plain GRU goes in its place.
    m.add(GRU::new(4).name("encoder")).unwrap();
    m.add(Dense::new(1)).unwrap();
    assert_eq!(m.layers().len(), 2);
}

#[test]
fn graph_apply_of_a_layer_of_several_outputs_is_an_error_and_changes_nothing() {
    let mut g = Graph::new();
    let x = g.input(Input::new([5, 3])).unwrap();
    let err = g.apply(LSTM::new(4).return_state(true).name("lstm"), x).unwrap_err().to_string();
    assert!(err.contains("lstm") && err.contains("apply_outputs"), "{err}");
    // The name is free again, and one output without return_state.
    let y = g.apply(LSTM::new(4).name("lstm"), x).unwrap();
    assert_eq!(g.shape(y).unwrap(), &[4]);
    let m = Model::new(g, x, y).unwrap();
    assert_eq!(m.get_weights().len(), 3);
    let lstm = m.get_layer("lstm").unwrap();
    assert_eq!(lstm.extra_output_shapes(), Vec::<Vec<usize>>::new());
}
