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
