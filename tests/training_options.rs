//! Learning-rate schedules, gradient clipping and weight regularizers against Keras' own numbers
//! (`fixtures/keras_training.py`), their save/load round trip, and the errors for bad values.
#[path = "../examples/fuzz_model_files/harness.rs"]
mod harness;

mod common;

use common::fixture_tensor as tensor;
use harness::ModelFile;
use kerust::autodiff::Tensor;
use kerust::layers::{Conv2D, Dense, Flatten, Input};
use kerust::models::{load_model, Sequential};
use kerust::optimizers::schedules::{
    CosineDecay, ExponentialDecay, LearningRateSchedule, PiecewiseConstantDecay,
};
use kerust::optimizers::{Adam, AdamW, OptimizerSpec, RMSprop, SGD};
use kerust::regularizers::Regularizer;
use serde_json::{json, Value};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/keras_training.json")).unwrap()
}

const TOL: f32 = 1e-6;

fn close_to(got: f32, want: f32, tol: f32) -> bool {
    (got - want).abs() <= tol * (1.0 + want.abs())
}

fn close(got: f32, want: f32) -> bool {
    close_to(got, want, TOL)
}

fn schedules() -> Vec<(&'static str, LearningRateSchedule)> {
    vec![
        ("exponential", ExponentialDecay::new(0.1, 3, 0.5).into()),
        ("exponential_staircase", ExponentialDecay::new(0.1, 3, 0.5).staircase(true).into()),
        ("cosine", CosineDecay::new(0.1, 5).alpha(0.1).into()),
        ("cosine_warmup", CosineDecay::new(0.01, 5).warmup(0.1, 3).into()),
        ("piecewise", PiecewiseConstantDecay::new([2, 5], [0.1, 0.05, 0.01]).into()),
    ]
}

#[test]
fn schedules_match_keras_at_every_step() {
    let fx = fixture();
    for (name, schedule) in schedules() {
        schedule.validate().unwrap();
        for (step, want) in fx["schedules"][name].as_array().unwrap().iter().enumerate() {
            let (got, want) = (schedule.value(step as u64), want.as_f64().unwrap() as f32);
            assert!(close(got, want), "{name} at step {step}: kerust {got}, Keras {want}");
        }
    }
}

/// The model of a run, as `keras_training.py` builds it.
fn model(run: &str) -> Sequential {
    let mut m = Sequential::new();
    let r = if run.starts_with("reg_dense") {
        (|| {
            m.add(Input::new([5]))?;
            m.add(
                Dense::new(4)
                    .activation("tanh")
                    .kernel_regularizer(Regularizer::l1(0.01))
                    .bias_regularizer(Regularizer::l2(0.05)),
            )?;
            m.add(
                Dense::new(3)
                    .activation("softmax")
                    .kernel_regularizer("l2")
                    .bias_regularizer(Regularizer::l1_l2(0.01, 0.03)),
            )
        })()
    } else if run.starts_with("reg_conv") {
        (|| {
            m.add(Input::new([6, 6, 2]))?;
            m.add(
                Conv2D::new(3, 3)
                    .activation("relu")
                    .kernel_regularizer(Regularizer::l1_l2(0.01, 0.02))
                    .bias_regularizer(Regularizer::l2(0.1)),
            )?;
            m.add(Flatten::new())?;
            m.add(Dense::new(2).activation("softmax").kernel_regularizer(Regularizer::l1(0.005)))
        })()
    } else {
        (|| {
            m.add(Input::new([5]))?;
            m.add(Dense::new(4).activation("tanh"))?;
            m.add(Dense::new(3).activation("softmax"))
        })()
    };
    r.unwrap();
    m
}

/// The optimizer of a run, as `keras_training.py` configures it.
fn optimizer(run: &str) -> OptimizerSpec {
    match run {
        "sgd_exponential" => {
            SGD::new().learning_rate(ExponentialDecay::new(0.5, 2, 0.7).staircase(true)).momentum(0.9).into()
        }
        "adam_cosine_warmup" => {
            Adam::new().learning_rate(CosineDecay::new(0.001, 4).alpha(0.2).warmup(0.05, 2)).into()
        }
        "rmsprop_piecewise" => {
            RMSprop::new().learning_rate(PiecewiseConstantDecay::new([1, 3], [0.02, 0.01, 0.005])).into()
        }
        "adamw_cosine" => AdamW::new().learning_rate(CosineDecay::new(0.05, 4)).weight_decay(0.1).into(),
        "sgd_clipnorm" => SGD::new().learning_rate(0.5).clipnorm(0.1).into(),
        "sgd_global_clipnorm" => SGD::new().learning_rate(0.5).momentum(0.5).global_clipnorm(0.15).into(),
        "adamw_clipvalue" => AdamW::new().learning_rate(0.05).weight_decay(0.2).clipvalue(0.01).into(),
        "rmsprop_clipnorm" => RMSprop::new().learning_rate(0.01).clipnorm(0.05).into(),
        "reg_dense_sgd" => SGD::new().learning_rate(0.1).into(),
        "reg_conv_adam" => Adam::new().learning_rate(0.01).into(),
        other => panic!("no optimizer for run {other}"),
    }
}

/// Trains `run`'s model as Keras did; checks each step's loss, the weights after, and evaluate's loss. Returns
/// the trained model.
fn check_run(fx: &Value, run: &str) -> Sequential {
    let case = &fx["runs"][run];
    let close = |got, want| close_to(got, want, TOL);
    let mut m = model(run);
    let weights: Vec<Tensor> = case["weights_before"].as_array().unwrap().iter().map(tensor).collect();
    m.set_weights(&weights).unwrap();
    m.compile("categorical_crossentropy", optimizer(run), []).unwrap();
    let (x, y) = (tensor(&case["x"]), tensor(&case["y"]));
    for (step, want) in case["losses"].as_array().unwrap().iter().enumerate() {
        let got = m.train_on_batch(&x, &y).unwrap().get("loss").unwrap();
        let want = want.as_f64().unwrap() as f32;
        assert!(close(got, want), "{run}: loss of step {step}: kerust {got}, Keras {want}");
    }
    for (i, (got, want)) in m.get_weights().iter().zip(case["weights_after"].as_array().unwrap()).enumerate()
    {
        let want = tensor(want);
        assert_eq!(got.shape(), want.shape());
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(close(*g, *w), "{run}: weight {i}[{j}] after training: kerust {g}, Keras {w}");
        }
    }
    let got = m.evaluate(&x, &y).unwrap().get("loss").unwrap();
    let want = case["evaluate_loss"].as_f64().unwrap() as f32;
    assert!(close(got, want), "{run}: evaluate's loss: kerust {got}, Keras {want}");
    m
}

#[test]
fn optimizers_with_schedules_train_as_keras() {
    let fx = fixture();
    for run in ["sgd_exponential", "adam_cosine_warmup", "rmsprop_piecewise", "adamw_cosine"] {
        check_run(&fx, run);
    }
}

#[test]
fn each_clipping_mode_trains_as_keras() {
    let fx = fixture();
    for run in ["sgd_clipnorm", "sgd_global_clipnorm", "adamw_clipvalue", "rmsprop_clipnorm"] {
        check_run(&fx, run);
    }
}

#[test]
fn regularized_dense_and_conv2d_models_train_and_log_the_loss_as_keras() {
    let fx = fixture();
    for run in ["reg_dense_sgd", "reg_conv_adam"] {
        check_run(&fx, run);
    }
}

#[test]
fn schedules_clipping_and_regularizers_survive_save_and_load() {
    let fx = fixture();
    let dir = std::env::temp_dir().join(format!("kerust_training_options_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for run in
        ["sgd_exponential", "adam_cosine_warmup", "rmsprop_piecewise", "sgd_global_clipnorm", "reg_conv_adam"]
    {
        let m = check_run(&fx, run);
        let path = dir.join(format!("{run}.kerust"));
        m.save(&path).unwrap();
        let loaded = load_model(&path).unwrap();
        let (a, b) = (m.optimizer().unwrap(), loaded.optimizer().unwrap());
        assert_eq!(a.config(), b.config(), "{run}");
        assert_eq!(a.learning_rate_schedule(), b.learning_rate_schedule(), "{run}");
        assert_eq!(a.iterations(), b.iterations(), "{run}");
        assert_eq!(a.learning_rate().to_bits(), b.learning_rate().to_bits(), "{run}");
        for (la, lb) in m.layers().iter().zip(loaded.layers()) {
            assert_eq!(la.config().unwrap(), lb.config().unwrap(), "{run}");
            assert_eq!(la.regularizers().len(), lb.regularizers().len(), "{run}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_values_are_clear_errors_and_leave_the_model_uncompiled() {
    let err = |spec: OptimizerSpec| {
        let mut m = model("mlp");
        let e = m.compile("categorical_crossentropy", spec, []).unwrap_err().to_string();
        assert!(m.optimizer().is_none(), "{e}");
        e
    };
    let e = err(SGD::new().clipnorm(1.0).clipvalue(0.5).into());
    assert!(e.contains("Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"), "{e}");
    for (e, name) in [
        (err(SGD::new().clipnorm(-1.0).into()), "clipnorm"),
        (err(Adam::new().clipvalue(f32::NAN).into()), "clipvalue"),
        (err(RMSprop::new().global_clipnorm(0.0).into()), "global_clipnorm"),
        (err(SGD::new().learning_rate(ExponentialDecay::new(0.1, 0, 0.5)).into()), "decay_steps"),
        (err(SGD::new().learning_rate(ExponentialDecay::new(-0.1, 3, 0.5)).into()), "initial_learning_rate"),
        (err(Adam::new().learning_rate(CosineDecay::new(0.1, 5).alpha(1.5)).into()), "alpha"),
        (
            err(Adam::new().learning_rate(CosineDecay::new(0.1, 5).warmup(f32::INFINITY, 2)).into()),
            "warmup_target",
        ),
        (
            err(SGD::new().learning_rate(PiecewiseConstantDecay::new([3, 2], [0.1, 0.2, 0.3])).into()),
            "increasing",
        ),
        (err(SGD::new().learning_rate(PiecewiseConstantDecay::new([3], [0.1, 0.2, 0.3])).into()), "1 less"),
        (err(SGD::new().learning_rate(PiecewiseConstantDecay::new([3], [0.1, -0.2])).into()), "values"),
    ] {
        assert!(e.contains(name), "expected `{name}` in: {e}");
    }

    // A bad regularizer is reported when the layer is added, and the model keeps its layers.
    let mut m = Sequential::new();
    m.add(Input::new([5])).unwrap();
    let e = m.add(Dense::new(2).kernel_regularizer(Regularizer::l2(-0.5))).unwrap_err().to_string();
    assert!(e.contains("l2") && e.contains("non-negative"), "{e}");
    assert_eq!(m.layers().len(), 0);
    let mut m = Sequential::new();
    m.add(Input::new([4, 4, 1])).unwrap();
    let e = m.add(Conv2D::new(2, 1).bias_regularizer("l3")).unwrap_err().to_string();
    assert!(e.contains("l3") && e.contains("l1l2"), "{e}");
    assert_eq!(m.layers().len(), 0);
}

#[test]
fn callbacks_cannot_set_the_rate_of_a_scheduled_optimizer() {
    use kerust::callbacks::{Callback, LearningRateScheduler};
    let mut m = model("mlp");
    m.compile("categorical_crossentropy", SGD::new().learning_rate(ExponentialDecay::new(0.1, 3, 0.5)), [])
        .unwrap();
    let mut scheduler = LearningRateScheduler::new(|_, lr| lr * 0.5);
    let e = scheduler.on_epoch_begin(&mut m, 0).unwrap_err().to_string();
    assert!(e.contains("not settable"), "{e}");
    assert_eq!(m.optimizer().unwrap().learning_rate(), 0.1);
}

#[test]
fn a_file_with_bad_schedule_clipping_or_regularizer_values_is_a_clear_error() {
    let mut m = Sequential::new();
    m.add(Input::new([5])).unwrap();
    m.add(Dense::new(3).kernel_regularizer(Regularizer::l2(0.01))).unwrap();
    let schedule = ExponentialDecay::new(0.1, 3, 0.5);
    m.compile("mse", SGD::new().learning_rate(schedule).clipnorm(1.0), []).unwrap();
    let bytes = m.to_bytes().unwrap();
    // The file as written loads.
    kerust::models::load_model_from_bytes(&bytes).unwrap();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "decay_steps",
            Box::new(|c| {
                c["compile"]["optimizer"]["learning_rate_schedule"]["config"]["decay_steps"] = json!(0)
            }),
        ),
        (
            "decay_steps",
            Box::new(|c| {
                c["compile"]["optimizer"]["learning_rate_schedule"]["config"]["decay_steps"] = json!(2.5)
            }),
        ),
        (
            "decay_rate",
            Box::new(|c| {
                c["compile"]["optimizer"]["learning_rate_schedule"]["config"]["decay_rate"] = json!(1e-50)
            }),
        ),
        (
            "warmup",
            Box::new(|c| c["compile"]["optimizer"]["learning_rate_schedule"]["config"]["warmup"] = json!(1)),
        ),
        (
            "PolynomialDecay",
            Box::new(|c| {
                c["compile"]["optimizer"]["learning_rate_schedule"]["class_name"] = json!("PolynomialDecay")
            }),
        ),
        ("both", Box::new(|c| c["compile"]["optimizer"]["config"]["learning_rate"] = json!(0.1))),
        ("clipnorm", Box::new(|c| c["compile"]["optimizer"]["config"]["clipnorm"] = json!(-1.0))),
        ("clipnorm", Box::new(|c| c["compile"]["optimizer"]["config"]["clipnorm"] = json!(1e-50))),
        ("Only one", Box::new(|c| c["compile"]["optimizer"]["config"]["clipvalue"] = json!(0.5))),
        (
            "non-negative",
            Box::new(|c| c["layers"][0]["config"]["kernel_regularizer"]["config"]["l2"] = json!(-0.5)),
        ),
        (
            "exactly",
            Box::new(|c| c["layers"][0]["config"]["kernel_regularizer"]["config"]["l1"] = json!(0.5)),
        ),
        (
            "L1L2",
            Box::new(|c| c["layers"][0]["config"]["kernel_regularizer"]["class_name"] = json!("Orthogonal")),
        ),
        (
            "a regularizer is stored as",
            Box::new(|c| c["layers"][0]["config"]["kernel_regularizer"] = json!("l2")),
        ),
    ];
    for (expected, edit) in cases {
        let e = ModelFile::load_err(&ModelFile::with_config(&bytes, |c| edit(c)));
        assert!(e.contains(expected), "expected `{expected}` in: {e}");
    }
}
