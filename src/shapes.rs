//! Shapes as error messages and summaries print them, for every floor of the crate.

/// `(None, 28, 28)`: a per-sample shape with Keras' batch placeholder.
pub(crate) fn shape_str(per_sample: &[usize]) -> String {
    let mut s = String::from("(None");
    for d in per_sample {
        s.push_str(&format!(", {d}"));
    }
    s.push(')');
    s
}

/// A shape as Keras prints it: `(3, 3, 1, 2)`.
pub(crate) fn shape_of_dims(shape: &[usize]) -> String {
    format!("{shape:?}").replace('[', "(").replace(']', ")")
}
