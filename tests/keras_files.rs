//! Keras 3's `.keras` files: models trained and saved in Python (tests/fixtures/keras_files.py) load in kerust,
//! predict and evaluate as Keras did, and train on exactly as Keras would have; kerust's own `.keras` files load
//! back; hostile and unsupported files are errors naming what is wrong.
#![cfg(feature = "keras")]
mod common;

use common::fixture_tensor;
use kerust::autodiff::Tensor;
use kerust::models::{load_model, load_model_from_bytes, load_model_from_bytes_with, Model};
use kerust::saving::LoadOptions;
use serde_json::Value;

fn fixtures() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keras_files.json"))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras_files").join(name)
}

/// A fixture's inputs or targets: one array, or a list of them (a model of several inputs or outputs); the
/// convnet's images are bytes with a scale.
fn arrays(v: &Value) -> Vec<Tensor> {
    match v {
        Value::Array(list) => list.iter().map(fixture_tensor).collect(),
        one => {
            let mut t = fixture_tensor(one);
            if let Some(scale) = one.get("scale").and_then(Value::as_f64) {
                t.mapv_inplace(|x| x * scale as f32);
            }
            vec![t]
        }
    }
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: differs by {worst} (tolerance {tol})");
}

fn predict_all(model: &Model, x: &[Tensor]) -> Vec<Tensor> {
    let refs: Vec<&Tensor> = x.iter().collect();
    model.predict_outputs(refs).unwrap().into_vec()
}

fn check_model(name: &str) -> (Model, Value) {
    let all = fixtures();
    let f = all[name].clone();
    let mut model = load_model(file(f["file"].as_str().unwrap())).unwrap();
    let x = arrays(&f["x"]);
    let y = arrays(&f["y"]);
    // predict, to 1e-5.
    let want: Vec<Tensor> = match &f["predict"] {
        Value::Array(list) => list.iter().map(fixture_tensor).collect(),
        one => vec![fixture_tensor(one)],
    };
    for (i, (got, want)) in predict_all(&model, &x).iter().zip(&want).enumerate() {
        assert_close(&format!("{name} predict output {i}"), got, want, 1e-5);
    }
    // The weights Keras holds, in get_weights' order.
    let weights = model.get_weights();
    let want: Vec<Tensor> = f["weights"].as_array().unwrap().iter().map(fixture_tensor).collect();
    assert_eq!(weights.len(), want.len(), "{name}: weight count");
    for (i, (got, want)) in weights.iter().zip(&want).enumerate() {
        assert_close(&format!("{name} weight {i}"), got, want, 0.0);
    }
    // evaluate: the loss and every metric Keras logged.
    let batch = f["batch_size"].as_u64().unwrap() as usize;
    let xr: Vec<&Tensor> = x.iter().collect();
    let yr: Vec<&Tensor> = y.iter().collect();
    let logs = model.evaluate_with_batch_size(xr, yr, batch).unwrap();
    for (key, want) in f["evaluate"].as_object().unwrap() {
        let got = logs.get(key).unwrap_or_else(|| panic!("{name}: evaluate has no `{key}` ({logs:?})"));
        let want = want.as_f64().unwrap() as f32;
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{name} evaluate {key}: {got} vs Keras {want}"
        );
    }
    (model, f)
}

/// One more `train_on_batch` after loading: Keras' loss and weights, to 1e-5 (the optimizer's state came from
/// the file: a fresh optimizer would step otherwise).
fn check_step(name: &str) {
    let (mut model, f) = check_model(name);
    let batch = f["batch_size"].as_u64().unwrap() as usize;
    let cut = |t: &Tensor| t.slice_axis(ndarray::Axis(0), ndarray::Slice::from(..batch)).to_owned();
    let x: Vec<Tensor> = arrays(&f["x"]).iter().map(cut).collect();
    let y: Vec<Tensor> = arrays(&f["y"]).iter().map(cut).collect();
    let logs = model.train_on_batch(x.iter().collect::<Vec<_>>(), y.iter().collect::<Vec<_>>()).unwrap();
    let want = f["train_on_batch"]["loss"].as_f64().unwrap() as f32;
    let got = logs.get("loss").unwrap();
    assert!(
        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{name} train_on_batch loss: {got} vs Keras {want}"
    );
    let want: Vec<Tensor> = f["weights_after_step"].as_array().unwrap().iter().map(fixture_tensor).collect();
    for (i, (got, want)) in model.get_weights().iter().zip(&want).enumerate() {
        assert_close(&format!("{name} weight {i} after one step"), got, want, 1e-5);
    }
}

#[test]
fn mlp_adam_predicts_evaluates_and_steps_as_keras() {
    check_step("mlp");
}

#[test]
fn rmsprop_with_schedule_and_three_slot_groups_steps_as_keras() {
    check_step("mlp_rmsprop");
}

#[test]
fn mnist_convnet_with_batch_normalization_steps_as_keras() {
    check_step("mnist_convnet");
}

#[test]
fn functional_model_with_merges_and_two_outputs_steps_as_keras() {
    check_step("merges");
}

#[test]
fn every_other_layer_predicts_and_evaluates_as_keras() {
    check_model("zoo");
}

/// One epoch in Python, saved; one more in kerust: the weights of two epochs in Python.
#[test]
fn training_continues_across_languages() {
    for name in ["mlp", "mlp_rmsprop"] {
        let (mut model, f) = check_model(name);
        let batch = f["batch_size"].as_u64().unwrap() as usize;
        let (x, y) = (arrays(&f["x"]), arrays(&f["y"]));
        model.fit(&x[0], &y[0]).batch_size(batch).epochs(1).shuffle(false).verbose(0).run().unwrap();
        let want: Vec<Tensor> =
            f["weights_after_epoch"].as_array().unwrap().iter().map(fixture_tensor).collect();
        for (i, (got, want)) in model.get_weights().iter().zip(&want).enumerate() {
            assert_close(&format!("{name} weight {i} after the second epoch"), got, want, 1e-5);
        }
    }
}

/// kerust's `.keras` of a Keras-trained model loads back the same, compile state and optimizer included.
#[test]
fn kerust_keras_files_round_trip() {
    for name in ["mlp", "mlp_rmsprop", "merges", "mnist_convnet", "zoo"] {
        let model = load_model(file(&format!("{name}.keras"))).unwrap();
        let bytes = model.to_keras_bytes().unwrap();
        let again = load_model_from_bytes(&bytes).unwrap();
        assert_eq!(again.get_weights(), model.get_weights(), "{name}");
        assert_eq!(again.log_names(), model.log_names(), "{name}");
        let (a, b) = (model.optimizer().unwrap(), again.optimizer().unwrap());
        assert_eq!((a.name(), a.iterations(), a.config()), (b.name(), b.iterations(), b.config()), "{name}");
        assert_eq!(a.state(), b.state(), "{name}");
        // Saved again, the same config and weights.
        assert_eq!(again.to_keras_bytes().unwrap().len(), bytes.len(), "{name}");
    }
}

#[test]
fn unsupported_layer_is_an_error_naming_it_and_its_path() {
    let err = load_model(file("lstm.keras")).unwrap_err().to_string();
    assert!(
        err.contains("LSTM") && err.contains("config.layers[1]") && err.contains("custom_layer"),
        "{err}"
    );
}

#[test]
fn compile_false_loads_without_the_optimizer() {
    let bytes = std::fs::read(file("mlp.keras")).unwrap();
    let model = load_model_from_bytes_with(&bytes, &LoadOptions::new().compile(false)).unwrap();
    assert!(model.optimizer().is_none());
}
