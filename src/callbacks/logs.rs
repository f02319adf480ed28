//! [`Logs`]: the named values of a batch or an epoch.

/// Named values (`loss`, `accuracy`, `val_loss`, ...), in the order they were first set. Setting an existing
/// name overwrites it in place, so a training loop reuses one `Logs` without allocating.
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
