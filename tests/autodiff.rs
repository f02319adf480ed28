//! Tests of the autodiff engine through its public API: every op against finite differences, forward values
//! against known results, a hand-derived MLP backward pass, gradient accumulation, and tape/workspace behaviour.
use kerust::autodiff::{
    check_gradients, CustomOp, GradCheck, Gradients, ParamId, ParamStore, Tape, Tensor, Var, Workspace,
};
use kerust::Error;
use ndarray::{array, Array2, ArrayD, ArrayViewD, Axis, Ix2, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform in `[lo, hi)`.
fn uniform(rng: &mut StdRng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(lo..hi))
}

/// Uniform in `[lo, hi)`, but at least `margin` away from every point of `kinks` (so that a central difference
/// with a step of 1e-3 never straddles a kink).
fn away_from(rng: &mut StdRng, shape: &[usize], lo: f32, hi: f32, kinks: &[f32], margin: f32) -> Tensor {
    ArrayD::from_shape_fn(IxDyn(shape), |_| loop {
        let x = rng.random_range(lo..hi);
        if kinks.iter().all(|k| (x - k).abs() > margin) {
            break x;
        }
    })
}

/// Magnitude in `[lo, hi)` with a random sign.
fn signed(rng: &mut StdRng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        let m = rng.random_range(lo..hi);
        if rng.random_range(0.0f32..1.0) < 0.5 {
            -m
        } else {
            m
        }
    })
}

/// The checker used by every op test: the default settings, tight enough that a gradient off by a factor of 2
/// or missing a term fails (see `checker_catches_*`).
fn check<F>(what: &str, inputs: &[Tensor], f: F)
where
    F: for<'t> Fn(&[Var<'t>]) -> Var<'t>,
{
    match check_gradients(inputs, f) {
        Ok(report) => {
            let expected: usize = inputs.iter().map(|x| x.len()).sum();
            assert_eq!(report.checked, expected, "{what}: not every element was checked");
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Shapes used for element-wise ops: a scalar, a vector, a matrix and a 3-D array.
const SHAPES: &[&[usize]] = &[&[], &[5], &[3, 4], &[2, 3, 4]];

fn assert_close(what: &str, got: &ArrayD<f32>, want: &ArrayD<f32>, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w} (tolerance {tol})\n{got}\n{want}"
        );
    }
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol
}

// ---------------------------------------------------------------------------------------------------------
// The checker itself must catch wrong gradients
// ---------------------------------------------------------------------------------------------------------

/// `f(x, y) = x * y + x^2`, element-wise, with a selectable backward rule.
struct XyPlusXSquared {
    bug: Bug,
}

#[derive(Clone, Copy, PartialEq)]
enum Bug {
    None,
    /// Every gradient doubled.
    FactorTwo,
    /// The `2x` term of `df/dx` dropped.
    MissingTerm,
}

impl CustomOp for XyPlusXSquared {
    fn forward(&self, inputs: &[ArrayViewD<'_, f32>]) -> Tensor {
        let (x, y) = (&inputs[0], &inputs[1]);
        x * y + x * x
    }

    fn backward(
        &self,
        inputs: &[ArrayViewD<'_, f32>],
        _output: ArrayViewD<'_, f32>,
        g: ArrayViewD<'_, f32>,
    ) -> Vec<Tensor> {
        let (x, y) = (&inputs[0], &inputs[1]);
        let (mut dx, mut dy) = match self.bug {
            Bug::MissingTerm => (&g * y, &g * x),
            _ => (&g * &(y + &(x * 2.0)), &g * x),
        };
        if self.bug == Bug::FactorTwo {
            dx *= 2.0;
            dy *= 2.0;
        }
        vec![dx, dy]
    }
}

fn xy_inputs() -> Vec<Tensor> {
    let mut r = rng(7);
    vec![signed(&mut r, &[3, 4], 0.5, 2.0), signed(&mut r, &[3, 4], 0.5, 2.0)]
}

#[test]
fn custom_op_with_correct_backward_passes() {
    check("custom x*y + x^2", &xy_inputs(), |v| {
        v[0].tape().custom(&[v[0], v[1]], XyPlusXSquared { bug: Bug::None })
    });
}

#[test]
fn checker_catches_a_gradient_off_by_a_factor_of_two() {
    let err = check_gradients(&xy_inputs(), |v| {
        v[0].tape().custom(&[v[0], v[1]], XyPlusXSquared { bug: Bug::FactorTwo })
    })
    .expect_err("a doubled gradient must fail the check");
    assert!(matches!(err, Error::GradientCheck { .. }), "unexpected error {err}");
}

#[test]
fn checker_catches_a_missing_term() {
    let err = check_gradients(&xy_inputs(), |v| {
        v[0].tape().custom(&[v[0], v[1]], XyPlusXSquared { bug: Bug::MissingTerm })
    })
    .expect_err("a gradient missing a term must fail the check");
    match err {
        Error::GradientCheck { input, .. } => assert_eq!(input, 0, "only dx is wrong"),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn checker_catches_a_small_relative_error_with_tight_settings() {
    /// `f(x) = 3x` whose backward says 3.1.
    struct Slightly;
    impl CustomOp for Slightly {
        fn forward(&self, i: &[ArrayViewD<'_, f32>]) -> Tensor {
            i[0].mapv(|x| 3.0 * x)
        }
        fn backward(
            &self,
            _: &[ArrayViewD<'_, f32>],
            _: ArrayViewD<'_, f32>,
            g: ArrayViewD<'_, f32>,
        ) -> Vec<Tensor> {
            vec![g.mapv(|g| 3.1 * g)]
        }
    }
    let x = vec![uniform(&mut rng(1), &[4], -1.0, 1.0)];
    // 3% off: inside a 5% tolerance, outside the default 1%.
    assert!(GradCheck { rtol: 5e-2, ..GradCheck::default() }
        .check(&x, |v| v[0].tape().custom(&[v[0]], Slightly))
        .is_ok());
    assert!(matches!(
        check_gradients(&x, |v| v[0].tape().custom(&[v[0]], Slightly)),
        Err(Error::GradientCheck { .. })
    ));
}

#[test]
fn checker_catches_a_missing_gradient() {
    // A custom op that claims no dependence on its second input.
    struct Forgetful;
    impl CustomOp for Forgetful {
        fn forward(&self, i: &[ArrayViewD<'_, f32>]) -> Tensor {
            &i[0] * &i[1]
        }
        fn backward(
            &self,
            i: &[ArrayViewD<'_, f32>],
            _: ArrayViewD<'_, f32>,
            g: ArrayViewD<'_, f32>,
        ) -> Vec<Tensor> {
            vec![&g * &i[1], ArrayD::zeros(i[1].raw_dim())]
        }
    }
    let err = check_gradients(&xy_inputs(), |v| v[0].tape().custom(&[v[0], v[1]], Forgetful)).unwrap_err();
    assert!(matches!(err, Error::GradientCheck { input: 1, .. }), "unexpected error {err}");
}

// ---------------------------------------------------------------------------------------------------------
// Every op against finite differences
// ---------------------------------------------------------------------------------------------------------

#[test]
fn grad_matmul_2d() {
    let mut r = rng(10);
    for (m, k, n) in [(1, 1, 1), (3, 4, 2), (5, 2, 6)] {
        let inputs = [uniform(&mut r, &[m, k], -1.0, 1.0), uniform(&mut r, &[k, n], -1.0, 1.0)];
        check(&format!("matmul ({m},{k})x({k},{n})"), &inputs, |v| v[0].matmul(v[1]));
    }
}

#[test]
fn grad_matmul_batched_3d() {
    let mut r = rng(11);
    for (b, m, k, n) in [(1, 2, 3, 4), (3, 2, 4, 3)] {
        let inputs = [uniform(&mut r, &[b, m, k], -1.0, 1.0), uniform(&mut r, &[b, k, n], -1.0, 1.0)];
        check(&format!("matmul ({b},{m},{k})x({b},{k},{n})"), &inputs, |v| v[0].matmul(v[1]));
    }
}

#[test]
fn grad_matmul_3d_times_shared_2d() {
    let mut r = rng(12);
    for (b, m, k, n) in [(1, 2, 3, 4), (3, 2, 4, 3)] {
        let inputs = [uniform(&mut r, &[b, m, k], -1.0, 1.0), uniform(&mut r, &[k, n], -1.0, 1.0)];
        check(&format!("matmul ({b},{m},{k})x({k},{n})"), &inputs, |v| v[0].matmul(v[1]));
    }
}

#[test]
fn matmul_forward_values() {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let a = tape.constant(array![[[1.0f32, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]].into_dyn().view());
    let w = tape.constant(array![[1.0f32, 0.5], [-1.0, 2.0]].into_dyn().view());
    let y = a.matmul(w).value();
    let want = array![[[-1.0f32, 4.5], [-1.0, 9.5]], [[-1.0, 2.0], [1.0, 0.5]]].into_dyn();
    assert_eq!(y, want);
    let ab = a.matmul(a).value();
    let want = array![[[7.0f32, 10.0], [15.0, 22.0]], [[1.0, 0.0], [0.0, 1.0]]].into_dyn();
    assert_eq!(ab, want);
}

/// Every broadcasting case the models use, plus same-shape.
const BROADCASTS: &[(&[usize], &[usize])] = &[
    (&[3, 4], &[3, 4]),
    (&[3, 4], &[4]),
    (&[3, 4], &[1, 4]),
    (&[3, 1], &[3, 4]),
    (&[3, 4], &[]),
    (&[], &[3, 4]),
    (&[2, 1, 4], &[3, 1]),
    (&[4], &[3, 4]),
];

#[test]
fn grad_add_sub_mul_div_with_broadcasting() {
    let mut r = rng(20);
    for &(sa, sb) in BROADCASTS {
        let a = uniform(&mut r, sa, -2.0, 2.0);
        let b = uniform(&mut r, sb, -2.0, 2.0);
        let denom = signed(&mut r, sb, 0.5, 2.0);
        check(&format!("add {sa:?} {sb:?}"), &[a.clone(), b.clone()], |v| v[0].add(v[1]));
        check(&format!("sub {sa:?} {sb:?}"), &[a.clone(), b.clone()], |v| v[0].sub(v[1]));
        check(&format!("mul {sa:?} {sb:?}"), &[a.clone(), b.clone()], |v| v[0].mul(v[1]));
        check(&format!("div {sa:?} {sb:?}"), &[a.clone(), denom], |v| v[0].div(v[1]));
    }
}

#[test]
fn broadcast_forward_shapes_and_values() {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let a = tape.constant(array![[[1.0f32, 2.0]], [[3.0, 4.0]]].into_dyn().view()); // (2, 1, 2)
    let b = tape.constant(array![[10.0f32], [20.0], [30.0]].into_dyn().view()); // (3, 1)
    let y = a.mul(b);
    assert_eq!(y.shape(), vec![2, 3, 2]);
    let want =
        array![[[10.0f32, 20.0], [20.0, 40.0], [30.0, 60.0]], [[30.0, 40.0], [60.0, 80.0], [90.0, 120.0]]]
            .into_dyn();
    assert_eq!(y.value(), want);
    let s = tape.constant(ArrayD::from_elem(IxDyn(&[]), 2.0f32).view());
    assert_eq!((a - s).value(), array![[[-1.0f32, 0.0]], [[1.0, 2.0]]].into_dyn());
    assert_eq!((s / a).shape(), vec![2, 1, 2]);
}

#[test]
fn grad_operators_with_var_and_f32() {
    let mut r = rng(21);
    let a = uniform(&mut r, &[3, 4], -2.0, 2.0);
    let b = uniform(&mut r, &[4], -2.0, 2.0);
    let d = signed(&mut r, &[4], 0.5, 2.0);
    check("a + b", &[a.clone(), b.clone()], |v| v[0] + v[1]);
    check("a - b", &[a.clone(), b.clone()], |v| v[0] - v[1]);
    check("a * b", &[a.clone(), b.clone()], |v| v[0] * v[1]);
    check("a / d", &[a.clone(), d], |v| v[0] / v[1]);
    check("-a", std::slice::from_ref(&a), |v| -v[0]);
    check("a + 1.5", std::slice::from_ref(&a), |v| v[0] + 1.5);
    check("a - 1.5", std::slice::from_ref(&a), |v| v[0] - 1.5);
    check("a * -2.5", std::slice::from_ref(&a), |v| v[0] * -2.5);
    check("a / 4", std::slice::from_ref(&a), |v| v[0] / 4.0);
    check("(a * b - a) / 2 + b", &[a, b], |v| (v[0] * v[1] - v[0]) / 2.0 + v[1]);
}

#[test]
fn operators_forward_values() {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let a = tape.constant(array![1.0f32, -2.0].into_dyn().view());
    let b = tape.constant(array![4.0f32, 0.5].into_dyn().view());
    assert_eq!((a + b).value(), array![5.0f32, -1.5].into_dyn());
    assert_eq!((a - b).value(), array![-3.0f32, -2.5].into_dyn());
    assert_eq!((a * b).value(), array![4.0f32, -1.0].into_dyn());
    assert_eq!((a / b).value(), array![0.25f32, -4.0].into_dyn());
    assert_eq!((-a).value(), array![-1.0f32, 2.0].into_dyn());
    assert_eq!((a + 1.0).value(), array![2.0f32, -1.0].into_dyn());
    assert_eq!((a - 1.0).value(), array![0.0f32, -3.0].into_dyn());
    assert_eq!((a * 3.0).value(), array![3.0f32, -6.0].into_dyn());
    assert_eq!((a / 2.0).value(), array![0.5f32, -1.0].into_dyn());
    assert_eq!(
        a.add_scalar(1.0).sub_scalar(0.5).mul_scalar(2.0).div_scalar(4.0).value(),
        array![0.75f32, -0.75].into_dyn()
    );
    assert_eq!(a.maximum(b).value(), array![4.0f32, 0.5].into_dyn());
    assert_eq!(a.minimum(b).value(), array![1.0f32, -2.0].into_dyn());
}

#[test]
fn grad_scalar_methods() {
    let mut r = rng(22);
    for &shape in SHAPES {
        let x = uniform(&mut r, shape, -2.0, 2.0);
        check(&format!("add_scalar {shape:?}"), std::slice::from_ref(&x), |v| v[0].add_scalar(0.7));
        check(&format!("sub_scalar {shape:?}"), std::slice::from_ref(&x), |v| v[0].sub_scalar(0.7));
        check(&format!("mul_scalar {shape:?}"), std::slice::from_ref(&x), |v| v[0].mul_scalar(-1.7));
        check(&format!("div_scalar {shape:?}"), std::slice::from_ref(&x), |v| v[0].div_scalar(0.3));
        check(&format!("neg {shape:?}"), &[x], |v| v[0].neg());
    }
}

/// Checks a unary op on every shape of [`SHAPES`], with inputs from `gen`.
fn check_unary<F>(what: &str, seed: u64, gen: impl Fn(&mut StdRng, &[usize]) -> Tensor, f: F)
where
    F: for<'t> Fn(Var<'t>) -> Var<'t>,
{
    let mut r = rng(seed);
    for &shape in SHAPES {
        let x = gen(&mut r, shape);
        check(&format!("{what} {shape:?}"), &[x], |v| f(v[0]));
    }
}

#[test]
fn grad_exp_log_sqrt_square_pow() {
    let any = |r: &mut StdRng, s: &[usize]| uniform(r, s, -2.0, 2.0);
    let positive = |r: &mut StdRng, s: &[usize]| uniform(r, s, 0.5, 2.0);
    check_unary("exp", 30, any, |x| x.exp());
    check_unary("log", 31, positive, |x| x.log());
    check_unary("sqrt", 32, positive, |x| x.sqrt());
    check_unary("square", 33, any, |x| x.square());
    check_unary("pow 3", 34, any, |x| x.pow(3.0));
    check_unary("pow 1.5", 35, positive, |x| x.pow(1.5));
    check_unary("pow -2", 36, positive, |x| x.pow(-2.0));
}

#[test]
fn grad_piecewise_ops_away_from_kinks() {
    let gen =
        |kinks: &'static [f32]| move |r: &mut StdRng, s: &[usize]| away_from(r, s, -2.0, 2.0, kinks, 0.05);
    check_unary("abs", 40, gen(&[0.0]), |x| x.abs());
    check_unary("clip", 41, gen(&[-0.5, 0.5]), |x| x.clip(-0.5, 0.5));
    check_unary("relu", 42, gen(&[0.0]), |x| x.relu());
    check_unary("leaky_relu", 43, gen(&[0.0]), |x| x.leaky_relu(0.2));
    check_unary("elu", 44, gen(&[0.0]), |x| x.elu(0.7));
    check_unary("selu", 45, gen(&[0.0]), |x| x.selu());
}

#[test]
fn grad_maximum_minimum_away_from_ties() {
    let mut r = rng(46);
    for &(sa, sb) in BROADCASTS {
        let a = uniform(&mut r, sa, -2.0, 2.0);
        // b's elements at least 0.05 away from every element of a (ties are broadcast in any combination).
        let values: Vec<f32> = a.iter().copied().collect();
        let b = away_from(&mut r, sb, -2.0, 2.0, &values, 0.05);
        check(&format!("maximum {sa:?} {sb:?}"), &[a.clone(), b.clone()], |v| v[0].maximum(v[1]));
        check(&format!("minimum {sa:?} {sb:?}"), &[a, b], |v| v[0].minimum(v[1]));
    }
}

#[test]
fn maximum_and_minimum_ties_send_the_gradient_to_the_left_operand() {
    let mut params = ParamStore::new();
    let a = params.add("a", array![1.0f32, 2.0, 3.0].into_dyn(), true);
    let b = params.add("b", array![1.0f32, 5.0, 0.0].into_dyn(), true);
    let mut grads = Gradients::new();
    for use_max in [true, false] {
        let tape = Tape::new(&params);
        let (va, vb) = (tape.param(a), tape.param(b));
        let y = if use_max { va.maximum(vb) } else { va.minimum(vb) };
        tape.backward(y.sum(), &mut grads).unwrap();
        let (wa, wb) = if use_max {
            ([1.0f32, 0.0, 1.0], [0.0f32, 1.0, 0.0])
        } else {
            ([1.0, 1.0, 0.0], [0.0, 0.0, 1.0])
        };
        assert_eq!(
            grads.get(a).unwrap(),
            &ArrayD::from_shape_vec(IxDyn(&[3]), wa.to_vec()).unwrap(),
            "max {use_max}"
        );
        assert_eq!(
            grads.get(b).unwrap(),
            &ArrayD::from_shape_vec(IxDyn(&[3]), wb.to_vec()).unwrap(),
            "max {use_max}"
        );
        // The same value on both sides: the gradient is 1, not 2.
        let tape = Tape::new(&params);
        let va = tape.param(a);
        let y = if use_max { va.maximum(va) } else { va.minimum(va) };
        tape.backward(y.sum(), &mut grads).unwrap();
        assert_eq!(grads.get(a).unwrap(), &ArrayD::from_elem(IxDyn(&[3]), 1.0f32));
    }
}

#[test]
fn grad_smooth_activations() {
    let any = |r: &mut StdRng, s: &[usize]| uniform(r, s, -3.0, 3.0);
    check_unary("sigmoid", 50, any, |x| x.sigmoid());
    check_unary("tanh", 51, any, |x| x.tanh());
    check_unary("softplus", 52, any, |x| x.softplus());
    check_unary("softsign", 53, |r, s| away_from(r, s, -3.0, 3.0, &[0.0], 0.05), |x| x.softsign());
    check_unary("gelu", 54, any, |x| x.gelu());
    check_unary("swish", 55, any, |x| x.swish());
}

#[test]
fn grad_softmax_and_log_softmax_over_each_axis() {
    let mut r = rng(60);
    let x = uniform(&mut r, &[2, 3, 4], -2.0, 2.0);
    for axis in 0..3 {
        check(&format!("softmax axis {axis}"), std::slice::from_ref(&x), |v| v[0].softmax(axis));
        check(&format!("log_softmax axis {axis}"), std::slice::from_ref(&x), |v| v[0].log_softmax(axis));
    }
    let x2 = uniform(&mut r, &[3, 5], -2.0, 2.0);
    check("softmax 2-D", std::slice::from_ref(&x2), |v| v[0].softmax(1));
    check("log_softmax 2-D", &[x2], |v| v[0].log_softmax(1));
}

#[test]
fn grad_sum_and_mean() {
    let mut r = rng(61);
    let x = uniform(&mut r, &[2, 3, 4], -2.0, 2.0);
    check("sum", std::slice::from_ref(&x), |v| v[0].sum());
    check("mean", std::slice::from_ref(&x), |v| v[0].mean());
    let axes: &[&[usize]] = &[&[0], &[1], &[2], &[0, 2], &[1, 2], &[0, 1, 2], &[]];
    for &ax in axes {
        for keepdims in [false, true] {
            check(&format!("sum_axes {ax:?} {keepdims}"), std::slice::from_ref(&x), |v| {
                v[0].sum_axes(ax, keepdims)
            });
            check(&format!("mean_axes {ax:?} {keepdims}"), std::slice::from_ref(&x), |v| {
                v[0].mean_axes(ax, keepdims)
            });
        }
    }
    let s = uniform(&mut r, &[], -2.0, 2.0);
    check("sum of a scalar", std::slice::from_ref(&s), |v| v[0].sum());
    check("mean of a scalar", &[s], |v| v[0].mean());
}

#[test]
fn sum_and_mean_values() {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let x = tape
        .constant(ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| (i[0] * 12 + i[1] * 4 + i[2]) as f32).view());
    assert_eq!(x.sum().item(), 276.0);
    assert_eq!(x.sum().shape(), Vec::<usize>::new());
    assert_eq!(x.mean().item(), 11.5);
    let s1 = x.sum_axes(&[1], false);
    assert_eq!(s1.shape(), vec![2, 4]);
    assert_eq!(s1.value(), array![[12.0f32, 15.0, 18.0, 21.0], [48.0, 51.0, 54.0, 57.0]].into_dyn());
    let s02 = x.sum_axes(&[0, 2], true);
    assert_eq!(s02.shape(), vec![1, 3, 1]);
    assert_eq!(s02.value(), array![[[60.0f32], [92.0], [124.0]]].into_dyn());
    let m2 = x.mean_axes(&[2], true);
    assert_eq!(m2.shape(), vec![2, 3, 1]);
    assert_eq!(m2.value(), array![[[1.5f32], [5.5], [9.5]], [[13.5], [17.5], [21.5]]].into_dyn());
    let m01 = x.mean_axes(&[0, 1], false);
    assert_eq!(m01.value(), array![10.0f32, 11.0, 12.0, 13.0].into_dyn());
    let all_keep = x.sum_axes(&[0, 1, 2], true);
    assert_eq!(all_keep.shape(), vec![1, 1, 1]);
    assert_eq!(all_keep.item(), 276.0);
    let none = x.sum_axes(&[], false);
    assert_eq!(none.value(), x.value());
}

#[test]
fn grad_reshape_transpose_permute() {
    let mut r = rng(62);
    let x = uniform(&mut r, &[2, 3, 4], -2.0, 2.0);
    check("reshape (6, 4)", std::slice::from_ref(&x), |v| v[0].reshape(&[6, 4]));
    check("reshape (24)", std::slice::from_ref(&x), |v| v[0].reshape(&[24]));
    check("reshape (4, 1, 6)", std::slice::from_ref(&x), |v| v[0].reshape(&[4, 1, 6]));
    check("transpose 3-D", std::slice::from_ref(&x), |v| v[0].transpose());
    for perm in [[0, 2, 1], [2, 0, 1], [1, 2, 0], [1, 0, 2]] {
        check(&format!("permute {perm:?}"), std::slice::from_ref(&x), |v| v[0].permute(&perm));
    }
    let m = uniform(&mut r, &[3, 5], -2.0, 2.0);
    check("transpose 2-D", std::slice::from_ref(&m), |v| v[0].transpose());
    // Shape-changing ops composed with one that mixes elements, so that a wrong index map cannot cancel out.
    check("transpose then matmul", &[m.clone(), uniform(&mut r, &[3, 2], -1.0, 1.0)], |v| {
        v[0].transpose().matmul(v[1])
    });
    check("permute then reshape", &[x], |v| v[0].permute(&[2, 0, 1]).reshape(&[4, 6]).softmax(1));
}

#[test]
fn reshape_transpose_permute_values() {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let x = tape
        .constant(ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| (i[0] * 12 + i[1] * 4 + i[2]) as f32).view());
    let p = x.permute(&[2, 0, 1]);
    assert_eq!(p.shape(), vec![4, 2, 3]);
    assert_eq!(p.value()[[3, 1, 2]], x.value()[[1, 2, 3]]);
    let t = x.transpose();
    assert_eq!(t.shape(), vec![4, 3, 2]);
    assert_eq!(t.value()[[3, 1, 0]], x.value()[[0, 1, 3]]);
    // Reshape of a permuted (in the tape: materialised) value is in row-major order of the permuted value.
    let r = p.reshape(&[8, 3]);
    assert_eq!(r.value().iter().copied().collect::<Vec<_>>(), p.value().iter().copied().collect::<Vec<_>>());
}

#[test]
fn grad_softmax_cross_entropy_wrt_logits_and_targets() {
    let mut r = rng(70);
    for shape in [&[4, 3][..], &[2, 3, 5], &[6]] {
        let logits = uniform(&mut r, shape, -2.0, 2.0);
        // Unnormalised targets on purpose: the logits' gradient then depends on each row's mass.
        let targets = uniform(&mut r, shape, 0.0, 1.0);
        check(&format!("softmax_cross_entropy {shape:?}"), &[logits, targets], |v| {
            v[0].softmax_cross_entropy(v[1])
        });
    }
}

#[test]
fn grad_sparse_softmax_cross_entropy() {
    let mut r = rng(71);
    let cases: [(&[usize], Tensor); 2] = [
        (&[4, 3], array![0.0f32, 2.0, 1.0, 2.0].into_dyn()),
        (&[2, 3, 4], array![[3.0f32, 0.0, 1.0], [2.0, 2.0, 0.0]].into_dyn()),
    ];
    for (shape, labels) in cases {
        let logits = uniform(&mut r, shape, -2.0, 2.0);
        check(&format!("sparse_softmax_cross_entropy {shape:?}"), &[logits], |v| {
            let l = v[0].tape().constant(labels.view());
            v[0].sparse_softmax_cross_entropy(l)
        });
    }
}

#[test]
fn grad_sigmoid_cross_entropy_wrt_logits_and_targets() {
    let mut r = rng(72);
    for &shape in &SHAPES[1..] {
        let logits = uniform(&mut r, shape, -3.0, 3.0);
        let targets = uniform(&mut r, shape, 0.0, 1.0);
        check(&format!("sigmoid_cross_entropy {shape:?}"), &[logits, targets], |v| {
            v[0].sigmoid_cross_entropy(v[1])
        });
    }
}

#[test]
fn grad_composite_expressions() {
    let mut r = rng(73);
    let x = uniform(&mut r, &[4, 3], -1.0, 1.0);
    let w = uniform(&mut r, &[3, 5], -1.0, 1.0);
    let b = uniform(&mut r, &[5], -1.0, 1.0);
    check("dense + tanh + log_softmax", &[x.clone(), w.clone(), b.clone()], |v| {
        v[0].matmul(v[1]).add(v[2]).tanh().log_softmax(1)
    });
    check("x reused in a chain", &[x], |v| (v[0] * v[0].exp() + v[0].square().sum()).sigmoid());
}

// ---------------------------------------------------------------------------------------------------------
// Forward values against known results
// ---------------------------------------------------------------------------------------------------------

#[test]
fn softmax_rows_sum_to_one_and_log_softmax_is_stable() {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let x = tape.constant(uniform(&mut rng(80), &[2, 3, 4], -5.0, 5.0).view());
    for axis in 0..3 {
        let sums = x.softmax(axis).value().sum_axis(Axis(axis));
        assert!(sums.iter().all(|&s| close(s, 1.0, 1e-6)), "softmax over axis {axis}: {sums}");
        let y = x.softmax(axis).value();
        let ly = x.log_softmax(axis).value();
        assert_close("log_softmax = ln softmax", &ly, &y.mapv(f32::ln), 1e-5);
    }
    let big = tape.constant(array![[1000.0f32, 0.0, -1000.0]].into_dyn().view());
    let ls = big.log_softmax(1).value();
    assert!(ls.iter().all(|v| v.is_finite()), "{ls}");
    assert_eq!(ls, array![[0.0f32, -1000.0, -2000.0]].into_dyn());
    let s = big.softmax(1).value();
    assert_eq!(s, array![[1.0f32, 0.0, 0.0]].into_dyn());
    let ce = big.softmax_cross_entropy(tape.constant(array![[0.0f32, 1.0, 0.0]].into_dyn().view()));
    assert_eq!(ce.item(), 1000.0);
}

#[test]
fn sigmoid_of_extremes_is_finite() {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let x = tape.constant(array![-100.0f32, -20.0, 0.0, 20.0, 100.0].into_dyn().view());
    let y = x.sigmoid().value();
    assert!(y.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{y}");
    assert!(y[0] < 1e-40 && y[0] >= 0.0);
    assert_eq!(y[2], 0.5);
    assert_eq!(y[4], 1.0);
    let sp = x.softplus().value();
    assert!(sp.iter().all(|v| v.is_finite()), "{sp}");
    assert!(close(sp[4], 100.0, 1e-5));
    let t = tape.constant(array![1.0f32, 0.0, 0.5, 1.0, 0.0].into_dyn().view());
    let bce = x.sigmoid_cross_entropy(t).value();
    assert!(bce.iter().all(|v| v.is_finite()), "{bce}");
    assert!(close(bce[0], 100.0, 1e-4) && close(bce[4], 100.0, 1e-4));
    assert!(close(bce[2], std::f32::consts::LN_2, 1e-6));
    assert!(close(bce[3], 2.061_153_6e-9, 1e-9));
}

#[test]
fn softmax_cross_entropy_equals_the_direct_formula() {
    let mut r = rng(81);
    let logits = uniform(&mut r, &[5, 4], -3.0, 3.0);
    let mut targets = uniform(&mut r, &[5, 4], 0.0, 1.0);
    for mut row in targets.rows_mut() {
        let s = row.sum();
        row /= s;
    }
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let ce = tape.constant(logits.view()).softmax_cross_entropy(tape.constant(targets.view())).value();
    // Directly: -sum(t * ln(softmax(x))) per row.
    let e = logits.mapv(f32::exp);
    let p = &e / &e.sum_axis(Axis(1)).insert_axis(Axis(1));
    let direct = (&targets * &p.mapv(f32::ln)).sum_axis(Axis(1)).mapv(|v| -v);
    assert_close("softmax_cross_entropy", &ce, &direct, 1e-5);

    let labels = array![3.0f32, 0.0, 1.0, 2.0, 1.0].into_dyn();
    let sparse =
        tape.constant(logits.view()).sparse_softmax_cross_entropy(tape.constant(labels.view())).value();
    let direct_sparse = ArrayD::from_shape_fn(IxDyn(&[5]), |i| -p[[i[0], labels[i[0]] as usize]].ln());
    assert_close("sparse_softmax_cross_entropy", &sparse, &direct_sparse, 1e-5);

    let bt = uniform(&mut r, &[5, 4], 0.0, 1.0);
    let bce = tape.constant(logits.view()).sigmoid_cross_entropy(tape.constant(bt.view())).value();
    let s = logits.mapv(|x| 1.0 / (1.0 + (-x).exp()));
    let direct_bce =
        ndarray::Zip::from(&s).and(&bt).map_collect(|&s, &t| -(t * s.ln() + (1.0 - t) * (1.0 - s).ln()));
    assert_close("sigmoid_cross_entropy", &bce, &direct_bce, 1e-5);
}

#[test]
fn activations_match_keras_formulas() {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let x = tape.constant(array![-2.0f32, -1.0, -0.5, 0.5, 1.0, 2.0].into_dyn().view());
    // Computed in f64 from Keras' definitions: gelu = 0.5 x (1 + erf(x / sqrt 2)) (approximate=False),
    // selu = scale * (x if x > 0 else alpha (e^x - 1)), elu = x if x > 0 else alpha (e^x - 1),
    // softplus = ln(1 + e^x).
    let cases: [(&str, Var<'_>, [f64; 6]); 5] = [
        ("gelu", x.gelu(), [-0.045500264, -0.158655254, -0.154268769, 0.345731231, 0.841344746, 1.954499736]),
        ("selu", x.selu(), [-1.520166469, -1.111330738, -0.691758188, 0.525350494, 1.050700987, 2.101401975]),
        ("elu 1.0", x.elu(1.0), [-0.864664717, -0.632120559, -0.393469340, 0.5, 1.0, 2.0]),
        ("elu 0.5", x.elu(0.5), [-0.432332358, -0.316060279, -0.196734670, 0.5, 1.0, 2.0]),
        (
            "softplus",
            x.softplus(),
            [0.126928011, 0.313261688, 0.474076984, 0.974076984, 1.313261688, 2.126928011],
        ),
    ];
    for (name, y, want) in cases {
        let want = ArrayD::from_shape_vec(IxDyn(&[6]), want.iter().map(|&w| w as f32).collect()).unwrap();
        assert_close(name, &y.value(), &want, 2e-6);
    }
    let lr = x.leaky_relu(0.2).value();
    assert_close("leaky_relu", &lr, &array![-0.4f32, -0.2, -0.1, 0.5, 1.0, 2.0].into_dyn(), 1e-7);
    let sw = x.swish().value();
    let want = array![-0.238_405_84f32, -0.268_941_42, -0.188_770_33, 0.311_229_67, 0.731_058_6, 1.761_594_2];
    assert_close("swish", &sw, &want.into_dyn(), 1e-6);
    let ss = x.softsign().value();
    assert_close(
        "softsign",
        &ss,
        &array![-2.0f32 / 3.0, -0.5, -1.0 / 3.0, 1.0 / 3.0, 0.5, 2.0 / 3.0].into_dyn(),
        1e-7,
    );
    assert_eq!(x.relu().value(), array![0.0f32, 0.0, 0.0, 0.5, 1.0, 2.0].into_dyn());
    assert_eq!(x.clip(-0.75, 1.5).value(), array![-0.75f32, -0.75, -0.5, 0.5, 1.0, 1.5].into_dyn());
    assert_eq!(x.abs().value(), array![2.0f32, 1.0, 0.5, 0.5, 1.0, 2.0].into_dyn());
}

// ---------------------------------------------------------------------------------------------------------
// A two-layer MLP against a hand-derived backward pass
// ---------------------------------------------------------------------------------------------------------

struct Mlp {
    params: ParamStore,
    w1: ParamId,
    b1: ParamId,
    w2: ParamId,
    b2: ParamId,
}

fn mlp(seed: u64) -> Mlp {
    let mut r = rng(seed);
    let mut params = ParamStore::new();
    let w1 = params.add("w1", uniform(&mut r, &[3, 5], -1.0, 1.0), true);
    let b1 = params.add("b1", uniform(&mut r, &[5], -0.5, 0.5), true);
    let w2 = params.add("w2", uniform(&mut r, &[5, 2], -1.0, 1.0), true);
    let b2 = params.add("b2", uniform(&mut r, &[2], -0.5, 0.5), true);
    Mlp { params, w1, b1, w2, b2 }
}

/// One-hot targets for `batch` rows of 2 classes.
fn one_hot(batch: usize, seed: u64) -> Tensor {
    let mut r = rng(seed);
    let mut t = ArrayD::zeros(IxDyn(&[batch, 2]));
    for i in 0..batch {
        t[[i, r.random_range(0..2usize)]] = 1.0;
    }
    t
}

/// The MLP's loss on `tape`: mean(softmax_cross_entropy(sigmoid(x W1 + b1) W2 + b2, t)).
fn mlp_loss<'t>(tape: &'t Tape<'t>, m: &Mlp, x: &Tensor, t: &Tensor) -> Var<'t> {
    let x = tape.constant(x.view());
    let t = tape.constant(t.view());
    let h = x.matmul(tape.param(m.w1)).add(tape.param(m.b1)).sigmoid();
    let logits = h.matmul(tape.param(m.w2)).add(tape.param(m.b2));
    logits.softmax_cross_entropy(t).mean()
}

fn mlp_grads(m: &Mlp, x: &Tensor, t: &Tensor) -> (f32, Gradients) {
    let tape = Tape::new(&m.params);
    let loss = mlp_loss(&tape, m, x, t);
    let mut grads = Gradients::new();
    tape.backward(loss, &mut grads).unwrap();
    (loss.item(), grads)
}

fn to2(t: &Tensor) -> Array2<f32> {
    t.clone().into_dimensionality::<Ix2>().unwrap()
}

#[test]
fn mlp_gradients_equal_a_hand_derived_backward_pass() {
    let m = mlp(90);
    let x = uniform(&mut rng(91), &[4, 3], -1.0, 1.0);
    let t = one_hot(4, 92);
    let (loss, grads) = mlp_grads(&m, &x, &t);

    // Forward by hand.
    let (x2, t2) = (to2(&x), to2(&t));
    let (w1, w2) = (to2(&m.params.value(m.w1).to_array()), to2(&m.params.value(m.w2).to_array()));
    let b1 = m.params.value(m.b1).to_array().into_dimensionality::<ndarray::Ix1>().unwrap();
    let b2 = m.params.value(m.b2).to_array().into_dimensionality::<ndarray::Ix1>().unwrap();
    let h = (x2.dot(&w1) + &b1).mapv(|z| 1.0 / (1.0 + (-z).exp()));
    let logits = h.dot(&w2) + &b2;
    let e = logits.mapv(f32::exp);
    let p = &e / &e.sum_axis(Axis(1)).insert_axis(Axis(1));
    let want_loss = -(&t2 * &p.mapv(f32::ln)).sum() / 4.0;
    assert!(close(loss, want_loss, 1e-6), "loss {loss} want {want_loss}");

    // Backward by hand.
    let dlogits = (&p - &t2) / 4.0;
    let dw2 = h.t().dot(&dlogits);
    let db2 = dlogits.sum_axis(Axis(0));
    let dh = dlogits.dot(&w2.t());
    let dz1 = &dh * &h.mapv(|h| h * (1.0 - h));
    let dw1 = x2.t().dot(&dz1);
    let db1 = dz1.sum_axis(Axis(0));

    assert_close("dW1", &grads.get(m.w1).unwrap().to_array(), &dw1.into_dyn(), 1e-5);
    assert_close("db1", &grads.get(m.b1).unwrap().to_array(), &db1.into_dyn(), 1e-5);
    assert_close("dW2", &grads.get(m.w2).unwrap().to_array(), &dw2.into_dyn(), 1e-5);
    assert_close("db2", &grads.get(m.b2).unwrap().to_array(), &db2.into_dyn(), 1e-5);
    assert_eq!(grads.iter().count(), 4);
}

#[test]
fn mlp_passes_the_gradient_check() {
    let m = mlp(93);
    let x = uniform(&mut rng(94), &[4, 3], -1.0, 1.0);
    let t = one_hot(4, 95);
    let inputs: Vec<Tensor> =
        [m.w1, m.b1, m.w2, m.b2].iter().map(|&id| m.params.value(id).to_array()).collect();
    check("mlp", &inputs, |v| {
        let tape = v[0].tape();
        let (x, t) = (tape.constant(x.view()), tape.constant(t.view()));
        let h = x.matmul(v[0]).add(v[1]).sigmoid();
        h.matmul(v[2]).add(v[3]).softmax_cross_entropy(t).mean()
    });
}

// ---------------------------------------------------------------------------------------------------------
// Values used more than once
// ---------------------------------------------------------------------------------------------------------

#[test]
fn a_variable_used_twice_gets_the_summed_gradient() {
    let mut params = ParamStore::new();
    let xv = array![[1.0f32, -2.0], [0.5, 3.0]].into_dyn();
    let x = params.add("x", xv.clone(), true);
    let tape = Tape::new(&params);
    let xs = tape.param(x);
    let loss = (xs * xs).sum();
    let mut grads = Gradients::new();
    tape.backward(loss, &mut grads).unwrap();
    assert_eq!(grads.get(x).unwrap(), &(&xv * 2.0));

    // The same parameter read twice as two nodes.
    let tape = Tape::new(&params);
    let loss = tape.param(x).mul(tape.param(x)).sum().add(tape.param(x).sum());
    tape.backward(loss, &mut grads).unwrap();
    assert_eq!(grads.get(x).unwrap(), &(&xv * 2.0 + 1.0));
}

#[test]
fn a_shared_weight_in_two_matmuls_gets_the_summed_gradient() {
    let mut r = rng(100);
    let mut params = ParamStore::new();
    let wv = uniform(&mut r, &[3, 2], -1.0, 1.0);
    let w = params.add("w", wv.clone(), true);
    let (a, b) = (uniform(&mut r, &[4, 3], -1.0, 1.0), uniform(&mut r, &[5, 3], -1.0, 1.0));

    for reuse_node in [true, false] {
        let tape = Tape::new(&params);
        let w1 = tape.param(w);
        let w2 = if reuse_node { w1 } else { tape.param(w) };
        // loss = sum(a W) + sum((b W)^2)
        let loss =
            tape.constant(a.view()).matmul(w1).sum().add(tape.constant(b.view()).matmul(w2).square().sum());
        let mut grads = Gradients::new();
        tape.backward(loss, &mut grads).unwrap();

        let (a2, b2, w2v) = (to2(&a), to2(&b), to2(&wv));
        let want = a2.t().dot(&Array2::ones((4, 2))) + b2.t().dot(&(b2.dot(&w2v) * 2.0));
        assert_close(
            &format!("shared W (same node: {reuse_node})"),
            &grads.get(w).unwrap().to_array(),
            &want.into_dyn(),
            1e-5,
        );
    }
    // And through the checker, with the weight used by both operands of one matmul.
    check("w^T w", &[uniform(&mut r, &[3, 3], -1.0, 1.0)], |v| v[0].transpose().matmul(v[0]));
    check("w w", &[uniform(&mut r, &[3, 3], -1.0, 1.0)], |v| v[0].matmul(v[0]));
    check("x * x", &[uniform(&mut r, &[3, 3], -1.0, 1.0)], |v| v[0].mul(v[0]));
    check("x / x^2", &[signed(&mut r, &[4], 0.5, 2.0)], |v| v[0].div(v[0].square()));
}

// ---------------------------------------------------------------------------------------------------------
// Tape and workspace behaviour
// ---------------------------------------------------------------------------------------------------------

#[test]
fn backward_on_an_inference_tape_is_an_error() {
    let m = mlp(110);
    let tape = Tape::inference(&m.params, Workspace::new());
    assert!(!tape.is_recording());
    let loss = mlp_loss(&tape, &m, &uniform(&mut rng(1), &[4, 3], -1.0, 1.0), &one_hot(4, 2));
    assert!(loss.item().is_finite());
    assert!(!loss.requires_grad());
    let err = tape.backward(loss, &mut Gradients::new()).unwrap_err();
    assert!(matches!(err, Error::NotReady(_)), "unexpected error {err}");
}

#[test]
fn backward_of_a_non_scalar_is_an_error() {
    let m = mlp(111);
    let tape = Tape::new(&m.params);
    let x = tape.constant(uniform(&mut rng(1), &[4, 3], -1.0, 1.0).view());
    let y = x.matmul(tape.param(m.w1));
    let err = tape.backward(y, &mut Gradients::new()).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "unexpected error {err}");
    // One element of any rank is a scalar loss.
    let one = y.sum_axes(&[0, 1], true);
    assert_eq!(one.shape(), vec![1, 1]);
    let mut grads = Gradients::new();
    tape.backward(one, &mut grads).unwrap();
    assert!(grads.get(m.w1).is_some());
}

#[test]
fn backward_of_a_value_from_another_tape_is_an_error() {
    let m = mlp(112);
    let (t1, t2) = (Tape::new(&m.params), Tape::new(&m.params));
    let loss = t2.param(m.b1).sum();
    let _ = t1.param(m.b1).sum();
    assert!(t1.backward(loss, &mut Gradients::new()).is_err());
}

/// One MLP step on a tape built from `ws`; returns the loss, the gradients and the workspace.
fn mlp_step(m: &Mlp, x: &Tensor, t: &Tensor, ws: Workspace, grads: &mut Gradients) -> (f32, Workspace) {
    let tape = Tape::with_workspace(&m.params, ws);
    let loss = mlp_loss(&tape, m, x, t);
    tape.backward(loss, grads).unwrap();
    let l = loss.item();
    (l, tape.into_workspace())
}

fn assert_same_grads(what: &str, m: &Mlp, got: &Gradients, want: &Gradients) {
    for id in [m.w1, m.b1, m.w2, m.b2] {
        assert_eq!(got.get(id), want.get(id), "{what}: gradient of {} differs", m.params.get(id).name);
    }
    assert_eq!(got.iter().count(), want.iter().count(), "{what}");
}

#[test]
fn workspace_reuse_gives_the_same_gradients_as_a_fresh_tape() {
    let mut m = mlp(120);
    let mut ws = Workspace::new();
    let mut grads = Gradients::new();
    // Equal batches around a different one, and parameter updates between steps.
    for (step, batch) in [4usize, 4, 7, 4, 1, 4].into_iter().enumerate() {
        let x = uniform(&mut rng(200 + step as u64), &[batch, 3], -1.0, 1.0);
        let t = one_hot(batch, 300 + step as u64);
        let (loss, next) = mlp_step(&m, &x, &t, ws, &mut grads);
        ws = next;
        let (fresh_loss, fresh) = mlp_grads(&m, &x, &t);
        assert_eq!(loss, fresh_loss, "step {step}");
        assert_same_grads(&format!("step {step} (batch {batch})"), &m, &grads, &fresh);
        // A plain SGD update, so that the next step's values differ from this one's.
        let updates: Vec<_> = grads.iter().map(|(id, g)| (id, g.to_array())).collect();
        for (id, g) in updates {
            let mut v = m.params.value(id).to_array();
            v.scaled_add(-0.5, &g);
            m.params.set_value(id, v.view()).unwrap();
        }
    }
}

#[test]
fn workspace_reuse_across_different_graphs_leaks_nothing() {
    // The same workspace runs graphs whose node positions hold different ops and shapes; each must match a
    // fresh tape exactly.
    let mut r = rng(130);
    let mut params = ParamStore::new();
    let w = params.add("w", uniform(&mut r, &[3, 3], -1.0, 1.0), true);
    let b = params.add("b", uniform(&mut r, &[3], -1.0, 1.0), true);
    let x = uniform(&mut r, &[2, 3], -1.0, 1.0);
    let t = uniform(&mut r, &[2, 3], 0.0, 1.0);

    type Graph = for<'t> fn(&'t Tape<'t>, ParamId, ParamId, &Tensor, &Tensor) -> Var<'t>;
    let graphs: [Graph; 4] = [
        |tape, w, b, x, t| {
            let z = tape.constant(x.view()).matmul(tape.param(w)).add(tape.param(b));
            z.softmax_cross_entropy(tape.constant(t.view())).sum()
        },
        |tape, w, b, x, _| {
            (tape.param(b) * tape.param(b))
                .sum()
                .add(tape.constant(x.view()).matmul(tape.param(w)).relu().mean())
        },
        |tape, w, _, x, t| {
            let y = tape.param(w).matmul(tape.param(w)).transpose();
            tape.constant(x.view())
                .matmul(y)
                .sigmoid_cross_entropy(tape.constant(t.view()))
                .mean_axes(&[0], false)
                .sum()
        },
        |tape, _, b, _, t| {
            tape.param(b).add(tape.constant(t.view())).log_softmax(0).sum_axes(&[1], false).square().sum()
        },
    ];
    let mut ws = Workspace::new();
    let mut grads = Gradients::new();
    for &g in [0usize, 1, 2, 0, 3, 2, 1, 1, 0, 3].iter() {
        let tape = Tape::with_workspace(&params, ws);
        let loss = graphs[g](&tape, w, b, &x, &t);
        tape.backward(loss, &mut grads).unwrap();
        let value = loss.item();
        ws = tape.into_workspace();

        let fresh_tape = Tape::new(&params);
        let fresh_loss = graphs[g](&fresh_tape, w, b, &x, &t);
        let mut fresh = Gradients::new();
        fresh_tape.backward(fresh_loss, &mut fresh).unwrap();
        assert_eq!(value, fresh_loss.item(), "graph {g}");
        assert_eq!(grads.get(w), fresh.get(w), "graph {g}: dW");
        assert_eq!(grads.get(b), fresh.get(b), "graph {g}: db");
    }
}

#[test]
fn a_second_backward_on_the_same_tape_gives_the_same_gradients() {
    let m = mlp(140);
    let tape = Tape::new(&m.params);
    let loss = mlp_loss(&tape, &m, &uniform(&mut rng(1), &[4, 3], -1.0, 1.0), &one_hot(4, 2));
    let (mut g1, mut g2) = (Gradients::new(), Gradients::new());
    tape.backward(loss, &mut g1).unwrap();
    tape.backward(loss, &mut g2).unwrap();
    assert_same_grads("second backward", &m, &g2, &g1);
}

#[test]
fn non_trainable_params_get_no_gradient() {
    let mut m = mlp(150);
    m.params.get_mut(m.b1).trainable = false;
    m.params.get_mut(m.w2).trainable = false;
    let tape = Tape::new(&m.params);
    assert!(!tape.param(m.w2).requires_grad());
    assert!(tape.param(m.w1).requires_grad());
    let loss = mlp_loss(&tape, &m, &uniform(&mut rng(1), &[4, 3], -1.0, 1.0), &one_hot(4, 2));
    let mut grads = Gradients::new();
    tape.backward(loss, &mut grads).unwrap();
    assert!(grads.get(m.b1).is_none());
    assert!(grads.get(m.w2).is_none());
    assert!(grads.get(m.w1).is_some() && grads.get(m.b2).is_some());
    assert_eq!(grads.iter().map(|(id, _)| id).collect::<Vec<_>>(), vec![m.w1, m.b2]);
    // Still the right gradient for the trainable ones.
    let (_, all) = mlp_grads(&mlp(150), &uniform(&mut rng(1), &[4, 3], -1.0, 1.0), &one_hot(4, 2));
    assert_eq!(grads.get(m.w1), all.get(m.w1));
}

#[test]
fn a_param_off_the_path_has_no_gradient() {
    let m = mlp(160);
    let mut grads = Gradients::new();
    // First a step that reaches every parameter, then one that reaches only w1 and b1, reusing `grads`.
    let (_, full) = mlp_grads(&m, &uniform(&mut rng(1), &[4, 3], -1.0, 1.0), &one_hot(4, 2));
    assert_eq!(full.iter().count(), 4);
    let tape = Tape::new(&m.params);
    tape.backward(mlp_loss(&tape, &m, &uniform(&mut rng(1), &[4, 3], -1.0, 1.0), &one_hot(4, 2)), &mut grads)
        .unwrap();
    let tape = Tape::new(&m.params);
    let x = tape.constant(uniform(&mut rng(2), &[4, 3], -1.0, 1.0).view());
    let _unused = tape.param(m.w2); // on the tape, but not on the loss's path
    let loss = x.matmul(tape.param(m.w1)).add(tape.param(m.b1)).tanh().sum();
    tape.backward(loss, &mut grads).unwrap();
    assert!(grads.get(m.w1).is_some() && grads.get(m.b1).is_some());
    assert!(grads.get(m.w2).is_none(), "w2 is not on the path");
    assert!(grads.get(m.b2).is_none(), "b2 is not on the tape");
    assert_eq!(grads.iter().count(), 2);
}

#[test]
fn softmax_and_sigmoid_logits_are_found() {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let z = tape.constant(uniform(&mut rng(1), &[4, 3], -1.0, 1.0).view());
    let z3 = tape.constant(uniform(&mut rng(2), &[2, 4, 3], -1.0, 1.0).view());
    assert_eq!(z.softmax(1).softmax_logits().map(|v| v.id()), Some(z.id()));
    assert_eq!(z3.softmax(2).softmax_logits().map(|v| v.id()), Some(z3.id()));
    assert!(z.softmax(0).softmax_logits().is_none(), "softmax over a non-last axis is not a classifier's");
    assert!(z.log_softmax(1).softmax_logits().is_none());
    assert!(z.sigmoid().softmax_logits().is_none());
    assert_eq!(z.sigmoid().sigmoid_logits().map(|v| v.id()), Some(z.id()));
    assert!(z.tanh().sigmoid_logits().is_none());
    assert!(z.softmax(1).sigmoid_logits().is_none());
    assert!(z.sigmoid_logits().is_none());
    // The fused loss on the found logits equals the cross-entropy of the probabilities.
    let t = tape.constant(
        array![[1.0f32, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]].into_dyn().view(),
    );
    let p = z.softmax(1);
    let fused = p.softmax_logits().unwrap().softmax_cross_entropy(t).value();
    let direct = (t * p.log()).sum_axes(&[1], false).neg().value();
    assert_close("fused vs direct", &fused, &direct, 1e-6);
}

#[test]
fn tape_bookkeeping() {
    let m = mlp(170);
    let tape = Tape::new(&m.params);
    assert!(tape.is_empty() && tape.is_recording());
    let w = tape.param(m.w1);
    let c = tape.constant(uniform(&mut rng(1), &[2, 3], -1.0, 1.0).view());
    assert!(!c.requires_grad());
    let y = c.matmul(w);
    assert_eq!(tape.len(), 3);
    assert_eq!(y.id(), 2);
    assert!(y.requires_grad());
    assert_eq!(*m.params.value(m.w1), w.value());
    assert_eq!(y.shape(), vec![2, 5]);
    let filled = tape.constant_with(&[2, 2], |b| b.fill(3.0));
    assert_eq!(filled.value(), ArrayD::from_elem(IxDyn(&[2, 2]), 3.0f32));
    // Gradients stop at constants: a loss of constants only reaches nothing.
    let mut grads = Gradients::new();
    tape.backward(filled.sum(), &mut grads).unwrap();
    assert_eq!(grads.iter().count(), 0);
}

#[test]
#[should_panic(expected = "returned 1 gradients for 2 inputs")]
fn a_custom_op_returning_too_few_gradients_is_refused() {
    struct Short;
    impl CustomOp for Short {
        fn forward(&self, i: &[ArrayViewD<'_, f32>]) -> Tensor {
            &i[0] * &i[1]
        }
        fn backward(
            &self,
            i: &[ArrayViewD<'_, f32>],
            _: ArrayViewD<'_, f32>,
            g: ArrayViewD<'_, f32>,
        ) -> Vec<Tensor> {
            vec![&g * &i[1]]
        }
    }
    let _ = check_gradients(&xy_inputs(), |v| v[0].tape().custom(&[v[0], v[1]], Short));
}

#[test]
fn checker_fails_on_a_nan_gradient() {
    struct NanGrad;
    impl CustomOp for NanGrad {
        fn forward(&self, i: &[ArrayViewD<'_, f32>]) -> Tensor {
            i[0].to_owned()
        }
        fn backward(
            &self,
            _: &[ArrayViewD<'_, f32>],
            _: ArrayViewD<'_, f32>,
            g: ArrayViewD<'_, f32>,
        ) -> Vec<Tensor> {
            vec![g.mapv(|_| f32::NAN)]
        }
    }
    let x = vec![uniform(&mut rng(3), &[3], -1.0, 1.0)];
    let err = check_gradients(&x, |v| v[0].tape().custom(&[v[0]], NanGrad)).unwrap_err();
    assert!(matches!(err, Error::GradientCheck { .. }), "unexpected error {err}");
}

// ---------------------------------------------------------------------------------------------------------
// NaN and inf propagate as IEEE arithmetic says (numpy and Keras do the same)
// ---------------------------------------------------------------------------------------------------------

/// An operation of one value, and of two.
type UnaryOp = for<'t> fn(Var<'t>) -> Var<'t>;
type BinaryOp = for<'t> fn(Var<'t>, Var<'t>) -> Var<'t>;

/// The value of `f` on constant inputs.
fn eval(inputs: &[Tensor], f: impl for<'t> Fn(&[Var<'t>]) -> Var<'t>) -> Tensor {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    let vars: Vec<_> = inputs.iter().map(|x| tape.constant(x.view())).collect();
    f(&vars).value()
}

#[test]
fn a_nan_input_makes_every_op_nan() {
    let x = array![[0.5f32, f32::NAN, -1.5], [2.0, -0.25, 1.0]].into_dyn();
    let y = array![[1.0f32, 0.5, 0.75], [-1.0, 2.0, 0.5]].into_dyn();
    let unary: Vec<(&str, UnaryOp)> = vec![
        ("relu", |v| v.relu()),
        ("leaky_relu", |v| v.leaky_relu(0.2)),
        ("elu", |v| v.elu(1.0)),
        ("selu", |v| v.selu()),
        ("sigmoid", |v| v.sigmoid()),
        ("tanh", |v| v.tanh()),
        ("softplus", |v| v.softplus()),
        ("softsign", |v| v.softsign()),
        ("gelu", |v| v.gelu()),
        ("swish", |v| v.swish()),
        ("exp", |v| v.exp()),
        ("abs", |v| v.abs()),
        ("square", |v| v.square()),
        ("clip", |v| v.clip(-1.0, 1.0)),
        ("neg", |v| v.neg()),
    ];
    for (name, f) in unary {
        let out = eval(std::slice::from_ref(&x), |v| f(v[0]));
        assert!(out[[0, 1]].is_nan(), "{name}({}) = {}", f32::NAN, out[[0, 1]]);
    }
    let binary: Vec<(&str, BinaryOp)> = vec![
        ("add", |a, b| a.add(b)),
        ("mul", |a, b| a.mul(b)),
        ("div", |a, b| a.div(b)),
        ("maximum", |a, b| a.maximum(b)),
        ("minimum", |a, b| a.minimum(b)),
    ];
    for (name, f) in binary {
        let out = eval(&[x.clone(), y.clone()], |v| f(v[0], v[1]));
        assert!(out[[0, 1]].is_nan(), "{name}(NaN, y)");
        let out = eval(&[y.clone(), x.clone()], |v| f(v[0], v[1]));
        assert!(out[[0, 1]].is_nan(), "{name}(y, NaN)");
    }
    // Row-wise ops: the NaN's row becomes NaN; the other row is untouched.
    for (name, out) in [
        ("softmax", eval(std::slice::from_ref(&x), |v| v[0].softmax(1))),
        ("log_softmax", eval(std::slice::from_ref(&x), |v| v[0].log_softmax(1))),
    ] {
        assert!(out.row_is_nan(0), "{name}: {out}");
        assert!(out.index_axis(Axis(0), 1).iter().all(|v| v.is_finite()), "{name}: {out}");
    }
    // Over axis 0, the NaN's column.
    let cols = eval(std::slice::from_ref(&x), |v| v[0].softmax(0)).reversed_axes();
    let finite = |r: usize| cols.index_axis(Axis(0), r).iter().all(|v| v.is_finite());
    assert!(cols.row_is_nan(1) && finite(0) && finite(2), "{cols}");
    let ce = eval(&[x.clone(), y.mapv(f32::abs)], |v| v[0].softmax_cross_entropy(v[1]));
    assert!(ce[[0]].is_nan() && ce[[1]].is_finite(), "softmax_cross_entropy: {ce}");
    let all_nan = ArrayD::from_elem(IxDyn(&[1, 3]), f32::NAN);
    assert!(eval(&[all_nan], |v| v[0].log_softmax(1)).iter().all(|v| v.is_nan()), "a row of NaN only");
    for (name, out) in [
        ("sum", eval(std::slice::from_ref(&x), |v| v[0].sum())),
        ("mean", eval(std::slice::from_ref(&x), |v| v[0].mean())),
        ("matmul", eval(&[x.clone(), y.clone().reversed_axes()], |v| v[0].matmul(v[1]))),
    ] {
        assert!(out.iter().any(|v| v.is_nan()), "{name}: {out}");
    }
    // concat moves the NaN to its place in the output, and makes nothing else NaN.
    for axis in [0, 1] {
        for (x_first, offset) in [(true, [0, 0]), (false, if axis == 0 { [2, 0] } else { [0, 3] })] {
            let inputs = if x_first { [x.clone(), y.clone()] } else { [y.clone(), x.clone()] };
            let out = eval(&inputs, |v| v[0].tape().concat(v, axis));
            let nan: Vec<_> = out.indexed_iter().filter(|(_, v)| v.is_nan()).map(|(i, _)| i).collect();
            assert_eq!(nan, [IxDyn(&[offset[0], 1 + offset[1]])], "concat on {axis}: {out}");
        }
    }
    // inf: relu keeps it, maximum keeps it, softmax of a row with +inf is NaN (inf - inf), as in numpy.
    let inf = array![[f32::INFINITY, 0.0, f32::NEG_INFINITY]].into_dyn();
    assert_eq!(
        eval(std::slice::from_ref(&inf), |v| v[0].relu()),
        array![[f32::INFINITY, 0.0, 0.0]].into_dyn()
    );
    assert!(eval(std::slice::from_ref(&inf), |v| v[0].softmax(1))[[0, 0]].is_nan());
}

/// The rows of a 2-D result as a helper for the test above.
trait RowIsNan {
    fn row_is_nan(&self, row: usize) -> bool;
}

impl RowIsNan for Tensor {
    fn row_is_nan(&self, row: usize) -> bool {
        self.index_axis(Axis(0), row).iter().all(|v| v.is_nan())
    }
}

#[test]
fn set_value_refuses_another_shape_and_keeps_the_weight() {
    let mut params = ParamStore::new();
    let w = params.add("dense/kernel", ArrayD::from_elem(IxDyn(&[2, 3]), 1.0f32), true);
    let err = params.set_value(w, ArrayD::zeros(IxDyn(&[3, 2])).view()).unwrap_err().to_string();
    assert!(err.contains("dense/kernel") && err.contains("[2, 3]") && err.contains("[3, 2]"), "{err}");
    assert_eq!(*params.value(w), ArrayD::from_elem(IxDyn(&[2, 3]), 1.0f32));
    params.set_value(w, ArrayD::from_elem(IxDyn(&[2, 3]), 5.0f32).view()).unwrap();
    assert_eq!(*params.value(w), ArrayD::from_elem(IxDyn(&[2, 3]), 5.0f32));
}

// ---------------------------------------------------------------------------------------------------------
// Gradients handed out as soon as they are final (Tape::backward_with)
// ---------------------------------------------------------------------------------------------------------

/// The identity, logging its backward rule's run: shows where in the pass each gradient is reported.
struct Probe {
    name: &'static str,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl CustomOp for Probe {
    fn forward(&self, inputs: &[ArrayViewD<'_, f32>]) -> Tensor {
        inputs[0].to_owned()
    }

    fn backward(
        &self,
        _inputs: &[ArrayViewD<'_, f32>],
        _output: ArrayViewD<'_, f32>,
        grad_output: ArrayViewD<'_, f32>,
    ) -> Vec<Tensor> {
        self.log.lock().unwrap().push(self.name.to_string());
        vec![grad_output.to_owned()]
    }
}

/// The parameters `backward_with` reported, in order, with the gradient each had when reported.
fn reported<'t>(tape: &'t Tape<'t>, loss: Var<'t>, grads: &mut Gradients) -> Vec<(ParamId, Tensor)> {
    let mut ready = Vec::new();
    tape.backward_with(loss, grads, |id, g| ready.push((id, g.to_array()))).unwrap();
    ready
}

/// Each reported gradient is the one the pass leaves, every gradient of the pass is reported exactly once.
fn assert_reports_final(ready: &[(ParamId, Tensor)], grads: &Gradients) {
    let mut ids: Vec<ParamId> = ready.iter().map(|(id, _)| *id).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "a parameter reported twice: {ready:?}");
    let computed: Vec<ParamId> = grads.iter().map(|(id, _)| id).collect();
    assert_eq!(ids, computed, "reported parameters are not the ones with gradients");
    for (id, g) in ready {
        assert_eq!(&grads.get(*id).unwrap().to_array(), g, "gradient of {id:?} changed after its report");
    }
}

#[test]
fn backward_with_reports_each_gradient_during_the_pass_after_its_last_reader() {
    let mut rng = rng(41);
    let mut params = ParamStore::new();
    let w1 = params.add("w1", uniform(&mut rng, &[3, 4], -1.0, 1.0), true);
    let b1 = params.add("b1", uniform(&mut rng, &[4], -1.0, 1.0), true);
    let w2 = params.add("w2", uniform(&mut rng, &[4, 2], -1.0, 1.0), true);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tape = Tape::new(&params);
    let x = tape.constant(uniform(&mut rng, &[5, 3], -1.0, 1.0).view());
    let h = x.matmul(tape.param(w1)).add(tape.param(b1)).tanh();
    let h = tape.custom(&[h], Probe { name: "probe 1", log: log.clone() });
    let y = h.matmul(tape.param(w2));
    let y = tape.custom(&[y], Probe { name: "probe 2", log: log.clone() });
    let loss = y.square().mean();
    let mut grads = Gradients::new();
    tape.backward_with(loss, &mut grads, |id, _| log.lock().unwrap().push(params.get(id).name.clone()))
        .unwrap();
    // w2 is reported before the backward pass reaches the first layer; b1 (read after w1) before w1.
    assert_eq!(*log.lock().unwrap(), ["probe 2", "w2", "probe 1", "b1", "w1"]);

    let mut again = Gradients::new();
    let ready = reported(&tape, loss, &mut again);
    assert_reports_final(&ready, &again);
    let mut plain = Gradients::new();
    tape.backward(loss, &mut plain).unwrap();
    for (id, g) in plain.iter() {
        assert_eq!(again.get(id).unwrap().to_array(), g.to_array(), "backward_with changed a gradient");
    }
}

#[test]
fn backward_with_reports_a_shared_weight_once_after_its_first_use() {
    let mut rng = rng(42);
    let mut params = ParamStore::new();
    let w = params.add("w", uniform(&mut rng, &[3, 3], -1.0, 1.0), true);
    let v = params.add("v", uniform(&mut rng, &[3, 3], -1.0, 1.0), true);
    let tape = Tape::new(&params);
    let x = tape.constant(uniform(&mut rng, &[2, 3], -1.0, 1.0).view());
    // w is read at the bottom and at the top (two nodes of the same parameter), v in between.
    let y = x.matmul(tape.param(w)).tanh().matmul(tape.param(v)).tanh().matmul(tape.param(w));
    let loss = y.square().sum();
    let mut grads = Gradients::new();
    let ready = reported(&tape, loss, &mut grads);
    assert_eq!(ready.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [v, w]);
    assert_reports_final(&ready, &grads);
}

#[test]
fn backward_with_skips_frozen_unused_and_later_weights() {
    let mut rng = rng(43);
    let mut params = ParamStore::new();
    let w = params.add("w", uniform(&mut rng, &[3, 2], -1.0, 1.0), true);
    let frozen = params.add("frozen", uniform(&mut rng, &[2, 2], -1.0, 1.0), false);
    let unused = params.add("unused", uniform(&mut rng, &[4], -1.0, 1.0), true);
    let after = params.add("after", uniform(&mut rng, &[2, 2], -1.0, 1.0), true);
    let tape = Tape::new(&params);
    let x = tape.constant(uniform(&mut rng, &[2, 3], -1.0, 1.0).view());
    let y = x.matmul(tape.param(w)).matmul(tape.param(frozen));
    let loss = y.square().sum();
    // Read only after the loss: no reason for it, no gradient.
    let _later = y.matmul(tape.param(after));
    let _ = unused;
    let mut grads = Gradients::new();
    let ready = reported(&tape, loss, &mut grads);
    assert_eq!(ready.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [w]);
    assert_reports_final(&ready, &grads);
}

#[test]
fn backward_with_reports_a_weight_that_is_the_loss() {
    let mut params = ParamStore::new();
    let w = params.add("w", array![[3.0f32]].into_dyn(), true);
    let tape = Tape::new(&params);
    let mut grads = Gradients::new();
    let ready = reported(&tape, tape.param(w), &mut grads);
    assert_eq!(ready, [(w, array![[1.0f32]].into_dyn())]);
    assert_reports_final(&ready, &grads);
}

#[test]
fn backward_with_reports_the_same_on_a_reused_workspace() {
    let mut rng = rng(44);
    let mut params = ParamStore::new();
    let w1 = params.add("w1", uniform(&mut rng, &[3, 4], -1.0, 1.0), true);
    let w2 = params.add("w2", uniform(&mut rng, &[4, 1], -1.0, 1.0), true);
    let x = uniform(&mut rng, &[6, 3], -1.0, 1.0);
    let mut ws = Workspace::new();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let tape = Tape::with_workspace(&params, ws);
        let loss = tape.constant(x.view()).matmul(tape.param(w1)).relu().matmul(tape.param(w2)).sum();
        let mut grads = Gradients::new();
        let ready = reported(&tape, loss, &mut grads);
        assert_reports_final(&ready, &grads);
        runs.push(ready);
        ws = tape.into_workspace();
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0].iter().map(|(id, _)| *id).collect::<Vec<_>>(), [w2, w1]);
}

#[test]
fn backward_with_refuses_what_backward_refuses_without_calling_the_hook() {
    let mut params = ParamStore::new();
    let w = params.add("w", array![[1.0f32, 2.0]].into_dyn(), true);
    let mut calls = 0;
    let mut grads = Gradients::new();

    let tape = Tape::new(&params);
    let not_scalar = tape.param(w).square();
    let err = tape.backward_with(not_scalar, &mut grads, |_, _| calls += 1).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");

    let inference = Tape::inference(&params, Workspace::new());
    let loss = inference.param(w).sum();
    let err = inference.backward_with(loss, &mut grads, |_, _| calls += 1).unwrap_err();
    assert!(err.to_string().contains("inference"), "{err}");
    assert_eq!(calls, 0);
}
