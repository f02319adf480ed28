//! Utilities: one-hot encoding, seeding.
use ndarray::{Array2, ArrayBase, Data, Ix1};

use crate::{Error, Result};

/// One-hot encodes integer class labels, like Keras' `to_categorical(y, num_classes)`: row `i` of the
/// result is all zeros except a `1.0` in column `labels[i]`.
///
/// Accepts any 1-D integer array or view (`&Array1<u8>`, `&ArrayView1<i64>`, ...).
///
/// # Errors
/// [`Error::LabelOutOfRange`] naming the first label that is negative or `>= num_classes`, and its index;
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
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn to_categorical<S, A>(labels: &ArrayBase<S, Ix1>, num_classes: usize) -> Result<Array2<f32>>
where
    S: Data<Elem = A>,
    A: Copy + TryInto<i64>,
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
    A: Copy + TryInto<i64>,
{
    // A label that does not fit i64 is rejected by to_categorical below, so treat it as 0 here.
    let max = labels.iter().map(|&l| l.try_into().unwrap_or(0)).max();
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
    A: Copy + TryInto<i64>,
{
    labels
        .iter()
        .enumerate()
        .map(|(index, &label)| {
            // Only u64/usize labels above i64::MAX fail to convert; report them as i64::MAX.
            let label = label.try_into().unwrap_or(i64::MAX);
            usize::try_from(label).ok().filter(|&class| class < num_classes).ok_or(Error::LabelOutOfRange {
                label,
                index,
                num_classes,
            })
        })
        .collect()
}

pub use crate::random::set_random_seed;
