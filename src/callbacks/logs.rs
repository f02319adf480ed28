//! [`Logs`]: the named values of a batch or an epoch.

/// Named values (`loss`, `accuracy`, `val_loss`, ...), in the order they were first set. Setting an existing
/// name overwrites it in place, so a training loop reuses one `Logs` without allocating.
///
/// `Display` prints them as Keras prints its logs dict, each value in its shortest exact form, or with a
/// fixed number of decimals if a precision is given:
///
/// ```
/// use kerust::callbacks::Logs;
///
/// let mut logs = Logs::new();
/// logs.set("loss", 0.333);
/// logs.set("accuracy", 0.9);
/// assert_eq!(logs.to_string(), "{'loss': 0.333, 'accuracy': 0.9}");
/// assert_eq!(format!("{logs:.4}"), "{'loss': 0.3330, 'accuracy': 0.9000}");
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logs {
    entries: Vec<(String, f32)>,
}

impl Logs {
    /// Empty logs.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<f32> {
        self.entries.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: f32) {
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.to_owned(), value)),
        }
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f32)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), *v))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a> IntoIterator for &'a Logs {
    type Item = (&'a str, f32);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, f32)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl std::fmt::Display for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_dict(f, self.iter(), write_value)
    }
}

/// `{'key': value, ...}`, Python's dict form, as Keras users see their logs and histories printed.
pub(super) fn write_dict<'a, V>(
    f: &mut std::fmt::Formatter<'_>,
    entries: impl Iterator<Item = (&'a str, V)>,
    mut value: impl FnMut(&mut std::fmt::Formatter<'_>, V) -> std::fmt::Result,
) -> std::fmt::Result {
    f.write_str("{")?;
    for (i, (name, v)) in entries.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "'{name}': ")?;
        value(f, v)?;
    }
    f.write_str("}")
}

/// One value: shortest exact form, or the formatter's precision; NaN and infinities as Python prints them.
pub(super) fn write_value(f: &mut std::fmt::Formatter<'_>, v: f32) -> std::fmt::Result {
    if v.is_nan() {
        f.write_str("nan")
    } else if let Some(p) = f.precision() {
        write!(f, "{v:.p$}")
    } else {
        write!(f, "{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_a_dict_in_order() {
        let mut logs = Logs::new();
        assert_eq!(logs.to_string(), "{}");
        logs.set("val_loss", f32::NAN);
        logs.set("loss", f32::INFINITY);
        logs.set("accuracy", 0.123_456_79);
        assert_eq!(logs.to_string(), "{'val_loss': nan, 'loss': inf, 'accuracy': 0.12345679}");
        assert_eq!(format!("{logs:.2}"), "{'val_loss': nan, 'loss': inf, 'accuracy': 0.12}");
    }
}
