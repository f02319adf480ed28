//! Functional Keras 3 text models whose `Embedding(mask_zero=True)` mask Keras records as a `NotEqual` op node
//! and `mask` call arguments (tests/fixtures/keras_mask_files.py): they load, predict on a left-padded batch and
//! take one Adam step as Keras did, kerust's `.keras` of them loads back the same, and a `NotEqual` or `mask`
//! kerust cannot read as Embedding's mask is an error naming it.
#![cfg(feature = "keras")]
mod common;
use common::assert_max_difference as assert_close;

use common::fixture_tensor;
use kerust::autodiff::Tensor;
use kerust::formats::zip;
use kerust::models::{load_model, load_model_from_bytes};
use serde_json::{json, Value};

fn fixtures() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keras_mask_files.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras_files").join(name)
}

fn config_of(bytes: &[u8]) -> Value {
    let entries = zip::read(bytes, &zip::ZipLimits::default()).unwrap();
    serde_json::from_slice(&entries.iter().find(|(n, _)| n == "config.json").unwrap().1).unwrap()
}

/// The fixture file `name` with its `config.json` edited by `edit`, as bytes.
fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let bytes = std::fs::read(file(name)).unwrap();
    let mut config = config_of(&bytes);
    edit(&mut config);
    let config = serde_json::to_vec(&config).unwrap();
    let entries = zip::read(&bytes, &zip::ZipLimits::default()).unwrap();
    let rebuilt: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), if n == "config.json" { config.as_slice() } else { b.as_slice() }))
        .collect();
    zip::write(&rebuilt).unwrap()
}

fn load_err(bytes: &[u8]) -> String {
    load_model_from_bytes(bytes).err().map(|e| e.to_string()).unwrap_or_else(|| "loaded".into())
}

/// Embedding(mask_zero) -> LSTM and Embedding(mask_zero) -> Bidirectional(LSTM) x2, saved by Keras with their
/// `NotEqual` node: Keras' weights, predictions on a left-padded batch (1e-5), its next Adam step from the
/// file's optimizer state (loss and weights, 1e-5); kerust's `.keras` of them loads back the same.
#[test]
fn keras_saved_masked_text_models_predict_and_step_as_keras() {
    let all = fixtures();
    for name in ["mask_lstm", "mask_bidir"] {
        let f = &all[name];
        let path = file(f["file"].as_str().unwrap());
        // The fixture holds what this test is about: the NotEqual node and the mask arguments naming it.
        let config = config_of(&std::fs::read(&path).unwrap());
        let layers = config["config"]["layers"].as_array().unwrap();
        assert_eq!(layers[2]["class_name"], "NotEqual", "{name}");
        assert_eq!(
            layers[3]["inbound_nodes"][0]["kwargs"]["mask"]["config"]["keras_history"][0],
            "not_equal"
        );

        let model = load_model(&path).unwrap();
        assert!(model.layers().iter().all(|l| l.class_name() != "NotEqual"), "{name}");
        let want: Vec<Tensor> = f["weights"].as_array().unwrap().iter().map(fixture_tensor).collect();
        assert_eq!(model.get_weights().len(), want.len(), "{name}");
        for (i, (got, want)) in model.get_weights().iter().zip(&want).enumerate() {
            assert_close(&format!("{name} weight {i}"), got, want, 0.0);
        }
        let (x, y) = (fixture_tensor(&f["x"]), fixture_tensor(&f["y"]));
        let predicted = model.predict(&x).unwrap();
        assert_close(&format!("{name} predict"), &predicted, &fixture_tensor(&f["predict"]), 1e-5);
        assert_eq!(model.optimizer().unwrap().iterations(), 1, "{name}");

        // kerust's summary is of its graph, which holds no NotEqual: Keras' rows without the `not_equal` one
        // (and so a chain, in a Sequential's three columns), with Keras' weight counts.
        let summary = model.summary_string();
        let keras = f["summary"].as_str().unwrap();
        assert!(!summary.contains("not_equal") && keras.contains("(NotEqual)"), "{name}");
        for line in keras.lines().filter(|l| l.starts_with(" Trainable params") || l.starts_with(" Non-")) {
            assert!(summary.contains(line), "{name}: {line:?} not in\n{summary}");
        }

        // kerust's file (no NotEqual node: Keras records it again when it loads the file) loads back the same.
        let bytes = model.to_keras_bytes().unwrap();
        let written = config_of(&bytes);
        let classes: Vec<&str> = written["config"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["class_name"].as_str().unwrap())
            .collect();
        assert!(!classes.contains(&"NotEqual"), "{name}: {classes:?}");
        let mut again = load_model_from_bytes(&bytes).unwrap();
        assert_eq!(again.get_weights(), model.get_weights(), "{name}");
        assert_eq!(again.predict(&x).unwrap(), predicted, "{name}");

        // Keras' step after loading, from the file's optimizer state.
        let mut model = model;
        for (what, m) in [("loaded", &mut model), ("round trip", &mut again)] {
            let logs = m.train_on_batch(&x, &y).unwrap();
            let (got, want) =
                (logs.get("loss").unwrap(), f["train_on_batch"]["loss"].as_f64().unwrap() as f32);
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{name} {what} loss: {got} vs {want}");
            let want: Vec<Tensor> =
                f["weights_after_step"].as_array().unwrap().iter().map(fixture_tensor).collect();
            for (i, (got, want)) in m.get_weights().iter().zip(&want).enumerate() {
                assert_close(&format!("{name} {what} weight {i} after one step"), got, want, 1e-5);
            }
        }
    }
}

/// Without its mask the masked model predicts otherwise, by far more than the 1e-5 tolerance: the test above
/// can fail on a dropped mask.
#[test]
fn the_mask_changes_the_prediction() {
    let f = &fixtures()["mask_bidir"];
    let bytes = edited("mask_bidir.keras", |c| {
        c["config"]["layers"][1]["config"]["mask_zero"] = false.into();
        for layer in [3, 4] {
            let node = &mut c["config"]["layers"][layer]["inbound_nodes"][0]["kwargs"];
            node.as_object_mut().unwrap().remove("mask");
        }
    });
    let model = load_model_from_bytes(&bytes).unwrap();
    let got = model.predict(&fixture_tensor(&f["x"])).unwrap();
    let want = fixture_tensor(&f["predict"]);
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst > 1e-3, "unmasked prediction within {worst} of the masked one");
}

/// A `NotEqual` of another form, one read as a value, and a `mask` kerust's propagation would not give are
/// errors naming the place.
#[test]
fn masks_kerust_cannot_read_as_embeddings_are_errors_naming_them() {
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        // not_equal(tokens, 1) is not Embedding's mask.
        (
            edited("mask_lstm.keras", |c| c["config"]["layers"][2]["inbound_nodes"][0]["args"][1] = 1.into()),
            &["config.layers[2].inbound_nodes", "NotEqual", "not_equal(tokens, 0)"],
        ),
        // Two calls.
        (
            edited("mask_lstm.keras", |c| {
                let node = c["config"]["layers"][2]["inbound_nodes"][0].clone();
                c["config"]["layers"][2]["inbound_nodes"] = json!([node.clone(), node]);
            }),
            &["config.layers[2].inbound_nodes", "one call"],
        ),
        // The NotEqual's output read as the model's output.
        (
            edited("mask_lstm.keras", |c| c["config"]["output_layers"] = json!([["not_equal", 0, 0]])),
            &["config.output_layers", "NotEqual op `not_equal` as a value"],
        ),
        // The NotEqual's output read as a layer's argument.
        (
            edited("mask_lstm.keras", |c| {
                c["config"]["layers"][3]["inbound_nodes"][0]["args"][0]["config"]["keras_history"] =
                    json!(["not_equal", 0, 0]);
            }),
            &["layer `lstm`, inbound_nodes[0]", "NotEqual op `not_equal` as a value"],
        ),
        // A mask that is another layer's output.
        (
            edited("mask_lstm.keras", |c| {
                c["config"]["layers"][3]["inbound_nodes"][0]["kwargs"]["mask"]["config"]["keras_history"] =
                    json!(["input_layer", 0, 0]);
            }),
            &["config.layers[3].inbound_nodes[0].kwargs.mask", "mask=", "not supported"],
        ),
        // The Embedding upstream does not mask: kerust would run the LSTM unmasked, Keras masked.
        (
            edited("mask_bidir.keras", |c| c["config"]["layers"][1]["config"]["mask_zero"] = false.into()),
            &["config.layers[3].inbound_nodes[0].kwargs.mask", "not_equal", "Embedding(mask_zero=True)"],
        ),
        // A training argument that is not a flag.
        (
            edited("mask_lstm.keras", |c| {
                c["config"]["layers"][3]["inbound_nodes"][0]["kwargs"]["training"] = json!("yes");
            }),
            &["config.layers[3].inbound_nodes[0].kwargs.training", "not supported"],
        ),
    ];
    for (i, (bytes, words)) in cases.iter().enumerate() {
        let err = load_err(bytes);
        for w in *words {
            assert!(err.contains(w), "case {i}: {err:?} lacks {w:?}");
        }
    }
}
