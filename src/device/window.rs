//! The geometry of sliding windows (convolution and pooling): how a window slides along one spatial axis.
//! Shape math that the ops check when they record a node, the layers when they are built, and every backend's
//! image kernels follow.
use serde::{Deserialize, Serialize};

/// Keras' `padding`: `"valid"` (no padding: the window stays inside the input) or `"same"` (zeros, or
/// ignored positions for pooling, around the input so that the output has `ceil(input / stride)` positions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// No padding (Keras' default).
    #[default]
    Valid,
    /// Pad so that the output length is `ceil(input / stride)`; the odd element goes after, as in TensorFlow.
    Same,
}

impl Padding {
    /// Keras' name: `"valid"` or `"same"`.
    pub fn name(self) -> &'static str {
        match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
        }
    }
}

impl std::str::FromStr for Padding {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            _ => Err(crate::Error::UnknownName {
                kind: "padding",
                name: s.into(),
                known: "valid, same".into(),
            }),
        }
    }
}

crate::spec::impl_spec!(Padding);

/// Keras' `padding` of a 1-D convolution (`Conv1D`): [`Padding`]'s two, or `"causal"`, zeros before the
/// sequence only (`dilation * (size - 1)` of them) so that output step `t` sees input steps up to `t` and the
/// output has `ceil(input / stride)` steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding1d {
    /// No padding (Keras' default).
    #[default]
    Valid,
    /// As [`Padding::Same`].
    Same,
    /// Zeros before the sequence only: no output step sees a later input step.
    Causal,
}

impl Padding1d {
    /// Keras' name: `"valid"`, `"same"` or `"causal"`.
    pub fn name(self) -> &'static str {
        match self {
            Padding1d::Valid => "valid",
            Padding1d::Same => "same",
            Padding1d::Causal => "causal",
        }
    }
}

impl std::str::FromStr for Padding1d {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "valid" => Ok(Padding1d::Valid),
            "same" => Ok(Padding1d::Same),
            "causal" => Ok(Padding1d::Causal),
            _ => Err(crate::Error::UnknownName {
                kind: "padding",
                name: s.into(),
                known: "valid, same, causal".into(),
            }),
        }
    }
}

crate::spec::impl_spec!(Padding1d);

/// Why a window cannot slide along an axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WindowFault {
    /// A setting is 0, or with `valid` padding the window is longer than the input.
    DoesNotFit,
    /// The window's extent (`dilation * (size - 1) + 1`) or the position of its last tap in the last window
    /// (counted from the start of the padding) is beyond what a `usize` can hold.
    TooLarge,
}

/// The output length of a window of `size` (taps `dilation` apart) moving by `stride` over `input` elements,
/// or why there is none: what layers check when they are built.
pub(crate) fn window_output(
    input: usize,
    size: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
) -> Result<usize, WindowFault> {
    Axis1::new(input, size, stride, dilation, padding).map(|a| a.output)
}

/// One spatial axis of a sliding window.
///
/// Every position the kernels compute, `o * stride + k * dilation` for an output `o < output` and a tap
/// `k < size` (counted from the start of the padding), is at most `(output - 1) * stride + extent - 1`, which
/// [`Axis1::new`] checks fits in a `usize`; so the unchecked arithmetic of [`Axis1::inside`],
/// [`Axis1::source`] and [`Axis1::taps`] cannot wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis1 {
    /// Input length.
    pub(crate) input: usize,
    /// Window size (kernel or pool).
    pub(crate) size: usize,
    pub(crate) stride: usize,
    pub(crate) dilation: usize,
    /// Output length.
    pub(crate) output: usize,
    /// Padding before the first element.
    pub(crate) pad: usize,
}

impl Axis1 {
    /// The output length and padding of a window of `size` (taps `dilation` apart) moving by `stride` over
    /// `input` elements; an error if a valid window does not fit (or `stride`/`dilation`/`size` is 0), or if
    /// a position on the padded axis would not fit in a `usize`.
    pub(crate) fn new(
        input: usize,
        size: usize,
        stride: usize,
        dilation: usize,
        padding: Padding,
    ) -> Result<Self, WindowFault> {
        use WindowFault::{DoesNotFit, TooLarge};
        if size == 0 || stride == 0 || dilation == 0 {
            return Err(DoesNotFit);
        }
        let extent = dilation.checked_mul(size - 1).and_then(|e| e.checked_add(1)).ok_or(TooLarge)?;
        let (output, pad) = match padding {
            // The last window ends inside the input: every position is below `input`.
            Padding::Valid => ((input.checked_sub(extent).ok_or(DoesNotFit)? / stride) + 1, 0),
            Padding::Same => {
                let output = input.div_ceil(stride);
                let reach = (output.max(1) - 1)
                    .checked_mul(stride)
                    .and_then(|r| r.checked_add(extent))
                    .ok_or(TooLarge)?;
                (output, reach.saturating_sub(input) / 2)
            }
        };
        Ok(Axis1 { input, size, stride, dilation, output, pad })
    }

    /// [`Axis1::new`] with 1-D padding: `causal` puts all of it, `dilation * (size - 1)`, before the input.
    pub(crate) fn new_1d(
        input: usize,
        size: usize,
        stride: usize,
        dilation: usize,
        padding: Padding1d,
    ) -> Result<Self, WindowFault> {
        match padding {
            Padding1d::Valid => Self::new(input, size, stride, dilation, Padding::Valid),
            Padding1d::Same => Self::new(input, size, stride, dilation, Padding::Same),
            Padding1d::Causal => {
                // A valid window over the input with `extent - 1` zeros before it: the same reach check, then
                // the padding moved out of the input.
                let pad = (size.max(1) - 1).checked_mul(dilation).ok_or(WindowFault::TooLarge)?;
                let padded = input.checked_add(pad).ok_or(WindowFault::TooLarge)?;
                if input == 0 {
                    return Err(WindowFault::DoesNotFit);
                }
                let axis = Self::new(padded, size, stride, dilation, Padding::Valid)?;
                Ok(Axis1 { input, pad, ..axis })
            }
        }
    }

    /// The input position of the first tap of the window at output position `o`, if the whole window is inside
    /// the input.
    #[inline]
    pub(crate) fn inside(&self, o: usize) -> Option<usize> {
        let first = (o * self.stride).checked_sub(self.pad)?;
        (first + (self.size - 1) * self.dilation < self.input).then_some(first)
    }

    /// The input position of tap `k` of the window at output position `o`, if it is inside the input.
    #[inline]
    pub(crate) fn source(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.stride + k * self.dilation).checked_sub(self.pad).filter(|&i| i < self.input)
    }

    /// The taps of the window at output position `o` that are inside the input: a range of `k`, at most
    /// `min(size, input)` long however large the window, so that walking it costs no more than the input.
    #[inline]
    pub(crate) fn taps(&self, o: usize) -> std::ops::Range<usize> {
        let start = o * self.stride;
        // The first tap at or after the padding, and the first one after the input (`pad + input` is at most
        // the checked reach: the padding before is at most half of what the reach exceeds the input by).
        let first = self.pad.saturating_sub(start).div_ceil(self.dilation);
        let end = (self.pad + self.input).saturating_sub(start).div_ceil(self.dilation).min(self.size);
        first..end.max(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lengths_match_keras() {
        // Keras: valid -> floor((n - extent) / s) + 1; same -> ceil(n / s).
        let valid = |n, k, s, d| Axis1::new(n, k, s, d, Padding::Valid).map(|a| a.output).ok();
        assert_eq!(valid(28, 3, 1, 1), Some(26));
        assert_eq!(valid(13, 2, 2, 1), Some(6));
        assert_eq!(valid(7, 3, 2, 2), Some(2)); // extent 5
        assert_eq!(valid(4, 5, 1, 1), None);
        assert_eq!(valid(4, 3, 0, 1), None);
        let same = Axis1::new(7, 3, 2, 1, Padding::Same).unwrap();
        assert_eq!((same.output, same.pad), (4, 1)); // total padding 2: 1 before, 1 after
        let same = Axis1::new(6, 2, 2, 1, Padding::Same).unwrap();
        assert_eq!((same.output, same.pad), (3, 0));
        let same = Axis1::new(5, 4, 1, 1, Padding::Same).unwrap();
        assert_eq!((same.output, same.pad), (5, 1)); // total 3: 1 before, 2 after (TensorFlow's rule)
        assert_eq!(same.source(0, 0), None);
        assert_eq!(same.source(0, 1), Some(0));
        assert_eq!(same.source(4, 3), None);
    }

    #[test]
    fn positions_beyond_usize_are_refused_not_wrapped() {
        let same = |n, k, s, d| Axis1::new(n, k, s, d, Padding::Same);
        // The extent itself overflows.
        assert_eq!(same(5, 3, 1, usize::MAX / 2 + 1), Err(WindowFault::TooLarge));
        assert_eq!(Axis1::new(5, 3, 1, usize::MAX, Padding::Valid), Err(WindowFault::TooLarge));
        // The extent fits, the last window's last tap does not.
        assert_eq!(same(5, 2, 1, usize::MAX - 1), Err(WindowFault::TooLarge));
        assert_eq!(same(5, usize::MAX, 1, 1), Err(WindowFault::TooLarge));
        // A huge window that fits: every window covers the whole input.
        let a = same(5, 1 << 62, 1, 1).unwrap();
        assert_eq!(a.output, 5);
        assert!((0..5).all(|o| a.taps(o) == (a.pad - o..a.pad - o + 5)), "{a:?}");
        // A dilation as large as it can be: only the centre tap is ever inside.
        let a = same(5, 3, 1, (usize::MAX - 5) / 2).unwrap();
        assert_eq!((0..5).map(|o| a.source(o, 1)).collect::<Vec<_>>(), [0, 1, 2, 3, 4].map(Some));
        assert!((0..5).all(|o| a.source(o, 0).is_none() && a.source(o, 2).is_none()));
        assert!((0..5).all(|o| a.taps(o) == (1..2)));
    }

    #[test]
    fn causal_pads_before_only() {
        let causal = |n, k, s, d| Axis1::new_1d(n, k, s, d, Padding1d::Causal);
        let a = causal(5, 3, 1, 2).unwrap();
        assert_eq!((a.output, a.pad), (5, 4));
        assert_eq!(a.source(0, 2), Some(0));
        assert_eq!(a.source(0, 1), None);
        assert_eq!(a.source(4, 2), Some(4)); // the last output sees the last input, never a later one
        assert_eq!((0..5).map(|o| a.taps(o)).collect::<Vec<_>>(), [2..3, 2..3, 1..3, 1..3, 0..3]);
        assert_eq!(causal(7, 2, 3, 1).map(|a| a.output), Ok(3)); // ceil(7 / 3)
        assert_eq!(causal(1, 4, 1, 1).map(|a| a.output), Ok(1));
        assert_eq!(causal(0, 2, 1, 1), Err(WindowFault::DoesNotFit));
        assert_eq!(causal(5, 3, 1, usize::MAX), Err(WindowFault::TooLarge));
        assert_eq!(Axis1::new_1d(5, 3, 1, 1, Padding1d::Same), Axis1::new(5, 3, 1, 1, Padding::Same));
        assert!("causal".parse::<Padding1d>().is_ok() && "full".parse::<Padding1d>().is_err());
    }

    #[test]
    fn taps_are_the_in_bounds_taps() {
        for (n, k, s, d) in
            [(7, 3, 2, 1), (5, 4, 1, 1), (6, 3, 1, 2), (4, 9, 3, 1), (9, 4, 2, 3), (3, 2, 5, 1)]
        {
            for padding in [Padding::Valid, Padding::Same] {
                let Ok(a) = Axis1::new(n, k, s, d, padding) else { continue };
                for o in 0..a.output {
                    let want: Vec<_> = (0..k).filter(|&t| a.source(o, t).is_some()).collect();
                    assert_eq!(a.taps(o).collect::<Vec<_>>(), want, "{a:?} at {o}");
                }
            }
        }
    }
}
