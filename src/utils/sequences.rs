//! `pad_sequences`: Keras' `keras.utils.pad_sequences`, sequences of different lengths into one 2-D array.
use std::str::FromStr;

use ndarray::Array2;

use crate::{Error, Result};

/// Which end of a sequence padding is added to or truncation removes from: Keras' `"pre"` (the start) or
/// `"post"` (the end). Parses from those strings.
///
/// ```
/// use kerust::utils::Side;
/// assert_eq!("post".parse::<Side>()?, Side::Post);
/// assert!("middle".parse::<Side>().is_err());
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The start of the sequence (Keras' `"pre"`, the default for both padding and truncating).
    Pre,
    /// The end of the sequence (Keras' `"post"`).
    Post,
}

impl FromStr for Side {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pre" => Ok(Side::Pre),
            "post" => Ok(Side::Post),
            _ => Err(Error::invalid_argument("padding/truncating", format!("{s:?}"), "\"pre\" or \"post\"")),
        }
    }
}

mod sealed {
    /// A number on its way from one element type to another, exactly.
    #[derive(Clone, Copy, Debug)]
    pub enum Scalar {
        Int(i128),
        Float(f64),
    }
    pub trait Sealed {}
}
use sealed::Scalar;

/// An element type of [`PadSequences`]' input and output: the integer types and `f32`/`f64`.
///
/// Converting from one to another follows numpy's `np.asarray(x, dtype)`, as Keras does: a float becomes an
/// integer by truncation toward zero (`1.7` to `1`, `-2.5` to `-2`), an integer becomes the nearest float. A
/// value the output type cannot hold (`300` as `u8`, NaN as an integer) is an error, where numpy would wrap
/// or produce an arbitrary number.
pub trait PadElement: Copy + std::fmt::Debug + sealed::Sealed {
    #[doc(hidden)]
    fn to_scalar(self) -> Scalar;
    #[doc(hidden)]
    fn from_scalar(s: Scalar) -> Option<Self>;
}

macro_rules! int_element {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl PadElement for $t {
            fn to_scalar(self) -> Scalar {
                Scalar::Int(self as i128)
            }
            fn from_scalar(s: Scalar) -> Option<Self> {
                match s {
                    Scalar::Int(i) => <$t>::try_from(i).ok(),
                    // Truncation toward zero; NaN and values beyond the type's range are refused.
                    // `as i128` is exact for a whole float below 2^127 and saturates beyond, where every
                    // type here is out of range anyway.
                    Scalar::Float(f) if f.is_finite() => <$t>::try_from(f.trunc() as i128).ok(),
                    Scalar::Float(_) => None,
                }
            }
        }
    )*};
}
int_element!(i8, i16, i32, i64, u8, u16, u32, u64, usize);

macro_rules! float_element {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl PadElement for $t {
            fn to_scalar(self) -> Scalar {
                Scalar::Float(self as f64)
            }
            fn from_scalar(s: Scalar) -> Option<Self> {
                Some(match s {
                    Scalar::Int(i) => i as $t,
                    Scalar::Float(f) => f as $t,
                })
            }
        }
    )*};
}
float_element!(f32, f64);

/// Keras' `pad_sequences` as a builder: pads (and truncates) sequences of different lengths into one array of
/// shape `(number of sequences, maxlen)`, element type `T`.
///
/// Keras' arguments map to the builder's methods: `maxlen` (default: the longest sequence's length),
/// `padding` and `truncating` ([`Side::Pre`] by default: pad at the start, and cut the start of sequences
/// longer than `maxlen`), `value` (default 0) and `dtype`, which is the type of `value`: Keras' default
/// `"int32"` is `PadSequences<i32>`, and `.value(0.0f32)` gives `f32` output. The input elements are any
/// [`PadElement`] type (`i64` word indices as [`imdb`](crate::datasets::imdb) gives them, `f32`, ...).
///
/// ```
/// use kerust::utils::{PadSequences, Side};
/// use ndarray::array;
///
/// let sequences = vec![vec![1i64, 2, 3], vec![4], vec![5, 6, 7, 8, 9]];
/// assert_eq!(
///     PadSequences::new().maxlen(4).pad(&sequences)?,
///     array![[0, 1, 2, 3], [0, 0, 0, 4], [6, 7, 8, 9]]
/// );
/// let post = PadSequences::new().padding(Side::Post).truncating(Side::Post).value(-1.0f32);
/// assert_eq!(
///     post.maxlen(2).pad(&sequences)?,
///     array![[1.0, 2.0], [4.0, -1.0], [5.0, 6.0]]
/// );
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// Sequences of vectors (Keras' `sample_shape`) are not supported: each sequence is a slice of numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PadSequences<T = i32> {
    maxlen: Option<usize>,
    padding: Side,
    truncating: Side,
    value: T,
}

impl Default for PadSequences<i32> {
    fn default() -> Self {
        PadSequences::new()
    }
}

impl PadSequences<i32> {
    /// Keras' defaults: `maxlen=None`, `dtype="int32"`, `padding="pre"`, `truncating="pre"`, `value=0`.
    pub fn new() -> Self {
        PadSequences { maxlen: None, padding: Side::Pre, truncating: Side::Pre, value: 0 }
    }
}

impl<T: PadElement> PadSequences<T> {
    /// The length of every output row. Keras quirk kept: `maxlen(0)` with [`Side::Pre`] truncation is an
    /// error as soon as a sequence is not empty (Keras' `s[-0:]` keeps the whole sequence).
    pub fn maxlen(mut self, maxlen: usize) -> Self {
        self.maxlen = Some(maxlen);
        self
    }

    /// Where padding goes (default [`Side::Pre`]).
    pub fn padding(mut self, side: Side) -> Self {
        self.padding = side;
        self
    }

    /// Which end of a sequence longer than `maxlen` is cut (default [`Side::Pre`]).
    pub fn truncating(mut self, side: Side) -> Self {
        self.truncating = side;
        self
    }

    /// The padding value; its type is the output's element type (Keras' `dtype`).
    pub fn value<U: PadElement>(self, value: U) -> PadSequences<U> {
        PadSequences { maxlen: self.maxlen, padding: self.padding, truncating: self.truncating, value }
    }

    /// Pads `sequences` into an array of shape `(sequences.len(), maxlen)`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `maxlen` is not given and there are no sequences (Keras cannot take the
    /// longest of none either), for `maxlen(0)` with [`Side::Pre`] truncation and a non-empty sequence (as
    /// Keras fails), or for an element the output type cannot hold (named with its position);
    /// [`Error::Allocation`] if the array is larger than this machine can allocate.
    pub fn pad<S, A>(&self, sequences: &[S]) -> Result<Array2<T>>
    where
        S: AsRef<[A]>,
        A: PadElement,
    {
        let maxlen = match self.maxlen {
            Some(m) => m,
            None => sequences.iter().map(|s| s.as_ref().len()).max().ok_or_else(|| {
                Error::invalid_argument(
                    "maxlen",
                    "None",
                    "the longest sequence's length cannot be taken from no sequences; give maxlen",
                )
            })?,
        };
        let shape = [sequences.len(), maxlen];
        let size = crate::memory::element_count(&shape, || "pad_sequences' array".into())?;
        let mut buf = crate::memory::try_vec::<T>(size, || "pad_sequences' array".into(), &shape)?;
        buf.resize(size, self.value);
        let mut out = Array2::from_shape_vec(shape, buf)?;
        for (i, (s, mut row)) in sequences.iter().zip(out.rows_mut()).enumerate() {
            let s = s.as_ref();
            if s.is_empty() {
                continue;
            }
            let kept = match self.truncating {
                Side::Pre if maxlen == 0 => {
                    return Err(Error::invalid_argument(
                        "maxlen",
                        0,
                        format!(
                            "with truncating \"pre\", Keras keeps all of sequence {i} (s[-0:]) and cannot fit its {} \
                             elements in 0 columns; use truncating \"post\" for an empty result, or a positive maxlen",
                            s.len()
                        ),
                    ))
                }
                Side::Pre => &s[s.len().saturating_sub(maxlen)..],
                Side::Post => &s[..s.len().min(maxlen)],
            };
            let start = match self.padding {
                Side::Pre => maxlen - kept.len(),
                Side::Post => 0,
            };
            let offset = if self.truncating == Side::Pre { s.len() - kept.len() } else { 0 };
            for (j, &v) in kept.iter().enumerate() {
                row[start + j] = T::from_scalar(v.to_scalar()).ok_or_else(|| {
                    Error::invalid_argument(
                        "sequences",
                        format!("{v:?} at sequence {i}, position {}", offset + j),
                        format!("a value the output type {} can hold", std::any::type_name::<T>()),
                    )
                })?;
            }
        }
        Ok(out)
    }
}

/// [`PadSequences`] with Keras' defaults but `maxlen`: `pad_sequences(sequences, maxlen)` into `i32`, padding
/// and truncating at the start.
///
/// ```
/// let x = kerust::utils::pad_sequences(&[vec![1i64, 2], vec![3, 4, 5]], Some(2))?;
/// assert_eq!(x, ndarray::array![[1, 2], [4, 5]]);
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// # Errors
/// As [`PadSequences::pad`].
pub fn pad_sequences<S, A>(sequences: &[S], maxlen: Option<usize>) -> Result<Array2<i32>>
where
    S: AsRef<[A]>,
    A: PadElement,
{
    let builder = PadSequences::new();
    match maxlen {
        Some(m) => builder.maxlen(m).pad(sequences),
        None => builder.pad(sequences),
    }
}
