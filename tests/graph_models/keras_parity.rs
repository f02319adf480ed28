//! A graph model of two inputs and two outputs (a residual `Add`, a `Concatenate`, per-output losses, loss weights
//! and metrics) against Keras' own numbers (`fixtures/keras_functional.json`, written by
//! `fixtures/keras_functional.py`): evaluate, fit with and without sample weights and with a validation split,
//! train_on_batch; every logged key and value, and every weight after training.
use std::collections::BTreeMap;

use kerust::autodiff::Tensor;
use kerust::callbacks::{History, Logs};
use kerust::layers::{Add, Concatenate, Dense, Input};
use kerust::models::{Compile, Graph, Model};
use kerust::optimizers::SGD;
use kerust::utils::to_categorical;
use ndarray::{s, Array1, Array2, ArrayD, IxDyn};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/keras_functional.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// The fixture's 12 samples: inputs `a` (12, 4), `b` (12, 3); targets `digit` one-hot (12, 3), `even` (12, 1).
struct Data {
    a: Array2<f32>,
    b: Array2<f32>,
    digit: Array2<f32>,
    even: Array2<f32>,
    sample_weight: Array1<f32>,
}

fn data(fx: &Value) -> Data {
    let labels: Array1<i64> =
        fx["digit_labels"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    Data {
        a: Array2::from_shape_vec((12, 4), floats(&fx["a"])).unwrap(),
        b: Array2::from_shape_vec((12, 3), floats(&fx["b"])).unwrap(),
        digit: to_categorical(&labels, 3).unwrap(),
        even: Array2::from_shape_vec((12, 1), floats(&fx["even"])).unwrap(),
        sample_weight: Array1::from(floats(&fx["sample_weight"])),
    }
}

/// The fixture's model, with its initial weights (mapped by `<layer>/<weight>`), compiled as in Keras.
fn model(fx: &Value) -> Model {
    let mut g = Graph::with_seed(0);
    let a = g.input(Input::new([4]).name("a")).unwrap();
    let b = g.input(Input::new([3]).name("b")).unwrap();
    let h = g.apply(Dense::new(5).activation("tanh").name("h"), a).unwrap();
    let r = g.apply(Dense::new(5).activation("relu").name("r"), h).unwrap();
    let h2 = g.apply(Add::new().name("add"), [h, r]).unwrap();
    let k = g.apply(Dense::new(3).activation("relu").name("k"), b).unwrap();
    let z = g.apply(Concatenate::new(-1).name("concat"), [h2, k]).unwrap();
    let digit = g.apply(Dense::new(3).activation("softmax").name("digit"), z).unwrap();
    let even = g.apply(Dense::new(1).activation("sigmoid").name("even"), z).unwrap();
    let mut m = Model::new(g, [a, b], [digit, even]).unwrap();

    let initial = &fx["initial_weights"];
    let weights: Vec<Tensor> = m
        .params()
        .iter()
        .map(|(_, p)| {
            let values = floats(&initial[p.name.as_str()]);
            ArrayD::from_shape_vec(IxDyn(p.value.shape()), values)
                .unwrap_or_else(|e| panic!("{}: {e}", p.name))
        })
        .collect();
    m.set_weights(&weights).unwrap();
    m.compile_with(
        Compile::new(SGD::new().learning_rate(0.1))
            .output_loss("digit", "categorical_crossentropy")
            .output_loss("even", "binary_crossentropy")
            .loss_weight("digit", 1.0)
            .loss_weight("even", 0.5)
            .output_metrics("digit", ["accuracy"])
            .output_metrics("even", ["accuracy"]),
    )
    .unwrap();
    m
}

/// Within 1e-6, relative for values above 1 (f32 losses around 1.4 carry about 1e-7 of rounding).
fn close(got: f32, want: f32) -> bool {
    (got - want).abs() <= 1e-6 * want.abs().max(1.0)
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(close(g, w), "{what}[{i}]: kerust {g}, Keras {w} (difference {})", g - w);
    }
}

/// The same keys as Keras logged, and the same values.
fn assert_logs(got: &Logs, want: &Value, what: &str) {
    let want = want.as_object().unwrap();
    let got_keys: Vec<&str> = {
        let mut k: Vec<&str> = got.iter().map(|(k, _)| k).collect();
        k.sort_unstable();
        k
    };
    let want_keys: Vec<&str> = want.keys().map(String::as_str).collect(); // serde_json's map is sorted
    assert_eq!(got_keys, want_keys, "{what}: kerust's log keys against Keras'");
    for (key, value) in want {
        assert_close(&[got.get(key).unwrap()], &[value.as_f64().unwrap() as f32], &format!("{what} {key}"));
    }
}

fn assert_history(got: &History, want: &Value, what: &str) {
    let want = want.as_object().unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().map(String::as_str).collect::<Vec<_>>(),
        "{what}: kerust's History keys against Keras'"
    );
    for (key, values) in want {
        assert_close(got.get(key).unwrap(), &floats(values), &format!("{what} {key}"));
    }
}

/// Every weight, by `<layer>/<weight>`, against Keras' after the same training.
fn assert_weights(m: &Model, want: &Value, what: &str) {
    let want = want.as_object().unwrap();
    assert_eq!(m.params().len(), want.len(), "{what}: number of weight arrays");
    for (_, p) in m.params().iter() {
        let w = want.get(&p.name).unwrap_or_else(|| panic!("{what}: Keras has no weight {}", p.name));
        assert_close(p.value.to_array().as_slice().unwrap(), &floats(w), &format!("{what} {}", p.name));
    }
}

#[test]
fn the_weights_are_those_of_keras_in_its_order() {
    let fx = fixture();
    let m = model(&fx);
    let names: Vec<&str> = m.params().iter().map(|(_, p)| p.name.as_str()).collect();
    let keras: Vec<&str> =
        fx["keras_weight_order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(names, keras, "get_weights order");
    assert_weights(&m, &fx["initial_weights"], "initial");
    assert_eq!(m.output_names(), ["digit", "even"]);
    assert_eq!(m.input_names(), ["a", "b"]);
}

#[test]
fn evaluate_matches_keras() {
    let fx = fixture();
    let d = data(&fx);
    let mut m = model(&fx);
    let logs = m.evaluate((&d.a, &d.b), (&d.digit, &d.even)).unwrap();
    assert_logs(&logs, &fx["evaluate"], "evaluate");
    // The total is digit_loss + 0.5 even_loss: the logged per-output losses are unweighted, as in Keras.
    let total = logs.get("digit_loss").unwrap() + 0.5 * logs.get("even_loss").unwrap();
    assert!(close(logs.get("loss").unwrap(), total), "{logs}");

    // One sample_weight array weighs both outputs' losses; the metrics stay unweighted.
    let logs = m.evaluate_weighted((&d.a, &d.b), (&d.digit, &d.even), &d.sample_weight).unwrap();
    assert_logs(&logs, &fx["evaluate_sample_weight"], "evaluate with sample_weight");
}

/// `fit(batch_size=4, epochs=2, shuffle=False)`, with the fixture's sample weights or without, against the
/// fixture's History and weights under `key`.
fn check_fit(key: &str, weighted: bool) {
    let fx = fixture();
    let d = data(&fx);
    let mut m = model(&fx);
    let mut fit = m.fit((&d.a, &d.b), (&d.digit, &d.even)).batch_size(4).epochs(2).shuffle(false).verbose(0);
    if weighted {
        fit = fit.sample_weight(&d.sample_weight);
    }
    let history = fit.run().unwrap();
    assert_history(&history, &fx[key]["history"], key);
    assert_weights(&m, &fx[key]["weights"], key);
}

#[test]
fn fit_matches_keras() {
    check_fit("fit", false);
}

#[test]
fn fit_with_sample_weight_matches_keras() {
    check_fit("fit_sample_weight", true);
}

/// Each training batch's per-output losses, from the running means `fit` logs after every batch (kerust weighs a
/// batch by its size, so batch `i` of `n_i` samples after `seen` samples adds `n_i * value`).
struct BatchLosses {
    sizes: Vec<usize>,
    running: Vec<BTreeMap<String, f32>>,
}

impl kerust::callbacks::Callback for BatchLosses {
    fn on_epoch_begin(&mut self, _: &mut Model, _: usize) -> kerust::Result<()> {
        self.running.clear();
        Ok(())
    }

    fn on_train_batch_end(&mut self, _: &mut Model, _: usize, logs: &Logs) -> kerust::Result<()> {
        self.running.push(logs.iter().map(|(k, v)| (k.to_owned(), v)).collect());
        Ok(())
    }
}

impl BatchLosses {
    /// The mean over the last epoch's batches of `key`, each batch counting once (Keras' TF graph mode for the
    /// per-output losses).
    fn unweighted_mean(&self, key: &str) -> f32 {
        let (mut seen, mut previous, mut sum) = (0.0f64, 0.0f64, 0.0f64);
        for (logs, &n) in self.running.iter().zip(&self.sizes) {
            let running = f64::from(logs[key]);
            let total = running * (seen + n as f64);
            sum += (total - previous * seen) / n as f64;
            (seen, previous) = (seen + n as f64, running);
        }
        (sum / self.running.len() as f64) as f32
    }
}

#[test]
fn fit_with_a_validation_split_matches_keras_run_eagerly() {
    // The last 3 samples validate, weighted by their own sample weights (`val_loss`, `val_digit_loss`, ...);
    // the 9 training samples make batches of 4, 4 and 1. Every number is Keras' with `run_eagerly=True`.
    let fx = fixture();
    let d = data(&fx);
    let mut m = model(&fx);
    let mut batches = BatchLosses { sizes: vec![4, 4, 1], running: Vec::new() };
    let history = m
        .fit((&d.a, &d.b), (&d.digit, &d.even))
        .batch_size(4)
        .epochs(2)
        .shuffle(false)
        .verbose(0)
        .sample_weight(&d.sample_weight)
        .validation_split(0.25)
        .callback_ref(&mut batches)
        .run()
        .unwrap();
    let eager = &fx["fit_validation_split_eager"];
    assert_history(&history, &eager["history"], "fit with validation_split (Keras eager)");
    assert_weights(&m, &eager["weights"], "fit with validation_split (Keras eager)");

    // Keras' default, graph mode, agrees on every weight and every key but the training per-output losses: its
    // CompileLoss weighs a batch's `digit_loss` by `y_pred.shape[0]`, None inside tf.function, so each batch
    // counts once there and the short last batch as much as a full one (its total `loss` counts batches by
    // size, as kerust does for all three). Checked here: Keras' graph-mode value is the unweighted mean of
    // kerust's batch values, and differs from kerust's (and Keras' eager) epoch value.
    let graph = &fx["fit_validation_split"];
    assert_weights(&m, &graph["weights"], "fit with validation_split (Keras graph mode)");
    let want = graph["history"].as_object().unwrap();
    assert_eq!(history.keys().collect::<Vec<_>>(), want.keys().map(String::as_str).collect::<Vec<_>>());
    for (key, values) in want {
        let (got, values) = (history.get(key).unwrap(), floats(values));
        if key == "digit_loss" || key == "even_loss" {
            assert_close(
                &[batches.unweighted_mean(key)],
                &values[1..],
                &format!("graph mode {key}, batch mean"),
            );
            assert!((got[1] - values[1]).abs() > 1e-3, "{key}: the graph-mode difference is gone: {got:?}");
        } else {
            assert_close(got, &values, &format!("fit with validation_split (Keras graph mode) {key}"));
        }
    }
}

#[test]
fn train_on_batch_matches_keras() {
    let fx = fixture();
    let d = data(&fx);
    let want = &fx["train_on_batch"];
    let rows = floats(&want["rows"]);
    let rows = rows[0] as usize..rows[1] as usize;
    let mut m = model(&fx);
    let logs = m
        .train_on_batch(
            (d.a.slice(s![rows.clone(), ..]), d.b.slice(s![rows.clone(), ..])),
            (d.digit.slice(s![rows.clone(), ..]), d.even.slice(s![rows, ..])),
        )
        .unwrap();
    assert_logs(&logs, &want["logs"], "train_on_batch");
    assert_weights(&m, &want["weights"], "train_on_batch");
}

#[test]
fn the_fixture_is_what_the_script_describes() {
    // Guards against a fixture regenerated with other settings: the numbers above mean something only if the
    // losses are weighted 1 and 0.5 and the weighted evaluation differs from the plain one.
    let fx = fixture();
    let e = &fx["evaluate"];
    let get = |k: &str| e[k].as_f64().unwrap() as f32;
    assert!(close(get("loss"), get("digit_loss") + 0.5 * get("even_loss")));
    let ew = &fx["evaluate_sample_weight"];
    assert!((ew["loss"].as_f64().unwrap() as f32 - get("loss")).abs() > 1e-3);
    let by_layer: BTreeMap<&str, usize> = fx["initial_weights"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_array().unwrap().len()))
        .collect();
    assert_eq!(by_layer["h/kernel"], 4 * 5);
    assert_eq!(by_layer["digit/kernel"], 8 * 3);
}
