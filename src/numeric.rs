//! [`Numeric`]: the element types a Keras user passes without thinking (`u8` images and labels, `i64` labels,
//! `f64` arrays), converted to `f32` once, where the data enters the library.
use ndarray::{ArrayView, CowArray, Dimension};

mod sealed {
    pub trait Sealed {}
}

/// An element type that `fit`, `evaluate`, `predict`, `train_on_batch` and `to_categorical` accept.
///
/// Keras casts inputs to `float32`; kerust does the same, once per call: `f32` data is borrowed as it is, any
/// other type is converted to an `f32` copy (`u8` 255 becomes 255.0; `f64` rounds to the nearest `f32`, NaN and
/// infinities stay what they are). Implemented for `f32`, `f64`, `u8`, `u16`, `u32`, `u64`, `i8`, `i16`, `i32`,
/// `i64`, `usize` and `isize`; sealed.
///
/// ```
/// use kerust::Numeric;
/// use ndarray::array;
///
/// let labels = array![3u8, 0, 9];
/// assert_eq!(Numeric::to_f32_array(labels.view()), array![3.0f32, 0.0, 9.0]);
/// assert_eq!(2.0f64.whole(), Some(2));
/// assert_eq!(2.5f64.whole(), None);
/// ```
pub trait Numeric:
    Copy + Send + Sync + std::fmt::Display + std::fmt::Debug + 'static + sealed::Sealed
{
    /// The value as `f32` (Rust's `as` conversion: nearest value, saturating at the float range).
    fn to_f32(self) -> f32;

    /// The value as a whole number, or `None` for a fraction, NaN or an infinity. Integers above `i64::MAX`
    /// give `i64::MAX` (out of range for any class count).
    fn whole(self) -> Option<i64>;

    /// The array as `f32`: borrowed when it already is, converted otherwise.
    fn to_f32_array<D: Dimension>(array: ArrayView<'_, Self, D>) -> CowArray<'_, f32, D> {
        CowArray::from(array.mapv(Self::to_f32))
    }
}

impl sealed::Sealed for f32 {}
impl Numeric for f32 {
    fn to_f32(self) -> f32 {
        self
    }

    fn whole(self) -> Option<i64> {
        f64::from(self).whole()
    }

    fn to_f32_array<D: Dimension>(array: ArrayView<'_, f32, D>) -> CowArray<'_, f32, D> {
        CowArray::from(array)
    }
}

impl sealed::Sealed for f64 {}
impl Numeric for f64 {
    fn to_f32(self) -> f32 {
        self as f32
    }

    fn whole(self) -> Option<i64> {
        // i64 holds [-2^63, 2^63); `as` would saturate silently past it.
        const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
        (self.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&self)).then_some(self as i64)
    }
}

/// Integers: `to_i64` turns one into a class index candidate (saturating at `i64::MAX` for the wide types).
macro_rules! integers {
    ($to_i64:expr => $($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Numeric for $t {
            fn to_f32(self) -> f32 {
                self as f32
            }

            #[allow(clippy::useless_conversion)] // i64 from i64
            fn whole(self) -> Option<i64> {
                Some(($to_i64)(self))
            }
        }
    )*};
}
integers!(i64::from => u8, u16, u32, i8, i16, i32, i64);
integers!(|v| i64::try_from(v).unwrap_or(i64::MAX) => u64, usize, isize);

/// `1 - x` as Keras computes it for an `f32` setting `x` (Adam's `1 - beta_1`, RMSprop's `1 - rho`,
/// BatchNormalization's `1 - momentum`): Keras holds the setting as a Python float, subtracts in double
/// precision and casts the result to `float32` where it meets a tensor. Subtracting in `f32` from the rounded
/// setting differs: `1 - 0.999f32` is `9.9998713e-4`, Keras' constant `1e-3`. The setting is read as its
/// shortest decimal form, the number the user wrote (`0.999`, not `0.999000012874603`).
///
/// Called every training step (optimizers, BatchNormalization), so the decimal form is written into a stack
/// buffer rather than a `String`.
pub(crate) fn one_minus_as_keras(x: f32) -> f32 {
    use std::fmt::Write;
    /// Room for any `f32`'s `Display` form (the longest, the smallest subnormals and `f32::MAX` written out in
    /// full, take under 50 bytes); longer output would be refused and fall back to the `f32` value.
    struct Stack {
        bytes: [u8; 64],
        len: usize,
    }
    impl Write for Stack {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut buf = Stack { bytes: [0; 64], len: 0 };
    let written = write!(buf, "{x}")
        .ok()
        .and_then(|()| std::str::from_utf8(&buf.bytes[..buf.len]).ok())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::from(x));
    (1.0 - written) as f32
}

#[cfg(test)]
mod one_minus_tests {
    use super::one_minus_as_keras;

    #[test]
    fn one_minus_is_keras_double_precision_constant() {
        // Keras: float32(1.0 - 0.999), float32(1.0 - 0.9), float32(1.0 - 0.99).
        assert_eq!(one_minus_as_keras(0.999), 0.001f32);
        assert_eq!(one_minus_as_keras(0.9), 0.1f32);
        assert_eq!(one_minus_as_keras(0.99), (1.0f64 - 0.99) as f32);
        assert_ne!(one_minus_as_keras(0.999), 1.0 - 0.999f32);
        // Long decimal forms (subnormals print every digit) still read exactly or fall back to the f32 value.
        for x in [f32::MIN_POSITIVE, 1e-45, f32::MAX, 0.0, 1.0] {
            assert_eq!(one_minus_as_keras(x), (1.0 - x.to_string().parse::<f64>().unwrap()) as f32, "{x}");
        }
        assert_eq!(one_minus_as_keras(0.0), 1.0);
    }
}
