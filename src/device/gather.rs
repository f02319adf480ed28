//! Row lookup on a device: the kernels of `ops/gather.rs` (an embedding's lookup and its scatter-add
//! gradient).
use super::Storage;

/// The first index a lookup could not use, and how many it could not: what the op reports instead of reading
/// out of bounds or writing a silent zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IndexFault {
    /// The position of the first bad index in the index tensor, row-major.
    pub position: usize,
    /// Its value, as received (indices travel as `f32`).
    pub index: f32,
    /// How many indices were bad.
    pub count: usize,
}

impl IndexFault {
    /// The row `index` names in a table of `rows` rows, if it is a whole number in `0..rows`.
    pub fn row_of(index: f32, rows: usize) -> Option<usize> {
        // NaN fails the first test; `fract` rejects 1.5 and infinities (their `fract` is NaN).
        (index >= 0.0 && index.fract() == 0.0 && index < rows as f32).then_some(index as usize)
    }

    /// The first index of `indices` (in order) that names no row of a table of `rows` rows, with the count of
    /// all such indices; `None` when every index is good. Kernels and layers that check indices ahead of a
    /// lookup share this one rule.
    pub fn scan(indices: impl IntoIterator<Item = f32>, rows: usize) -> Option<IndexFault> {
        let mut fault: Option<IndexFault> = None;
        for (position, index) in indices.into_iter().enumerate() {
            if IndexFault::row_of(index, rows).is_none() {
                match &mut fault {
                    Some(f) => f.count += 1,
                    None => fault = Some(IndexFault { position, index, count: 1 }),
                }
            }
        }
        fault
    }
}

/// Gathering rows of a table by indices, and scattering gradients back.
///
/// Indices are `f32` holding integers (exact below 2^24); the table is `(rows, width)`.
pub trait GatherKernels {
    /// `out[p, :] = self[indices[p], :]` for each position `p` of `indices` (any shape; `out` is
    /// `(indices.len(), width)` in row-major order of the positions, whatever its shape). An index that is
    /// negative, not an integer, or not below the table's row count leaves its row zero and is counted; the
    /// first one is returned.
    fn gather_rows(&self, indices: &Self, out: &mut Self) -> Option<IndexFault>;

    /// `table_grad[indices[p], :] += self[p, :]` for each position `p` (`self` is the gradient of a lookup's
    /// output). Without `accumulate`, `table_grad` is zeroed first (a first contribution); a row used several
    /// times receives the sum of its positions' gradients, in the order of the positions. Bad indices are
    /// skipped (the forward pass reported them).
    fn scatter_add_rows(&self, indices: &Self, table_grad: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`GatherKernels::gather_rows`] on the device the buffers live on.
    pub(crate) fn gather_rows(&self, indices: &Storage, out: &mut Storage) -> Option<IndexFault> {
        match (self, indices, out) {
            (Storage::Cpu(t), Storage::Cpu(i), Storage::Cpu(o)) => t.gather_rows(i, o),
        }
    }

    /// [`GatherKernels::scatter_add_rows`] on the device the buffers live on.
    pub(crate) fn scatter_add_rows(&self, indices: &Storage, table_grad: &mut Storage, accumulate: bool) {
        match (self, indices, table_grad) {
            (Storage::Cpu(g), Storage::Cpu(i), Storage::Cpu(d)) => g.scatter_add_rows(i, d, accumulate),
        }
    }
}
