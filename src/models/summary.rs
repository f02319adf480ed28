//! `summary()`: Keras' table of layers, output shapes and parameter counts; for a graph model, with the tensors
//! each layer is connected to.
//!
//! Keras 3 renders the table with `rich` at a fixed width (76 columns: its terminal fallback of 80, less 4), so
//! a long cell wraps over several lines instead of widening its column. Rows of a graph model come in Keras'
//! `map_graph` order, and a graph that is a plain chain is printed like a Sequential.
use super::graph::{Net, Producer, TensorId};
use super::{shape_str, Kind, Model};

/// Column widths (inside the borders, a space of padding each side included), as Keras 3 prints a Sequential
/// (or a chain) at its default line length.
const WIDTHS: [usize; 3] = [33, 24, 15];
/// The same for a graph model's four columns.
const GRAPH_WIDTHS: [usize; 4] = [21, 19, 12, 19];
/// The column of parameter counts, the one right-aligned.
const PARAMS_COLUMN: usize = 2;

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

/// Rich's word wrapping of `text` into lines of at most `width` characters, as Keras' cells get it
/// (`overflow="ellipsis"`): a word goes on the current line if it fits, else starts a new one; a word longer
/// than a whole line is cut to `width - 1` characters and `…`.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let spaces_from = |i: usize| i + chars[i..].iter().take_while(|c| c.is_whitespace()).count();
    let (mut breaks, mut start, mut offset) = (Vec::new(), 0, 0);
    while start < chars.len() {
        // Rich's word: `\s*\S+\s*`, its length without the trailing spaces.
        let text_start = spaces_from(start);
        let text_end = text_start + chars[text_start..].iter().take_while(|c| !c.is_whitespace()).count();
        let end = spaces_from(text_end);
        if offset + (text_end - start) <= width {
            offset += end - start;
        } else {
            if start > 0 {
                breaks.push(start);
            }
            offset = end - start;
        }
        start = end;
    }
    breaks.push(chars.len());
    let mut lines = Vec::new();
    let mut from = 0;
    for to in breaks {
        let line: String = chars[from..to].iter().collect();
        let line = line.trim_end();
        lines.push(if line.chars().count() > width {
            line.chars().take(width - 1).chain(['…']).collect()
        } else {
            line.to_owned()
        });
        from = to;
    }
    lines
}

/// One row of the table, each cell wrapped to its column and the row as tall as its tallest cell: cells
/// left-aligned, but the parameter count right-aligned.
fn row(widths: &[usize], cells: &[&str], border: char) -> String {
    let wrapped: Vec<Vec<String>> = cells.iter().zip(widths).map(|(cell, w)| wrap(cell, w - 2)).collect();
    let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
    let mut s = String::new();
    for line in 0..height {
        for (i, (cell, w)) in wrapped.iter().zip(widths).enumerate() {
            let (text, w) = (cell.get(line).map_or("", String::as_str), w - 2);
            if i == PARAMS_COLUMN {
                s += &format!("{border} {text:>w$} ");
            } else {
                s += &format!("{border} {text:<w$} ");
            }
        }
        s.push(border);
        s.push('\n');
    }
    s
}

/// The layers of a graph in the order Keras' `map_graph` lists them (its `model.layers`, the summary's rows),
/// and whether the graph is a chain, which Keras prints like a Sequential: each depth one node of at most one
/// input, and no layer called twice.
///
/// A node's depth is its distance from the outputs (the longest path); a layer takes its deepest node's depth,
/// and its node's depths rise to it. Layers go deepest first; ties in the order a depth-first walk from the
/// outputs (each node's inputs in order) first meets them. Nodes are keyed by their output tensor, a model
/// input counting as the node of its `Input`.
fn keras_order(net: &Net) -> (Vec<usize>, bool) {
    let parents = |t: TensorId| match net.tensors[t].producer {
        Producer::Node(n) => net.nodes[n].inputs.as_slice(),
        Producer::Input { .. } => &[],
    };
    let layer_of = |t: TensorId| net.producer_layer(t).expect("a graph's tensors come from its layers");

    // Depth-first from the outputs: nodes after their inputs (`post`), layers numbered when first met.
    let (mut post, mut done) = (Vec::new(), vec![false; net.tensors.len()]);
    let mut met: Vec<Option<usize>> = vec![None; net.layers.len()];
    let mut met_count = 0;
    for &output in &net.outputs {
        let mut stack = vec![(output, 0)];
        while let Some(&mut (t, ref mut next)) = stack.last_mut() {
            if *next == 0 && met[layer_of(t)].is_none() {
                met[layer_of(t)] = Some(met_count);
                met_count += 1;
            }
            match parents(t).get(*next) {
                Some(&p) => {
                    *next += 1;
                    if !done[p] {
                        stack.push((p, 0));
                    }
                }
                None => {
                    stack.pop();
                    if !std::mem::replace(&mut done[t], true) {
                        post.push(t);
                    }
                }
            }
        }
    }

    // Depths, from the outputs back.
    let mut node_depth = vec![0; net.tensors.len()];
    let mut layer_depth = vec![0; net.layers.len()];
    for &t in post.iter().rev() {
        let depth = node_depth[t].max(layer_depth[layer_of(t)]);
        (node_depth[t], layer_depth[layer_of(t)]) = (depth, depth);
        for &p in parents(t) {
            node_depth[p] = node_depth[p].max(depth + 1);
        }
    }

    let mut order: Vec<usize> = (0..net.layers.len()).filter(|&l| met[l].is_some()).collect();
    order.sort_by_key(|&l| (std::cmp::Reverse(layer_depth[l]), met[l]));
    let mut per_depth = vec![0; post.len()];
    for &t in &post {
        per_depth[node_depth[t]] += 1;
    }
    let chain = per_depth.iter().all(|&n| n <= 1)
        && post.iter().all(|&t| parents(t).len() <= 1)
        && (0..net.layers.len()).all(|l| net.nodes_of(l).nth(1).is_none());
    (order, chain)
}

impl Model {
    /// The summary as text, as Keras 3 prints it: the table (`Layer (type)`, `Output Shape` with `None` for the
    /// batch, `Param #`, and for a graph model `Connected to`: the tensors each call of the layer took, as
    /// `layer[node][tensor]`), then total, trainable and non-trainable parameter counts with their sizes. An
    /// unbuilt layer shows `?` and `0 (unbuilt)`. A graph model's table is 76 characters wide and long cells
    /// wrap; a Sequential's columns widen instead. A graph lists its layers deepest first (Keras' order, which
    /// [`Model::layers`] need not follow), and a graph that is a chain gets a Sequential's three columns.
    pub fn summary_string(&self) -> String {
        let net = &self.net;
        let (order, connected) = match self.kind {
            Kind::Sequential { .. } => ((0..net.layers.len()).collect(), false),
            Kind::Functional => {
                let (order, chain) = keras_order(net);
                (order, !chain)
            }
        };
        let rows: Vec<Vec<String>> = order
            .into_iter()
            .map(|i| {
                let layer = &net.layers[i];
                let title = format!("{} ({})", layer.name().unwrap_or("?"), layer.class_name());
                // A layer's output shape is its first call's (a shared layer gives the same shape each time).
                let output = (0..net.tensors.len()).find(|&t| match net.tensors[t].producer {
                    Producer::Input { layer } => layer == Some(i),
                    Producer::Node(n) => net.nodes[n].layer == i,
                });
                let mut row = match output {
                    Some(t) => {
                        // A layer of several outputs shows them all, as Keras: `[(None, 8), (None, 8)]`.
                        let shape = match net.tensors[t].producer {
                            Producer::Node(n) if net.nodes[n].outputs.len() > 1 => {
                                let shapes: Vec<String> = net.nodes[n]
                                    .outputs
                                    .iter()
                                    .map(|&o| shape_str(&net.tensors[o].shape))
                                    .collect();
                                format!("[{}]", shapes.join(", "))
                            }
                            _ => shape_str(&net.tensors[t].shape),
                        };
                        vec![title, shape, thousands(layer.count_params(&self.params))]
                    }
                    None => vec![title, "?".into(), "0 (unbuilt)".into()],
                };
                if connected {
                    let inputs: Vec<String> = net
                        .nodes_of(i)
                        .flat_map(|node| node.inputs.iter())
                        .map(|&t| {
                            let (name, node, index) = net.tensor_ref(t);
                            format!("{name}[{node}][{index}]")
                        })
                        .collect();
                    row.push(if inputs.is_empty() { "-".into() } else { inputs.join(", ") });
                }
                row
            })
            .collect();
        let (widths, header): (Vec<usize>, &[&str]) = if connected {
            (GRAPH_WIDTHS.to_vec(), &["Layer (type)", "Output Shape", "Param #", "Connected to"])
        } else {
            (WIDTHS.to_vec(), &["Layer (type)", "Output Shape", "Param #"])
        };
        let widths = widths.as_slice();

        let mut s = format!("Model: \"{}\"\n", self.name);
        s += &rule(widths, '┏', '━', '┳', '┓');
        s += &row(widths, header, '┃');
        s += &rule(widths, '┡', '━', '╇', '┩');
        for (i, r) in rows.iter().enumerate() {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            s += &row(widths, &cells, '│');
            if i + 1 < rows.len() {
                s += &rule(widths, '├', '─', '┼', '┤');
            }
        }
        s += &rule(widths, '└', '─', '┴', '┘');

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

    /// Rich's wrapping (checked against rich 15 on 3,000 random texts while writing it).
    #[test]
    fn wraps_like_rich() {
        assert_eq!(wrap("", 5), [""]);
        assert_eq!(wrap("dense (Dense)", 19), ["dense (Dense)"]);
        assert_eq!(wrap("rescaling (Rescaling)", 19), ["rescaling", "(Rescaling)"]);
        assert_eq!(wrap("a[0][0], second_dense[0][0], b", 17), ["a[0][0],", "second_dense[0][…", "b"]);
        assert_eq!(wrap("  )_0(ba(])[[())(,_[_,", 5), ["  )_…"]);
        assert_eq!(wrap("ab  cd", 3), ["ab", "cd"]);
    }
}
