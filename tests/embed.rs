//! Masks through the graph, the gather op's errors, and the Embedding layer in models (issue 19).
use std::sync::{Arc, Mutex};

use kerust::autodiff::{ParamId, ParamStore, Tensor, Var};
use kerust::layers::{Add, CallContext, Concatenate, Dense, Input, Layer};
use kerust::models::{Graph, Model, Sequential};
use kerust::Result;
use ndarray::{array, Array3};
use rand::rngs::StdRng;

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
