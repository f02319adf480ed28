//! Pooling over channels-last sequences: `MaxPooling1D`, `AveragePooling1D`, and their global forms, on the
//! 2-D pooling kernels with sequences one row high.
//!
//! As in [`pooling`](super::pooling), each pair is one generic layer over the marker types
//! [`Max`] and [`Average`]. The global average honours a mask as Keras does (masked steps are left out of
//! the mean); the global maximum ignores it, as Keras 3's `GlobalMaxPooling1D` does.
//!
//! ```
//! use kerust::layers::pooling::{Average, Max};
//! use kerust::layers::pooling1d::Pooling1D;
//! use kerust::layers::{AveragePooling1D, Layer, MaxPooling1D};
//!
//! let max: MaxPooling1D = Pooling1D::<Max>::new(2);
//! let avg: AveragePooling1D = Pooling1D::<Average>::new(3);
//! assert_eq!((max.class_name(), avg.class_name()), ("MaxPooling1D", "AveragePooling1D"));
//! ```
use std::marker::PhantomData;

use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::spec_value;
use super::conv1d::{positive1, sequence_shape, window_1d, Size1};
use super::pooling::{Average, Max, PoolKind};
use super::{CallContext, Layer};
use crate::autodiff::{Padding, Padding1d, ParamId, ParamStore, Var};
use crate::spec::Spec;
use crate::Result;

/// The reduction of a 1-D pooling layer: [`Max`] or [`Average`].
pub trait PoolKind1D: PoolKind {
    /// Keras' class name of the windowed layer (`MaxPooling1D`).
    const WINDOWED_1D: &'static str;
    /// Keras' class name of the global layer (`GlobalMaxPooling1D`).
    const GLOBAL_1D: &'static str;
    /// Whether the global layer honours a mask (Keras' `supports_masking`).
    const MASKED: bool;
    /// Applies the reduction to windows of `pool` steps moving by `stride`.
    fn pool1d<'t>(x: Var<'t>, pool: usize, stride: usize, padding: Padding) -> Var<'t>;
}

impl PoolKind1D for Max {
    const WINDOWED_1D: &'static str = "MaxPooling1D";
    const GLOBAL_1D: &'static str = "GlobalMaxPooling1D";
    const MASKED: bool = false;
    fn pool1d<'t>(x: Var<'t>, pool: usize, stride: usize, padding: Padding) -> Var<'t> {
        x.max_pool1d(pool, stride, padding)
    }
}

impl PoolKind1D for Average {
    const WINDOWED_1D: &'static str = "AveragePooling1D";
    const GLOBAL_1D: &'static str = "GlobalAveragePooling1D";
    const MASKED: bool = true;
    fn pool1d<'t>(x: Var<'t>, pool: usize, stride: usize, padding: Padding) -> Var<'t> {
        x.avg_pool1d(pool, stride, padding)
    }
}

/// Pooling over windows of `pool_size` steps moving by `strides` (default: `pool_size`), Keras'
/// `MaxPooling1D`/`AveragePooling1D`. Use it through [`MaxPooling1D`] and [`AveragePooling1D`].
///
/// ```
/// use kerust::layers::{Layer, MaxPooling1D};
/// # use kerust::autodiff::ParamStore; use rand::SeedableRng;
/// let mut pool = MaxPooling1D::new(2);
/// # let (mut params, mut rng) = (ParamStore::new(), rand::rngs::StdRng::seed_from_u64(0));
/// assert_eq!(pool.build(&[9, 32], &mut params, &mut rng)?, vec![4, 32]);
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pooling1D<K: PoolKind1D> {
    settings: Pooling1DConfig,
    /// Pool size, stride and padding, resolved by `build`.
    window: Option<(usize, usize, Padding)>,
    kind: PhantomData<K>,
}

/// Keras' `MaxPooling1D(pool_size=2, strides=None, padding="valid")`.
pub type MaxPooling1D = Pooling1D<Max>;
/// Keras' `AveragePooling1D(pool_size=2, strides=None, padding="valid")`; with `"same"` padding each window
/// averages only its steps inside the sequence.
pub type AveragePooling1D = Pooling1D<Average>;

/// The settings of a windowed 1-D pooling layer, as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pooling1DConfig {
    name: Option<String>,
    pool_size: Size1,
    strides: Option<Size1>,
    #[serde(with = "spec_value")]
    padding: Spec<Padding>,
    input_shape: Option<Vec<usize>>,
}

impl<K: PoolKind1D> Default for Pooling1D<K> {
    /// Keras' default window, 2 steps.
    fn default() -> Self {
        Self::new(2)
    }
}

impl<K: PoolKind1D> Pooling1D<K> {
    /// Pooling over windows of `pool_size` steps, moving by the same.
    pub fn new(pool_size: usize) -> Self {
        Self::from_settings(Pooling1DConfig {
            name: None,
            pool_size: Size1(pool_size),
            strides: None,
            padding: Spec::Value(Padding::Valid),
            input_shape: None,
        })
    }

    pub(crate) fn from_settings(settings: Pooling1DConfig) -> Self {
        Pooling1D { settings, window: None, kind: PhantomData }
    }

    /// Steps between windows (default: the pool size).
    pub fn strides(mut self, strides: usize) -> Self {
        self.settings.strides = Some(Size1(strides));
        self
    }

    /// `"valid"` (default) or `"same"`.
    pub fn padding(mut self, padding: impl Into<Spec<Padding>>) -> Self {
        self.settings.padding = padding.into();
        self
    }

    super::settings_builders!();
}

impl<K: PoolKind1D> Layer for Pooling1D<K> {
    fn class_name(&self) -> &'static str {
        K::WINDOWED_1D
    }

    super::settings_accessors!();

    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        let s = &self.settings;
        positive1("pool_size", s.pool_size.0)?;
        let stride = s.strides.unwrap_or(s.pool_size).0;
        positive1("strides", stride)?;
        let padding = s.padding.resolve()?;
        let [steps, c] = sequence_shape(K::WINDOWED_1D, input_shape)?;
        let padding_1d = match padding {
            Padding::Valid => Padding1d::Valid,
            Padding::Same => Padding1d::Same,
        };
        let out = window_1d(K::WINDOWED_1D, input_shape, steps, (s.pool_size.0, stride, 1), padding_1d)?;
        self.window = Some((s.pool_size.0, stride, padding));
        Ok(vec![out, c])
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        let (pool, stride, padding) = self.window.expect("pooling before build: models build layers first");
        K::pool1d(x, pool, stride, padding)
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }
}

/// Pooling over each sequence's whole length: `(batch, steps, c)` becomes `(batch, c)`, or `(batch, 1, c)`
/// with `keepdims`. Use it through [`GlobalMaxPooling1D`] and [`GlobalAveragePooling1D`].
///
/// ```
/// use kerust::autodiff::{ParamStore, Tape};
/// use kerust::layers::{CallContext, GlobalAveragePooling1D, Layer};
/// use ndarray::array;
/// use rand::SeedableRng;
///
/// let (mut params, mut rng) = (ParamStore::new(), rand::rngs::StdRng::seed_from_u64(0));
/// let mut pool = GlobalAveragePooling1D::new();
/// assert_eq!(pool.build(&[3, 1], &mut params, &mut rng)?, vec![1]);
/// let tape = Tape::inference(&params, Default::default());
/// let x = tape.constant(array![[[1.0f32], [2.0], [6.0]]].into_dyn().view());
/// let mask = tape.constant(array![[0.0f32, 1.0, 1.0]].into_dyn().view());
/// let mut ctx = CallContext::new(false, &mut rng);
/// // The masked first step is left out of the mean.
/// assert_eq!(pool.call_masked(&[x], &[Some(mask)], &mut ctx).value(), array![[4.0f32]].into_dyn());
/// assert_eq!(pool.call_masked(&[x], &[None], &mut ctx).value(), array![[3.0f32]].into_dyn());
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct GlobalPooling1D<K: PoolKind1D> {
    settings: GlobalPooling1DConfig,
    steps: Option<usize>,
    kind: PhantomData<K>,
}

/// Keras' `GlobalMaxPooling1D(keepdims=False)`; it ignores a mask, as Keras 3's does.
pub type GlobalMaxPooling1D = GlobalPooling1D<Max>;
/// Keras' `GlobalAveragePooling1D(keepdims=False)`; with a mask, the mean of the unmasked steps.
pub type GlobalAveragePooling1D = GlobalPooling1D<Average>;

/// The settings of a global 1-D pooling layer, as saved.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GlobalPooling1DConfig {
    name: Option<String>,
    keepdims: bool,
    input_shape: Option<Vec<usize>>,
}

impl<K: PoolKind1D> Default for GlobalPooling1D<K> {
    fn default() -> Self {
        Self::from_settings(GlobalPooling1DConfig::default())
    }
}

impl<K: PoolKind1D> GlobalPooling1D<K> {
    /// A global pooling layer.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn from_settings(settings: GlobalPooling1DConfig) -> Self {
        GlobalPooling1D { settings, steps: None, kind: PhantomData }
    }

    /// Keep the steps axis with length 1 (default false).
    pub fn keepdims(mut self, keepdims: bool) -> Self {
        self.settings.keepdims = keepdims;
        self
    }

    super::settings_builders!();
}

impl<K: PoolKind1D> Layer for GlobalPooling1D<K> {
    fn class_name(&self) -> &'static str {
        K::GLOBAL_1D
    }

    super::settings_accessors!();

    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        let [steps, c] = sequence_shape(K::GLOBAL_1D, input_shape)?;
        self.steps = Some(steps);
        Ok(if self.settings.keepdims { vec![1, c] } else { vec![c] })
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        let steps = self.steps.expect("pooling before build: models build layers first");
        let pooled = K::pool1d(x, steps, steps, Padding::Valid);
        if self.settings.keepdims {
            return pooled;
        }
        let shape = pooled.shape();
        pooled.reshape(&[shape[0], shape[2]])
    }

    fn supports_masking(&self) -> bool {
        K::MASKED
    }

    /// No mask comes out: the steps axis is gone (Keras' `compute_mask` returns None).
    fn compute_mask<'t>(&self, _: &[Var<'t>], _: &[Option<Var<'t>>]) -> Option<Var<'t>> {
        None
    }

    fn call_masked<'t>(
        &self,
        inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
        ctx: &mut CallContext<'_>,
    ) -> Var<'t> {
        let (x, mask) = (inputs[0], masks.first().copied().flatten());
        let Some(mask) = mask.filter(|_| K::MASKED) else {
            return self.call(x, ctx);
        };
        // Keras: sum(where(mask, x, 0), steps) / sum(mask, steps); a fully masked row is 0 / 0 there too.
        let shape = x.shape();
        let (batch, steps) = (shape[0], shape[1]);
        assert_eq!(mask.shape(), [batch, steps], "{}: the mask must be (batch, steps)", K::GLOBAL_1D);
        let keepdims = self.settings.keepdims;
        let sums = x.mul(mask.reshape(&[batch, steps, 1])).sum_axes(&[1], keepdims);
        let counts = mask.sum_axes(&[1], true);
        let counts = if keepdims { counts.reshape(&[batch, 1, 1]) } else { counts };
        sums.div(counts)
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }
}
