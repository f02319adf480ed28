//! Issue 14: hostile model files and extreme arguments. Each numbered case of the issue has a test here (case
//! 6, temporary files of killed saves, and case 9, the EarlyStopping warning, run a child process).
#[path = "../examples/fuzz_model_files/harness.rs"]
mod harness;

use harness::ModelFile;
use kerust::callbacks::EarlyStopping;
use kerust::layers::{Dense, Dropout, Flatten};
use kerust::models::{load_model_from_bytes, Sequential};
use kerust::optimizers::{Adam, Optimizer, SGD};
use kerust::Error;
use ndarray::{array, Array1, Array2};
use serde_json::{json, Value};

/// A compiled, trained Dense model on 3 inputs: `dense/kernel` (3 x 2), `dense/bias`, Adam state.
fn model() -> Sequential {
    let mut m = Sequential::new();
    m.set_seed(7);
    m.add(Dense::new(2).input_shape([3]).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", Adam::new(), ["accuracy"]).unwrap();
    let x = Array2::from_shape_fn((4, 3), |(i, j)| (i + j) as f32 / 4.0);
    let y = Array2::from_shape_fn((4, 2), |(i, j)| f32::from(i % 2 == j));
    m.fit(&x, &y).epochs(1).verbose(0).run().unwrap();
    m
}

/// `model()`'s file with its config edited by `edit`.
fn with_config(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    ModelFile::with_config(&model().to_bytes().unwrap(), edit)
}

fn load_err(bytes: &[u8]) -> String {
    ModelFile::load_err(bytes)
}

#[test]
fn case1_a_first_layers_own_input_shape_is_bounded_by_the_file() {
    for units in [1_000_000_000_000u64, 50_000_000] {
        let bytes = with_config(|c| {
            c["input_shape"] = Value::Null;
            c["build_input_shape"] = Value::Null;
            c["layers"][0]["config"]["input_shape"] = json!([3]);
            c["layers"][0]["config"]["units"] = json!(units);
        });
        let e = load_err(&bytes);
        // Refused before allocating: the weight, its shape and the file's count are named.
        assert!(e.contains("dense/kernel") && e.contains(&format!("[3, {units}]")) && e.contains("8"), "{e}");
    }
    // The same file with its real size loads.
    let bytes = with_config(|c| {
        c["input_shape"] = Value::Null;
        c["build_input_shape"] = Value::Null;
        c["layers"][0]["config"]["input_shape"] = json!([3]);
    });
    assert!(load_model_from_bytes(&bytes).is_ok());
}

#[test]
fn case1_every_layer_is_bounded_not_only_dense() {
    // A second layer asking for more than the file brings (after a first layer that fits).
    let mut m = Sequential::new();
    m.add(Dense::new(2).input_shape([3])).unwrap();
    m.add(Dropout::new(0.5)).unwrap();
    m.add(Dense::new(2)).unwrap();
    let mut file = ModelFile::parse(&m.to_bytes().unwrap());
    let mut config = file.config();
    config["layers"][2]["config"]["units"] = json!(1u64 << 40);
    file.set_config(&config);
    let e = load_err(&file.encode());
    assert!(e.contains("dense_1/kernel"), "{e}");
}

#[test]
fn case2_weights_without_an_input_shape_are_refused() {
    let bytes = with_config(|c| {
        c["input_shape"] = Value::Null;
        c["build_input_shape"] = Value::Null;
        c["layers"][0]["config"]["input_shape"] = Value::Null;
        c["layers"][0]["config"]["units"] = json!(1_000_000_000_000u64);
    });
    let e = load_err(&bytes);
    assert!(e.contains("no input shape") && e.contains("holds 8 weights"), "{e}");

    // A model saved before it was built brings no weights: it loads unbuilt, and building it later with a
    // hostile size is an error, not an abort.
    let mut unbuilt = Sequential::new();
    unbuilt.add(Dense::new(2)).unwrap();
    let mut file = ModelFile::parse(&unbuilt.to_bytes().unwrap());
    let mut config = file.config();
    config["layers"][0]["config"]["units"] = json!(1_000_000_000_000u64);
    file.set_config(&config);
    let mut loaded = load_model_from_bytes(&file.encode()).unwrap();
    assert!(!loaded.is_built());
    let e = loaded.build(&[3]).unwrap_err();
    assert!(matches!(e, Error::Allocation { .. }) && e.to_string().contains("dense/kernel"), "{e}");
}

#[test]
fn case3_iterations_load_exactly_and_never_wrap() {
    for count in [123_456_789u64, (1 << 24) + 1, kerust::optimizers::MAX_ITERATIONS] {
        let bytes = with_config(|c| c["compile"]["optimizer"]["iterations"] = json!(count));
        let mut m = load_model_from_bytes(&bytes).unwrap();
        assert_eq!(m.optimizer().unwrap().iterations(), count);
        // Saved again: the same count.
        let again = load_model_from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(again.optimizer().unwrap().iterations(), count);
        // A step from there: finite weights, a count that moved on (or stays at the top), never 0.
        let x = Array2::from_shape_fn((2, 3), |(i, j)| (i + j) as f32);
        let y = array![[1.0f32, 0.0], [0.0, 1.0]];
        m.fit(&x, &y).epochs(1).verbose(0).run().unwrap();
        assert!(m.get_weights().iter().all(|w| w.iter().all(|v| v.is_finite())), "{count}");
        assert!(m.optimizer().unwrap().iterations() >= count);
    }
    for bad in [u64::MAX, u64::MAX - 1, 1 << 63] {
        let bytes = with_config(|c| c["compile"]["optimizer"]["iterations"] = json!(bad));
        let e = load_err(&bytes);
        assert!(e.contains("iterations") && e.contains(&bad.to_string()), "{e}");
    }
    // The epoch count, the other integer a file holds: counted on without wrapping, and bounded at load.
    let bytes = with_config(|c| c["training"]["epochs_run"] = json!(u64::MAX));
    assert!(load_err(&bytes).contains("epochs_run"));
    let bytes = with_config(|c| c["training"]["epochs_run"] = json!(i64::MAX));
    let mut m = load_model_from_bytes(&bytes).unwrap();
    let x = Array2::from_shape_fn((2, 3), |(i, j)| (i + j) as f32);
    m.fit(&x, &array![[1.0f32, 0.0], [0.0, 1.0]]).epochs(1).verbose(0).run().unwrap();
    // The count stops at the largest a file holds, so the model's own file loads (issue 25, item 5).
    assert_eq!(m.epochs_run(), i64::MAX as u64);
    assert_eq!(load_model_from_bytes(&m.to_bytes().unwrap()).unwrap().epochs_run(), i64::MAX as u64);
    for not_an_integer in [json!(1.5), json!(-1), json!(1e20)] {
        let bytes = with_config(|c| c["compile"]["optimizer"]["iterations"] = not_an_integer.clone());
        let e = load_err(&bytes);
        assert!(e.contains("model_config") && e.contains("u64"), "{not_an_integer}: {e}");
    }
}

#[test]
fn case4_to_categorical_of_huge_class_counts_is_an_error() {
    let e = kerust::utils::to_categorical(&array![0i64, 1, 2, 3], 1 << 62).unwrap_err();
    assert!(e.to_string().contains("num_classes"), "{e}");
    let e = kerust::utils::to_categorical(&array![0i64], 1 << 62).unwrap_err();
    assert!(matches!(e, Error::Allocation { .. }), "{e}");
    for label in [i64::MAX, 1 << 40] {
        let e = kerust::utils::to_categorical_inferred(&Array1::from(vec![0, label])).unwrap_err();
        assert!(matches!(e, Error::Allocation { .. } | Error::InvalidArgument { .. }), "{e}");
        let e = kerust::utils::to_categorical_inferred(&Array1::from(vec![label])).unwrap_err();
        assert!(matches!(e, Error::Allocation { .. }) && e.to_string().contains("to_categorical"), "{e}");
    }
    assert_eq!(kerust::utils::to_categorical_inferred(&array![2u8]).unwrap(), array![[0.0f32, 0.0, 1.0]]);
}

#[test]
fn case5_huge_layers_are_errors_not_aborts() {
    let mut m = Sequential::new();
    let e = m.add(Dense::new(1 << 40).input_shape([4])).unwrap_err();
    assert!(matches!(e, Error::Allocation { .. }), "{e}");
    assert!(e.to_string().contains("dense/kernel") && e.to_string().contains("[4, 1099511627776]"), "{e}");
    assert!(m.layers().is_empty() && m.params().is_empty());
    // The model is usable after the refusal.
    m.add(Dense::new(3).input_shape([4])).unwrap();
    assert_eq!(m.count_params(), 15);
    let mut m = Sequential::new();
    assert!(m.add(Dense::new(usize::MAX).input_shape([4])).is_err());
}

/// An edit of a model config.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn case7_config_parsing_is_strict() {
    let sgd = |edit: &dyn Fn(&mut Value)| {
        let mut m = Sequential::new();
        m.add(Dense::new(2).input_shape([3])).unwrap();
        m.add(Dropout::new(0.5)).unwrap();
        m.compile("categorical_crossentropy", SGD::new().nesterov(true).momentum(0.5), ["accuracy"]).unwrap();
        let mut file = ModelFile::parse(&m.to_bytes().unwrap());
        let mut config = file.config();
        edit(&mut config);
        file.set_config(&config);
        file.encode()
    };
    let cases: Vec<(&str, Edit)> = vec![
        ("nesterov=0.5", Box::new(|c| c["compile"]["optimizer"]["config"]["nesterov"] = json!(0.5))),
        ("nesterov=2", Box::new(|c| c["compile"]["optimizer"]["config"]["nesterov"] = json!(2))),
        (
            "learning_rate=1e-50",
            Box::new(|c| c["compile"]["optimizer"]["config"]["learning_rate"] = json!(1e-50)),
        ),
        (
            "momentum=0.9999999999",
            Box::new(|c| c["compile"]["optimizer"]["config"]["momentum"] = json!(0.9999999999)),
        ),
        ("from_logits=3", Box::new(|c| c["compile"]["loss"]["config"]["from_logits"] = json!(3))),
        (
            "label_smoothing=1e-50",
            Box::new(|c| c["compile"]["loss"]["config"]["label_smoothing"] = json!(1e-50)),
        ),
        ("rate", Box::new(|c| c["layers"][1]["config"]["rate"] = json!(0.9999999999))),
        ("rate", Box::new(|c| c["layers"][1]["config"]["rate"] = json!(1e308))),
        ("rate", Box::new(|c| c["layers"][1]["config"]["rate"] = json!(1.0))),
        ("boolean `true`", Box::new(|c| c["layers"][1]["config"]["rate"] = json!(true))),
        (
            "negative_slope=1e300",
            Box::new(|c| {
                c["layers"][0]["config"]["activation"] =
                    json!({"class_name": "leaky_relu", "config": {"negative_slope": 1e300}})
            }),
        ),
        ("expected a boolean", Box::new(|c| c["layers"][0]["config"]["use_bias"] = json!(1))),
    ];
    for (expected, edit) in cases {
        let e = load_err(&sgd(edit.as_ref()));
        assert!(e.contains(expected), "{expected}: {e}");
    }
    // Whatever loads saves to a file that loads again, identical.
    let bytes = sgd(&|c| c["compile"]["optimizer"]["config"]["learning_rate"] = json!(0.1));
    let m = load_model_from_bytes(&bytes).unwrap();
    let saved = m.to_bytes().unwrap();
    assert_eq!(load_model_from_bytes(&saved).unwrap().to_bytes().unwrap(), saved);
    assert_eq!(
        m.optimizer().unwrap().config(),
        SGD::new().nesterov(true).momentum(0.5).learning_rate(0.1).config()
    );
}

#[test]
fn case8_saving_twice_gives_the_same_bytes() {
    let m = model();
    let first = m.to_bytes().unwrap();
    for _ in 0..8 {
        assert_eq!(m.to_bytes().unwrap(), first);
    }
    // And still a standard safetensors file.
    let st = safetensors::SafeTensors::deserialize(&first).unwrap();
    assert_eq!(st.names().len(), 6);
}

/// Case 6, the child: writes a temporary file of `KERUST_TEST_SLOW_SAVE` and waits to be killed mid-save.
#[test]
fn slow_save_child() {
    let Some(path) = std::env::var_os("KERUST_TEST_SLOW_SAVE") else { return };
    let _ = kerust::saving::write_atomic(&path, |w| {
        w.write_all(&vec![7u8; 1 << 20])?;
        w.flush()?;
        std::thread::sleep(std::time::Duration::from_secs(60));
        Ok(())
    });
}

#[test]
fn case6_saves_killed_midway_leave_at_most_one_temporary_file() {
    let dir = std::env::temp_dir().join(format!("kerust-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("model.safetensors");
    model().save(&target).unwrap();
    let before = std::fs::read(&target).unwrap();
    let temporaries = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "model.safetensors")
            .count()
    };
    for _ in 0..6 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["slow_save_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("KERUST_TEST_SLOW_SAVE", &target)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill it once its own temporary file (named with its process id) holds the first MiB.
        let own = format!(".model.safetensors.tmp-{}-", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let full = std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with(&own)
                    && e.metadata().is_ok_and(|m| m.len() >= 1 << 20)
            });
            if full || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(temporaries(), 1, "each killed save removes the one before it");
        assert_eq!(std::fs::read(&target).unwrap(), before, "the target is always a complete version");
    }
    model().save(&target).unwrap();
    assert_eq!(temporaries(), 0, "a save that completes leaves nothing behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Case 9, the child: EarlyStopping on `val_loss` without validation data.
#[test]
fn early_stopping_child() {
    if std::env::var_os("KERUST_TEST_EARLY_STOPPING").is_none() {
        return;
    }
    let mut m = model();
    let x = Array2::from_shape_fn((4, 3), |(i, j)| (i + j) as f32 / 4.0);
    let y = Array2::from_shape_fn((4, 2), |(i, j)| f32::from(i % 2 == j));
    m.fit(&x, &y).epochs(5).verbose(0).callback(EarlyStopping::new()).run().unwrap();
}

#[test]
fn case9_early_stopping_without_its_monitored_value_warns_once() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["early_stopping_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("KERUST_TEST_EARLY_STOPPING", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = "Early stopping conditioned on metric `val_loss` which is not available";
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
}

/// The short seeded run of `examples/fuzz_model_files` (generated graph and `Sequential` models, their
/// structured and byte mutations, and the oracles after load; see `harness.rs`), in this process: an abort or
/// a hang would end or stall the test binary, which the long run (a worker process with memory and time
/// limits) counts instead.
#[test]
fn short_seeded_fuzz_run_finds_no_faults() {
    let corpus = harness::corpus();
    let stats = harness::run(&corpus, 14, false, 0, 10_000, |_| {}, |_, _| {});
    assert!(stats.panics.is_empty(), "{:?}", stats.panics);
    assert!(stats.oracle_failures.is_empty(), "{:?}", stats.oracle_failures);
    // Both paths are exercised: files that load (and go through every oracle) and files refused.
    assert!(stats.loaded > 3000 && stats.rejected > 3000, "{stats:?}");
}

/// Found by the fuzz harness of issue 25: a file whose `epochs_run` is the most it may hold loads, and the
/// epoch the model then trains took the count past what a file may hold, so its save did not load.
#[test]
fn a_model_loaded_with_the_most_epochs_run_trains_and_saves_a_file_that_loads() {
    let bytes = with_config(|c| c["training"]["epochs_run"] = json!(i64::MAX));
    let mut m = load_model_from_bytes(&bytes).unwrap();
    let x = Array2::from_shape_fn((4, 3), |(i, j)| (i + j) as f32 / 4.0);
    let y = Array2::from_shape_fn((4, 2), |(i, j)| f32::from(i % 2 == j));
    m.fit(&x, &y).epochs(1).verbose(0).run().unwrap();
    let again = load_model_from_bytes(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(again.epochs_run(), i64::MAX as u64);
}

// Issue 25, items 5, 6 and 7.

#[test]
fn issue25_item5_a_model_at_the_last_step_count_saves_after_a_step() {
    // `iterations` = i64::MAX loads; a step took it past the limit the loader checks, so the model's own
    // file did not load again. Every optimizer counts up to the limit and stays there.
    let optimizers: Vec<(&str, Box<dyn Optimizer>)> = vec![
        ("sgd", Box::new(SGD::new().momentum(0.5))),
        ("adam", Box::new(Adam::new())),
        ("adamw", Box::new(kerust::optimizers::AdamW::new())),
        ("rmsprop", Box::new(kerust::optimizers::RMSprop::new())),
        ("adagrad", Box::new(kerust::optimizers::Adagrad::new())),
    ];
    let x = Array2::from_shape_fn((2, 3), |(i, j)| (i + j) as f32);
    let y = array![[1.0f32, 0.0], [0.0, 1.0]];
    for (name, optimizer) in optimizers {
        let mut m = Sequential::new();
        m.set_seed(7);
        m.add(Dense::new(2).input_shape([3]).activation("softmax")).unwrap();
        m.compile("categorical_crossentropy", optimizer, ["accuracy"]).unwrap();
        m.fit(&x, &y).epochs(1).verbose(0).run().unwrap();
        let top = kerust::optimizers::MAX_ITERATIONS;
        let bytes = ModelFile::with_config(&m.to_bytes().unwrap(), |c| {
            c["compile"]["optimizer"]["iterations"] = json!(top);
            c["training"]["epochs_run"] = json!(i64::MAX);
        });
        let mut m = load_model_from_bytes(&bytes).unwrap();
        m.fit(&x, &y).epochs(1).verbose(0).run().unwrap();
        assert_eq!(m.optimizer().unwrap().iterations(), top, "{name}");
        let again = load_model_from_bytes(&m.to_bytes().unwrap())
            .unwrap_or_else(|e| panic!("{name}: the model's own file does not load: {e}"));
        assert_eq!(again.optimizer().unwrap().iterations(), top, "{name}");
        assert!(again.get_weights().iter().all(|w| w.iter().all(|v| v.is_finite())), "{name}");
    }
}

#[test]
fn issue25_item6_an_input_shape_with_a_zero_or_no_axis_is_refused_wherever_it_comes_from() {
    // A weightless model, so that only the shape is wrong: a first layer's own input_shape.
    let mut m = Sequential::new();
    m.add(Flatten::new().input_shape([2, 3])).unwrap();
    m.add(Dropout::new(0.5)).unwrap();
    let bytes = m.to_bytes().unwrap();
    for shape in [json!([0]), json!([]), json!([2, 0])] {
        let from_layer = ModelFile::with_config(&bytes, |c| {
            c["build_input_shape"] = Value::Null;
            c["input_shape"] = Value::Null;
            c["layers"][0]["config"]["input_shape"] = shape.clone();
        });
        let e = load_err(&from_layer);
        assert!(e.contains("positive"), "{shape}: {e}");
        let from_model = ModelFile::with_config(&bytes, |c| c["build_input_shape"] = shape.clone());
        assert!(load_err(&from_model).contains("positive"), "{shape}");
    }
    // The builder and Input: the same rule, the same words.
    for shape in [&[0usize][..], &[], &[2, 0]] {
        let mut m = Sequential::new();
        let e = m.add(Flatten::new().input_shape(shape)).unwrap_err().to_string();
        assert!(e.contains("positive"), "{shape:?}: {e}");
        assert!(!m.is_built() && m.layers().is_empty(), "a failed add leaves the model unchanged");
        let e = m.add(kerust::layers::Input::new(shape)).unwrap_err().to_string();
        assert!(e.contains("positive"), "{shape:?}: {e}");
        let mut m = Sequential::new();
        m.add(Dense::new(2)).unwrap();
        assert!(m.build(shape).unwrap_err().to_string().contains("positive"), "{shape:?}");
    }
}

#[test]
fn issue25_item7_integers_beyond_2_pow_53_are_not_rounded() {
    let over = (1u64 << 53) + 1;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "stddev",
            Box::new(move |c| {
                c["layers"][0]["config"]["kernel_initializer"] =
                    json!({"class_name": "random_normal", "config": {"mean": 0, "stddev": over}})
            }),
        ),
        (
            "mean",
            Box::new(move |c| {
                c["layers"][0]["config"]["kernel_initializer"] =
                    json!({"class_name": "random_normal", "config": {"mean": -(over as i64), "stddev": 1}})
            }),
        ),
        (
            "learning_rate",
            Box::new(move |c| c["compile"]["optimizer"]["config"]["learning_rate"] = json!(over)),
        ),
        (
            "label_smoothing",
            Box::new(move |c| c["compile"]["loss"]["config"]["label_smoothing"] = json!(over)),
        ),
        ("rate", Box::new(move |c| c["layers"][1]["config"]["rate"] = json!(over))),
        (
            "stddev",
            Box::new(move |c| {
                c["layers"][0]["config"]["kernel_initializer"] =
                    json!({"class_name": "random_normal", "config": {"mean": 0, "stddev": u64::MAX}})
            }),
        ),
    ];
    let mut m = Sequential::new();
    m.add(Dense::new(2).input_shape([3])).unwrap();
    m.add(Dropout::new(0.5)).unwrap();
    m.compile("categorical_crossentropy", SGD::new(), ["accuracy"]).unwrap();
    let bytes = m.to_bytes().unwrap();
    for (setting, edit) in cases {
        let e = load_err(&ModelFile::with_config(&bytes, edit));
        assert!(e.contains(setting), "{setting}: {e}");
    }
    // The same setting as an exact integer (2^24 is an f32) loads, and saves as it loaded.
    let exact = ModelFile::with_config(&bytes, |c| {
        c["layers"][0]["config"]["kernel_initializer"] =
            json!({"class_name": "random_normal", "config": {"mean": 0, "stddev": 1u64 << 24}})
    });
    let m = load_model_from_bytes(&exact).unwrap();
    let saved = m.to_bytes().unwrap();
    assert_eq!(load_model_from_bytes(&saved).unwrap().to_bytes().unwrap(), saved);
}
