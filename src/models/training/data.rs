//! The data `fit`, `evaluate`, `predict` and `train_on_batch` take: one array, or one per model input or
//! output, by position or by name ([`IntoArrays`]).
use ndarray::{ArrayBase, ArrayView, ArrayViewD, ArrayViewMutD, Axis, CowArray, Dimension, IxDyn};

use crate::{Error, Numeric, Result};

/// Inputs or targets as the model computes with them: `f32`, borrowed when the caller's data is `f32`, else
/// converted once (Keras casts to `float32` too).
pub(crate) type Data<'a> = CowArray<'a, f32, IxDyn>;

/// One array of any [`Numeric`] element type and any dimension, by reference or as a view.
pub trait IntoArray<'a> {
    /// The array as `f32`: borrowed if it is `f32`, converted once otherwise.
    fn into_array(self) -> Data<'a>;
}

impl<'a, A: Numeric, S: ndarray::Data<Elem = A>, D: Dimension> IntoArray<'a> for &'a ArrayBase<S, D> {
    fn into_array(self) -> Data<'a> {
        A::to_f32_array(self.view().into_dyn())
    }
}

impl<'a, A: Numeric, D: Dimension> IntoArray<'a> for ArrayView<'a, A, D> {
    fn into_array(self) -> Data<'a> {
        A::to_f32_array(self.into_dyn())
    }
}

/// Copies the samples `rows` of `src` into `dst` (a batch buffer of shape `(rows.len(), ...)`).
pub(crate) fn gather(src: &ArrayViewD<'_, f32>, rows: &[usize], dst: &mut ArrayViewMutD<'_, f32>) {
    let row_len: usize = src.shape()[1..].iter().product();
    match (src.as_slice(), dst.as_slice_mut()) {
        // Rows are copied whole, each by one task: over kerust's threads for a large batch.
        (Some(s), Some(d)) => crate::threads::for_each_chunk(d, row_len, |i, row| {
            let r = rows[i];
            row.copy_from_slice(&s[r * row_len..(r + 1) * row_len]);
        }),
        _ => {
            for (i, &r) in rows.iter().enumerate() {
                dst.index_axis_mut(Axis(0), i).assign(&src.index_axis(Axis(0), r));
            }
        }
    }
}

/// Arrays for a model's inputs or outputs, by position ([`Arrays::push`]) or by name ([`Arrays::named`]);
/// [`arrays!`](crate::arrays) writes them as Keras' dicts.
#[derive(Default)]
pub struct Arrays<'a> {
    items: Vec<(Option<String>, Data<'a>)>,
}

impl<'a> Arrays<'a> {
    /// No arrays yet.
    pub fn new() -> Self {
        Arrays { items: Vec::new() }
    }

    /// Adds the array for the next input or output, by position.
    pub fn push(mut self, array: impl IntoArray<'a>) -> Self {
        self.items.push((None, array.into_array()));
        self
    }

    /// Adds the array of the input or output of this name.
    pub fn named(mut self, name: impl Into<String>, array: impl IntoArray<'a>) -> Self {
        self.items.push((Some(name.into()), array.into_array()));
        self
    }

    /// The number of arrays.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The arrays in the order of `names` (the model's inputs or outputs); `what` is "input" or "output".
    pub(crate) fn matched(self, names: &[&str], what: &str, context: &str) -> Result<Vec<Data<'a>>> {
        let named = self.items.iter().filter(|(n, _)| n.is_some()).count();
        let plural = |n: usize, word: &str| if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") };
        if named == 0 {
            if self.items.len() != names.len() {
                return Err(Error::shape(
                    format!("{context}: one array per model {what}"),
                    format!("{} ({})", plural(names.len(), "array"), names.join(", ")),
                    plural(self.items.len(), "array"),
                ));
            }
            return Ok(self.items.into_iter().map(|(_, a)| a).collect());
        }
        if named != self.items.len() {
            return Err(Error::invalid_argument(
                "arrays",
                format!("{named} named and {} unnamed", self.items.len() - named),
                format!("{context}: give every array by name, or every array by position"),
            ));
        }
        let mut slots: Vec<Option<Data<'a>>> = (0..names.len()).map(|_| None).collect();
        for (name, array) in self.items {
            let name = name.unwrap_or_default();
            let Some(i) = names.iter().position(|n| *n == name) else {
                return Err(Error::UnknownName {
                    kind: if what == "input" { "model input" } else { "model output" },
                    name,
                    known: names.join(", "),
                });
            };
            if slots[i].replace(array).is_some() {
                return Err(Error::invalid_argument(
                    "arrays",
                    &name,
                    format!("{context}: the {what} `{name}` is given twice"),
                ));
            }
        }
        if let Some(i) = slots.iter().position(Option::is_none) {
            return Err(Error::invalid_argument(
                "arrays",
                format!("no array named `{}`", names[i]),
                format!("{context}: every model {what} needs one ({})", names.join(", ")),
            ));
        }
        Ok(slots.into_iter().flatten().collect())
    }
}

/// What `fit`, `evaluate`, `predict` and `train_on_batch` take for inputs or targets: one array (`&x`, a
/// view), a tuple, array or `Vec` of them by position, or [`Arrays`] (by name, with [`arrays!`](crate::arrays)).
///
/// An owned array is not taken (the model would have to keep it): pass `&x`.
///
/// ```compile_fail
/// # use kerust::{layers::Dense, models::Sequential};
/// let mut model = Sequential::new();
/// model.add(Dense::new(1).input_shape([2]))?;
/// model.compile("mse", "sgd", [])?;
/// let (x, y) = (ndarray::Array2::<f32>::zeros((4, 2)), ndarray::Array2::<f32>::zeros((4, 1)));
/// model.fit(x, y).run()?; // error: `Array2<f32>` is not training data; pass `&x`
/// # Ok::<(), kerust::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not data that `fit`, `evaluate` or `predict` take",
    label = "an owned array? pass it by reference: `&x` (or a view: `x.view()`)",
    note = "inputs and targets are borrowed: `&x`, `x.view()`, a tuple `(&a, &b)` for several inputs, or `arrays![\"name\" => &a]`"
)]
pub trait IntoArrays<'a> {
    /// The arrays.
    fn into_arrays(self) -> Arrays<'a>;
}

impl<'a> IntoArrays<'a> for Arrays<'a> {
    fn into_arrays(self) -> Arrays<'a> {
        self
    }
}

impl<'a, A: Numeric, S: ndarray::Data<Elem = A>, D: Dimension> IntoArrays<'a> for &'a ArrayBase<S, D> {
    fn into_arrays(self) -> Arrays<'a> {
        Arrays::new().push(self)
    }
}

impl<'a, A: Numeric, D: Dimension> IntoArrays<'a> for ArrayView<'a, A, D> {
    fn into_arrays(self) -> Arrays<'a> {
        Arrays::new().push(self)
    }
}

impl<'a, X: IntoArray<'a>, const N: usize> IntoArrays<'a> for [X; N] {
    fn into_arrays(self) -> Arrays<'a> {
        self.into_iter().fold(Arrays::new(), Arrays::push)
    }
}

impl<'a, X: IntoArray<'a>> IntoArrays<'a> for Vec<X> {
    fn into_arrays(self) -> Arrays<'a> {
        self.into_iter().fold(Arrays::new(), Arrays::push)
    }
}

macro_rules! tuple_arrays {
    ($($x:ident),+) => {
        impl<'a, $($x: IntoArray<'a>),+> IntoArrays<'a> for ($($x,)+) {
            #[allow(non_snake_case)]
            fn into_arrays(self) -> Arrays<'a> {
                let ($($x,)+) = self;
                Arrays::new()$(.push($x))+
            }
        }
    };
}
tuple_arrays!(X0);
tuple_arrays!(X0, X1);
tuple_arrays!(X0, X1, X2);
tuple_arrays!(X0, X1, X2, X3);
tuple_arrays!(X0, X1, X2, X3, X4);
tuple_arrays!(X0, X1, X2, X3, X4, X5);

/// Arrays by input or output name, as Keras' dicts: `arrays!["image" => &x, "features" => &f]`.
///
/// ```
/// use kerust::arrays;
/// use ndarray::{Array2, Array3};
///
/// let (images, features) = (Array3::<u8>::zeros((4, 28, 28)), Array2::<f32>::zeros((4, 3)));
/// let x = arrays!["image" => &images, "features" => &features];
/// assert_eq!(x.len(), 2);
/// ```
#[macro_export]
macro_rules! arrays {
    ($($name:expr => $array:expr),* $(,)?) => {
        $crate::models::Arrays::new()$(.named($name, $array))*
    };
}

/// A model's outputs for some inputs ([`Model::predict_outputs`](crate::models::Model::predict_outputs)),
/// in the model's order and by name.
#[derive(Clone, Debug)]
pub struct Outputs {
    pub(crate) names: Vec<String>,
    pub(crate) arrays: Vec<crate::autodiff::Tensor>,
}

impl Outputs {
    /// The output of this name (Keras' dict of outputs), if the model has one.
    pub fn get(&self, name: &str) -> Option<&crate::autodiff::Tensor> {
        self.names.iter().position(|n| n == name).map(|i| &self.arrays[i])
    }

    /// The outputs' names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of outputs.
    pub fn len(&self) -> usize {
        self.arrays.len()
    }

    /// Whether there are none (never, for a model's outputs).
    pub fn is_empty(&self) -> bool {
        self.arrays.is_empty()
    }

    /// The outputs, in order.
    pub fn into_vec(self) -> Vec<crate::autodiff::Tensor> {
        self.arrays
    }
}

impl std::ops::Index<usize> for Outputs {
    type Output = crate::autodiff::Tensor;

    fn index(&self, i: usize) -> &crate::autodiff::Tensor {
        &self.arrays[i]
    }
}

impl std::ops::Index<&str> for Outputs {
    type Output = crate::autodiff::Tensor;

    /// The output of this name.
    ///
    /// # Panics
    /// If the model has no output of this name ([`Outputs::get`] returns an `Option`).
    fn index(&self, name: &str) -> &crate::autodiff::Tensor {
        self.get(name).unwrap_or_else(|| panic!("no output named `{name}`; the outputs are {:?}", self.names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathered_batches_are_the_same_for_any_thread_count() {
        // 600 rows of 784: a batch of 400 (313,600 values) is copied over the threads.
        let x = ndarray::Array2::from_shape_fn((600, 784), |(i, j)| (i * 1000 + j) as f32).into_dyn();
        let rows: Vec<usize> = (0..400).map(|i| (i * 37 + 11) % 600).collect();
        assert!(rows.len() * 784 >= crate::threads::PARALLEL_MIN_ELEMENTS);
        let batches = crate::threads::at_thread_counts(|| {
            let mut batch = ndarray::ArrayD::<f32>::from_elem(ndarray::IxDyn(&[400, 784]), f32::NAN);
            gather(&x.view(), &rows, &mut batch.view_mut());
            batch
        });
        for (i, &r) in rows.iter().enumerate() {
            assert_eq!(batches[0].index_axis(Axis(0), i), x.index_axis(Axis(0), r));
        }
        assert!(batches.iter().all(|b| *b == batches[0]));
        // A non-contiguous source takes the other path, with the same rows.
        let strided = x.slice(ndarray::s![.., ..;2]).into_dyn();
        let mut batch = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[400, 392]));
        gather(&strided, &rows, &mut batch.view_mut());
        assert_eq!(batch.index_axis(Axis(0), 5), strided.index_axis(Axis(0), rows[5]));
    }
}
