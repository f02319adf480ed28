//! What a Keras user passes without thinking: `u8` images and labels, `i32`/`i64` labels, `f64` arrays, float
//! labels for `to_categorical`; and what they expect back: class indices and 2-D predictions.
use kerust::layers::Dense;
use kerust::models::Sequential;
use kerust::optimizers::SGD;
use kerust::utils::{argmax, to_categorical};
use kerust::Error;
use ndarray::{array, Array1, Array2, Axis, Ix2};

/// 40 "images" of 6 pixels in 0..=255 and their labels 0..3, as MNIST hands them out: `u8`.
fn bytes() -> (Array2<u8>, Array1<u8>) {
    let x = Array2::from_shape_fn((40, 6), |(i, j)| ((i * 37 + j * 91) % 256) as u8);
    let y = Array1::from_shape_fn(40, |i| (i % 3) as u8);
    (x, y)
}

fn model(loss: &str) -> Sequential {
    let mut m = Sequential::new();
    m.set_seed(5);
    m.add(Dense::new(8).activation("relu").input_shape([6])).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile(loss, SGD::new().learning_rate(0.001), ["accuracy"]).unwrap();
    m
}

#[test]
fn u8_images_and_labels_train_as_their_f32_values() {
    let (x, y) = bytes();
    let (xf, yf) = (x.mapv(f32::from), y.mapv(f32::from));

    let mut from_bytes = model("sparse_categorical_crossentropy");
    let h1 = from_bytes.fit(&x, &y).epochs(2).batch_size(8).verbose(0).validation_data(&x, &y).run().unwrap();
    let mut from_floats = model("sparse_categorical_crossentropy");
    let h2 =
        from_floats.fit(&xf, &yf).epochs(2).batch_size(8).verbose(0).validation_data(&xf, &yf).run().unwrap();
    assert_eq!(h1, h2);
    assert_eq!(from_bytes.get_weights(), from_floats.get_weights());

    assert_eq!(from_bytes.evaluate(&x, &y).unwrap(), from_floats.evaluate(&xf, &yf).unwrap());
    assert_eq!(from_bytes.predict(&x).unwrap(), from_floats.predict(&xf).unwrap());
    assert_eq!(from_bytes.train_on_batch(&x, &y).unwrap(), from_floats.train_on_batch(&xf, &yf).unwrap());
}

#[test]
fn integer_and_f64_arrays_are_accepted_everywhere() {
    let (x, y) = bytes();
    let reference = {
        let mut m = model("sparse_categorical_crossentropy");
        m.fit(&x.mapv(f32::from), &y.mapv(f32::from)).batch_size(8).verbose(0).run().unwrap();
        m.get_weights()
    };
    let x64 = x.mapv(f64::from);
    let (x16, y32, y64, yf64) = (x.mapv(i16::from), y.mapv(i32::from), y.mapv(i64::from), y.mapv(f64::from));
    for run in 0..3 {
        let mut m = model("sparse_categorical_crossentropy");
        match run {
            0 => m.fit(&x64, &y32),
            1 => m.fit(&x64, &y64),
            _ => m.fit(&x16, &yf64),
        }
        .batch_size(8)
        .verbose(0)
        .run()
        .unwrap();
        assert_eq!(m.get_weights(), reference, "run {run}");
    }
    // One-hot targets as f64, evaluate and predict on i32 images.
    let mut m = model("categorical_crossentropy");
    let one_hot = to_categorical(&y, 3).unwrap().mapv(f64::from);
    m.fit(&x64, &one_hot).batch_size(8).verbose(0).run().unwrap();
    let xi = x.mapv(i32::from);
    assert_eq!(
        m.evaluate(&xi, &one_hot).unwrap(),
        m.evaluate(&x.mapv(f32::from), &one_hot.mapv(|v| v as f32)).unwrap()
    );
    assert_eq!(m.predict(&xi).unwrap().shape(), &[40, 3]);
}

#[test]
fn f64_values_keep_nan_and_infinity() {
    let mut m = Sequential::new();
    m.add(Dense::new(1).input_shape([2])).unwrap();
    let out = m.predict(&array![[f64::NAN, 0.0], [f64::INFINITY, 0.0], [1e300, 0.0]]).unwrap();
    assert!(out[[0, 0]].is_nan());
    assert!(!out[[1, 0]].is_finite() && !out[[2, 0]].is_finite()); // 1e300 is +inf as f32, as numpy's cast
}

#[test]
fn to_categorical_takes_float_labels_that_hold_integers() {
    assert_eq!(to_categorical(&array![2.0f32, 0.0], 3).unwrap(), array![[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]);
    assert_eq!(to_categorical(&array![1.0f64], 2).unwrap(), array![[0.0, 1.0]]);
    for (labels, what) in [(array![0.0f32, 2.5], "2.5"), (array![0.0f32, f32::NAN], "NaN")] {
        let e = to_categorical(&labels, 3).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, Error::InvalidArgument { .. }) && msg.contains(what) && msg.contains("index 1"),
            "{msg}"
        );
    }
    let e = to_categorical(&array![-1.0f32], 3).unwrap_err();
    assert!(matches!(e, Error::LabelOutOfRange { label: -1, index: 0, num_classes: 3 }), "{e}");
    assert!(matches!(to_categorical(&array![3.0f64], 3), Err(Error::LabelOutOfRange { label: 3, .. })));
}

#[test]
fn class_indices_and_2d_predictions() {
    let (x, y) = bytes();
    let mut m = model("sparse_categorical_crossentropy");
    m.fit(&x, &y).batch_size(8).verbose(0).run().unwrap();

    // Keras: np.argmax(model.predict(x), axis=1), the same type as predict_classes.
    let classes = argmax(&m.predict(&x).unwrap(), Axis(1)).unwrap();
    assert_eq!(classes.shape(), [40]);
    assert_eq!(m.predict_classes(&x).unwrap(), classes);
    let probabilities = m.predict(&x).unwrap().into_dimensionality::<Ix2>().unwrap();
    for (row, &class) in probabilities.rows().into_iter().zip(&classes) {
        assert!(row.iter().all(|&p| p <= row[class]));
    }
    // The accuracy metric agrees with the classes.
    let hits = classes.iter().zip(&y).filter(|&(&c, &label)| c == usize::from(label)).count();
    let accuracy = m.evaluate(&x, &y).unwrap().get("accuracy").unwrap();
    assert!((accuracy - hits as f32 / 40.0).abs() < 1e-6);

    // A single sigmoid unit: class 1 above 0.5.
    let mut binary = Sequential::new();
    binary.add(Dense::new(1).activation("sigmoid").input_shape([1])).unwrap();
    binary.set_weights(&[array![[1.0f32]].into_dyn(), array![0.0f32].into_dyn()]).unwrap();
    assert_eq!(binary.predict_classes(&array![[-2.0f32], [0.0], [3.0]]).unwrap(), array![0, 0, 1].into_dyn());

    // An output that is not a vector per sample has no classes.
    let mut images = Sequential::new();
    images.add(Dense::new(2).input_shape([3, 4])).unwrap();
    let e = images.predict_classes(&ndarray::Array3::<f32>::zeros((1, 3, 4))).unwrap_err().to_string();
    assert!(e.contains("(None, 3, 2)") && e.contains("one vector per sample"), "{e}");
}

#[test]
fn argmax_is_numpys() {
    assert_eq!(argmax(&array![[1.0f32, 3.0, 3.0], [f32::NAN, 9.0, 0.0]], Axis(1)).unwrap(), array![1, 0]);
    assert_eq!(argmax(&array![[0.0f32, 5.0], [2.0, 1.0]], Axis(0)).unwrap(), array![1, 0]);
    assert_eq!(argmax(&array![-1.0f32, -0.5, f32::NEG_INFINITY], Axis(0)).unwrap()[()], 1);
    let e = argmax(&Array2::<f32>::zeros((3, 0)), Axis(1)).unwrap_err().to_string();
    assert!(e.contains("[3, 0]"), "{e}");
    assert!(argmax(&Array2::<f32>::zeros((3, 2)), Axis(2)).is_err());
}

#[cfg(feature = "plot")]
#[test]
fn save_img_writes_the_pixels_it_is_given() {
    let dir = std::env::temp_dir().join(format!("kerust_save_img_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let decode = |path: &std::path::Path| {
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, info.color_type, buf)
    };
    let gray = Array2::from_shape_fn((3, 5), |(r, c)| (r * 50 + c) as u8);
    kerust::utils::save_img(dir.join("g.png"), &gray).unwrap();
    assert_eq!(decode(&dir.join("g.png")), (5, 3, png::ColorType::Grayscale, gray.iter().copied().collect()));
    // A transposed view is written in its logical order.
    kerust::utils::save_img(dir.join("t.png"), gray.t()).unwrap();
    assert_eq!(decode(&dir.join("t.png")).3, gray.t().iter().copied().collect::<Vec<_>>());
    let rgb = ndarray::Array3::from_shape_fn((2, 2, 3), |(r, c, k)| (r * 100 + c * 10 + k) as u8);
    kerust::utils::save_img(dir.join("c.png"), &rgb).unwrap();
    assert_eq!(decode(&dir.join("c.png")), (2, 2, png::ColorType::Rgb, rgb.iter().copied().collect()));

    for bad in [ndarray::Array3::<u8>::zeros((2, 2, 2)).into_dyn(), Array2::<u8>::zeros((0, 4)).into_dyn()] {
        let e = kerust::utils::save_img(dir.join("bad.png"), &bad).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }
    assert!(!dir.join("bad.png").exists());
    std::fs::remove_dir_all(&dir).ok();
}
