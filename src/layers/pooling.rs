//! Pooling over channels-last images: `MaxPooling2D`, `AveragePooling2D`, and their global forms.
//!
//! The max and average layers differ only in the reduction, so each pair is one generic layer and a marker
//! type ([`Max`], [`Average`]) that names it and applies its op. The layers are re-exported in
//! [`kerust::layers`](crate::layers); the marker types stay here, as `kerust::layers::Average` is Keras' merge
//! layer.
//!
//! ```
//! use kerust::layers::pooling::{Average, Max, Pooling2D};
//! use kerust::layers::{AveragePooling2D, Layer, MaxPooling2D};
//!
//! let max: MaxPooling2D = Pooling2D::<Max>::new(2);
//! let avg: AveragePooling2D = Pooling2D::<Average>::new(3);
//! assert_eq!((max.class_name(), avg.class_name()), ("MaxPooling2D", "AveragePooling2D"));
//! ```
use std::marker::PhantomData;

use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::spec_value;
use super::conv2d::{image_shape, positive, too_large};
use super::{CallContext, Layer, Size2};
use crate::autodiff::{window_output, Padding, ParamId, ParamStore, Var, WindowFault};
use crate::spec::Spec;
use crate::{Error, Result};

/// The reduction of a pooling layer.
pub trait PoolKind: Send + Sync + Clone + std::fmt::Debug + 'static {
    /// Keras' class name of the windowed layer (`MaxPooling2D`).
    const WINDOWED: &'static str;
    /// Keras' class name of the global layer (`GlobalMaxPooling2D`).
    const GLOBAL: &'static str;
    /// Applies the reduction to windows of `pool` moving by `strides`.
    fn pool<'t>(x: Var<'t>, pool: (usize, usize), strides: (usize, usize), padding: Padding) -> Var<'t>;
}

/// The maximum of each window ([`MaxPooling2D`], [`GlobalMaxPooling2D`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Max;

/// The mean of each window ([`AveragePooling2D`], [`GlobalAveragePooling2D`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Average;

impl PoolKind for Max {
    const WINDOWED: &'static str = "MaxPooling2D";
    const GLOBAL: &'static str = "GlobalMaxPooling2D";
    fn pool<'t>(x: Var<'t>, pool: (usize, usize), strides: (usize, usize), padding: Padding) -> Var<'t> {
        x.max_pool2d(pool, strides, padding)
    }
}

impl PoolKind for Average {
    const WINDOWED: &'static str = "AveragePooling2D";
    const GLOBAL: &'static str = "GlobalAveragePooling2D";
    fn pool<'t>(x: Var<'t>, pool: (usize, usize), strides: (usize, usize), padding: Padding) -> Var<'t> {
        x.avg_pool2d(pool, strides, padding)
    }
}

/// Pooling over windows of `pool_size` moving by `strides` (default: `pool_size`), Keras'
/// `MaxPooling2D`/`AveragePooling2D`. Use it through [`MaxPooling2D`] and [`AveragePooling2D`].
///
/// ```
/// use kerust::layers::{Layer, MaxPooling2D};
/// # use kerust::autodiff::ParamStore; use rand::SeedableRng;
/// let mut pool = MaxPooling2D::new(2);
/// # let (mut params, mut rng) = (ParamStore::new(), rand::rngs::StdRng::seed_from_u64(0));
/// assert_eq!(pool.build(&[26, 26, 32], &mut params, &mut rng)?, vec![13, 13, 32]);
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pooling2D<K: PoolKind> {
    settings: Pooling2DConfig,
    /// Pool size, strides and padding, resolved by `build`.
    window: Option<Window>,
    kind: PhantomData<K>,
}

/// A pooling window: size, strides, padding.
type Window = ((usize, usize), (usize, usize), Padding);

/// Keras' `MaxPooling2D(pool_size=(2, 2), strides=None, padding="valid")`.
pub type MaxPooling2D = Pooling2D<Max>;
/// Keras' `AveragePooling2D(pool_size=(2, 2), strides=None, padding="valid")`; with `"same"` padding each
/// window averages only its positions inside the image.
pub type AveragePooling2D = Pooling2D<Average>;

/// The settings of a windowed pooling layer, as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pooling2DConfig {
    name: Option<String>,
    pool_size: Size2,
    strides: Option<Size2>,
    #[serde(with = "spec_value")]
    padding: Spec<Padding>,
    input_shape: Option<Vec<usize>>,
}

impl<K: PoolKind> Default for Pooling2D<K> {
    /// Keras' default window, 2 x 2.
    fn default() -> Self {
        Self::new(2)
    }
}

impl<K: PoolKind> Pooling2D<K> {
    /// Pooling over windows of `pool_size` (`2` or `(2, 3)`), moving by the same.
    pub fn new(pool_size: impl Into<Size2>) -> Self {
        Self::from_settings(Pooling2DConfig {
            name: None,
            pool_size: pool_size.into(),
            strides: None,
            padding: Spec::Value(Padding::Valid),
            input_shape: None,
        })
    }

    pub(crate) fn from_settings(settings: Pooling2DConfig) -> Self {
        Pooling2D { settings, window: None, kind: PhantomData }
    }

    /// Steps between windows (default: the pool size).
    pub fn strides(mut self, strides: impl Into<Size2>) -> Self {
        self.settings.strides = Some(strides.into());
        self
    }

    /// `"valid"` (default) or `"same"`.
    pub fn padding(mut self, padding: impl Into<Spec<Padding>>) -> Self {
        self.settings.padding = padding.into();
        self
    }

    super::settings_builders!();
}

impl<K: PoolKind> Layer for Pooling2D<K> {
    fn class_name(&self) -> &'static str {
        K::WINDOWED
    }

    super::settings_accessors!();

    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        let s = &self.settings;
        positive("pool_size", s.pool_size)?;
        let strides = s.strides.unwrap_or(s.pool_size);
        positive("strides", strides)?;
        let padding = s.padding.resolve()?;
        let [h, w, c] = image_shape(K::WINDOWED, input_shape)?;
        let windows = [(h, s.pool_size.0, strides.0), (w, s.pool_size.1, strides.1)]
            .map(|(n, k, st)| window_output(n, k, st, 1, padding));
        let [oh, ow] = match windows {
            [Ok(oh), Ok(ow)] => [oh, ow],
            [Err(WindowFault::TooLarge), _] | [_, Err(WindowFault::TooLarge)] => {
                return Err(too_large(K::WINDOWED, input_shape, s.pool_size, strides, Size2(1, 1), padding))
            }
            _ => {
                return Err(Error::shape(
                    format!("{} input", K::WINDOWED),
                    format!(
                        "images at least as large as the pool {} (padding \"{}\")",
                        s.pool_size,
                        padding.name()
                    ),
                    crate::shapes::shape_str(input_shape),
                ))
            }
        };
        taps_fit(K::WINDOWED, input_shape, s.pool_size.0.min(h), s.pool_size.1.min(w))?;
        self.window = Some((s.pool_size.into(), strides.into(), padding));
        Ok(vec![oh, ow, c])
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        let (pool, strides, padding) = self.window.expect("pooling before build: models build layers first");
        K::pool(x, pool, strides, padding)
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }
}

/// Checks that a window's taps inside the image, `rows x cols`, can be counted in a `u32` (max pooling
/// records which tap each maximum came from): images of fewer than 2^32 pixels.
fn taps_fit(layer: &str, input_shape: &[usize], rows: usize, cols: usize) -> Result<()> {
    match rows.checked_mul(cols).map(u32::try_from) {
        Some(Ok(_)) => Ok(()),
        _ => Err(Error::shape(
            format!("{layer} input"),
            format!("windows of fewer than 2^32 taps inside the image; these have {rows} x {cols}"),
            crate::shapes::shape_str(input_shape),
        )),
    }
}

/// Pooling over each image's whole height and width: `(batch, h, w, c)` becomes `(batch, c)`, or
/// `(batch, 1, 1, c)` with `keepdims`. Use it through [`GlobalMaxPooling2D`] and [`GlobalAveragePooling2D`].
#[derive(Clone, Debug)]
pub struct GlobalPooling2D<K: PoolKind> {
    settings: GlobalPooling2DConfig,
    size: Option<(usize, usize)>,
    kind: PhantomData<K>,
}

/// Keras' `GlobalMaxPooling2D(keepdims=False)`.
pub type GlobalMaxPooling2D = GlobalPooling2D<Max>;
/// Keras' `GlobalAveragePooling2D(keepdims=False)`.
pub type GlobalAveragePooling2D = GlobalPooling2D<Average>;

/// The settings of a global pooling layer, as saved.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GlobalPooling2DConfig {
    name: Option<String>,
    keepdims: bool,
    input_shape: Option<Vec<usize>>,
}

impl<K: PoolKind> Default for GlobalPooling2D<K> {
    fn default() -> Self {
        Self::from_settings(GlobalPooling2DConfig::default())
    }
}

impl<K: PoolKind> GlobalPooling2D<K> {
    /// A global pooling layer.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn from_settings(settings: GlobalPooling2DConfig) -> Self {
        GlobalPooling2D { settings, size: None, kind: PhantomData }
    }

    /// Keep the pooled axes with length 1 (default false).
    pub fn keepdims(mut self, keepdims: bool) -> Self {
        self.settings.keepdims = keepdims;
        self
    }

    super::settings_builders!();
}

impl<K: PoolKind> Layer for GlobalPooling2D<K> {
    fn class_name(&self) -> &'static str {
        K::GLOBAL
    }

    super::settings_accessors!();

    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        let [h, w, c] = image_shape(K::GLOBAL, input_shape)?;
        taps_fit(K::GLOBAL, input_shape, h, w)?;
        self.size = Some((h, w));
        Ok(if self.settings.keepdims { vec![1, 1, c] } else { vec![c] })
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        let size = self.size.expect("pooling before build: models build layers first");
        let pooled = K::pool(x, size, size, Padding::Valid);
        if self.settings.keepdims {
            return pooled;
        }
        let shape = pooled.shape();
        pooled.reshape(&[shape[0], shape[3]])
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }
}
