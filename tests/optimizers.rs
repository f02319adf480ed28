//! Optimizers: two steps by hand for each update rule, what must not be updated, saving and restoring state,
//! validation, settings and names.
use kerust::autodiff::{Gradients, ParamId, ParamStore, Tape, Tensor};
use kerust::optimizers::{self, Adagrad, Adam, AdamW, Optimizer, OptimizerSpec, RMSprop, SGD};
use kerust::Error;
use ndarray::{array, ArrayD};

/// Gradients equal to `g` for each `(id, g)`: the gradient of `sum(w * g)`.
fn grads_of(params: &ParamStore, pairs: &[(ParamId, &Tensor)]) -> Gradients {
    let mut grads = Gradients::new();
    let tape = Tape::new(params);
    let mut loss = None;
    for &(id, g) in pairs {
        let term = tape.param(id).mul(tape.constant(g.view())).sum();
        loss = Some(match loss {
            None => term,
            Some(l) => term.add(l),
        });
    }
    tape.backward(loss.expect("at least one pair"), &mut grads).unwrap();
    grads
}

/// One step of `opt` with the gradients `pairs`.
fn step(opt: &mut dyn Optimizer, params: &mut ParamStore, pairs: &[(ParamId, &Tensor)]) {
    let grads = grads_of(params, pairs);
    opt.apply(params, &grads);
}

fn w0() -> Tensor {
    array![1.0f32, -2.0].into_dyn()
}
fn g1() -> Tensor {
    array![0.5f32, 2.0].into_dyn()
}
fn g2() -> Tensor {
    array![-1.0f32, 0.3].into_dyn()
}

/// The parameter after two steps of `opt` from `w0` with gradients `g1` then `g2`.
fn two_steps(opt: &mut dyn Optimizer) -> Vec<f32> {
    let mut params = ParamStore::new();
    let w = params.add("w", w0(), true);
    for g in [g1(), g2()] {
        let grads = grads_of(&params, &[(w, &g)]);
        opt.apply(&mut params, &grads);
    }
    assert_eq!(opt.iterations(), 2);
    params.value(w).to_array().iter().copied().collect()
}

fn assert_close(got: &[f32], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!(((*g as f64) - w).abs() <= 1e-5 * (1.0 + w.abs()), "got {got:?}, want {want:?}");
    }
}

/// Runs a per-element rule in f64 over the two elements of `w0` with gradients `g1`, `g2`.
fn by_hand(rule: impl Fn(f64, [f64; 2]) -> f64) -> Vec<f64> {
    let (w, a, b) = (w0(), g1(), g2());
    (0..2).map(|i| rule(w[i] as f64, [a[i] as f64, b[i] as f64])).collect()
}

#[test]
fn sgd_plain_two_steps() {
    // w -= 0.1 g: [1, -2] -> [0.95, -2.2] -> [1.05, -2.23]
    assert_close(&two_steps(&mut SGD::new().learning_rate(0.1)), &[1.05, -2.23]);
    // Default learning rate 0.01: [1 - 0.005 + 0.01, -2 - 0.02 - 0.003]
    assert_close(&two_steps(&mut SGD::new()), &[1.005, -2.023]);
}

#[test]
fn sgd_momentum_two_steps() {
    // lr 0.1, momentum 0.9, element 0:
    // m1 = -0.1 * 0.5 = -0.05, w1 = 0.95; m2 = 0.9 * -0.05 + 0.1 = 0.055, w2 = 1.005.
    // element 1: m1 = -0.2, w1 = -2.2; m2 = -0.18 - 0.03 = -0.21, w2 = -2.41.
    assert_close(&two_steps(&mut SGD::new().learning_rate(0.1).momentum(0.9)), &[1.005, -2.41]);
}

#[test]
fn sgd_nesterov_two_steps() {
    // lr 0.1, momentum 0.9, w += 0.9 m - 0.1 g after updating m, element 0:
    // m1 = -0.05, w1 = 1 - 0.045 - 0.05 = 0.905; m2 = 0.055, w2 = 0.905 + 0.0495 + 0.1 = 1.0545.
    // element 1: m1 = -0.2, w1 = -2 - 0.18 - 0.2 = -2.38; m2 = -0.21, w2 = -2.38 - 0.189 - 0.03 = -2.599.
    assert_close(
        &two_steps(&mut SGD::new().learning_rate(0.1).momentum(0.9).nesterov(true)),
        &[1.0545, -2.599],
    );
}

/// Keras' Adam in f64, with decoupled decay `wd` and AMSGrad.
fn adam_by_hand(lr: f64, b1: f64, b2: f64, eps: f64, amsgrad: bool, wd: f64) -> Vec<f64> {
    by_hand(|mut w, gs| {
        let (mut m, mut v, mut v_hat) = (0.0, 0.0, 0.0f64);
        for (t, g) in gs.into_iter().enumerate() {
            let t = (t + 1) as i32;
            w -= w * wd * lr;
            let alpha = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
            m += (g - m) * (1.0 - b1);
            v += (g * g - v) * (1.0 - b2);
            v_hat = v_hat.max(v);
            let denom = if amsgrad { v_hat } else { v };
            w -= alpha * m / (denom.sqrt() + eps);
        }
        w
    })
}

#[test]
fn adam_two_steps() {
    // Step 1 of any Adam moves each weight by about lr against the gradient's sign: alpha m / sqrt(v) =
    // (lr sqrt(0.001) / 0.1) (0.1 g) / (sqrt(0.001) |g|) = lr.
    let got = two_steps(&mut Adam::new().learning_rate(0.1));
    assert_close(&got, &adam_by_hand(0.1, 0.9, 0.999, 1e-7, false, 0.0));
    // Element 0, step 2: m = 0.05 + (-1 - 0.05) 0.1 = -0.055, v = 0.00025 + (1 - 0.00025) 0.001 = 0.00124975,
    // alpha = 0.1 sqrt(1 - 0.999^2) / (1 - 0.81) = 0.1 * 0.0447102 / 0.19 = 0.0235317,
    // w2 = 0.9 + 0.0235317 * 0.055 / 0.0353518 = 0.9 + 0.0366100.
    assert_close(&got[..1], &[0.936_610]);
    // Defaults: lr 0.001.
    assert_close(&two_steps(&mut Adam::new()), &adam_by_hand(0.001, 0.9, 0.999, 1e-7, false, 0.0));
}

#[test]
fn adam_amsgrad_two_steps() {
    // beta_2 = 0.5 makes v shrink on step 2 for element 1 (v1 = 2, v2 = 1.045), so v_hat = max keeps 2.
    let plain = two_steps(&mut Adam::new().learning_rate(0.1).beta_2(0.5));
    let ams = two_steps(&mut Adam::new().learning_rate(0.1).beta_2(0.5).amsgrad(true));
    assert_close(&ams, &adam_by_hand(0.1, 0.9, 0.5, 1e-7, true, 0.0));
    assert_close(&plain, &adam_by_hand(0.1, 0.9, 0.5, 1e-7, false, 0.0));
    assert!((ams[1] - plain[1]).abs() > 1e-3, "AMSGrad must differ when v shrinks: {ams:?} {plain:?}");
}

#[test]
fn adamw_two_steps() {
    // Decay first: w -= w 0.004 0.1 (so 1 -> 0.9996 before Adam's step 1), then Adam.
    let got = two_steps(&mut AdamW::new().learning_rate(0.1));
    assert_close(&got, &adam_by_hand(0.1, 0.9, 0.999, 1e-7, false, 0.004));
    let strong = two_steps(&mut AdamW::new().learning_rate(0.1).weight_decay(0.5).amsgrad(true).beta_2(0.5));
    assert_close(&strong, &adam_by_hand(0.1, 0.9, 0.5, 1e-7, true, 0.5));
    // Step 1, element 0, with weight_decay 0.5: 1 - 0.05 = 0.95, then minus about lr = 0.1.
    let mut params = ParamStore::new();
    let w = params.add("w", w0(), true);
    let mut opt = AdamW::new().learning_rate(0.1).weight_decay(0.5);
    step(&mut opt, &mut params, &[(w, &g1())]);
    assert_close(&params.value(w).to_array().iter().copied().collect::<Vec<_>>()[..1], &[0.85]);
}

/// Keras' RMSprop in f64.
fn rmsprop_by_hand(lr: f64, rho: f64, momentum: f64, eps: f64, centered: bool) -> Vec<f64> {
    by_hand(|mut w, gs| {
        let (mut v, mut a, mut mom) = (0.0, 0.0, 0.0);
        for g in gs {
            v = rho * v + (1.0 - rho) * g * g;
            let denominator = if centered {
                a = rho * a + (1.0 - rho) * g;
                v - a * a + eps
            } else {
                v + eps
            };
            let increment = lr * g / denominator.sqrt();
            if momentum > 0.0 {
                mom = momentum * mom + increment;
                w -= mom;
            } else {
                w -= increment;
            }
        }
        w
    })
}

#[test]
fn rmsprop_two_steps() {
    // Plain, element 0: v1 = 0.1 * 0.25 = 0.025, w1 = 1 - 0.1 * 0.5 / sqrt(0.025) = 1 - 0.316228 = 0.683772;
    // v2 = 0.0225 + 0.1 = 0.1225, w2 = 0.683772 + 0.1 / 0.35 = 0.969486.
    let got = two_steps(&mut RMSprop::new().learning_rate(0.1));
    assert_close(&got[..1], &[0.969_486]);
    assert_close(&got, &rmsprop_by_hand(0.1, 0.9, 0.0, 1e-7, false));
}

#[test]
fn rmsprop_momentum_and_centered_two_steps() {
    let momentum = two_steps(&mut RMSprop::new().learning_rate(0.1).momentum(0.5));
    assert_close(&momentum, &rmsprop_by_hand(0.1, 0.9, 0.5, 1e-7, false));
    // Element 0 with momentum 0.5: mom1 = 0.316228, w1 = 0.683772; mom2 = 0.158114 - 0.285714 = -0.127600,
    // w2 = 0.811372.
    assert_close(&momentum[..1], &[0.811_372]);
    let centered = two_steps(&mut RMSprop::new().learning_rate(0.1).centered(true));
    assert_close(&centered, &rmsprop_by_hand(0.1, 0.9, 0.0, 1e-7, true));
    // Element 0 centered: a1 = 0.05, denominator 0.025 - 0.0025 = 0.0225, w1 = 1 - 0.05 / 0.15 = 0.666667.
    let both = two_steps(&mut RMSprop::new().learning_rate(0.1).centered(true).momentum(0.5));
    assert_close(&both, &rmsprop_by_hand(0.1, 0.9, 0.5, 1e-7, true));
    let mut params = ParamStore::new();
    let w = params.add("w", w0(), true);
    let mut opt = RMSprop::new().learning_rate(0.1).centered(true);
    step(&mut opt, &mut params, &[(w, &g1())]);
    assert_close(&params.value(w).to_array().iter().copied().collect::<Vec<_>>()[..1], &[2.0 / 3.0]);
}

#[test]
fn adagrad_two_steps() {
    // Element 0: acc1 = 0.1 + 0.25 = 0.35, w1 = 1 - 0.1 * 0.5 / sqrt(0.35) = 0.915485;
    // acc2 = 1.35, w2 = 0.915485 + 0.1 / sqrt(1.35) = 1.001551.
    let got = two_steps(&mut Adagrad::new().learning_rate(0.1));
    assert_close(&got[..1], &[1.001_551]);
    let rule = |init: f64| {
        by_hand(move |mut w, gs| {
            let mut acc = init;
            for g in gs {
                acc += g * g;
                w -= 0.1 * g / (acc + 1e-7).sqrt();
            }
            w
        })
    };
    assert_close(&got, &rule(0.1));
    assert_close(
        &two_steps(&mut Adagrad::new().learning_rate(0.1).initial_accumulator_value(1.0)),
        &rule(1.0),
    );
}

fn all_configured() -> Vec<Box<dyn Optimizer>> {
    vec![
        Box::new(SGD::new().learning_rate(0.1)),
        Box::new(SGD::new().learning_rate(0.1).momentum(0.9)),
        Box::new(SGD::new().learning_rate(0.1).momentum(0.9).nesterov(true)),
        Box::new(Adam::new().learning_rate(0.1)),
        Box::new(Adam::new().learning_rate(0.1).amsgrad(true).beta_2(0.5)),
        Box::new(AdamW::new().learning_rate(0.1).weight_decay(0.1)),
        Box::new(RMSprop::new().learning_rate(0.1)),
        Box::new(RMSprop::new().learning_rate(0.1).momentum(0.5).centered(true)),
        Box::new(Adagrad::new().learning_rate(0.1)),
    ]
}

#[test]
fn non_trainable_params_and_params_without_gradient_are_untouched() {
    for mut opt in all_configured() {
        let mut params = ParamStore::new();
        let w = params.add("w", w0(), true);
        let frozen = params.add("frozen", w0(), true);
        let unused = params.add("unused", w0(), true);
        // A gradient for `frozen` exists (it was trainable during backward) but it is frozen before the step.
        let grads = grads_of(&params, &[(w, &g1()), (frozen, &g1())]);
        assert!(grads.get(frozen).is_some() && grads.get(unused).is_none());
        params.get_mut(frozen).trainable = false;
        opt.apply(&mut params, &grads);
        opt.apply(&mut params, &grads);
        assert_ne!(params.value(w), &w0(), "{}", opt.name());
        assert_eq!(params.value(frozen), &w0(), "{}", opt.name());
        assert_eq!(params.value(unused), &w0(), "{}", opt.name());
        // No state for what was not updated.
        let names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
        assert!(names.iter().all(|n| !n.ends_with("/1") && !n.ends_with("/2")), "{}: {names:?}", opt.name());
    }
}

/// A store of two parameters, and steps `range` of a fixed sequence of changing gradients on it.
fn store() -> ParamStore {
    let mut params = ParamStore::new();
    params.add("a", w0(), true);
    params.add("b", array![[0.5f32, 0.25], [-1.0, 2.0]].into_dyn(), true);
    params
}

fn run(opt: &mut dyn Optimizer, params: &mut ParamStore, range: std::ops::Range<usize>) {
    let ids: Vec<ParamId> = params.iter().map(|(id, _)| id).collect();
    for s in range {
        let s = s as f32;
        let ga = g1().mapv(|x| x * (s - 1.5));
        let gb = array![[0.1f32, -0.2], [0.3, s]].into_dyn();
        step(opt, params, &[(ids[0], &ga), (ids[1], &gb)]);
    }
}

fn values(params: &ParamStore) -> Vec<Tensor> {
    params.iter().map(|(_, p)| p.value.to_array()).collect()
}

#[test]
fn state_round_trip_continues_identically() {
    let count = all_configured().len();
    for i in 0..count {
        let fresh = || all_configured().swap_remove(i);
        let (mut reference, mut first, mut resumed, mut cold) = (fresh(), fresh(), fresh(), fresh());
        let name = format!("{} {:?}", reference.name(), reference.config());
        let (mut p_ref, mut p_res) = (store(), store());
        run(reference.as_mut(), &mut p_ref, 0..4);
        run(first.as_mut(), &mut p_res, 0..2);
        let mut p_cold = p_res.clone();

        let saved = first.state();
        resumed.load_state(first.iterations(), &saved).unwrap();
        assert_eq!(resumed.iterations(), 2, "{name}");
        assert_eq!(resumed.state(), saved, "{name}");
        run(resumed.as_mut(), &mut p_res, 2..4);
        assert_eq!(resumed.iterations(), 4, "{name}");
        assert_eq!(values(&p_res), values(&p_ref), "{name}");

        // Without the state the continuation differs (except for stateless plain SGD), so the comparison
        // above can fail.
        run(cold.as_mut(), &mut p_cold, 2..4);
        let stateless = saved.is_empty() && reference.name() == "sgd";
        assert_eq!(values(&p_cold) == values(&p_ref), stateless, "{name}");
    }
}

#[test]
fn state_names_slots_and_iterations() {
    let mut params = ParamStore::new();
    let w = params.add("w", w0(), true);
    let mut adam = Adam::new().amsgrad(true);
    let state = adam.state();
    assert!(state.is_empty(), "lazily sized: nothing before the first step");
    assert_eq!(adam.iterations(), 0);
    step(&mut adam, &mut params, &[(w, &g1())]);
    let state = adam.state();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["m/0", "v/0", "v_hat/0"]);
    assert_eq!(adam.iterations(), 1);
    assert_eq!(state[0].1.shape(), &[2]);

    let names = |opt: &mut dyn Optimizer| {
        let mut params = ParamStore::new();
        let w = params.add("w", w0(), true);
        step(opt, &mut params, &[(w, &g1())]);
        opt.state().into_iter().map(|(n, _)| n).collect::<Vec<_>>()
    };
    assert!(names(&mut SGD::new()).is_empty());
    assert_eq!(names(&mut SGD::new().momentum(0.5)), ["momentum/0"]);
    assert_eq!(names(&mut RMSprop::new()), ["velocity/0"]);
    assert_eq!(
        names(&mut RMSprop::new().momentum(0.5).centered(true)),
        ["velocity/0", "momentum/0", "average_gradient/0"]
    );
    assert_eq!(names(&mut Adagrad::new()), ["accumulator/0"]);
    // Adagrad's accumulator starts at initial_accumulator_value: 0.1 + g^2.
    let mut adagrad = Adagrad::new();
    names(&mut adagrad);
    assert_eq!(adagrad.state()[0].1, array![0.35f32, 4.1].into_dyn());
}

#[test]
fn load_state_rejects_bad_state_and_leaves_the_optimizer_unchanged() {
    let mut params = ParamStore::new();
    let w = params.add("w", w0(), true);
    let mut adam = Adam::new();
    step(&mut adam, &mut params, &[(w, &g1())]);
    let before = adam.state();
    let good = before.clone();
    let t = |v: &[f32]| ArrayD::from_shape_vec(vec![v.len()], v.to_vec()).unwrap();

    let mut unknown = good.clone();
    unknown.push(("v_hat/0".into(), t(&[0.0, 0.0])));
    let err = adam.load_state(1, &unknown).unwrap_err();
    assert!(matches!(err, Error::UnknownName { .. }) && err.to_string().contains("v_hat/0"), "{err}");

    let mut wrong_shape = good.clone();
    wrong_shape[1].1 = t(&[0.0, 0.0, 0.0]);
    assert!(matches!(adam.load_state(1, &wrong_shape).unwrap_err(), Error::Shape { .. }));

    let partial: Vec<_> = good.iter().take(1).cloned().collect(); // m/0 without v/0
    let err = adam.load_state(1, &partial).unwrap_err();
    assert!(err.to_string().contains("v/0"), "{err}");

    // A count beyond Keras' int64, which the next step's `+ 1` could wrap: an error.
    let err = adam.load_state(u64::MAX, &good).unwrap_err();
    assert!(
        err.to_string().contains("iterations") && err.to_string().contains(&u64::MAX.to_string()),
        "{err}"
    );

    // A state for a parameter of another shape than the one held.
    let other = vec![("m/0".into(), t(&[1.0; 3])), ("v/0".into(), t(&[1.0; 3]))];
    assert!(matches!(adam.load_state(3, &other).unwrap_err(), Error::Shape { .. }));

    let after: Vec<_> = adam.state();
    assert_eq!(before, after);
    assert_eq!(adam.iterations(), 1);
    // And a fresh optimizer takes it.
    let mut fresh = Adam::new();
    fresh.load_state(3, &other).unwrap();
    assert_eq!(fresh.iterations(), 3);
    // Counts are exact, far beyond f32's 2^24.
    fresh.load_state(123_456_789, &other).unwrap();
    assert_eq!(fresh.iterations(), 123_456_789);
    fresh.load_state(kerust::optimizers::MAX_ITERATIONS, &other).unwrap();
    assert_eq!(fresh.iterations(), kerust::optimizers::MAX_ITERATIONS);
}

#[test]
fn validate_names_the_argument_and_value() {
    let check = |opt: &dyn Optimizer, arg: &str, value: &str| {
        let err = opt.validate().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::InvalidArgument { name, .. } if name == arg), "{err:?}");
        assert!(text.contains(&format!("{arg}={value}")), "{text}");
    };
    check(&SGD::new().learning_rate(-0.1), "learning_rate", "-0.1");
    check(&SGD::new().momentum(1.5), "momentum", "1.5");
    check(&SGD::new().momentum(-0.5), "momentum", "-0.5");
    check(&Adam::new().beta_1(1.0), "beta_1", "1");
    check(&Adam::new().beta_2(-0.1), "beta_2", "-0.1");
    check(&Adam::new().epsilon(-1.0), "epsilon", "-1");
    check(&AdamW::new().weight_decay(-0.1), "weight_decay", "-0.1");
    check(&AdamW::new().learning_rate(f32::NAN), "learning_rate", "NaN");
    check(&RMSprop::new().rho(1.0), "rho", "1");
    check(&RMSprop::new().momentum(2.0), "momentum", "2");
    check(&Adagrad::new().initial_accumulator_value(-1.0), "initial_accumulator_value", "-1");
    for opt in all_configured() {
        opt.validate().unwrap();
    }
    SGD::new().momentum(1.0).validate().unwrap();
    Adam::new().beta_1(0.0).validate().unwrap();
}

#[test]
fn config_lists_settings_by_keras_names() {
    let sgd = SGD::new().momentum(0.9).nesterov(true);
    assert_eq!(
        sgd.config(),
        vec![("learning_rate".into(), 0.01), ("momentum".into(), 0.9), ("nesterov".into(), 1.0)]
    );
    let keys = |o: &dyn Optimizer| o.config().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(&Adam::new()), ["learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad"]);
    assert_eq!(
        keys(&AdamW::new()),
        ["learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon", "amsgrad"]
    );
    assert_eq!(keys(&RMSprop::new()), ["learning_rate", "rho", "momentum", "epsilon", "centered"]);
    assert_eq!(keys(&Adagrad::new()), ["learning_rate", "initial_accumulator_value", "epsilon"]);
    // Keras' defaults.
    assert_eq!(Adam::new().config()[3], ("epsilon".into(), 1e-7));
    assert_eq!(AdamW::new().config()[1], ("weight_decay".into(), 0.004));
    assert_eq!(Adagrad::new().config()[1], ("initial_accumulator_value".into(), 0.1));
    assert_eq!(RMSprop::new().config()[1], ("rho".into(), 0.9));
}

#[test]
fn learning_rate_can_be_changed() {
    let mut opt: Box<dyn Optimizer> = Box::new(SGD::new());
    assert_eq!(opt.learning_rate(), 0.01);
    opt.set_learning_rate(0.1);
    assert_eq!(opt.learning_rate(), 0.1);
    assert_close(&two_steps(opt.as_mut()), &[1.05, -2.23]);
}

#[test]
fn get_is_case_insensitive_and_names_unknown_optimizers() {
    for (name, canonical, lr) in [
        ("sgd", "sgd", 0.01),
        ("SGD", "sgd", 0.01),
        ("adam", "adam", 0.001),
        ("Adam", "adam", 0.001),
        ("adamw", "adamw", 0.001),
        ("AdamW", "adamw", 0.001),
        ("rmsprop", "rmsprop", 0.001),
        ("RMSprop", "rmsprop", 0.001),
        ("adagrad", "adagrad", 0.001),
        ("Adagrad", "adagrad", 0.001),
    ] {
        let opt = optimizers::get(name).unwrap();
        assert_eq!((opt.name(), opt.learning_rate(), opt.iterations()), (canonical, lr, 0), "{name}");
    }
    let err = optimizers::get("adamx").err().unwrap();
    assert!(matches!(err, Error::UnknownName { kind: "optimizer", .. }));
    let text = err.to_string();
    assert!(text.contains("adamx") && text.contains("rmsprop"), "{text}");
}

#[test]
fn optimizer_spec_resolves_names_and_objects() {
    let spec: OptimizerSpec = "RMSprop".into();
    assert_eq!(spec.resolve().unwrap().name(), "rmsprop");
    let spec: OptimizerSpec = String::from("adam").into();
    assert_eq!(spec.resolve().unwrap().name(), "adam");
    let spec: OptimizerSpec = SGD::new().learning_rate(0.5).into();
    assert_eq!(spec.resolve().unwrap().learning_rate(), 0.5);
    let spec: OptimizerSpec = "lbfgs".into();
    assert!(spec.resolve().is_err());
}

#[test]
fn epsilon_sits_where_keras_puts_it() {
    // With tiny gradients, epsilon inside or outside the square root changes the step about tenfold.
    let g = array![1e-4f32].into_dyn();
    let one_step = |opt: &mut dyn Optimizer| {
        let mut params = ParamStore::new();
        let w = params.add("w", array![0.0f32].into_dyn(), true);
        step(opt, &mut params, &[(w, &g)]);
        vec![params.value(w).to_array()[0]]
    };
    // RMSprop: v = 0.1 * 1e-8 = 1e-9; w = -0.1 * 1e-4 / sqrt(1e-9 + 1e-7) (inside).
    assert_close(&one_step(&mut RMSprop::new().learning_rate(0.1)), &[-1e-5 / (1e-9f64 + 1e-7).sqrt()]);
    // Adagrad from a zero accumulator: acc = 1e-8; w = -0.1 * 1e-4 / sqrt(1e-8 + 1e-7) (inside).
    let mut adagrad = Adagrad::new().learning_rate(0.1).initial_accumulator_value(0.0);
    assert_close(&one_step(&mut adagrad), &[-1e-5 / (1e-8f64 + 1e-7).sqrt()]);
    // Adam: m = 1e-5, v = 1e-11, alpha = 0.1 sqrt(0.001) / 0.1; w = -alpha m / (sqrt(v) + 1e-7) (outside).
    let alpha = 0.001f64.sqrt();
    assert_close(&one_step(&mut Adam::new().learning_rate(0.1)), &[-alpha * 1e-5 / (1e-11f64.sqrt() + 1e-7)]);
}
