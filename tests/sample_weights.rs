//! `sample_weight` and `class_weight` in fit and evaluate, against Keras' own numbers
//! (`fixtures/keras_sample_weight.json`, written by `fixtures/keras_sample_weight.py`), and their errors.
use kerust::layers::Dense;
use kerust::models::{Fit, Model, Sequential};
use kerust::optimizers::SGD;
use kerust::utils::to_categorical;
use kerust::Error;
use ndarray::{Array1, Array2};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/keras_sample_weight.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

struct Data {
    x: Array2<f32>,
    labels: Array1<i64>,
    one_hot: Array2<f32>,
    weights: Array1<f32>,
    class_weight: Vec<(usize, f32)>,
}

fn data(fx: &Value) -> Data {
    let x = Array2::from_shape_vec((6, 4), floats(&fx["x"])).unwrap();
    let labels: Array1<i64> = fx["labels"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let one_hot = to_categorical(&labels, 3).unwrap();
    let weights = Array1::from(floats(&fx["sample_weight"]));
    let class_weight = fx["class_weight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_f64().unwrap() as f32))
        .collect();
    Data { x, labels, one_hot, weights, class_weight }
}

/// Keras' model: Dense(3, softmax) on 4 inputs with the fixture's weights, SGD(0.1), accuracy.
fn model(fx: &Value, loss: &str) -> Sequential {
    let mut m = Sequential::new();
    m.add(Dense::new(3).activation("softmax").input_shape([4])).unwrap();
    let kernel = Array2::from_shape_vec((4, 3), floats(&fx["kernel"])).unwrap().into_dyn();
    let bias = Array1::from(floats(&fx["bias"])).into_dyn();
    m.set_weights(&[kernel, bias]).unwrap();
    m.compile(loss, SGD::new().learning_rate(0.1), ["accuracy"]).unwrap();
    m
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-6, "{what}[{i}]: kerust {g}, Keras {w}");
    }
}

/// One epoch in batches of 4 and 2, unshuffled, compared with Keras: the logs and every weight after it.
fn check_epoch(m: &mut Model, history: kerust::callbacks::History, want: &Value, what: &str) {
    assert_close(&[history.get("loss").unwrap()[0]], &[want["loss"].as_f64().unwrap() as f32], what);
    assert_close(&[history.get("accuracy").unwrap()[0]], &[want["accuracy"].as_f64().unwrap() as f32], what);
    let weights = m.get_weights();
    assert_close(weights[0].as_slice().unwrap(), &floats(&want["kernel"]), what);
    assert_close(weights[1].as_slice().unwrap(), &floats(&want["bias"]), what);
}

/// The fixture's fit settings: batches of 4 (a full and a short one over 6 samples), no shuffling, silent.
fn as_in_keras<'m, 'a>(fit: Fit<'m, 'a>) -> Fit<'m, 'a> {
    fit.batch_size(4).shuffle(false).verbose(0)
}

#[test]
fn fit_with_sample_weight_matches_keras() {
    let fx = fixture();
    let d = data(&fx);
    let mut m = model(&fx, "categorical_crossentropy");
    let history = as_in_keras(m.fit(&d.x, &d.one_hot)).sample_weight(&d.weights).run().unwrap();
    check_epoch(&mut m, history, &fx["fit_sample_weight"], "categorical");

    // Integer labels, weights given as f64: the same numbers as Keras' sparse run.
    let mut m = model(&fx, "sparse_categorical_crossentropy");
    let weights64 = d.weights.mapv(f64::from);
    let history = as_in_keras(m.fit(&d.x, &d.labels)).sample_weight(&weights64).run().unwrap();
    check_epoch(&mut m, history, &fx["fit_sample_weight_sparse"], "sparse");
}

#[test]
fn fit_with_class_weight_matches_keras() {
    let fx = fixture();
    let d = data(&fx);
    let mut m = model(&fx, "categorical_crossentropy");
    let history = as_in_keras(m.fit(&d.x, &d.one_hot)).class_weight(d.class_weight.clone()).run().unwrap();
    check_epoch(&mut m, history, &fx["fit_class_weight"], "class_weight");
}

#[test]
fn evaluate_with_sample_weight_matches_keras() {
    let fx = fixture();
    let d = data(&fx);
    let mut m = model(&fx, "categorical_crossentropy");
    let logs = m.evaluate_weighted(&d.x, &d.one_hot, &d.weights).unwrap();
    let want = &fx["evaluate_sample_weight"];
    assert_close(&[logs.get("loss").unwrap()], &[want["loss"].as_f64().unwrap() as f32], "loss");
    assert_close(&[logs.get("accuracy").unwrap()], &[want["accuracy"].as_f64().unwrap() as f32], "accuracy");
    // Weights of one change nothing.
    let ones = Array1::<f32>::ones(6);
    assert_eq!(m.evaluate_weighted(&d.x, &d.one_hot, &ones).unwrap(), m.evaluate(&d.x, &d.one_hot).unwrap());
}

#[test]
fn a_sample_of_weight_zero_does_not_train() {
    // Training on (a, b) with b weighted 0 gives what training on a alone with the loss halved gives: the
    // batch mean still divides by the batch size, as in Keras.
    let fx = fixture();
    let d = data(&fx);
    let mut weighted = model(&fx, "categorical_crossentropy");
    let mut weights = Array1::<f32>::zeros(6);
    weights[0] = 1.0;
    weighted
        .fit(&d.x, &d.one_hot)
        .batch_size(6)
        .shuffle(false)
        .verbose(0)
        .sample_weight(&weights)
        .run()
        .unwrap();

    let mut alone = model(&fx, "categorical_crossentropy");
    alone.compile("categorical_crossentropy", SGD::new().learning_rate(0.1 / 6.0), ["accuracy"]).unwrap();
    let (x0, y0) = (d.x.slice(ndarray::s![0..1, ..]), d.one_hot.slice(ndarray::s![0..1, ..]));
    alone.fit(x0, y0).batch_size(1).verbose(0).run().unwrap();
    for (a, b) in weighted.get_weights().iter().zip(alone.get_weights()) {
        for (x, y) in a.iter().zip(b.iter()) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
    }
}

#[test]
fn weights_that_do_not_fit_are_errors_and_change_nothing() {
    let fx = fixture();
    let d = data(&fx);
    let mut m = model(&fx, "categorical_crossentropy");
    let before = m.get_weights();

    let e = m.fit(&d.x, &d.one_hot).verbose(0).sample_weight(&Array1::<f32>::ones(5)).run().unwrap_err();
    assert!(
        matches!(e, Error::Shape { .. }) && e.to_string().contains("(6,)") && e.to_string().contains("(5,)")
    );

    let e = m
        .fit(&d.x, &d.one_hot)
        .verbose(0)
        .sample_weight(&d.weights)
        .class_weight([(0, 2.0)])
        .run()
        .unwrap_err()
        .to_string();
    assert!(e.contains("class_weight") && e.contains("sample_weight"), "{e}");

    let e = m.evaluate_weighted(&d.x, &d.one_hot, &Array1::<f32>::ones(7)).unwrap_err().to_string();
    assert!(e.contains("one weight per sample") && e.contains("(7,)"), "{e}");

    // Class weights need a class per sample: targets of three axes have none.
    let mut seq = Sequential::new();
    seq.add(Dense::new(2).input_shape([3, 4])).unwrap();
    seq.compile("mse", "sgd", []).unwrap();
    let e = seq
        .fit(&ndarray::Array3::<f32>::zeros((2, 3, 4)), &ndarray::Array3::<f32>::zeros((2, 3, 2)))
        .verbose(0)
        .class_weight([(0, 2.0)])
        .run()
        .unwrap_err()
        .to_string();
    assert!(e.contains("class_weight") && e.contains("sample_weight"), "{e}");

    assert_eq!(m.get_weights(), before);
}

#[test]
fn validation_split_splits_the_sample_weights() {
    // The last two samples (6 x 0.75 = 4.5, rounded down) are validation: their loss is weighted by their own
    // sample weights.
    let fx = fixture();
    let d = data(&fx);
    let mut m = model(&fx, "categorical_crossentropy");
    let mut w = d.weights.clone();
    w[4] = 0.0;
    w[5] = 2.0;
    let history =
        m.fit(&d.x, &d.one_hot).epochs(1).verbose(0).validation_split(0.25).sample_weight(&w).run().unwrap();
    let mut check = model(&fx, "categorical_crossentropy");
    check.set_weights(&m.get_weights()).unwrap();
    let (vx, vy) = (d.x.slice(ndarray::s![4.., ..]), d.one_hot.slice(ndarray::s![4.., ..]));
    let want = check.evaluate_weighted(vx, vy, &ndarray::array![0.0f32, 2.0]).unwrap();
    assert_eq!(history.get("val_loss").unwrap()[0], want.get("loss").unwrap());
}

#[test]
fn class_weight_on_integer_labels_is_the_sample_weight_of_each_label() {
    // Sparse labels (one per sample) take their class directly; unlisted class 2 weighs 1, as in Keras.
    let fx = fixture();
    let d = data(&fx);
    let by_hand: Array1<f32> = d.labels.iter().map(|&l| [1.0, 4.0, 1.0][l as usize]).collect();
    let mut with_classes = model(&fx, "sparse_categorical_crossentropy");
    let a =
        as_in_keras(with_classes.fit(&d.x, &d.labels)).class_weight(d.class_weight.clone()).run().unwrap();
    let mut with_samples = model(&fx, "sparse_categorical_crossentropy");
    let b = as_in_keras(with_samples.fit(&d.x, &d.labels)).sample_weight(&by_hand).run().unwrap();
    assert_eq!(a, b);
    assert_eq!(with_classes.get_weights(), with_samples.get_weights());
    // And the one-hot run of the same data agrees with Keras' (checked above), so both target forms agree.
    assert_ne!(by_hand, Array1::<f32>::ones(6), "the weights must matter for this test to mean anything");
}

#[test]
fn a_weight_error_leaves_an_unbuilt_model_unbuilt() {
    let mut m = Sequential::new();
    m.add(Dense::new(2)).unwrap();
    m.compile("mse", "sgd", []).unwrap();
    let (x, y) = (Array2::<f32>::ones((4, 3)), Array2::<f32>::ones((4, 2)));
    assert!(m.fit(&x, &y).verbose(0).sample_weight(&Array1::<f32>::ones(3)).run().is_err());
    assert!(m
        .fit(&x, &y)
        .verbose(0)
        .sample_weight(&Array1::<f32>::ones(4))
        .class_weight([(0, 2.0)])
        .run()
        .is_err());
    assert!(!m.is_built());
    assert!(m.evaluate_weighted(&x, &y, &Array1::<f32>::ones(5)).is_err());
    assert!(!m.is_built(), "evaluate_weighted built the model before refusing its weights");
}
