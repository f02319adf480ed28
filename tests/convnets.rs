//! Image models: Keras' own outputs for Conv2D, pooling and BatchNormalization models (predict, one training
//! step, moving statistics), save/load with moving statistics, and the errors a user meets.
mod common;
use common::assert_close;

use common::fixture_tensor as tensor;
use kerust::autodiff::Tensor;
use kerust::layers::{
    AveragePooling2D, BatchNormalization, Conv2D, Dense, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D,
    Input, Layer, MaxPooling2D, Reshape,
};
use kerust::models::{load_model, Model, Sequential};
use kerust::optimizers::SGD;
use ndarray::{ArrayD, Axis, IxDyn};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/keras_convnet.json")).unwrap()
}

/// The models of `keras_convnet.py`, in kerust.
fn model(name: &str) -> Sequential {
    let mut m = Sequential::new();
    let r = match name {
        "a" => (|| {
            m.add(Input::new([7, 6, 2]))?;
            m.add(Conv2D::new(3, (3, 2)).padding("same").activation("relu"))?;
            m.add(BatchNormalization::new().momentum(0.9))?;
            m.add(Conv2D::new(4, 2).strides(2).activation("tanh"))?;
            m.add(MaxPooling2D::new(2).strides(1).padding("same"))?;
            m.add(AveragePooling2D::new((2, 1)).padding("same"))?;
            m.add(Conv2D::new(2, 2).dilation_rate(2).padding("same").activation("sigmoid"))?;
            m.add(GlobalAveragePooling2D::new())?;
            m.add(Dense::new(3).activation("softmax"))
        })(),
        _ => (|| {
            m.add(Input::new([12]))?;
            m.add(Reshape::new([2, 3, 2]))?;
            m.add(BatchNormalization::new().axis(1).center(false).epsilon(1e-2))?;
            m.add(Conv2D::new(3, 1).use_bias(false))?;
            m.add(GlobalMaxPooling2D::new())?;
            m.add(Dense::new(2).activation("softmax"))
        })(),
    };
    r.unwrap();
    m
}

#[test]
fn predictions_and_one_training_step_match_keras() {
    let fx = fixture();
    for name in ["a", "b"] {
        let case = &fx[name];
        let mut m = model(name);
        let weights: Vec<Tensor> = case["weights_before"].as_array().unwrap().iter().map(tensor).collect();
        m.set_weights(&weights).unwrap();
        m.compile("categorical_crossentropy", SGD::new().learning_rate(0.1), []).unwrap();
        let (x, y) = (tensor(&case["x"]), tensor(&case["y"]));
        assert_close(
            &format!("{name}: predict"),
            &m.predict(&x).unwrap(),
            &tensor(&case["predict_before"]),
            1e-5,
        );
        let logs = m.train_on_batch(&x, &y).unwrap();
        let loss = logs.get("loss").unwrap();
        let want = case["loss"].as_f64().unwrap() as f32;
        assert!((loss - want).abs() < 1e-5, "{name}: loss {loss}, Keras {want}");
        // Every weight after the step, the moving statistics included (updated from the batch's statistics).
        for (i, (got, want)) in
            m.get_weights().iter().zip(case["weights_after"].as_array().unwrap()).enumerate()
        {
            assert_close(&format!("{name}: weight {i} after the step"), got, &tensor(want), 1e-5);
        }
        assert_close(
            &format!("{name}: predict after"),
            &m.predict(&x).unwrap(),
            &tensor(&case["predict_after"]),
            1e-5,
        );
    }
}

#[test]
fn summary_shows_keras_shapes_and_non_trainable_moving_statistics() {
    let m = model("a");
    let s = m.summary_string();
    for expected in [
        "conv2d (Conv2D)",
        "(None, 7, 6, 3)",
        "batch_normalization",
        "(BatchNormalization)",
        "conv2d_1 (Conv2D)",
        "(None, 3, 3, 4)",
        "max_pooling2d (MaxPooling2D)",
        "average_pooling2d",
        "(AveragePooling2D)",
        "(None, 2, 3, 4)",
        "global_average_pooling2d",
        "(GlobalAveragePooling2D)",
        "(None, 2)",
    ] {
        assert!(s.contains(expected), "summary lacks {expected:?}:\n{s}");
    }
    // BatchNormalization over 3 channels: gamma and beta trainable, moving mean and variance not.
    assert!(s.contains("Non-trainable params: 6 (24.00 B)"), "{s}");
    let bn = &m.layers()[1];
    assert_eq!(bn.count_params(m.params()), 12);
}

#[test]
fn the_keras_convnet_has_34826_params() {
    let mut m = Sequential::new();
    m.add(Input::new([28, 28, 1])).unwrap();
    m.add(Conv2D::new(32, 3).activation("relu")).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Conv2D::new(64, 3).activation("relu")).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(10).activation("softmax")).unwrap();
    let counts: Vec<usize> = m.layers().iter().map(|l| l.count_params(m.params())).collect();
    assert_eq!(counts, [320, 0, 18496, 0, 0, 16010]);
    assert!(m.summary_string().contains("Total params: 34,826"));
    assert_eq!(m.params().value(m.layers()[2].weights()[0]).shape(), [3, 3, 32, 64]);
}

/// A small image classification task: class = which quadrant is brightest.
fn quadrants(n: usize) -> (Tensor, Tensor) {
    let mut x = ArrayD::zeros(IxDyn(&[n, 8, 8, 1]));
    let mut y = ArrayD::zeros(IxDyn(&[n, 4]));
    for i in 0..n {
        let q = i % 4;
        for r in 0..8 {
            for c in 0..8 {
                let inside = (r / 4) * 2 + c / 4 == q;
                x[[i, r, c, 0]] =
                    if inside { 0.8 } else { 0.1 } + 0.1 * (((i * 7 + r * 3 + c) % 5) as f32 / 5.0);
            }
        }
        y[[i, q]] = 1.0;
    }
    (x, y)
}

#[test]
fn moving_statistics_change_in_training_only_and_survive_save_and_load() {
    let (x, y) = quadrants(64);
    let mut m = Sequential::new();
    m.add(Conv2D::new(4, 3).activation("relu").input_shape([8, 8, 1])).unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(4).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    let moving = |m: &Model| -> Vec<Tensor> { m.get_weights()[4..6].to_vec() };
    let initial = moving(&m);
    // Inference does not touch them.
    m.predict(&x).unwrap();
    m.evaluate(&x, &y).unwrap();
    assert_eq!(moving(&m), initial);
    let history = m.fit(&x, &y).batch_size(16).epochs(3).verbose(0).run().unwrap();
    assert!(history["loss"][2] < history["loss"][0], "{:?}", &history["loss"]);
    let trained = moving(&m);
    assert_ne!(trained, initial, "training steps move the statistics");

    let dir = std::env::temp_dir().join(format!("kerust-convnets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bn.safetensors");
    m.save(&path).unwrap();
    let mut loaded = load_model(&path).unwrap();
    assert_eq!(moving(&loaded), trained);
    assert_eq!(loaded.predict(&x).unwrap(), m.predict(&x).unwrap(), "bit-exact predictions after loading");
    assert_eq!(loaded.summary_string(), m.summary_string());
    // Training resumes identically in both.
    let a = m.fit(&x, &y).batch_size(16).epochs(4).initial_epoch(3).verbose(0).run().unwrap();
    let b = loaded.fit(&x, &y).batch_size(16).epochs(4).initial_epoch(3).verbose(0).run().unwrap();
    assert_eq!(a["loss"], b["loss"]);
    assert_eq!(moving(&loaded), moving(&m));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_small_convnet_learns() {
    let (x, y) = quadrants(96);
    let mut m = Sequential::new();
    // Seeded before the layers are built: seeded after, their weights came from the operating system's
    // generator and about one run in ten stayed below the bar.
    m.set_seed(3);
    m.add(Conv2D::new(8, 3).padding("same").activation("relu").input_shape([8, 8, 1])).unwrap();
    m.add(AveragePooling2D::new(2)).unwrap();
    m.add(Conv2D::new(8, 3).activation("relu")).unwrap();
    m.add(GlobalMaxPooling2D::new()).unwrap();
    m.add(Dense::new(4).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    let h = m.fit(&x, &y).batch_size(16).epochs(30).verbose(0).run().unwrap();
    let acc = *h["accuracy"].last().unwrap();
    assert!(acc > 0.95, "accuracy {acc}");
}

fn convnet() -> Sequential {
    let mut m = Sequential::new();
    m.add(Input::new([28, 28, 1])).unwrap();
    m.add(Conv2D::new(2, 3)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(3)).unwrap();
    m.compile("mse", "sgd", []).unwrap();
    m
}

fn err(r: kerust::Result<impl std::fmt::Debug>) -> String {
    r.expect_err("an error").to_string()
}

#[test]
fn images_without_a_channel_axis_are_named() {
    let mut m = convnet();
    let before = m.get_weights();
    let x = ArrayD::<f32>::zeros(IxDyn(&[5, 28, 28]));
    let y = ArrayD::<f32>::zeros(IxDyn(&[5, 3]));
    for e in [err(m.fit(&x, &y).verbose(0).run()), err(m.predict(&x)), err(m.evaluate(&x, &y))] {
        assert!(e.contains("channel axis") && e.contains("(None, 28, 28)"), "{e}");
        assert!(e.contains("insert_axis"), "says how to add it: {e}");
    }
    // Building a first Conv2D for 2-D samples says the same.
    let mut fresh = Sequential::new();
    let e = err(fresh.add(Conv2D::new(2, 3).input_shape([28, 28])));
    assert!(e.contains("channel axis") && e.contains("Reshape::new([28, 28, 1])"), "{e}");
    assert_eq!(m.get_weights(), before, "nothing changed");
    // With the axis added, it runs.
    assert_eq!(m.predict(&x.insert_axis(Axis(3))).unwrap().shape(), [5, 3]);
}

#[test]
fn bad_settings_are_errors_at_build_and_the_model_is_unchanged() {
    let mut m = Sequential::new();
    m.add(Input::new([5, 5, 2])).unwrap();
    m.add(Conv2D::new(3, 2)).unwrap();
    let before = (m.layers().len(), m.get_weights());
    let cases: Vec<(Box<dyn Layer>, &[&str])> = vec![
        (Box::new(Conv2D::new(0, 3)), &["filters", "0"]),
        (Box::new(Conv2D::new(2, 5)), &["(None, 4, 4, 3)", "(5, 5)"]),
        (Box::new(Conv2D::new(2, 3).dilation_rate(2)), &["dilation"]),
        (Box::new(Conv2D::new(2, (0, 3))), &["kernel_size"]),
        (Box::new(Conv2D::new(2, 3).strides((1, 0))), &["strides"]),
        (Box::new(Conv2D::new(2, 2).strides(2).dilation_rate(2)), &["strides", "dilation_rate"]),
        (Box::new(Conv2D::new(2, 2).padding("full")), &["padding", "full", "valid, same"]),
        (Box::new(Conv2D::new(2, 2).activation("relux")), &["relux"]),
        (Box::new(MaxPooling2D::new(5)), &["pool", "(None, 4, 4, 3)"]),
        (Box::new(MaxPooling2D::new(2).strides(0)), &["strides"]),
        (Box::new(AveragePooling2D::new(0)), &["pool_size"]),
        (Box::new(BatchNormalization::new().axis(0)), &["axis", "0"]),
        (Box::new(BatchNormalization::new().axis(5)), &["axis"]),
        (Box::new(BatchNormalization::new().momentum(1.5)), &["momentum"]),
        (Box::new(BatchNormalization::new().epsilon(0.0)), &["epsilon"]),
        (Box::new(Reshape::new([5, 5])), &["target_shape", "48"]),
        (Box::new(Reshape::new([-1, -1])), &["target_shape", "-1"]),
        (Box::new(Reshape::new([7, -1])), &["target_shape"]),
    ];
    for (layer, words) in cases {
        let e = err(m.add_boxed(layer));
        for w in words {
            assert!(e.contains(w), "{e:?} lacks {w:?}");
        }
        assert_eq!((m.layers().len(), m.get_weights()), before, "after {e}");
    }
    // Pooling larger than the input is fine with "same" padding, as in Keras.
    m.add(MaxPooling2D::new(5).padding("same")).unwrap();
    assert_eq!(m.output_shape(), Some(&[1, 1, 3][..]));
}

#[test]
fn set_weights_refuses_a_kernel_of_the_wrong_rank() {
    let mut m = convnet();
    let before = m.get_weights();
    let mut bad = before.clone();
    bad[0] = ArrayD::zeros(IxDyn(&[3, 3, 2]));
    let e = err(m.set_weights(&bad));
    assert!(e.contains("conv2d/kernel") && e.contains("(3, 3, 1, 2)") && e.contains("(3, 3, 2)"), "{e}");
    assert_eq!(m.get_weights(), before);
}
