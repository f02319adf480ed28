//! A model from a list of layers: Keras' `keras.Sequential([Dense(..), Dense(..)])`.
use super::Sequential;
use crate::layers::Layer;
use crate::Result;

impl Sequential {
    /// A model of these layers, added in order as by [`Sequential::add`] (Keras' `Sequential([...])`). The
    /// [`sequential!`](crate::sequential) macro writes the boxes for you.
    ///
    /// ```
    /// use kerust::layers::{Dense, Layer};
    /// use kerust::models::Sequential;
    ///
    /// let layers: Vec<Box<dyn Layer>> = vec![
    ///     Box::new(Dense::new(25).activation("sigmoid").input_shape([784])),
    ///     Box::new(Dense::new(10).activation("softmax")),
    /// ];
    /// let model = Sequential::from_layers(layers)?;
    /// assert_eq!(model.output_shape(), Some(&[10][..]));
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sequential::add`], for the first layer that cannot be added.
    pub fn from_layers(layers: impl IntoIterator<Item = Box<dyn Layer>>) -> Result<Sequential> {
        let mut model = Sequential::new();
        for layer in layers {
            model.add_boxed(layer)?;
        }
        Ok(model)
    }
}

/// A [`Sequential`](crate::models::Sequential) model of the layers listed, as Keras writes
/// `keras.Sequential([...])`: `Result<Sequential>`, with the errors of
/// [`Sequential::add`](crate::models::Sequential::add).
///
/// ```
/// use kerust::layers::{Dense, Dropout};
/// use kerust::sequential;
///
/// let model = sequential![
///     Dense::new(25).activation("sigmoid").input_shape([784]),
///     Dropout::new(0.2),
///     Dense::new(10).activation("softmax"),
/// ]?;
/// assert_eq!(model.layers().len(), 3);
/// assert_eq!(model.count_params(), 784 * 25 + 25 + 25 * 10 + 10);
///
/// // A bad layer is the error `add` gives.
/// assert!(sequential![Dense::new(0).input_shape([3])].is_err());
/// # Ok::<(), kerust::Error>(())
/// ```
#[macro_export]
macro_rules! sequential {
    ($($layer:expr),* $(,)?) => {
        $crate::models::Sequential::from_layers([
            $(::std::boxed::Box::new($layer) as ::std::boxed::Box<dyn $crate::layers::Layer>),*
        ])
    };
}
