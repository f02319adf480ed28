//! BatchNormalization given a mask (issue 19): Keras' moments over the unmasked steps in training, the mask passed
//! on to the next layer; against Keras' own outputs (tests/fixtures/keras_masked.py).
mod common;
use common::assert_close;

use common::fixture_tensor as tensor;
use kerust::autodiff::{ParamStore, Tape, Tensor};
use kerust::layers::{
    BatchNormalization, CallContext, Dense, Embedding, Flatten, Input, Layer, TimeDistributed, LSTM,
};
use kerust::models::Sequential;
use kerust::optimizers::Adam;
use rand::SeedableRng;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/keras_masked.json")).unwrap()
}

fn tensors(v: &Value) -> Vec<Tensor> {
    v.as_array().unwrap().iter().map(tensor).collect()
}

/// The layer of a fixture case, built for (5, 4) steps with the case's weights.
fn layer(case: &Value, params: &mut ParamStore) -> BatchNormalization {
    let mut bn = BatchNormalization::new().axis(case["axis"].as_i64().unwrap()).momentum(0.5);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    bn.build(&[5, 4], params, &mut rng).unwrap();
    for (&id, w) in bn.weights().iter().zip(tensors(&case["weights"])) {
        params.set_value(id, w.view()).unwrap();
    }
    bn
}

/// The layer's output on `x` with `mask` (training or not), and the weights it assigns (in its weights' order).
fn run(
    bn: &BatchNormalization,
    params: &ParamStore,
    x: &Tensor,
    mask: Option<&Tensor>,
    training: bool,
) -> (Tensor, Vec<Tensor>) {
    let tape = Tape::new(params);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut ctx = CallContext::new(training, &mut rng);
    let mask = mask.map(|m| tape.constant(m.view()));
    let y = bn.call_masked(&[tape.constant(x.view())], &[mask], &mut ctx).value();
    let updates = ctx.into_updates();
    let assigned = bn
        .weights()
        .iter()
        .map(|id| match updates.iter().find(|(u, _)| u == id) {
            Some((_, v)) => v.to_array(),
            None => params.value(*id).to_array(),
        })
        .collect();
    (y, assigned)
}

#[test]
fn training_moments_are_those_of_the_unmasked_steps_as_in_keras() {
    let fx = &fixture()["layer"];
    let (x, mask) = (tensor(&fx["x"]), tensor(&fx["mask"]));
    for case in fx["cases"].as_array().unwrap() {
        let axis = case["axis"].as_i64().unwrap();
        let mut params = ParamStore::new();
        let bn = layer(case, &mut params);
        let (y, after) = run(&bn, &params, &x, Some(&mask), true);
        assert_close(&format!("axis {axis}: training output"), &y, &tensor(&case["training"]), 1e-5);
        for (i, (got, want)) in after.iter().zip(tensors(&case["weights_after"])).enumerate() {
            assert_close(&format!("axis {axis}: weight {i} after the call"), got, &want, 1e-5);
        }
        let (y, unchanged) = run(&bn, &params, &x, Some(&mask), false);
        assert_close(&format!("axis {axis}: inference output"), &y, &tensor(&case["inference"]), 1e-5);
        assert_eq!(unchanged, tensors(&case["weights"]), "inference assigns nothing");
        // The test can fail: without the mask, the moments (and so the output) are another batch's.
        let (plain, _) = run(&bn, &params, &x, None, true);
        let differs = plain.iter().zip(&tensor(&case["training"])).any(|(a, b)| (a - b).abs() > 1e-3);
        assert!(differs, "axis {axis}: the mask changed nothing");
    }
}

#[test]
fn a_mask_of_another_rank_is_an_error_not_a_panic() {
    let mut params = ParamStore::new();
    let mut bn = BatchNormalization::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    bn.build(&[5, 4], &mut params, &mut rng).unwrap();
    let tape = Tape::new(&params);
    let mut ctx = CallContext::new(true, &mut rng);
    let x = tape.constant(ndarray::ArrayD::zeros(ndarray::IxDyn(&[3, 5, 4])).view());
    let mask = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[3])).view());
    bn.call_masked(&[x], &[Some(mask)], &mut ctx);
    let e = ctx.take_error().expect("an error").to_string();
    assert!(e.contains("mask.shape=[3]") && e.contains("inputs.shape=[3, 5, 4]"), "{e}");
}

/// Keras' Embedding(8, 3, mask_zero=True) -> BatchNormalization(momentum=0.5) -> LSTM(4) -> Dense(1).
fn fixture_model() -> Sequential {
    let mut m = Sequential::new();
    m.add(Input::new([6])).unwrap();
    m.add(Embedding::new(8, 3).mask_zero(true)).unwrap();
    m.add(BatchNormalization::new().momentum(0.5)).unwrap();
    m.add(LSTM::new(4)).unwrap();
    m.add(Dense::new(1)).unwrap();
    m
}

#[test]
fn embedding_batch_normalization_lstm_on_a_left_padded_batch_matches_keras() {
    // At inference the LSTM skips the padding only if the normalization passes the mask on; after the step,
    // gamma, beta and the moving mean and variance of the unmasked steps, then the LSTM's and Dense's weights.
    one_step_matches_keras(fixture_model(), &fixture()["model"]);
}

/// One Adam step of `m` against the fixture `fx`: predictions before and after, the loss, every weight.
fn one_step_matches_keras(mut m: Sequential, fx: &Value) {
    m.set_weights(&tensors(&fx["weights_before"])).unwrap();
    m.compile("mse", Adam::new().learning_rate(0.01), []).unwrap();
    let (x, y) = (tensor(&fx["x"]), tensor(&fx["y"]));
    assert_close("predict before", &m.predict(&x).unwrap(), &tensor(&fx["predict_before"]), 1e-5);
    let logs = m.train_on_batch(&x, &y).unwrap();
    let loss = logs.get("loss").unwrap();
    let want = fx["loss"].as_f64().unwrap() as f32;
    assert!((loss - want).abs() <= 1e-5 * (1.0 + want.abs()), "loss {loss}, Keras {want}");
    for (i, (got, want)) in m.get_weights().iter().zip(tensors(&fx["weights_after"])).enumerate() {
        assert_close(&format!("weight {i} after the step"), got, &want, 1e-5);
    }
    assert_close("predict after", &m.predict(&x).unwrap(), &tensor(&fx["predict_after"]), 1e-5);
}

#[test]
fn time_distributed_lstm_sees_each_sentence_mask_as_in_keras() {
    let fx = &fixture()["time_distributed"];
    let mut m = Sequential::new();
    m.add(Input::new([4, 5])).unwrap();
    m.add(Embedding::new(9, 3).mask_zero(true)).unwrap();
    m.add(TimeDistributed::new(LSTM::new(3))).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(1)).unwrap();
    one_step_matches_keras(m, fx);
}

#[test]
fn time_distributed_refuses_a_mask_of_other_steps() {
    let mut params = ParamStore::new();
    let mut td = TimeDistributed::new(Dense::new(2));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    td.build(&[4, 3], &mut params, &mut rng).unwrap();
    let tape = Tape::new(&params);
    let x = tape.constant(ndarray::ArrayD::zeros(ndarray::IxDyn(&[2, 4, 3])).view());
    for bad in [vec![2usize], vec![2, 5], vec![3, 4]] {
        let mut ctx = CallContext::new(false, &mut rng);
        let mask = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&bad)).view());
        td.call_masked(&[x], &[Some(mask)], &mut ctx);
        let e = ctx.take_error().expect("an error").to_string();
        assert!(e.contains(&format!("mask shape {bad:?}")) && e.contains("(2, 4, ...)"), "{e}");
    }
}
