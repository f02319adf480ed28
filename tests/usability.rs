//! What a Keras user trips over (issue 24): a custom layer whose `call` breaks its `build`'s promise, the
//! `trainable` property, closures as losses and metrics, and the smaller messages and conveniences.
use kerust::autodiff::{ParamId, ParamStore, Var};
use kerust::layers::{CallContext, Dense, Layer};
use kerust::metrics::{self, MetricSpec};
use kerust::models::Sequential;
use kerust::{losses, Result};
use ndarray::{Array2, Axis};
use rand::rngs::StdRng;

/// A layer that promises `units` features in `build` but returns the sum of its input's features (one).
struct Liar {
    name: Option<String>,
    units: usize,
}

impl Layer for Liar {
    fn class_name(&self) -> &'static str {
        "Liar"
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn build(&mut self, _: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        Ok(vec![self.units])
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        x.sum_axes(&[1], true)
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }
}

fn liar_model() -> Sequential {
    let mut model = Sequential::new();
    model.add(Dense::new(4).input_shape([2])).unwrap();
    model.add(Liar { name: Some("liar".into()), units: 3 }).unwrap();
    model.add(Dense::new(2)).unwrap();
    model.compile("mse", "sgd", []).unwrap();
    model
}

#[test]
fn a_layer_returning_another_shape_than_it_built_is_named_in_an_error() {
    let mut model = liar_model();
    let (x, y) = (Array2::<f32>::ones((8, 2)), Array2::<f32>::zeros((8, 2)));
    let before = model.get_weights();
    let err = model.fit(&x, &y).batch_size(4).verbose(0).run().unwrap_err().to_string();
    assert!(err.contains("layer `liar` (Liar)"), "{err}");
    assert!(err.contains("(None, 3) for a batch of 4"), "{err}");
    assert!(err.contains("received (4, 1)"), "{err}");
    assert_eq!(model.get_weights(), before, "no step was taken");
    for err in [
        model.evaluate(&x, &y).unwrap_err().to_string(),
        model.predict(&x).unwrap_err().to_string(),
        model.train_on_batch(&x, &y).unwrap_err().to_string(),
    ] {
        assert!(err.contains("layer `liar` (Liar)"), "{err}");
    }
}

fn line_data() -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((6, 2), |(i, j)| (i * 2 + j) as f32 / 10.0);
    let y = Array2::from_shape_fn((6, 1), |(i, _)| i as f32 / 5.0);
    (x, y)
}

fn seeded_model() -> Sequential {
    let mut model = Sequential::new();
    model.set_seed(7);
    model.add(Dense::new(3).activation("tanh").input_shape([2])).unwrap();
    model.add(Dense::new(1)).unwrap();
    model
}

#[test]
fn a_loss_closure_trains_as_the_builtin_loss_it_spells_out() {
    let (x, y) = line_data();
    let mut builtin = seeded_model();
    builtin.compile("mse", "sgd", []).unwrap();
    let expected = builtin.fit(&x, &y).epochs(3).batch_size(4).shuffle(false).verbose(0).run().unwrap();
    let mut custom = seeded_model();
    let mse = losses::from_fn("my_mse", |y_true, y_pred| y_pred.sub(y_true).square().mean_axes(&[1], false));
    custom.compile(mse, "sgd", []).unwrap();
    let got = custom.fit(&x, &y).epochs(3).batch_size(4).shuffle(false).verbose(0).run().unwrap();
    assert_eq!(got.history["loss"], expected.history["loss"]);
    assert_eq!(custom.get_weights(), builtin.get_weights());
    // Sample weights weigh the closure's per-sample values as the built-in's.
    let w = ndarray::array![1.0f32, 2.0, 0.0, 1.0, 3.0, 1.0];
    assert_eq!(
        custom.evaluate_weighted(&x, &y, &w).unwrap().get("loss"),
        builtin.evaluate_weighted(&x, &y, &w).unwrap().get("loss")
    );
}

#[test]
fn a_loss_or_metric_closure_that_reduces_the_batch_is_an_error_before_training() {
    let (x, y) = line_data();
    let mut model = seeded_model();
    let batch_mean = losses::from_fn("batch_mean", |y_true, y_pred| y_pred.sub(y_true).square().mean());
    model.compile(batch_mean, "sgd", []).unwrap();
    let before = model.get_weights();
    let err = model.fit(&x, &y).verbose(0).run().unwrap_err().to_string();
    assert!(err.contains("loss `batch_mean`") && err.contains("one value per sample"), "{err}");
    assert!(err.contains("expected (2, ...) for a batch of 2, received ()"), "{err}");
    assert_eq!(model.get_weights(), before);
    assert!(model.evaluate(&x, &y).is_err());

    let scalar_metric = metrics::from_fn("scalar", |t, p| ndarray::arr0((&p - &t).sum()).into_dyn());
    model.compile("mse", "sgd", [MetricSpec::from(scalar_metric)]).unwrap();
    let err = model.fit(&x, &y).verbose(0).run().unwrap_err().to_string();
    assert!(err.contains("metric `scalar`") && err.contains("one value per sample"), "{err}");
    assert_eq!(model.get_weights(), before);
}

#[test]
fn a_metric_closure_matches_the_builtin_metric_and_metric_objects_come_in_arrays() {
    let (x, y) = line_data();
    let mut model = seeded_model();
    let mae = metrics::from_fn("my_mae", |t, p| (&p - &t).abs().mean_axis(Axis(1)).unwrap());
    // An array of metric specs, no `vec!` needed.
    model.compile("mse", "sgd", [MetricSpec::from("mae"), mae.into()]).unwrap();
    let w = ndarray::array![1.0f32, 2.0, 0.0, 1.0, 3.0, 1.0];
    let h = model.fit(&x, &y).sample_weight(&w).epochs(2).batch_size(4).verbose(0).run().unwrap();
    for (a, b) in h.history["mae"].iter().zip(&h.history["my_mae"]) {
        assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{a} {b}");
    }
    let logs = model.evaluate(&x, &y).unwrap();
    assert!((logs.get("mae").unwrap() - logs.get("my_mae").unwrap()).abs() < 1e-6);
}

#[test]
fn kerust_reexports_the_ndarray_it_takes() {
    let x = kerust::ndarray::array![[0.0f32, 1.0], [1.0, 0.0]];
    let mut model = seeded_model();
    model.compile("mse", "sgd", []).unwrap();
    assert_eq!(model.predict(&x).unwrap().shape(), &[2, 1]);
}

#[test]
fn swapped_loss_and_optimizer_strings_are_called_swapped() {
    let mut model = seeded_model();
    for (loss, optimizer) in [("adam", "mse"), ("sgd", "categorical_crossentropy"), ("mse", "mae")] {
        let err = model.compile(loss, optimizer, []).unwrap_err().to_string();
        let swapped = err.contains("swapped") && err.contains("compile(optimizer, loss)");
        assert_eq!(swapped, loss != "mse", "{err}");
    }
    model.compile("mse", "adam", []).unwrap();
}

#[test]
fn model_checkpoint_makes_its_missing_folder() {
    let dir = std::env::temp_dir().join(format!("kerust_usability_ckpt_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("deeper/model_{epoch:02d}.safetensors");
    let (x, y) = line_data();
    let mut model = seeded_model();
    model.compile("mse", "sgd", []).unwrap();
    let checkpoint = kerust::callbacks::ModelCheckpoint::new(path.to_str().unwrap()).monitor("loss");
    model.fit(&x, &y).epochs(2).verbose(0).callback(checkpoint).run().unwrap();
    assert!(dir.join("deeper/model_01.safetensors").is_file());
    assert!(dir.join("deeper/model_02.safetensors").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A custom layer that names its weight `w`, without its own name: fine once, a collision twice.
struct Gain {
    name: Option<String>,
    weights: Vec<ParamId>,
}

impl Layer for Gain {
    fn class_name(&self) -> &'static str {
        "Gain"
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn build(&mut self, shape: &[usize], params: &mut ParamStore, rng: &mut StdRng) -> Result<Vec<usize>> {
        let init = kerust::initializers::Initializer::Ones;
        self.weights = vec![kerust::layers::add_weight(params, "w".into(), shape, init, rng, true)?];
        Ok(shape.to_vec())
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        x.mul(x.tape().param(self.weights[0]))
    }

    fn weights(&self) -> &[ParamId] {
        &self.weights
    }
}

#[test]
fn two_layers_naming_a_weight_alike_fail_when_built_with_the_fix() {
    let mut model = Sequential::new();
    model.add(Dense::new(2).input_shape([2])).unwrap();
    model.add(Gain { name: None, weights: Vec::new() }).unwrap();
    let err = model.add(Gain { name: None, weights: Vec::new() }).unwrap_err().to_string();
    assert!(err.contains("layer `gain_1` (Gain)") && err.contains("gain_1/w"), "{err}");
    assert!(err.contains("self.name()"), "{err}");
    // The model is as before the failed add, and works.
    assert_eq!(model.layers().len(), 2);
    model.compile("mse", "sgd", []).unwrap();
    let path = std::env::temp_dir().join(format!("kerust_usability_gain_{}.safetensors", std::process::id()));
    model.save_weights(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn files_of_other_kinds_are_not_kerust_model_files() {
    // Keras' own files (HDF5, zip) go to the Keras readers (feature `keras`), whose errors name the format.
    for (bytes, format) in
        [(&b"\x89HDF\r\n\x1a\n\0\0\0\0\0\x08\x08\0"[..], "hdf5"), (&b"PK\x03\x04\x14\0\0\0\x08\0"[..], "zip")]
    {
        let err = kerust::models::load_model_from_bytes(bytes).unwrap_err().to_string();
        let expected = if cfg!(feature = "keras") { format } else { "`keras` feature" };
        assert!(err.contains(expected), "{err}");
    }
    let cases: [(&[u8], &str); 2] = [
        (b"{\"class_name\": \"Sequential\"}", "a JSON text file"),
        (b"epoch,loss\n0,0.5\n1,0.25\n", "a text file"),
    ];
    for (bytes, kind) in cases {
        let err = kerust::models::load_model_from_bytes(bytes).unwrap_err().to_string();
        assert!(err.contains(&format!("not a kerust model file (this looks like {kind})")), "{err}");
        assert!(!err.contains("header length"), "{err}");
    }
}

/// The values of a layer's weights.
fn layer_values(model: &kerust::models::Model, layer: &str) -> Vec<kerust::autodiff::Tensor> {
    let ids = model.get_layer(layer).unwrap().weights().to_vec();
    ids.iter().map(|&id| model.params().value(id).to_array()).collect()
}

fn frozen_base() -> Sequential {
    let mut model = Sequential::new();
    model.set_seed(3);
    model.add(Dense::new(3).activation("tanh").input_shape([2]).name("base")).unwrap();
    model.add(kerust::layers::BatchNormalization::new().name("bn")).unwrap();
    model.add(Dense::new(1).name("head")).unwrap();
    model
}

#[test]
fn a_layer_set_not_trainable_keeps_its_weights_and_counts_as_non_trainable() {
    let (x, y) = line_data();
    let mut model = frozen_base();
    // base 6 + 3, bn 3 + 3 (gamma, beta) + 3 + 3 (moving mean, variance), head 3 + 1.
    assert!(model.summary_string().contains("Non-trainable params: 6 (24.00 B)"));
    model.get_layer_mut("base").unwrap().set_trainable(false);
    model.get_layer_mut("bn").unwrap().set_trainable(false);
    assert!(!model.get_layer_mut("base").unwrap().trainable());
    let s = model.summary_string();
    assert!(
        s.contains("Trainable params: 4 (16.00 B)") && s.contains("Non-trainable params: 21 (84.00 B)"),
        "{s}"
    );
    model.compile("mse", "adam", []).unwrap();
    let (base, head) = (layer_values(&model, "base"), layer_values(&model, "head"));
    model.fit(&x, &y).epochs(2).batch_size(4).verbose(0).run().unwrap();
    assert_eq!(layer_values(&model, "base"), base);
    assert_ne!(layer_values(&model, "head"), head);

    // Trainable again: it trains from the next step, without a new compile; the moving statistics stay
    // non-trainable.
    model.get_layer_mut("base").unwrap().set_trainable(true);
    model.get_layer_mut("bn").unwrap().set_trainable(true);
    assert!(model.summary_string().contains("Non-trainable params: 6 (24.00 B)"));
    model.fit(&x, &y).batch_size(4).verbose(0).run().unwrap();
    assert_ne!(layer_values(&model, "base"), base);

    // The whole model, as Keras' `model.trainable = False`.
    model.set_trainable(false);
    assert!(model.summary_string().contains("Trainable params: 0 (0.00 B)"));
    // Nothing moves, BatchNormalization's moving statistics neither: a frozen one runs in inference mode.
    let all = model.get_weights();
    model.fit(&x, &y).batch_size(4).verbose(0).run().unwrap();
    assert_eq!(model.get_weights(), all);

    let err = model.get_layer("nope").map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("No such layer: nope. Existing layers are: [base, bn, head]"), "{err}");
}

/// Keras' BatchNormalization with `trainable = False` normalizes by its moving statistics in training too and
/// leaves them as they are, so that fine-tuning the layers around it does not disturb it.
#[test]
fn a_frozen_batch_normalization_runs_in_inference_mode_in_training() {
    let (x, y) = line_data();
    let mut model = frozen_base();
    model.compile("mse", "sgd", []).unwrap();
    model.fit(&x, &y).epochs(1).batch_size(4).verbose(0).run().unwrap(); // moving statistics away from 0, 1
    model.get_layer_mut("bn").unwrap().set_trainable(false);
    let bn = layer_values(&model, "bn");
    // With no dropout, a step's training loss is then the inference loss of the same batch before the step.
    let inference = model.evaluate(&x, &y).unwrap().get("loss").unwrap();
    let training = model.train_on_batch(&x, &y).unwrap().get("loss").unwrap();
    assert!((training - inference).abs() <= 1e-6 * inference.abs().max(1.0), "{training} vs {inference}");
    assert_eq!(layer_values(&model, "bn"), bn);

    // Trainable again: batch statistics, and the moving ones move.
    model.get_layer_mut("bn").unwrap().set_trainable(true);
    model.train_on_batch(&x, &y).unwrap();
    assert_ne!(layer_values(&model, "bn"), bn);
}

#[test]
fn a_layer_frozen_before_the_model_is_built_is_frozen_once_built() {
    let (x, y) = line_data();
    let mut model = Sequential::new();
    model.add(Dense::new(3).name("base")).unwrap();
    model.add(Dense::new(1)).unwrap();
    model.get_layer_mut("base").unwrap().set_trainable(false);
    model.compile("mse", "sgd", []).unwrap();
    model.fit(&x, &y).epochs(1).verbose(0).run().unwrap();
    let base = layer_values(&model, "base");
    model.fit(&x, &y).epochs(1).verbose(0).run().unwrap();
    assert_eq!(layer_values(&model, "base"), base);
    assert!(model.summary_string().contains("Non-trainable params: 9 (36.00 B)"));
}

#[test]
fn the_trainable_setting_is_saved_with_the_model() {
    let (x, y) = line_data();
    let mut model = frozen_base();
    model.get_layer_mut("base").unwrap().set_trainable(false);
    model.compile("mse", "adam", []).unwrap();
    model.fit(&x, &y).batch_size(4).verbose(0).run().unwrap();
    let mut bytes = Vec::new();
    model.save_to_writer(&mut bytes).unwrap();
    let mut loaded = kerust::models::load_model_from_bytes(&bytes).unwrap();
    assert!(!loaded.get_layer_mut("base").unwrap().trainable());
    assert!(loaded.get_layer_mut("head").unwrap().trainable());
    assert_eq!(loaded.summary_string(), model.summary_string());
    let base = layer_values(&loaded, "base");
    loaded.fit(&x, &y).batch_size(4).verbose(0).run().unwrap();
    assert_eq!(layer_values(&loaded, "base"), base);

    // A model with every layer trainable writes the file it wrote before there was a setting.
    let mut plain = Vec::new();
    loaded.get_layer_mut("base").unwrap().set_trainable(true);
    loaded.save_to_writer(&mut plain).unwrap();
    assert!(!String::from_utf8_lossy(&plain).contains("frozen_layers"));
    assert!(String::from_utf8_lossy(&bytes).contains("frozen_layers"));
}
