//! Masks through the graph, the gather op's errors, and the Embedding layer in models (issue 19).
mod common;
use common::assert_close;

use std::sync::{Arc, Mutex};

use common::fixture_tensor as tensor;
use kerust::autodiff::{ParamId, ParamStore, Tensor, Var};
use kerust::layers::{Add, CallContext, Concatenate, Dense, Embedding, Flatten, Input, Layer};
use kerust::models::{Graph, Model, Sequential};
use kerust::optimizers::{Adam, SGD};
use kerust::Result;
use ndarray::{array, Array2, Array3};
use rand::rngs::StdRng;
use serde_json::Value;

/// What a [`Recorder`] saw: the mask of its first input on each call (`None` where it had none).
type Seen = Arc<Mutex<Vec<Option<Tensor>>>>;

/// The identity, whose output mask is 1.0 where the step's first feature is not zero: a test stand-in for a
/// mask-making layer (Embedding's `mask_zero`, Masking).
struct MaskMaker(Option<String>);

impl Layer for MaskMaker {
    fn class_name(&self) -> &'static str {
        "MaskMaker"
    }
    fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }
    fn set_name(&mut self, name: String) {
        self.0 = Some(name);
    }
    fn build(&mut self, shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        Ok(shape.to_vec())
    }
    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        x
    }
    fn compute_mask<'t>(&self, inputs: &[Var<'t>], _: &[Option<Var<'t>>]) -> Option<Var<'t>> {
        let mask = inputs[0].with_value(|v| {
            v.index_axis(ndarray::Axis(2), 0).mapv(|a| if a != 0.0 { 1.0f32 } else { 0.0 }).into_dyn()
        });
        Some(inputs[0].tape().constant(mask.view()))
    }
    fn weights(&self) -> &[ParamId] {
        &[]
    }
}

/// The identity, recording the mask it is called with; passes it on when `passes`.
struct Recorder {
    name: Option<String>,
    passes: bool,
    seen: Seen,
}

fn recorder(passes: bool) -> (Recorder, Seen) {
    let seen = Seen::default();
    (Recorder { name: None, passes, seen: seen.clone() }, seen)
}

impl Layer for Recorder {
    fn class_name(&self) -> &'static str {
        "Recorder"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }
    fn build(&mut self, shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        Ok(shape.to_vec())
    }
    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        x
    }
    fn supports_masking(&self) -> bool {
        self.passes
    }
    fn call_masked<'t>(
        &self,
        inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
        ctx: &mut CallContext<'_>,
    ) -> Var<'t> {
        self.seen.lock().unwrap().push(masks[0].map(|m| m.value()));
        self.call_many(inputs, ctx)
    }
    fn weights(&self) -> &[ParamId] {
        &[]
    }
}

/// A batch of 2 sequences of 3 steps of 2 features; step 1 of sample 0 and step 2 of sample 1 are padding.
fn padded() -> Array3<f32> {
    array![[[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]], [[2.0, 1.0], [1.0, 1.0], [0.0, 0.0]]]
}

fn padded_mask() -> Tensor {
    array![[1.0f32, 0.0, 1.0], [1.0, 1.0, 0.0]].into_dyn()
}

#[test]
fn a_mask_flows_through_dense_in_a_sequential() {
    let (rec, seen) = recorder(true);
    let (rec2, seen2) = recorder(true);
    let mut m = Sequential::new();
    m.add(Input::new([3, 2])).unwrap();
    m.add(MaskMaker(None)).unwrap();
    m.add(Dense::new(4)).unwrap();
    m.add(rec).unwrap();
    m.add(rec2).unwrap();
    m.predict(&padded()).unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), &[Some(padded_mask())]);
    // A layer that supports masking passes the mask on.
    assert_eq!(seen2.lock().unwrap().as_slice(), &[Some(padded_mask())]);
}

#[test]
fn a_layer_that_does_not_support_masking_drops_the_mask() {
    let (stops, seen_stop) = recorder(false);
    let (rec, seen) = recorder(true);
    let mut m = Sequential::new();
    m.add(Input::new([3, 2])).unwrap();
    m.add(MaskMaker(None)).unwrap();
    m.add(stops).unwrap();
    m.add(rec).unwrap();
    m.predict(&padded()).unwrap();
    assert_eq!(seen_stop.lock().unwrap().as_slice(), &[Some(padded_mask())]);
    assert_eq!(seen.lock().unwrap().as_slice(), &[None]);
}

#[test]
fn model_inputs_carry_no_mask() {
    let (rec, seen) = recorder(true);
    let mut m = Sequential::new();
    m.add(Input::new([3, 2])).unwrap();
    m.add(rec).unwrap();
    m.predict(&padded()).unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), &[None]);
}

#[test]
fn masks_flow_through_a_functional_graph_and_its_merges() {
    // Two masks: `a`'s from the data, `b`'s from the data with sample 1's first step zeroed.
    let mut g = Graph::with_seed(0);
    let x = g.input(Input::new([3, 2]).name("x")).unwrap();
    let y = g.input(Input::new([3, 2]).name("y")).unwrap();
    let a = g.apply(MaskMaker(None), x).unwrap();
    let b = g.apply(MaskMaker(None), y).unwrap();
    let (r_add, seen_add) = recorder(true);
    let (r_concat, seen_concat) = recorder(true);
    let (r_time, seen_time) = recorder(true);
    let (r_half, seen_half) = recorder(true);
    let (r_dense, seen_dense) = recorder(true);
    let sum = g.apply(Add::new(), [a, b]).unwrap();
    let sum = g.apply(r_add, sum).unwrap();
    let joined = g.apply(Concatenate::new(-1), [a, b]).unwrap();
    let joined = g.apply(r_concat, joined).unwrap();
    let in_time = g.apply(Concatenate::new(1), [a, b]).unwrap();
    let in_time = g.apply(r_time, in_time).unwrap();
    // One input without a mask: an element-wise merge gives none, as Keras' does.
    let half = g.apply(Add::new(), [a, y]).unwrap();
    let half = g.apply(r_half, half).unwrap();
    let dense = g.apply(Dense::new(2), a).unwrap();
    let dense = g.apply(r_dense, dense).unwrap();
    let model = Model::new(g, [x, y], [sum, joined, in_time, half, dense]).unwrap();
    let xv = padded();
    let mut yv = padded();
    yv[[1, 0, 0]] = 0.0;
    yv[[0, 1, 0]] = 5.0;
    let mb = array![[1.0f32, 1.0, 1.0], [0.0, 1.0, 0.0]].into_dyn();
    model.predict_outputs([&xv, &yv]).unwrap();
    let or = array![[1.0f32, 1.0, 1.0], [1.0, 1.0, 0.0]].into_dyn();
    assert_eq!(seen_add.lock().unwrap().as_slice(), &[Some(or.clone())]);
    assert_eq!(seen_concat.lock().unwrap().as_slice(), &[Some(or)]);
    let along_time = ndarray::concatenate(ndarray::Axis(1), &[padded_mask().view(), mb.view()]).unwrap();
    assert_eq!(seen_time.lock().unwrap().as_slice(), &[Some(along_time)]);
    assert_eq!(seen_half.lock().unwrap().as_slice(), &[None]);
    assert_eq!(seen_dense.lock().unwrap().as_slice(), &[Some(padded_mask())]);
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/keras_embedding.json")).unwrap()
}

/// The mask a layer computes for `x`, outside a model.
fn mask_of(layer: &dyn Layer, params: &ParamStore, x: &Tensor) -> Option<Tensor> {
    let tape = kerust::autodiff::Tape::inference(params, Default::default());
    let x = tape.constant(x.view());
    layer.compute_mask(&[x], &[None]).map(|m| m.value())
}

#[test]
fn a_lookup_of_rank_3_indices_and_its_mask_match_keras() {
    let fx = &fixture()["lookup"];
    let mut m = Sequential::new();
    m.add(Embedding::new(7, 3).mask_zero(true).input_shape([2, 3])).unwrap();
    m.set_weights(&[tensor(&fx["table"])]).unwrap();
    let ids = tensor(&fx["ids"]);
    assert_close("lookup", &m.predict(&ids).unwrap(), &tensor(&fx["output"]), 0.0);
    let mask = mask_of(&*m.layers()[0], m.params(), &ids).unwrap();
    assert_eq!(mask, tensor(&fx["mask"]));
    // Without mask_zero, no mask (Keras' compute_mask gives None).
    let mut plain = Embedding::new(7, 3);
    let mut params = ParamStore::new();
    let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(0);
    assert_eq!(plain.build(&[2, 3], &mut params, &mut rng).unwrap(), vec![2, 3, 3]);
    assert!(mask_of(&plain, &params, &ids).is_none());
}

/// Keras' Embedding(10, 4, mask_zero=True) -> Flatten -> Dense(2, softmax) of the fixture.
fn fixture_model() -> Sequential {
    let mut m = Sequential::new();
    m.add(Input::new([5])).unwrap();
    m.add(Embedding::new(10, 4).mask_zero(true)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(2).activation("softmax")).unwrap();
    m
}

#[test]
fn one_adam_step_through_an_embedding_matches_keras() {
    let fx = &fixture()["model"];
    let mut m = fixture_model();
    let weights: Vec<Tensor> = fx["weights_before"].as_array().unwrap().iter().map(tensor).collect();
    m.set_weights(&weights).unwrap();
    m.compile("categorical_crossentropy", Adam::new().learning_rate(0.01), []).unwrap();
    let (x, y) = (tensor(&fx["x"]), tensor(&fx["y"]));
    assert_close("predict", &m.predict(&x).unwrap(), &tensor(&fx["predict_before"]), 1e-5);
    let mask = mask_of(&*m.layers()[0], m.params(), &x).unwrap();
    assert_eq!(mask, tensor(&fx["mask"]));
    let logs = m.train_on_batch(&x, &y).unwrap();
    let loss = logs.get("loss").unwrap();
    let want = fx["loss"].as_f64().unwrap() as f32;
    assert!((loss - want).abs() < 1e-5, "loss {loss}, Keras {want}");
    // The embeddings first: rows 3 and 9 are used twice or more in the batch, rows 4 and 6 not at all.
    for (i, (got, want)) in m.get_weights().iter().zip(fx["weights_after"].as_array().unwrap()).enumerate() {
        assert_close(&format!("weight {i} after the step"), got, &tensor(want), 1e-5);
    }
}

#[test]
fn summary_and_config_are_keras() {
    let m = fixture_model();
    let s = m.summary_string();
    for line in [
        "│ embedding (Embedding)           │ (None, 5, 4)           │            40 │",
        "│ flatten (Flatten)               │ (None, 20)             │             0 │",
        "│ dense (Dense)                   │ (None, 2)              │            42 │",
        " Total params: 82 (328.00 B)",
    ] {
        assert!(s.contains(line), "summary lacks {line:?}:\n{s}");
    }
    let config = m.layers()[0].config().unwrap();
    assert_eq!(config.config["input_dim"], 10);
    assert_eq!(config.config["output_dim"], 4);
    assert_eq!(config.config["mask_zero"], true);
    let back = kerust::layers::layer_from_config(&config).unwrap();
    assert_eq!(back.config().unwrap(), config);
    let saved = m.to_bytes().unwrap();
    let loaded = kerust::models::load_model_from_bytes(&saved).unwrap();
    assert_eq!(loaded.get_weights(), m.get_weights());
}

#[test]
fn zero_sizes_are_errors_at_build() {
    for (layer, name) in [(Embedding::new(0, 4), "input_dim"), (Embedding::new(10, 0), "output_dim")] {
        let mut m = Sequential::new();
        m.add(Input::new([5])).unwrap();
        let err = m.add(layer).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains("positive"), "{err}");
    }
}

/// A layer that records the mask it is called with, after an Embedding(mask_zero).
#[test]
fn an_embedding_mask_reaches_call_masked_in_sequential_and_functional_models() {
    let ids = array![[0i32, 0, 4, 2], [3, 1, 0, 1]];
    let want = array![[0.0f32, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]].into_dyn();
    let (rec, seen) = recorder(true);
    let mut m = Sequential::new();
    m.add(Embedding::new(5, 3).mask_zero(true).input_shape([4])).unwrap();
    m.add(Dense::new(2)).unwrap();
    m.add(rec).unwrap();
    m.predict(&ids).unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), &[Some(want.clone())]);

    let (rec, seen) = recorder(true);
    let mut g = Graph::with_seed(1);
    let x = g.input(Input::new([4])).unwrap();
    let e = g.apply(Embedding::new(5, 3).mask_zero(true), x).unwrap();
    let d = g.apply(Dense::new(3), e).unwrap();
    let sum = g.apply(Add::new(), [e, d]).unwrap();
    let out = g.apply(rec, sum).unwrap();
    let model = Model::new(g, x, out).unwrap();
    model.predict(&ids).unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), &[Some(want)]);
}

/// Embedding -> Flatten -> Dense(1, sigmoid): the label is whether index 1 occurs in the sequence.
fn classifier() -> Sequential {
    let mut m = Sequential::new();
    m.add(Embedding::new(6, 4).input_shape([3])).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(1).activation("sigmoid")).unwrap();
    m.compile("binary_crossentropy", SGD::new().learning_rate(0.5), ["accuracy"]).unwrap();
    m
}

fn sequences() -> (Array2<i64>, Array2<f32>) {
    let x = Array2::from_shape_fn((60, 3), |(i, j)| ((i * 7 + j * 3 + i / 5) % 6) as i64);
    let y = Array2::from_shape_fn((60, 1), |(i, _)| f32::from(u8::from(x.row(i).iter().any(|&v| v == 1))));
    (x, y)
}

#[test]
fn a_model_fed_integer_arrays_trains_and_evaluates() {
    let (x64, y) = sequences();
    let x32 = x64.mapv(|v| v as i32);
    let mut m = classifier();
    let before = m.evaluate(&x32, &y).unwrap().get("loss").unwrap();
    m.fit(&x32, &y).epochs(30).batch_size(10).verbose(0).run().unwrap();
    m.fit(&x64, &y).epochs(30).batch_size(10).verbose(0).run().unwrap();
    let logs = m.evaluate(&x64, &y).unwrap();
    let (loss, acc) = (logs.get("loss").unwrap(), logs.get("accuracy").unwrap());
    assert!(loss < before * 0.5, "loss {before} -> {loss}");
    assert!(acc > 0.9, "accuracy {acc}");
    assert_eq!(m.evaluate(&x32, &y).unwrap().get("loss").unwrap(), loss);
}

#[test]
fn an_index_out_of_range_is_an_error_naming_it_and_changes_nothing() {
    let (mut x, y) = sequences();
    x[[37, 2]] = 6;
    let mut m = classifier();
    let weights = m.get_weights();
    let check = |err: kerust::Error, what: &str| {
        let msg = err.to_string();
        assert!(
            msg.contains("index 6")
                && msg.contains("(37, 2)")
                && msg.contains("input_dim=6")
                && msg.contains("embedding"),
            "{what}: {msg}"
        );
    };
    // The data is checked before the first step: the batches before the bad one do not train.
    check(m.fit(&x, &y).epochs(1).batch_size(10).shuffle(false).verbose(0).run().unwrap_err(), "fit");
    assert_eq!(m.get_weights(), weights, "fit");
    check(m.evaluate_with_batch_size(&x, &y, 10).unwrap_err(), "evaluate");
    check(m.predict_with_batch_size(&x, 10).unwrap_err(), "predict");
    assert_eq!(m.get_weights(), weights);
    // Negative and fractional indices too.
    let mut xf = x.mapv(|v| v as f32);
    xf[[37, 2]] = 2.0;
    xf[[3, 0]] = -1.0;
    let msg = m.predict(&xf).unwrap_err().to_string();
    assert!(msg.contains("index -1") && msg.contains("(3, 0)"), "{msg}");
    xf[[3, 0]] = 0.5;
    let msg = m.predict(&xf).unwrap_err().to_string();
    assert!(msg.contains("index 0.5"), "{msg}");
}

#[test]
fn a_bad_index_computed_inside_the_model_is_an_error_of_the_step_naming_the_layer() {
    // Indices doubled by a Rescaling: not a model input, so found by the lookup itself during the step.
    let mut m = Sequential::new();
    m.add(Input::new([3])).unwrap();
    m.add(kerust::layers::Rescaling::new(2.0)).unwrap();
    m.add(Embedding::new(6, 2).name("words")).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(1)).unwrap();
    m.compile("mse", SGD::new(), []).unwrap();
    let x = array![[0.0f32, 1.0, 2.0], [1.0, 2.0, 1.0], [2.0, 3.0, 0.0]];
    let y = Array2::<f32>::zeros((3, 1));
    let weights = m.get_weights();
    let errors =
        [m.predict_with_batch_size(&x, 2).unwrap_err(), m.evaluate_with_batch_size(&x, &y, 2).unwrap_err()];
    assert_eq!(m.get_weights(), weights);
    // Found during the step, so fit has trained on the batches before the bad one (as Keras would).
    let errors =
        errors.into_iter().chain([m.fit(&x, &y).batch_size(2).shuffle(false).verbose(0).run().unwrap_err()]);
    for err in errors {
        let msg = err.to_string();
        // Sample 2 is the first of the second batch: position (0, 1) of that batch.
        assert!(msg.contains("`words` (Embedding)") && msg.contains("index 6 at position (0, 1)"), "{msg}");
    }
}

#[test]
fn a_keras_file_with_an_embedding_and_an_integer_input_loads() {
    let fx = &fixture()["model"];
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keras_embedding.keras");
    let m = kerust::models::load_model(path).unwrap();
    let want: Vec<Tensor> = fx["weights_after"].as_array().unwrap().iter().map(tensor).collect();
    assert_eq!(m.get_weights(), want);
    assert_close("predict", &m.predict(&tensor(&fx["x"])).unwrap(), &tensor(&fx["predict_after"]), 1e-5);
    assert_eq!(m.layers()[0].config().unwrap().config["mask_zero"], true);
}
