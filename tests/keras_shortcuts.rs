//! What a Keras user reaches for early (issue 12, point 9): a model from a list of layers, custom activations
//! without a layer, `Rescaling`, and readable `Logs` and `History`.
use kerust::activations::Activation;
use kerust::layers::{layer_from_config, Dense, Dropout, Flatten, Layer, Rescaling};
use kerust::models::{load_model_from_bytes, load_model_from_bytes_with, Sequential};
use kerust::saving::LoadOptions;
use kerust::sequential;
use ndarray::{Array2, Array3};

/// The message of an error (`unwrap_err` needs `Debug` for the success type).
fn err<T>(result: kerust::Result<T>) -> String {
    result.err().expect("an error").to_string()
}

fn xy() -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((32, 4), |(i, j)| ((i * 3 + j * 7) % 10) as f32 / 10.0 - 0.45);
    let y = Array2::from_shape_fn((32, 2), |(i, j)| f32::from((x[[i, 0]] + x[[i, 1]] > 0.0) == (j == 1)));
    (x, y)
}

// ---- Sequential from a list ----------------------------------------------------------------------------

#[test]
fn sequential_macro_builds_the_same_model_as_add() {
    let mut by_add = Sequential::new();
    by_add.add(Dense::new(25).activation("sigmoid").input_shape([784])).unwrap();
    by_add.add(Dropout::new(0.1)).unwrap();
    by_add.add(Dense::new(10).activation("softmax")).unwrap();

    let mut by_macro = sequential![
        Dense::new(25).activation("sigmoid").input_shape([784]),
        Dropout::new(0.1),
        Dense::new(10).activation("softmax"),
    ]
    .unwrap();
    assert_eq!(by_macro.summary_string(), by_add.summary_string());
    // Same layers in the same order: the weights of one fit the other, and then both compute alike.
    by_macro.set_weights(&by_add.get_weights()).unwrap();
    let x = ndarray::Array2::from_shape_fn((3, 784), |(i, j)| ((i * 31 + j) % 17) as f32 / 17.0);
    assert_eq!(by_macro.predict(&x).unwrap(), by_add.predict(&x).unwrap());
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Dense::new(25).activation("sigmoid").input_shape([784])),
        Box::new(Dropout::new(0.1)),
        Box::new(Dense::new(10).activation("softmax")),
    ];
    let from_list = Sequential::from_layers(layers).unwrap();
    assert_eq!(from_list.summary_string(), by_add.summary_string());
    assert_eq!(sequential![].unwrap().layers().len(), 0);
    assert_eq!(sequential![Dense::new(3)].unwrap().layers().len(), 1);
}

#[test]
fn sequential_macro_gives_the_errors_of_add() {
    let zero = err(sequential![Dense::new(4).input_shape([3]), Dense::new(0)]);
    let mut m = Sequential::new();
    m.add(Dense::new(4).input_shape([3])).unwrap();
    assert_eq!(zero, err(m.add(Dense::new(0))));
    let dup = err(sequential![Dense::new(4).name("a").input_shape([3]), Dense::new(2).name("a")]);
    assert!(dup.to_string().contains("unique names"), "{dup}");
}

// ---- Custom activations --------------------------------------------------------------------------------

fn cube() -> Activation {
    Activation::custom("cube", |x| x * x * x, |x| 3.0 * x * x)
}

#[test]
fn a_custom_activation_works_in_dense_and_activation_layers_and_trains() {
    let (x, y) = xy();
    let mut m = sequential![
        Dense::new(6).activation(cube()).input_shape([4]),
        kerust::layers::Activation::new(Activation::custom("halve", |x| 0.5 * x, |_| 0.5)),
        Dense::new(2).activation("softmax"),
    ]
    .unwrap();
    m.set_seed(1);
    // The first layer's output is the cube of the same layer without activation.
    let mut linear = sequential![Dense::new(6).input_shape([4])].unwrap();
    linear.set_weights(&m.get_weights()[..2]).unwrap();
    let mut first = sequential![Dense::new(6).activation(cube()).input_shape([4])].unwrap();
    first.set_weights(&m.get_weights()[..2]).unwrap();
    let (z, a) = (linear.predict(&x).unwrap(), first.predict(&x).unwrap());
    assert_eq!(a, z.mapv(|v| v * v * v));

    m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    let h = m.fit(&x, &y).epochs(5).verbose(0).run().unwrap();
    assert!(h["loss"][4] < h["loss"][0], "{h}");

    // Saved by name; loaded back with the activations registered, identical.
    let bytes = m.to_bytes().unwrap();
    let e = err(load_model_from_bytes(&bytes));
    assert!(e.contains("unknown activation `cube`") && e.contains("custom_activation"), "{e}");
    let options = LoadOptions::new().custom_activation(cube()).custom_activation(Activation::custom(
        "halve",
        |x| 0.5 * x,
        |_| 0.5,
    ));
    let back = load_model_from_bytes_with(&bytes, &options).unwrap();
    assert_eq!(back.predict(&x).unwrap(), m.predict(&x).unwrap());
}

// ---- Rescaling ----------------------------------------------------------------------------------------

#[test]
fn rescaling_is_kerass_formula_in_f32() {
    let x = Array3::from_shape_fn((3, 2, 4), |(i, j, k)| (i * 97 + j * 31 + k * 7) as f32 % 256.0);
    for (scale, offset) in [(1.0 / 255.0, 0.0), (1.0 / 127.5, -1.0), (-2.5, 0.25)] {
        let m = sequential![Rescaling::new(scale).offset(offset).input_shape([2, 4])].unwrap();
        let out = m.predict(&x).unwrap();
        assert_eq!(out.shape(), &[3, 2, 4]);
        // Keras: `inputs * scale + offset`, in float32, in that order.
        for (o, &v) in out.iter().zip(x.iter()) {
            assert_eq!(o.to_bits(), (v * scale + offset).to_bits(), "{v} * {scale} + {offset}");
        }
        assert_eq!(m.count_params(), 0);
    }
    // Before a Dense model: pixels 0-255 go in as they are.
    let m =
        sequential![Rescaling::new(1.0 / 255.0).input_shape([2, 4]), Flatten::new(), Dense::new(3)].unwrap();
    assert_eq!(m.predict(&x).unwrap().shape(), &[3, 3]);
    let summary = m.summary_string();
    assert!(summary.contains("rescaling (Rescaling)") && summary.contains("(None, 2, 4)"), "{summary}");
}

#[test]
fn rescaling_saves_loads_and_refuses_bad_settings() {
    let layer = Rescaling::new(1.0 / 255.0).offset(-0.5).name("pixels");
    let config = layer.config().unwrap();
    assert_eq!(config.class_name, "Rescaling");
    assert_eq!(config.config["scale"], f64::from(1.0f32 / 255.0));
    assert_eq!(config.config["offset"], -0.5);
    assert_eq!(layer_from_config(&config).unwrap().config().unwrap(), config);
    let m = sequential![layer.input_shape([4]), Dense::new(2)].unwrap();
    let back = load_model_from_bytes(&m.to_bytes().unwrap()).unwrap();
    let (x, _) = xy();
    assert_eq!(back.layers()[0].config().unwrap(), m.layers()[0].config().unwrap());
    assert_eq!(back.predict(&x).unwrap(), m.predict(&x).unwrap());

    // A stored scale that an f32 cannot hold, or a missing offset, is an error naming it.
    let mut bad = config.clone();
    bad.config["scale"] = serde_json::json!(1e-50);
    assert!(err(layer_from_config(&bad)).contains("scale"));
    let mut bad = config;
    bad.config.as_object_mut().unwrap().remove("offset");
    assert!(err(layer_from_config(&bad)).contains("offset"));
    // A scale of infinity (1.0 / 0.0) would turn every input into inf or NaN.
    let e = err(sequential![Rescaling::new(1.0 / 0.0).input_shape([4])]);
    assert!(e.contains("scale") && e.contains("finite"), "{e}");
}

// ---- Display of Logs and History -----------------------------------------------------------------------

#[test]
fn logs_and_history_print_as_keras_dicts() {
    let (x, y) = xy();
    let mut m = sequential![Dense::new(2).activation("softmax").input_shape([4])].unwrap();
    m.compile("categorical_crossentropy", "sgd", ["accuracy"]).unwrap();
    let h = m.fit(&x, &y).epochs(2).verbose(0).validation_split(0.25).run().unwrap();
    let logs = m.evaluate(&x, &y).unwrap();
    let (loss, acc) = (logs.get("loss").unwrap(), logs.get("accuracy").unwrap());
    assert_eq!(logs.to_string(), format!("{{'loss': {loss}, 'accuracy': {acc}}}"));
    assert_eq!(format!("{logs:.4}"), format!("{{'loss': {loss:.4}, 'accuracy': {acc:.4}}}"));

    let list = |k: &str| h[k].iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
    let want = format!(
        "{{'accuracy': [{}], 'loss': [{}], 'val_accuracy': [{}], 'val_loss': [{}]}}",
        list("accuracy"),
        list("loss"),
        list("val_accuracy"),
        list("val_loss")
    );
    assert_eq!(h.to_string(), want);
}
