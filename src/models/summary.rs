//! `summary()`: Keras' table of layers, output shapes and parameter counts; for a graph model, with the tensors
//! each layer is connected to.
use super::graph::Producer;
use super::{shape_str, Kind, Model};

/// Column widths (inside the borders), as Keras 3 prints them at its default line length.
const WIDTHS: [usize; 3] = [33, 24, 15];
/// The same for a graph model's four columns.
const GRAPH_WIDTHS: [usize; 4] = [21, 19, 12, 19];

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

fn rule(widths: &[usize], left: char, fill: char, mid: char, right: char) -> String {
    let mut s = String::new();
    s.push(left);
    for (i, w) in widths.iter().enumerate() {
        s.extend(std::iter::repeat_n(fill, *w));
        s.push(if i + 1 < widths.len() { mid } else { right });
    }
    s.push('\n');
    s
}

/// One line of the table: cells left-aligned, but the parameter count (the third column) right-aligned.
fn row(widths: &[usize], cells: &[&str], border: char) -> String {
    let mut s = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        let w = w - 2;
        if i == 2 {
            s += &format!("{border} {cell:>w$} ");
        } else {
            s += &format!("{border} {cell:<w$} ");
        }
    }
    s.push(border);
    s.push('\n');
    s
}

impl Model {
    /// The summary as text: the table Keras prints (`Layer (type)`, `Output Shape` with `None` for the batch,
    /// `Param #`, and for a graph model `Connected to`: the tensors each call of the layer took, as
    /// `layer[node][tensor]`), then total, trainable and non-trainable parameter counts with their sizes. An
    /// unbuilt layer shows `?` and `0 (unbuilt)`. Columns widen to fit their longest cell.
    pub fn summary_string(&self) -> String {
        let net = &self.net;
        let graph = self.kind == Kind::Functional;
        let rows: Vec<Vec<String>> = net
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let title = format!("{} ({})", layer.name().unwrap_or("?"), layer.class_name());
                // A layer's output shape is its first call's (a shared layer gives the same shape each time).
                let output = net.tensors.iter().position(|t| match t.producer {
                    Producer::Input { layer } => layer == Some(i),
                    Producer::Node(n) => net.nodes[n].layer == i,
                });
                let mut row = match output {
                    Some(t) => {
                        vec![
                            title,
                            shape_str(&net.tensors[t].shape),
                            thousands(layer.count_params(&self.params)),
                        ]
                    }
                    None => vec![title, "?".into(), "0 (unbuilt)".into()],
                };
                if graph {
                    let connected: Vec<String> = net
                        .nodes_of(i)
                        .flat_map(|node| node.inputs.iter())
                        .map(|&t| {
                            let (name, node) = net.tensor_ref(t);
                            format!("{name}[{node}][0]")
                        })
                        .collect();
                    row.push(if connected.is_empty() { "-".into() } else { connected.join(", ") });
                }
                row
            })
            .collect();
        let mut widths: Vec<usize> = if graph { GRAPH_WIDTHS.to_vec() } else { WIDTHS.to_vec() };
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count() + 2);
            }
        }
        let header: &[&str] = if graph {
            &["Layer (type)", "Output Shape", "Param #", "Connected to"]
        } else {
            &["Layer (type)", "Output Shape", "Param #"]
        };

        let mut s = format!("Model: \"{}\"\n", self.name);
        s += &rule(&widths, '┏', '━', '┳', '┓');
        s += &row(&widths, header, '┃');
        s += &rule(&widths, '┡', '━', '╇', '┩');
        for (i, r) in rows.iter().enumerate() {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            s += &row(&widths, &cells, '│');
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

    /// Prints [`Model::summary_string`] to standard output.
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
