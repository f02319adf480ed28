//! `summary()`: Keras' table of layers, output shapes and parameter counts.
use super::{shape_str, Sequential};

/// Column widths (inside the borders), as Keras 3 prints them at its default line length.
const WIDTHS: [usize; 3] = [33, 24, 15];

/// `19885` -> `19,885`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keras' `readable_memory_size`: `77.68 KB`.
fn memory(bytes: usize) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < units.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.2} {}", units[unit])
}

fn rule(widths: &[usize; 3], left: char, fill: char, mid: char, right: char) -> String {
    let mut s = String::new();
    s.push(left);
    for (i, w) in widths.iter().enumerate() {
        s.extend(std::iter::repeat_n(fill, *w));
        s.push(if i + 1 < widths.len() { mid } else { right });
    }
    s.push('\n');
    s
}

fn row(widths: &[usize; 3], cells: [&str; 3], border: char) -> String {
    let [a, b, c] = cells;
    format!(
        "{border} {a:<w0$} {border} {b:<w1$} {border} {c:>w2$} {border}\n",
        w0 = widths[0] - 2,
        w1 = widths[1] - 2,
        w2 = widths[2] - 2
    )
}

impl Sequential {
    /// The summary as text: the table Keras prints (`Layer (type)`, `Output Shape` with `None` for the batch,
    /// `Param #`), then total, trainable and non-trainable parameter counts with their sizes. An unbuilt layer
    /// shows `?` and `0 (unbuilt)`.
    pub fn summary_string(&self) -> String {
        let rows: Vec<[String; 3]> = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let title = format!("{} ({})", layer.name().unwrap_or("?"), layer.class_name());
                match self.output_shapes.get(i) {
                    Some(shape) => [title, shape_str(shape), thousands(layer.count_params(&self.params))],
                    None => [title, "?".into(), "0 (unbuilt)".into()],
                }
            })
            .collect();
        let mut widths = WIDTHS;
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count() + 2);
            }
        }

        let mut s = format!("Model: \"{}\"\n", self.name);
        s += &rule(&widths, '┏', '━', '┳', '┓');
        s += &row(&widths, ["Layer (type)", "Output Shape", "Param #"], '┃');
        s += &rule(&widths, '┡', '━', '╇', '┩');
        for (i, r) in rows.iter().enumerate() {
            s += &row(&widths, [&r[0], &r[1], &r[2]], '│');
            if i + 1 < rows.len() {
                s += &rule(&widths, '├', '─', '┼', '┤');
            }
        }
        s += &rule(&widths, '└', '─', '┴', '┘');

        let (mut trainable, mut frozen) = (0, 0);
        for (_, p) in self.params.iter() {
            if p.trainable {
                trainable += p.value.len();
            } else {
                frozen += p.value.len();
            }
        }
        let f32_bytes = std::mem::size_of::<f32>();
        for (label, count) in
            [("Total", trainable + frozen), ("Trainable", trainable), ("Non-trainable", frozen)]
        {
            s += &format!(" {label} params: {} ({})\n", thousands(count), memory(count * f32_bytes));
        }
        s
    }

    /// Prints [`Sequential::summary_string`] to standard output.
    pub fn summary(&self) {
        print!("{}", self.summary_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(260), "260");
        assert_eq!(thousands(19885), "19,885");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(memory(19885 * 4), "77.68 KB");
        assert_eq!(memory(0), "0.00 B");
    }
}
