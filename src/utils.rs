//! Utilities: one-hot encoding, padding sequences, seeding.
use ndarray::{Array, Array2, ArrayBase, ArrayView1, AsArray, Axis, Data, Ix1, RemoveAxis};

use crate::{Error, Numeric, Result};

mod sequences;
pub use sequences::{pad_sequences, PadElement, PadSequences, Side};

/// One-hot encodes integer class labels, like Keras' `to_categorical(y, num_classes)`: row `i` of the
/// result is all zeros except a `1.0` in column `labels[i]`.
///
/// Accepts any 1-D array or view of a [`Numeric`] type (`&Array1<u8>`, `&ArrayView1<i64>`, `&Array1<f32>`, ...);
/// float labels must hold whole numbers (`2.0`, not `2.5`).
///
/// # Errors
/// [`Error::LabelOutOfRange`] naming the first label that is negative or `>= num_classes`, and its index;
/// [`Error::InvalidArgument`] for a float label that is not a whole number (`2.5`, NaN), with its index;
/// [`Error::Allocation`] if the result is larger than this machine can allocate (e.g. `num_classes = 1 << 62`):
/// the result is allocated fallibly, never aborting the process.
///
/// ```
/// use ndarray::array;
///
/// let y = array![0u8, 2, 1];
/// let one_hot = kerust::utils::to_categorical(&y, 3)?;
/// assert_eq!(one_hot, array![[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]);
///
/// assert!(kerust::utils::to_categorical(&array![3i64], 3).is_err());
///
/// // Labels stored as floats, as numpy often has them.
/// assert_eq!(kerust::utils::to_categorical(&array![1.0f32, 0.0], 2)?, array![[0.0, 1.0], [1.0, 0.0]]);
/// assert!(kerust::utils::to_categorical(&array![2.5f32], 3).is_err());
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn to_categorical<S, A>(labels: &ArrayBase<S, Ix1>, num_classes: usize) -> Result<Array2<f32>>
where
    S: Data<Elem = A>,
    A: Numeric,
{
    let size = labels.len().checked_mul(num_classes).ok_or_else(|| {
        Error::invalid_argument(
            "num_classes",
            num_classes,
            format!("{} labels x num_classes overflows", labels.len()),
        )
    })?;
    // Validate everything before allocating the (possibly large) result, and allocate it fallibly.
    let classes = class_indices(labels, num_classes)?;
    let shape = [labels.len(), num_classes];
    let mut buf = crate::memory::try_vec::<f32>(size, || "to_categorical's one-hot array".into(), &shape)?;
    buf.resize(size, 0.0);
    let Ok(mut one_hot) = Array2::from_shape_vec(shape, buf) else {
        unreachable!("the buffer holds labels x num_classes elements")
    };
    for (mut row, class) in one_hot.rows_mut().into_iter().zip(classes) {
        row[class] = 1.0;
    }
    Ok(one_hot)
}

/// [`to_categorical`] with `num_classes` inferred as the largest label + 1 (Keras' `num_classes=None`).
/// Empty input gives a `(0, 0)` array.
///
/// # Errors
/// [`Error::LabelOutOfRange`] for a negative label; [`Error::Allocation`] if the largest label asks for more
/// columns than this machine can allocate (a label of `i64::MAX`).
///
/// ```
/// use ndarray::array;
///
/// let one_hot = kerust::utils::to_categorical_inferred(&array![1u8, 0, 3])?;
/// assert_eq!(one_hot.shape(), &[3, 4]);
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn to_categorical_inferred<S, A>(labels: &ArrayBase<S, Ix1>) -> Result<Array2<f32>>
where
    S: Data<Elem = A>,
    A: Numeric,
{
    // A label that is not a whole number is rejected by to_categorical below, so treat it as 0 here.
    let max = labels.iter().map(|&l| l.whole().unwrap_or(0)).max();
    let num_classes = match max {
        None => 0,
        Some(max) => usize::try_from(max).map_or(0, |m| m.saturating_add(1)),
    };
    to_categorical(labels, num_classes)
}

/// Each label as a column index, or the first one out of `0..num_classes`.
fn class_indices<S, A>(labels: &ArrayBase<S, Ix1>, num_classes: usize) -> Result<Vec<usize>>
where
    S: Data<Elem = A>,
    A: Numeric,
{
    labels
        .iter()
        .enumerate()
        .map(|(index, &label)| {
            let Some(label) = label.whole() else {
                return Err(Error::invalid_argument(
                    "labels",
                    format!("{label} at index {index}"),
                    format!("class labels must be whole numbers in 0..{num_classes}"),
                ));
            };
            usize::try_from(label).ok().filter(|&class| class < num_classes).ok_or(Error::LabelOutOfRange {
                label,
                index,
                num_classes,
            })
        })
        .collect()
}

/// The index of the largest value along `axis`, as numpy's `np.argmax(a, axis)`: the first of equal maxima,
/// or the first NaN if there is one. The usual use is the class of each prediction:
///
/// ```
/// use kerust::utils::argmax;
/// use ndarray::{array, Axis};
///
/// let probabilities = array![[0.1f32, 0.7, 0.2], [0.5, 0.2, 0.3]];
/// assert_eq!(argmax(&probabilities, Axis(1))?, array![1, 0]);
/// assert_eq!(argmax(&probabilities, Axis(0))?, array![1, 0, 1]);
/// assert!(argmax(&probabilities, Axis(2)).is_err());
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// # Errors
/// An `axis` the array does not have, or one of length 0 (there is no largest of nothing).
pub fn argmax<'a, D: RemoveAxis>(
    a: impl AsArray<'a, f32, D>,
    axis: Axis,
) -> Result<Array<usize, D::Smaller>> {
    let a = a.into();
    if axis.index() >= a.ndim() || a.len_of(axis) == 0 {
        return Err(Error::shape(
            "argmax",
            format!("a non-empty axis {} of an array of {} axes", axis.index(), a.ndim()),
            format!("an array of shape {:?}", a.shape()),
        ));
    }
    Ok(a.map_axis(axis, argmax_lane))
}

/// The index of the largest element of a non-empty lane; the first NaN wins, as in numpy.
pub(crate) fn argmax_lane(lane: ArrayView1<'_, f32>) -> usize {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &x) in lane.iter().enumerate() {
        if x.is_nan() {
            return i;
        }
        if x > best_value || i == 0 {
            best = i;
            best_value = x;
        }
    }
    best
}

pub use crate::random::set_random_seed;

/// Writes an image of `u8` pixels as a PNG file, as Keras' `keras.utils.save_img(path, x)` does (cargo feature
/// `plot`): `(rows, cols)` or `(rows, cols, 1)` is grayscale, `(rows, cols, 3)` RGB.
///
/// ```
/// let digit = ndarray::Array2::<u8>::from_shape_fn((28, 28), |(r, c)| if (r as i32 - 14).abs() < 8 && c == 14 { 255 } else { 0 });
/// let path = std::env::temp_dir().join("kerust_doc_save_img.png");
/// kerust::utils::save_img(&path, &digit)?;
/// assert_eq!(&std::fs::read(&path)?[1..4], b"PNG");
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::Shape`] for another shape (or an empty image); [`Error::Io`] if the file cannot be written.
#[cfg(feature = "plot")]
pub fn save_img<'a, D: ndarray::Dimension>(
    path: impl AsRef<std::path::Path>,
    image: impl AsArray<'a, u8, D>,
) -> Result<()> {
    let image = image.into();
    let (rows, cols, color) = match *image.shape() {
        [rows, cols] | [rows, cols, 1] => (rows, cols, png::ColorType::Grayscale),
        [rows, cols, 3] => (rows, cols, png::ColorType::Rgb),
        _ => (0, 0, png::ColorType::Grayscale),
    };
    let (Ok(width), Ok(height)) = (u32::try_from(cols), u32::try_from(rows)) else {
        return Err(Error::shape(
            "save_img",
            "at most 2^32 - 1 rows and columns",
            format!("{:?}", image.shape()),
        ));
    };
    if width == 0 || height == 0 {
        return Err(Error::shape(
            "save_img",
            "a non-empty (rows, cols), (rows, cols, 1) or (rows, cols, 3) image",
            format!("{:?}", image.shape()),
        ));
    }
    let pixels: Vec<u8> = image.iter().copied().collect(); // row-major, whatever the array's layout
    crate::png_file::write_png(path.as_ref(), &pixels, width, height, color)
}
