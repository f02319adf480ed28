//! Issue 25, items 1, 2, 3 and 10: settings and shapes from a file or a builder that the kernels' arithmetic
//! must survive (predict returns the right values or an error; never an abort, a hang or a panic), and the
//! EarlyStopping warning for a monitored value that never comes. Items 3 and the warning run a child process.
#[path = "../examples/fuzz_model_files/harness.rs"]
mod harness;

use harness::ModelFile;
use kerust::callbacks::EarlyStopping;
use kerust::layers::{
    AveragePooling2D, BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D, Input, MaxPooling2D,
};
use kerust::models::{load_model_from_bytes, Sequential};
use kerust::optimizers::SGD;
use ndarray::{Array2, ArrayD, IxDyn};
use serde_json::json;

/// Runs the test `name` of this binary in a child process (with `env` set, and a shell's `ulimit -v` of
/// `address_space_kib` where given), and returns its exit status and standard error.
fn child(name: &str, env: &str, address_space_kib: Option<u64>) -> (std::process::ExitStatus, String) {
    let exe = std::env::current_exe().unwrap();
    let limit = address_space_kib.map_or(String::new(), |k| format!("ulimit -v {k}; "));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{limit}exec \"$0\" {name} --exact --nocapture --test-threads=1"))
        .arg(exe)
        .env(env, "1")
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Item 1: a "same" pooling window far larger than the image covers the whole image: each output is the
/// image's maximum (or mean), computed in the image's time. It used to ask `Vec::with_capacity` for
/// `pool_size.0 * pool_size.1` offsets (a capacity overflow, an abort, or a walk over 2^40 taps).
#[test]
fn item1_a_huge_same_pooling_window_pools_the_whole_image() {
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4, 1]), |i| (i[0] * 12 + i[1] * 4 + i[2]) as f32);
    for (pool, strides) in
        [((1usize << 40, 1usize << 40), None), ((1 << 62, 3), Some((1, 1))), ((5, 1 << 50), None)]
    {
        let mut max = MaxPooling2D::new(pool).padding("same");
        let mut avg = AveragePooling2D::new(pool).padding("same");
        if let Some(s) = strides {
            max = max.strides(s);
            avg = avg.strides(s);
        }
        for (layer, is_max) in
            [(Box::new(max) as Box<dyn kerust::layers::Layer>, true), (Box::new(avg), false)]
        {
            let mut m = Sequential::new();
            m.add(Input::new([3, 4, 1])).unwrap();
            m.add_boxed(layer).unwrap();
            let y = m.predict(&x).unwrap();
            // Windows over every row and column: the whole image where the pool covers both axes.
            if pool.0 >= 3 && pool.1 >= 4 && strides.is_none() {
                assert_eq!(y.shape(), [2, 1, 1, 1]);
                let want = if is_max { [11.0, 23.0] } else { [5.5, 17.5] };
                assert_eq!(y.iter().copied().collect::<Vec<_>>(), want, "pool {pool:?}");
            }
            assert!(y.iter().all(|v| v.is_finite()), "pool {pool:?}: {y}");
        }
    }
    // A window whose last position does not fit in a usize is refused when the layer is built.
    let mut m = Sequential::new();
    m.add(Input::new([3, 4, 1])).unwrap();
    let e = m.add(MaxPooling2D::new(usize::MAX).strides(1).padding("same")).unwrap_err().to_string();
    assert!(e.contains("MaxPooling2D") && e.contains("overflows"), "{e}");
}

/// Item 2: a dilation near 2^64 wrapped the padding arithmetic (a wrong prediction, or a panic with overflow
/// checks). A window whose reach overflows is refused when the layer is built, from a builder or a file, and
/// the largest dilation that fits predicts what its one in-bounds tap gives.
#[test]
fn item2_a_dilation_near_2_pow_64_is_refused_at_build_not_wrapped() {
    for dilation in [usize::MAX / 2, usize::MAX / 2 - 1, usize::MAX - 1, 1usize << 63] {
        let mut m = Sequential::new();
        m.add(Input::new([5, 5, 1])).unwrap();
        let layer = Conv2D::new(1, 3).padding("same").dilation_rate((dilation, 1));
        let e = m.add(layer).unwrap_err().to_string();
        assert!(e.contains("Conv2D") && e.contains("overflows") && e.contains("dilation"), "{dilation}: {e}");
        // As the first layer's own input shape.
        let e = Sequential::new()
            .add(Conv2D::new(1, 3).padding("same").dilation_rate((1, dilation)).input_shape([5, 5, 1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("overflows"), "{e}");
    }
    // The same from a file: a saved model with its dilation edited.
    let mut m = Sequential::new();
    m.add(Conv2D::new(1, 3).padding("same").dilation_rate(2).input_shape([5, 5, 1])).unwrap();
    let bytes = ModelFile::with_config(&m.to_bytes().unwrap(), |c| {
        c["layers"][0]["config"]["dilation_rate"] = json!([u64::MAX - 1, 1]);
    });
    let e = ModelFile::load_err(&bytes);
    assert!(e.contains("overflows"), "{e}");
    // The largest dilation that fits: only the kernel's centre tap is ever inside the image.
    let dilation = (usize::MAX - 5) / 2;
    let bytes = ModelFile::with_config(&m.to_bytes().unwrap(), |c| {
        c["layers"][0]["config"]["dilation_rate"] = json!([dilation, dilation]);
    });
    let loaded = load_model_from_bytes(&bytes).unwrap();
    let x = ArrayD::from_shape_fn(IxDyn(&[1, 5, 5, 1]), |i| (i[1] * 5 + i[2]) as f32);
    let w = m.get_weights();
    let (centre, bias) = (w[0][[1, 1, 0, 0]], w[1][[0]]);
    let y = loaded.predict(&x).unwrap();
    assert!(y.iter().zip(&x).all(|(y, x)| (y - (x * centre + bias)).abs() < 1e-4), "{y}");
}

/// Item 3, the child: a convolution whose im2col rows for one image are 2 GB (200 x 200 pixels, a field of
/// 100 x 125), under a 1.5 GiB address-space limit (as the fuzzer's workers run). The old kernel allocated
/// them in one piece and aborted; the new one copies a bounded number of rows at a time.
#[test]
fn item3_child() {
    if std::env::var_os("KERUST_TEST_IM2COL").is_none() {
        return;
    }
    let mut m = Sequential::new();
    m.add(Conv2D::new(1, (100, 125)).padding("same").use_bias(false).input_shape([200, 200, 1])).unwrap();
    let kernel = m.get_weights()[0].mapv(|_| 1.0);
    m.set_weights(&[kernel]).unwrap();
    let y = m.predict(&ArrayD::<f32>::ones(IxDyn(&[1, 200, 200, 1]))).unwrap();
    // With ones, each output counts its window's taps inside the image: padding 49 above, 62 left.
    assert_eq!(y[[0, 0, 0, 0]], 51.0 * 63.0);
    assert_eq!(y[[0, 100, 100, 0]], 100.0 * 125.0);
    println!("item3 ok");
}

#[test]
fn item3_the_im2col_scratch_of_a_huge_image_stays_small() {
    let (status, stderr) = child("item3_child", "KERUST_TEST_IM2COL", Some(1536 * 1024));
    assert!(status.success(), "{status}: {stderr}");
}

/// `x` `(n, features)` with 31 axes of length 1 inserted before the features: 32 axes per sample, 33 in all.
fn deep(x: &Array2<f32>) -> ArrayD<f32> {
    let mut shape = vec![x.nrows()];
    shape.extend([1; 31]);
    shape.push(x.ncols());
    x.clone().into_shape_with_order(IxDyn(&shape)).unwrap()
}

/// Item 10: reduction axes were a 32-bit mask, so axis 32 aliased the batch axis: cross-entropy on 33-axis
/// values gave the wrong loss and NaN weights, and BatchNormalization's training panicked. Each must equal
/// the same model on the 2-axis data (the extra axes have length 1).
#[test]
fn item10_cross_entropy_and_batch_normalization_on_33_axes_equal_2_axes() {
    let x = Array2::from_shape_fn((4, 6), |(i, j)| ((i * 7 + j * 3) % 5) as f32 / 5.0 - 0.3);
    let y = Array2::from_shape_fn((4, 6), |(i, j)| f32::from(i % 6 == j));
    let deep_shape: Vec<usize> = std::iter::repeat_n(1, 31).chain([6]).collect();
    for (loss, make) in [
        ("categorical_crossentropy", 0),
        ("mse", 1), // BatchNormalization: its batch statistics reduce over every axis but the last
    ] {
        let layer = || -> Box<dyn kerust::layers::Layer> {
            if make == 0 {
                Box::new(Dense::new(6).activation("softmax").kernel_initializer("zeros"))
            } else {
                Box::new(BatchNormalization::new())
            }
        };
        let mut flat = Sequential::new();
        flat.set_seed(3);
        flat.add(Input::new([6])).unwrap();
        flat.add_boxed(layer()).unwrap();
        flat.compile(loss, SGD::new().learning_rate(0.5), []).unwrap();
        let mut tall = Sequential::new();
        tall.set_seed(3);
        tall.add(Input::new(&deep_shape)).unwrap();
        tall.add_boxed(layer()).unwrap();
        tall.compile(loss, SGD::new().learning_rate(0.5), []).unwrap();
        let (a, b) = (flat.evaluate(&x, &y).unwrap(), tall.evaluate(&deep(&x), &deep(&y)).unwrap());
        let (la, lb) = (a.get("loss").unwrap(), b.get("loss").unwrap());
        if make == 0 {
            assert!((la - 6f32.ln()).abs() < 1e-5, "uniform softmax: ln 6, got {la}");
        }
        assert!((la - lb).abs() < 1e-5, "{loss}: 2 axes {la}, 33 axes {lb}");
        flat.fit(&x, &y).batch_size(4).epochs(1).verbose(0).run().unwrap();
        tall.fit(&deep(&x), &deep(&y)).batch_size(4).epochs(1).verbose(0).run().unwrap();
        for (wa, wb) in flat.get_weights().iter().zip(tall.get_weights()) {
            assert!(wb.iter().all(|v| v.is_finite()), "{loss}: {wb}");
            assert!(wa.iter().zip(&wb).all(|(a, b)| (a - b).abs() < 1e-5), "{loss}: {wa} vs {wb}");
        }
    }
}

/// The EarlyStopping child: `val_loss` without validation data.
#[test]
fn early_stopping_child() {
    if std::env::var_os("KERUST_TEST_EARLY_STOPPING_25").is_none() {
        return;
    }
    let mut m = Sequential::new();
    m.add(Dense::new(2).input_shape([3])).unwrap();
    m.compile("mse", "sgd", []).unwrap();
    let x = Array2::from_shape_fn((4, 3), |(i, j)| (i + j) as f32 / 4.0);
    let y = Array2::from_shape_fn((4, 2), |(i, j)| f32::from(i % 2 == j));
    m.fit(&x, &y).epochs(4).verbose(0).callback(EarlyStopping::new()).run().unwrap();
}

/// EarlyStopping on a value the logs never have cannot stop training, so `fit(epochs=huge)` runs to the end:
/// it says so once, naming what is missing, what is there, and what to do.
#[test]
fn early_stopping_on_a_value_never_logged_warns_once_that_it_cannot_stop() {
    let (status, stderr) = child("early_stopping_child", "KERUST_TEST_EARLY_STOPPING_25", None);
    assert!(status.success(), "{stderr}");
    let warning = "Early stopping conditioned on metric `val_loss` which is not available";
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
    assert_eq!(stderr.matches("cannot stop training").count(), 1, "{stderr}");
    assert!(stderr.contains("validation"), "{stderr}");
}

/// Max pooling's record of which tap won was an `f32` value, exact only below 2^24 taps: a global max pooling
/// of a 4097 x 4097 image sent a gradient to the wrong pixel. The maximum must get the whole gradient.
#[test]
fn item1_max_pooling_routes_the_gradient_of_a_window_of_more_than_2_pow_24_taps() {
    use kerust::autodiff::{Gradients, Padding, ParamStore, Tape};
    let (h, w) = (4097usize, 4097usize);
    let mut x = ArrayD::<f32>::zeros(IxDyn(&[1, h, w, 1]));
    // The maximum at tap 4097^2 - 2 = 16785407: an odd number above 2^24, which no f32 holds.
    x[[0, h - 1, w - 2, 0]] = 1.0;
    let mut params = ParamStore::new();
    let id = params.add("x", x, true);
    let tape = Tape::new(&params);
    let y = tape.param(id).max_pool2d((h, w), (h, w), Padding::Valid).sum();
    let mut grads = Gradients::new();
    tape.backward(y, &mut grads).unwrap();
    let g = grads.get(id).unwrap().to_array();
    assert_eq!(g[[0, h - 1, w - 2, 0]], 1.0);
    assert_eq!(g.sum(), 1.0, "the gradient goes to the maximum only");
}

/// Outputs no machine can hold: a 1x1 Conv2D of 2^20 filters is 8 MB of weights (a file of that size can
/// bring it) and 256 GiB of output for one 256 x 256 image. predict, evaluate, fit and train_on_batch refuse
/// it before the first step, naming the layer, instead of aborting the process; the model is unchanged.
#[test]
fn outputs_no_machine_can_hold_are_an_error_naming_the_layer_before_the_first_step() {
    let mut m = Sequential::new();
    m.add(Conv2D::new(1 << 20, 1).input_shape([256, 256, 1]).name("wide")).unwrap();
    m.add(GlobalAveragePooling2D::new()).unwrap();
    m.add(Dense::new(1)).unwrap();
    m.compile("mse", SGD::new(), []).unwrap();
    let x = ArrayD::<f32>::zeros(IxDyn(&[1, 256, 256, 1]));
    let y = Array2::<f32>::zeros((1, 1));
    let before = m.get_weights();
    let errors = [
        m.predict(&x).map(|_| ()),
        m.evaluate(&x, &y).map(|_| ()),
        m.fit(&x, &y).verbose(0).run().map(|_| ()),
        m.train_on_batch(&x, &y).map(|_| ()),
    ];
    for (call, err) in ["predict", "evaluate", "fit", "train_on_batch"].iter().zip(errors) {
        let err = err.unwrap_err().to_string();
        assert!(
            err.contains(&format!("{call}: the layer outputs of a batch of 1"))
                && err.contains("layer `wide` (Conv2D)")
                && err.contains("[1, 256, 256, 1048576]"),
            "{err}"
        );
    }
    assert_eq!(m.get_weights(), before);
    // A batch that fits still runs.
    let mut small = Sequential::new();
    small.add(Conv2D::new(1 << 10, 1).input_shape([4, 4, 1])).unwrap();
    assert_eq!(small.predict(&ArrayD::<f32>::zeros(IxDyn(&[2, 4, 4, 1]))).unwrap().shape(), [2, 4, 4, 1024]);
}
