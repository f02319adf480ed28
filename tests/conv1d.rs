//! Sequence layers: Conv1D, the 1-D poolings (global ones with masks), LayerNormalization against Keras' own outputs
//! (tests/fixtures/keras_conv1d.py), one training step with Adam and RMSprop, the summary byte for byte,
//! config round trips, and the errors a user meets.
mod common;
use common::assert_close;

use common::fixture_tensor as tensor;
use kerust::autodiff::{ParamStore, Tape, Tensor};
use kerust::layers::{
    layer_from_config, AveragePooling1D, CallContext, Conv1D, Dense, GlobalAveragePooling1D,
    GlobalMaxPooling1D, Input, Layer, LayerNormalization, MaxPooling1D, SpatialDropout1D,
};
use kerust::models::{load_model, Sequential};
use kerust::optimizers::{Adam, Optimizer, RMSprop};
use rand::SeedableRng;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/keras_conv1d.json")).unwrap()
}

/// The layer of each case of `keras_conv1d.py`.
fn layer(name: &str) -> Box<dyn Layer> {
    match name {
        "conv_valid" => Box::new(Conv1D::new(3, 3)),
        "conv_same" => Box::new(Conv1D::new(3, 4).padding("same").activation("tanh")),
        "conv_causal" => Box::new(Conv1D::new(2, 3).padding("causal").dilation_rate(2)),
        "conv_stride" => Box::new(Conv1D::new(3, 3).strides(2).padding("same").use_bias(false)),
        "conv_stride_valid" => Box::new(Conv1D::new(2, 4).strides(3).activation("relu")),
        "conv_causal_stride" => Box::new(Conv1D::new(2, 3).strides(2).padding("causal")),
        "conv_dilation" => Box::new(Conv1D::new(2, 2).dilation_rate(3).activation("sigmoid")),
        "max_pool" => Box::new(MaxPooling1D::new(2)),
        "max_pool_same" => Box::new(MaxPooling1D::new(3).strides(2).padding("same")),
        "avg_pool_same" => Box::new(AveragePooling1D::new(2).padding("same")),
        "avg_pool_overlap" => Box::new(AveragePooling1D::new(3).strides(1)),
        "global_max" => Box::new(GlobalMaxPooling1D::new()),
        "global_max_keepdims" => Box::new(GlobalMaxPooling1D::new().keepdims(true)),
        "global_avg" => Box::new(GlobalAveragePooling1D::new()),
        "global_avg_keepdims" => Box::new(GlobalAveragePooling1D::new().keepdims(true)),
        "layer_norm" => Box::new(LayerNormalization::new()),
        "layer_norm_no_center" => Box::new(LayerNormalization::new().epsilon(1e-5).center(false)),
        "layer_norm_axes" => Box::new(LayerNormalization::new().axes([1, 2])),
        "layer_norm_axis_1" => Box::new(LayerNormalization::new().axis(1).scale(false)),
        other => panic!("no layer for case {other}"),
    }
}

#[test]
fn every_layer_matches_keras_on_fixed_weights() {
    let fx = fixture();
    let cases = fx["layers"].as_object().unwrap();
    assert_eq!(cases.len(), 19);
    for (name, case) in cases {
        let mut l = layer(name);
        let x = tensor(&case["x"]);
        let mut params = ParamStore::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let out_shape = l.build(&x.shape()[1..], &mut params, &mut rng).unwrap();
        let weights: Vec<Tensor> = case["weights"].as_array().unwrap().iter().map(tensor).collect();
        assert_eq!(l.weights().len(), weights.len(), "{name}: weight count");
        for (&id, w) in l.weights().iter().zip(&weights) {
            params.set_value(id, w.view()).unwrap();
        }
        let tape = Tape::inference(&params, Default::default());
        let xv = tape.constant(x.view());
        let mut ctx = CallContext::new(false, &mut rng);
        let want = tensor(&case["y"]);
        assert_eq!(out_shape, want.shape()[1..], "{name}: output shape");
        assert_close(name, &l.call_masked(&[xv], &[None], &mut ctx).value(), &want, 1e-5);
        if let Some(mask) = case.get("mask") {
            let m = tape.constant(tensor(mask).view());
            let got = l.call_masked(&[xv], &[Some(m)], &mut ctx).value();
            assert_close(&format!("{name} masked"), &got, &tensor(&case["y_masked"]), 1e-5);
            assert!(l.compute_mask(&[xv], &[Some(m)]).is_none(), "{name}: the steps axis is gone");
        }
    }
}

fn model() -> Sequential {
    let mut m = Sequential::new();
    m.add(Input::new([10, 4])).unwrap();
    m.add(Conv1D::new(5, 3).padding("causal").activation("relu")).unwrap();
    m.add(Conv1D::new(4, 2).strides(2)).unwrap();
    m.add(GlobalMaxPooling1D::new()).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m
}

#[test]
fn one_training_step_with_adam_and_rmsprop_matches_keras() {
    let fx = fixture();
    let train = &fx["train"];
    let (x, y) = (tensor(&train["x"]), tensor(&train["y"]));
    let start: Vec<Tensor> = train["weights_before"].as_array().unwrap().iter().map(tensor).collect();
    let optimizers: [(&str, Box<dyn Optimizer>); 2] = [
        ("adam", Box::new(Adam::new().learning_rate(0.01))),
        ("rmsprop", Box::new(RMSprop::new().learning_rate(0.01))),
    ];
    for (name, opt) in optimizers {
        let mut m = model();
        m.set_weights(&start).unwrap();
        m.compile("categorical_crossentropy", opt, []).unwrap();
        let logs = m.train_on_batch(&x, &y).unwrap();
        let loss = logs.get("loss").unwrap();
        let want = train[name]["loss"].as_f64().unwrap() as f32;
        assert!((loss - want).abs() < 1e-5, "{name}: loss {loss}, Keras {want}");
        for (i, (got, want)) in
            m.get_weights().iter().zip(train[name]["weights_after"].as_array().unwrap()).enumerate()
        {
            assert_close(&format!("{name}: weight {i} after the step"), got, &tensor(want), 1e-5);
        }
    }
}

#[test]
fn summary_matches_keras_byte_for_byte() {
    let fx = fixture();
    let got = model().summary_string();
    let want = fx["summary"].as_str().unwrap();
    assert!(got == want, "--- kerust:\n{got}--- Keras:\n{want}");
}

#[test]
fn configs_round_trip_through_layer_from_config() {
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Conv1D::new(4, 3).padding("causal").dilation_rate(2).activation("relu").name("c")),
        Box::new(Conv1D::new(2, 5).strides(2).padding("same").use_bias(false).input_shape([9, 2])),
        Box::new(MaxPooling1D::new(3).strides(1).padding("same")),
        Box::new(AveragePooling1D::new(2)),
        Box::new(GlobalMaxPooling1D::new().keepdims(true)),
        Box::new(GlobalAveragePooling1D::new().name("gap")),
    ];
    for l in layers {
        let config = l.config().unwrap();
        let again = layer_from_config(&config).unwrap();
        assert_eq!(again.config().unwrap(), config);
        assert_eq!(again.class_name(), l.class_name());
    }
    // Keras' layout of sizes: lists of one.
    let c = Conv1D::new(4, 3).strides(1).config().unwrap();
    assert_eq!(c.config["kernel_size"], serde_json::json!([3]));
    assert_eq!(c.config["padding"], "valid");
}

fn build_error(mut l: impl Layer, input: &[usize]) -> String {
    let mut params = ParamStore::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let err = l.build(input, &mut params, &mut rng).expect_err("an error").to_string();
    assert!(params.is_empty(), "a failed build adds no weights: {err}");
    err
}

#[test]
fn bad_settings_and_inputs_are_errors_naming_expected_and_got() {
    let e = build_error(Conv1D::new(2, 0), &[8, 3]);
    assert!(e.contains("kernel_size") && e.contains('0'), "{e}");
    let e = build_error(Conv1D::new(2, 3).padding("full"), &[8, 3]);
    assert!(e.contains("full") && e.contains("causal"), "{e}");
    let e = build_error(Conv1D::new(2, 5), &[4, 3]);
    assert!(e.contains("at least 5 steps") && e.contains("(None, 4, 3)"), "{e}");
    let e = build_error(Conv1D::new(2, 3).dilation_rate(3), &[6, 3]);
    assert!(e.contains("at least 7 steps") && e.contains("(None, 6, 3)"), "{e}");
    let e = build_error(Conv1D::new(2, 3).strides(2).dilation_rate(2), &[9, 3]);
    assert!(e.contains("strides") && e.contains("dilation_rate=2"), "{e}");
    let e = build_error(Conv1D::new(2, 3), &[9]);
    assert!(e.contains("channel axis is missing"), "{e}");
    let e = build_error(Conv1D::new(2, 3), &[9, 4, 4]);
    assert!(e.contains("(None, steps, channels)") && e.contains("(None, 9, 4, 4)"), "{e}");
    let e = build_error(MaxPooling1D::new(4), &[3, 2]);
    assert!(e.contains("at least 4 steps") && e.contains("(None, 3, 2)"), "{e}");
    let e = build_error(MaxPooling1D::new(2).padding("causal"), &[3, 2]);
    assert!(e.contains("causal"), "{e}");
    let e = build_error(AveragePooling1D::new(0), &[3, 2]);
    assert!(e.contains("pool_size"), "{e}");
    let e = build_error(GlobalAveragePooling1D::new(), &[3]);
    assert!(e.contains("channel axis"), "{e}");
    let e = build_error(LayerNormalization::new().axis(0), &[3, 2]);
    assert!(e.contains("axis") && e.contains("0 is not a feature axis") && e.contains("(None, 3, 2)"), "{e}");
    let e = build_error(LayerNormalization::new().axes([1, -2]), &[3, 2]);
    assert!(e.contains("twice"), "{e}");
    let e = build_error(LayerNormalization::new().axis(3), &[3, 2]);
    assert!(e.contains("1 to 2"), "{e}");
    // Causal and same padding fit any sequence of at least one step.
    let mut params = ParamStore::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    assert_eq!(Conv1D::new(2, 5).padding("causal").build(&[2, 3], &mut params, &mut rng).unwrap(), [2, 2]);
}

#[test]
fn layer_normalization_passes_a_mask_through_and_the_poolings_do_not() {
    let mut params = ParamStore::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut ln = LayerNormalization::new();
    ln.build(&[3, 2], &mut params, &mut rng).unwrap();
    let tape = Tape::inference(&params, Default::default());
    let x = tape.constant(ndarray::ArrayD::<f32>::ones(ndarray::IxDyn(&[1, 3, 2])).view());
    let m = tape.constant(ndarray::array![[0.0f32, 1.0, 1.0]].into_dyn().view());
    assert!(ln.supports_masking());
    assert_eq!(ln.compute_mask(&[x], &[Some(m)]).map(|m| m.value()), Some(m.value()));
    assert!(!GlobalMaxPooling1D::new().supports_masking());
    assert!(GlobalAveragePooling1D::new().supports_masking());
    assert!(!Conv1D::new(2, 2).supports_masking(), "Keras' Conv1D drops a mask");
}

#[test]
fn spatial_dropout_drops_whole_channels_with_inverted_scaling() {
    let mut params = ParamStore::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut drop = SpatialDropout1D::new(0.25);
    drop.build(&[5, 40], &mut params, &mut rng).unwrap();
    let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[50, 5, 40]), |i| 1.0 + (i[1] * 40 + i[2]) as f32);
    let tape = Tape::new(&params);
    let xv = tape.constant(x.view());
    let y = drop.call(xv, &mut CallContext::new(true, &mut rng));
    let (yv, scale) = (y.value(), 1.0 / 0.75);
    let mut dropped = 0;
    for n in 0..50 {
        for c in 0..40 {
            let kept: Vec<bool> = (0..5).map(|t| yv[[n, t, c]] != 0.0).collect();
            assert!(kept.iter().all(|&k| k == kept[0]), "sample {n} channel {c}: one draw for every step");
            if kept[0] {
                (0..5).for_each(|t| assert_eq!(yv[[n, t, c]], x[[n, t, c]] * scale));
            } else {
                dropped += 1;
            }
        }
    }
    // 2000 draws at 0.25: 500 expected, a standard deviation of about 19.
    assert!((400..600).contains(&dropped), "{dropped} of 2000 channels dropped");
    // The gradient is the same mask.
    let mut grads = kerust::autodiff::Gradients::new();
    let mut store = ParamStore::new();
    let id = store.add("x", x.clone(), true);
    let tape = Tape::new(&store);
    let y = drop.call(tape.param(id), &mut CallContext::new(true, &mut rng));
    let y_value = y.value();
    tape.backward(y.sum(), &mut grads).unwrap();
    let g = grads.get(id).unwrap().to_array();
    let mask = |y: f32| if y == 0.0 { 0.0 } else { 1.0 / (1.0 - 0.25f32) };
    assert!(g.iter().zip(&y_value).all(|(&g, &y)| g == mask(y)), "the gradient is the mask");
    // Inference: the identity.
    let tape = Tape::inference(&params, Default::default());
    let xv = tape.constant(x.view());
    assert_eq!(drop.call(xv, &mut CallContext::new(false, &mut rng)).value(), x);
    assert!(drop.supports_masking());
    let e = build_error(SpatialDropout1D::new(1.0), &[5, 4]);
    assert!(e.contains("rate") && e.contains("[0, 1)"), "{e}");
    let e = build_error(SpatialDropout1D::new(0.5), &[5]);
    assert!(e.contains("channel axis"), "{e}");
}

/// A sequence task: class 1 when a bump appears in the first half of channel 0, 0 when in the second.
fn bumps(n: usize) -> (Tensor, Tensor) {
    let mut x = ndarray::ArrayD::zeros(ndarray::IxDyn(&[n, 16, 3]));
    let mut y = ndarray::ArrayD::zeros(ndarray::IxDyn(&[n, 1]));
    for i in 0..n {
        let at = (i * 7) % 16;
        x[[i, at, 0]] = 1.0;
        x[[i, (i * 5) % 16, 1]] = 0.5;
        y[[i, 0]] = if at < 8 { 1.0 } else { 0.0 };
    }
    (x, y)
}

#[test]
fn a_sequence_model_trains_saves_and_loads_bit_exactly() {
    let (x, y) = bumps(64);
    let mut m = Sequential::new();
    m.add(Input::new([16, 3])).unwrap();
    m.add(Conv1D::new(8, 3).padding("causal").activation("relu")).unwrap();
    m.add(LayerNormalization::new()).unwrap();
    m.add(SpatialDropout1D::new(0.1)).unwrap();
    m.add(Conv1D::new(8, 3).dilation_rate(2).padding("same").activation("relu")).unwrap();
    m.add(MaxPooling1D::new(2)).unwrap();
    m.add(AveragePooling1D::new(2).padding("same")).unwrap();
    m.add(GlobalAveragePooling1D::new()).unwrap();
    m.add(Dense::new(1).activation("sigmoid")).unwrap();
    m.compile("binary_crossentropy", Adam::new().learning_rate(0.01), ["accuracy"]).unwrap();
    let history = m.fit(&x, &y).batch_size(16).epochs(30).verbose(0).run().unwrap();
    let (first, last) = (history["loss"][0], *history["loss"].last().unwrap());
    assert!(last < 0.7 * first, "the loss falls: {first} -> {last}");
    let dir = std::env::temp_dir().join(format!("kerust-conv1d-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("seq.safetensors");
    m.save(&path).unwrap();
    let loaded = load_model(&path).unwrap();
    assert_eq!(loaded.predict(&x).unwrap(), m.predict(&x).unwrap(), "bit-exact predictions after loading");
    assert_eq!(loaded.summary_string(), m.summary_string());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_keras_file_of_the_sequence_layers_loads_predicts_and_saves_again() {
    let fx = fixture();
    let case = &fx["keras_file"];
    let path = format!("{}/tests/fixtures/keras_files/conv1d_seq.keras", env!("CARGO_MANIFEST_DIR"));
    let model = load_model(&path).unwrap();
    let x = tensor(&case["x"]);
    let want = tensor(&case["y"]);
    assert_close("predict", &model.predict(&x).unwrap(), &want, 1e-5);
    let classes: Vec<&str> = model.layers().iter().map(|l| l.class_name()).collect();
    assert!(classes.contains(&"SpatialDropout1D") && classes.contains(&"LayerNormalization"), "{classes:?}");
    // Written as a Keras file again, it reads back the same.
    let bytes = model.to_keras_bytes().unwrap();
    let again = kerust::models::load_model_from_bytes(&bytes).unwrap();
    assert_eq!(again.predict(&x).unwrap(), model.predict(&x).unwrap());
}
