//! Keras 3's `.keras` files: models trained and saved in Python (tests/fixtures/keras_files.py) load in kerust,
//! predict and evaluate as Keras did, and train on exactly as Keras would have; kerust's own `.keras` files load
//! back; hostile and unsupported files are errors naming what is wrong.
#![cfg(feature = "keras")]
mod common;
use common::assert_max_difference as assert_close;

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
    let bytes = edited("lstm.keras", |c| c["config"]["layers"][1]["class_name"] = "ConvLSTM1D".into());
    let err = load_err(&bytes);
    assert!(
        err.contains("ConvLSTM1D") && err.contains("config.layers[1]") && err.contains("custom_layer"),
        "{err}"
    );
    // It lists what kerust translates: every layer it has, InputLayer and the wrappers included.
    for class in kerust::layers::KNOWN_LAYERS {
        assert!(err.contains(class), "{class} missing from: {err}");
    }
}

fn rnn_fixtures() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keras_rnn_files.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Keras' recurrent models (Embedding mask_zero -> LSTM -> GRU -> Dense, and one with a SimpleRNN) load with
/// Keras' weights from `layers/<rnn>/cell/vars`, predict as Keras on a left-padded batch, and kerust's `.keras`
/// of them loads back the same (optimizer state included).
#[test]
fn recurrent_keras_files_predict_as_keras_and_round_trip() {
    let all = rnn_fixtures();
    for name in ["rnn_stack", "simple_rnn"] {
        let f = &all[name];
        let model = load_model(file(f["file"].as_str().unwrap())).unwrap();
        let want: Vec<Tensor> = f["weights"].as_array().unwrap().iter().map(fixture_tensor).collect();
        assert_eq!(model.get_weights().len(), want.len(), "{name}");
        for (i, (got, want)) in model.get_weights().iter().zip(&want).enumerate() {
            assert_close(&format!("{name} weight {i}"), got, want, 0.0);
        }
        let x = fixture_tensor(&f["x"]);
        let predicted = predict_all(&model, std::slice::from_ref(&x));
        assert_close(&format!("{name} predict"), &predicted[0], &fixture_tensor(&f["predict"]), 1e-5);

        let bytes = model.to_keras_bytes().unwrap();
        let again = load_model_from_bytes(&bytes).unwrap();
        assert_eq!(again.get_weights(), model.get_weights(), "{name}");
        assert_eq!(predict_all(&again, std::slice::from_ref(&x)), predicted, "{name}");
        match (model.optimizer(), again.optimizer()) {
            (Some(a), Some(b)) => assert_eq!(a.state(), b.state(), "{name}"),
            (None, None) => {}
            _ => panic!("{name}: the optimizer did not round-trip"),
        }
        assert_eq!(again.to_keras_bytes().unwrap().len(), bytes.len(), "{name}");
    }
    // The Sequential has its optimizer state from Keras' step.
    let stack = load_model(file("rnn_stack.keras")).unwrap();
    assert_eq!(stack.optimizer().unwrap().iterations(), 1);
}

/// Keras' recurrent settings kerust cannot honour are errors naming the setting and the value; those it can
/// (`unroll`, which computes the same) load.
#[test]
fn recurrent_settings_kerust_lacks_are_errors_naming_them() {
    let cases: &[(usize, &str, Value)] = &[
        (2, "stateful", Value::Bool(true)),
        (2, "zero_output_for_mask", Value::Bool(true)),
        (2, "recurrent_constraint", serde_json::json!({"class_name": "NonNeg", "config": {}})),
        (3, "recurrent_regularizer", serde_json::json!({"class_name": "L2", "config": {"l2": 0.01}})),
        (3, "activity_regularizer", serde_json::json!({"class_name": "L2", "config": {"l2": 0.01}})),
    ];
    for (layer, key, value) in cases {
        let bytes =
            edited("rnn_stack.keras", |c| c["config"]["layers"][*layer]["config"][*key] = value.clone());
        let err = load_err(&bytes);
        let place = format!("config.layers[{layer}].config.{key}");
        assert!(err.contains(&place) && err.contains(&value.to_string()), "{key}: {err}");
    }
    let bytes = edited("rnn_stack.keras", |c| c["config"]["layers"][2]["config"]["unroll"] = true.into());
    assert!(load_model_from_bytes(&bytes).is_ok());
    // A GRU config with an LSTM's setting.
    let bytes =
        edited("rnn_stack.keras", |c| c["config"]["layers"][3]["config"]["unit_forget_bias"] = true.into());
    let err = load_err(&bytes);
    assert!(err.contains("config.layers[3].config.unit_forget_bias"), "{err}");
}

fn wrapper_fixtures() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keras_wrapper_files.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Keras' wrapper layers (tests/fixtures/keras_wrapper_files.py): a Sequential Embedding(mask_zero) ->
/// Bidirectional(LSTM) -> Bidirectional(GRU, "ave") -> Dense and a functional TimeDistributed(Dense) model load
/// with Keras' weights (from `layers/bidirectional/forward_layer/cell/vars`, `layers/time_distributed/layer/vars`,
/// ...), predict as Keras (a left-padded batch for the masked one), and kerust's `.keras` of them loads back the
/// same; one more Adam step from the file's optimizer state is Keras' step.
#[test]
fn wrapper_keras_files_predict_step_and_round_trip() {
    let all = wrapper_fixtures();
    for name in ["bidir_stack", "time_distributed"] {
        let f = &all[name];
        let model = load_model(file(f["file"].as_str().unwrap())).unwrap();
        let want: Vec<Tensor> = f["weights"].as_array().unwrap().iter().map(fixture_tensor).collect();
        assert_eq!(model.get_weights().len(), want.len(), "{name}");
        for (i, (got, want)) in model.get_weights().iter().zip(&want).enumerate() {
            assert_close(&format!("{name} weight {i}"), got, want, 0.0);
        }
        let (x, y) = (fixture_tensor(&f["x"]), fixture_tensor(&f["y"]));
        let predicted = predict_all(&model, std::slice::from_ref(&x));
        assert_close(&format!("{name} predict"), &predicted[0], &fixture_tensor(&f["predict"]), 1e-5);
        assert_eq!(model.optimizer().unwrap().iterations(), 1, "{name}");

        let bytes = model.to_keras_bytes().unwrap();
        let mut again = load_model_from_bytes(&bytes).unwrap();
        assert_eq!(again.get_weights(), model.get_weights(), "{name}");
        assert_eq!(predict_all(&again, std::slice::from_ref(&x)), predicted, "{name}");
        let (a, b) = (model.optimizer().unwrap(), again.optimizer().unwrap());
        assert_eq!((a.name(), a.iterations(), a.config()), (b.name(), b.iterations(), b.config()), "{name}");
        assert_eq!(a.state(), b.state(), "{name}");
        assert_eq!(again.to_keras_bytes().unwrap().len(), bytes.len(), "{name}");

        // The step Keras took after loading, from the reloaded kerust file (its optimizer slots in Keras' order).
        let logs = again.train_on_batch(&x, &y).unwrap();
        let (got, want) = (logs.get("loss").unwrap(), f["train_on_batch"]["loss"].as_f64().unwrap() as f32);
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{name} train_on_batch loss: {got} vs {want}"
        );
        let want: Vec<Tensor> =
            f["weights_after_step"].as_array().unwrap().iter().map(fixture_tensor).collect();
        for (i, (got, want)) in again.get_weights().iter().zip(&want).enumerate() {
            assert_close(&format!("{name} weight {i} after one step"), got, want, 1e-5);
        }
    }
}

/// An edit of a fixture's `config.json`: the file, the edit, the words its error must contain.
type ConfigCase = (&'static str, Box<dyn Fn(&mut Value)>, &'static [&'static str]);

/// A wrapper's settings kerust lacks, and inner layers it cannot translate, are errors naming the path inside
/// the wrapper.
#[test]
fn wrapper_settings_kerust_lacks_are_errors_naming_the_path() {
    let cases: Vec<ConfigCase> = vec![
        (
            "bidir_stack.keras",
            // Read (as a functional model's would be), but a Sequential's layers have one output each.
            Box::new(|c: &mut Value| c["config"]["layers"][3]["config"]["merge_mode"] = Value::Null),
            &["`bidirectional_1` (Bidirectional)", "single output tensor", "merge_mode None"],
        ),
        (
            "bidir_stack.keras",
            Box::new(|c: &mut Value| c["config"]["layers"][3]["config"]["merge_mode"] = "max".into()),
            &["config.layers[3].config.merge_mode", "max"],
        ),
        (
            "bidir_stack.keras",
            Box::new(|c: &mut Value| {
                c["config"]["layers"][2]["config"]["layer"]["class_name"] = "ConvLSTM1D".into()
            }),
            &["config.layers[2].config.layer", "ConvLSTM1D", "inside a Bidirectional", "SimpleRNN"],
        ),
        (
            "bidir_stack.keras",
            Box::new(|c: &mut Value| {
                c["config"]["layers"][2]["config"]["backward_layer"]["config"]["stateful"] = true.into()
            }),
            &["config.layers[2].config.backward_layer.config.stateful", "true"],
        ),
        (
            "bidir_stack.keras",
            Box::new(|c: &mut Value| {
                c["config"]["layers"][2]["config"]["layer"]["config"]["trainable"] = false.into()
            }),
            &["config.layers[2].config.layer.config.trainable", "freezes"],
        ),
        (
            "time_distributed.keras",
            Box::new(|c: &mut Value| {
                c["config"]["layers"][1]["config"]["layer"]["config"]["kernel_constraint"] =
                    serde_json::json!({"class_name": "MaxNorm"})
            }),
            &["config.layers[1].config.layer.config.kernel_constraint", "MaxNorm"],
        ),
        (
            "time_distributed.keras",
            Box::new(|c: &mut Value| {
                c["config"]["layers"][1]["config"]["layer"]["class_name"] = "MyDense".into()
            }),
            &["config.layers[1].config.layer", "MyDense", "inside a TimeDistributed"],
        ),
    ];
    for (i, (name, edit, words)) in cases.iter().enumerate() {
        let err = load_err(&edited(name, edit));
        assert!(words.iter().all(|w| err.contains(w)), "case {i}: {err}");
    }
    // The wrappers' weights are checked where Keras keeps them: a narrower backward layer (fewer weights than
    // the file holds, within its budget) is an error at its first weight.
    let bytes = edited("bidir_stack.keras", |c| {
        c["config"]["layers"][2]["config"]["backward_layer"]["config"]["units"] = 4.into()
    });
    let err = load_err(&bytes);
    assert!(
        err.contains("layers/bidirectional/backward_layer/cell/vars/0") && err.contains("[4, 20]"),
        "{err}"
    );
}

#[test]
fn compile_false_loads_without_the_optimizer() {
    let bytes = std::fs::read(file("mlp.keras")).unwrap();
    let model = load_model_from_bytes_with(&bytes, &LoadOptions::new().compile(false)).unwrap();
    assert!(model.optimizer().is_none());
}

/// `mlp.keras` with its `config.json` edited by `edit`, as bytes.
fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    use kerust::formats::zip;
    let bytes = std::fs::read(file(name)).unwrap();
    let entries = zip::read(&bytes, &zip::ZipLimits::default()).unwrap();
    let mut config: Value =
        serde_json::from_slice(&entries.iter().find(|(n, _)| n == "config.json").unwrap().1).unwrap();
    edit(&mut config);
    with_config(name, &serde_json::to_vec(&config).unwrap())
}

/// The file `name` with another `config.json`.
fn with_config(name: &str, config: &[u8]) -> Vec<u8> {
    use kerust::formats::zip;
    let bytes = std::fs::read(file(name)).unwrap();
    let entries = zip::read(&bytes, &zip::ZipLimits::default()).unwrap();
    let rebuilt: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), if n == "config.json" { config } else { b.as_slice() }))
        .collect();
    zip::write(&rebuilt).unwrap()
}

fn load_err(bytes: &[u8]) -> String {
    load_model_from_bytes(bytes).err().map(|e| e.to_string()).unwrap_or_else(|| "loaded".into())
}

#[test]
fn hostile_and_unsupported_configs_are_errors_naming_the_place() {
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        // A layer that asks for a trillion weights: refused before allocating, within the file's weights.
        (
            edited("mlp.keras", |c| {
                c["config"]["layers"][1]["config"]["units"] = 1_000_000_000_000u64.into()
            }),
            &["elements", "limit"],
        ),
        // An input of huge dimensions.
        (
            edited("mlp.keras", |c| {
                c["config"]["layers"][0]["config"]["batch_shape"] =
                    serde_json::json!([null, 4_000_000_000u64, 4_000_000_000u64])
            }),
            &["limit"],
        ),
        // Another width than the weights file holds.
        (edited("mlp.keras", |c| c["config"]["layers"][2]["config"]["units"] = 9.into()), &["limit"]),
        // An activation kerust lacks, a setting it does not have, a mixed-precision policy.
        (
            edited("mlp.keras", |c| c["config"]["layers"][2]["config"]["activation"] = "hard_silu".into()),
            &["config.layers[2]", "hard_silu", "custom_activation"],
        ),
        (
            edited("mlp.keras", |c| {
                c["config"]["layers"][1]["config"]["kernel_constraint"] =
                    serde_json::json!({"class_name": "MaxNorm"})
            }),
            &["config.layers[1].config.kernel_constraint", "MaxNorm"],
        ),
        (
            edited("mlp.keras", |c| c["config"]["layers"][1]["config"]["dtype"] = "mixed_float16".into()),
            &["mixed_float16"],
        ),
        (
            edited("mlp.keras", |c| {
                c["config"]["layers"][1]["config"]["kernel_initializer"]["class_name"] = "Orthogonal".into()
            }),
            &["Orthogonal", "kernel_initializer"],
        ),
        // A loss and an optimizer kerust lacks.
        (
            edited("mlp.keras", |c| c["compile_config"]["loss"] = "kl_divergence".into()),
            &["compile_config.loss", "kl_divergence", "custom_loss"],
        ),
        (
            edited("mlp.keras", |c| c["compile_config"]["optimizer"]["class_name"] = "Nadam".into()),
            &["Nadam", "compile_config.optimizer"],
        ),
        // Another model class, a config that is not an object.
        (edited("mlp.keras", |c| c["class_name"] = "MyModel".into()), &["MyModel"]),
        (edited("mlp.keras", |c| c["config"] = Value::Null), &["config"]),
        // A functional graph with a cycle, and one referring to a layer that does not exist.
        (
            edited("merges.keras", |c| {
                c["config"]["layers"][2]["inbound_nodes"][0]["args"][0]["config"]["keras_history"] =
                    serde_json::json!(["add", 0, 0]);
            }),
            &["cycle"],
        ),
        (
            edited("merges.keras", |c| c["config"]["output_layers"] = serde_json::json!([["nowhere", 0, 0]])),
            &["nowhere"],
        ),
    ];
    for (i, (bytes, words)) in cases.iter().enumerate() {
        let e = load_err(bytes);
        assert!(words.iter().all(|w| e.contains(w)), "case {i}: {e}");
    }
    // JSON nested beyond serde_json's recursion limit: an error, not a stack overflow.
    // (Written as text: a Value this deep would overflow the test's own stack when dropped.)
    let deep = format!("{{\"config\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let deep = with_config("mlp.keras", deep.as_bytes());
    let e = load_err(&deep);
    assert!(e.contains("config.json") && e.contains("recursion"), "{e}");
    // Not an archive at all, a truncated one, one without its config.
    let bytes = std::fs::read(file("mlp.keras")).unwrap();
    assert!(load_err(&bytes[..bytes.len() / 2]).contains("zip"), "{}", load_err(&bytes[..bytes.len() / 2]));
    let no_config = kerust::formats::zip::write(&[("metadata.json", b"{}".as_slice())]).unwrap();
    assert!(load_err(&no_config).contains("config.json"));
}

#[test]
fn a_registered_custom_activation_loads() {
    let bytes = edited("mlp.keras", |c| c["config"]["layers"][2]["config"]["activation"] = "cube".into());
    let cube = kerust::activations::Activation::custom("cube", |x| x * x * x, |x| 3.0 * x * x);
    let model = load_model_from_bytes_with(&bytes, &LoadOptions::new().custom_activation(cube)).unwrap();
    assert_eq!(model.layers().len(), 3);
}

/// Keras 3's `.weights.h5` (kerust's, which Keras reads: see keras_interchange.py) loads back into the model.
#[test]
fn weights_h5_round_trips() {
    let model = load_model(file("merges.keras")).unwrap();
    let dir = std::env::temp_dir().join(format!("kerust-weights-h5-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("merges.weights.h5");
    model.save_weights(&path).unwrap();
    let mut other = load_model(file("merges.keras")).unwrap();
    let zeros: Vec<Tensor> = other.get_weights().iter().map(|w| w.mapv(|_| 0.0)).collect();
    other.set_weights(&zeros).unwrap();
    other.load_weights(&path).unwrap();
    assert_eq!(other.get_weights(), model.get_weights());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Keras' legacy HDF5 model file (`layer_names`/`weight_names`, as Keras 2 and `keras.applications` write
/// them): `load_weights` into the same model built in kerust, and `load_model` of the whole file.
#[test]
fn legacy_h5_weights_and_model_load() {
    use kerust::layers::{BatchNormalization, Conv2D, Dense, Flatten, Input};
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keras_legacy_h5.json"))
            .unwrap();
    let f: Value = serde_json::from_str(&text).unwrap();
    let (x, want) = (fixture_tensor(&f["x"]), fixture_tensor(&f["predict"]));
    let mut model = kerust::models::Sequential::new();
    model.add(Input::new([8, 8, 1])).unwrap();
    model.add(Conv2D::new(2, 3).activation("relu")).unwrap();
    model.add(BatchNormalization::new()).unwrap();
    model.add(Flatten::new()).unwrap();
    model.add(Dense::new(3).activation("softmax")).unwrap();
    model.load_weights(file("legacy_mlp.h5")).unwrap();
    assert_close("legacy weights predict", &model.predict(&x).unwrap(), &want, 1e-5);
    let whole = load_model(file("legacy_mlp.h5")).unwrap();
    assert_close("legacy model predict", &whole.predict(&x).unwrap(), &want, 1e-5);
    // Another architecture: an error naming the layer, not a silent partial load.
    let mut other = kerust::models::Sequential::new();
    other.add(Input::new([8, 8, 1])).unwrap();
    other.add(Flatten::new()).unwrap();
    other.add(Dense::new(3)).unwrap();
    let err = other.load_weights(file("legacy_mlp.h5")).unwrap_err().to_string();
    assert!(err.contains("layers with weights"), "{err}");
}
