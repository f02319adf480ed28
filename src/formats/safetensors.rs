//! Named `f32` tensors and string metadata to and from checksummed safetensors bytes.
use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A tensor as stored: `f32`, any shape (the engine's `Tensor`, named here without importing the engine).
type Tensor = ArrayD<f32>;

/// The version of the file format this kerust writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The format name in an error message.
const FORMAT: &str = "kerust safetensors";

/// What a file holds: its metadata and its tensors, in file order.
pub(crate) struct Decoded {
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) tensors: Vec<(String, Tensor)>,
    /// Each tensor's position in `tensors`, by name: a look-up per weight keeps loading linear.
    positions: std::collections::HashMap<String, usize>,
}

impl Decoded {
    pub(crate) fn get(&self, name: &str) -> Option<&Tensor> {
        self.positions.get(name).map(|&i| &self.tensors[i].1)
    }
}

fn format_error(source: &str, reason: impl Into<String>) -> Error {
    Error::Format { format: FORMAT, source_name: source.into(), reason: reason.into() }
}

/// The `checksum` a kerust file carries: SHA-256 of every metadata entry but `checksum` and every tensor
/// (name, shape, bytes), each length-prefixed, in sorted order. Tools that edit a file (the fuzz harness)
/// recompute it with this.
pub fn checksum<'a>(
    metadata: &BTreeMap<String, String>,
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [u8])>,
) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (k, v) in metadata.iter().filter(|(k, _)| *k != "checksum") {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    let mut tensors: Vec<_> = tensors.into_iter().collect();
    tensors.sort_by_key(|t| t.0);
    for (name, shape, data) in tensors {
        field(name.as_bytes());
        let dims: Vec<u8> = shape.iter().flat_map(|&d| (d as u64).to_le_bytes()).collect();
        field(&dims);
        field(data);
    }
    let digest = h.finalize();
    format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The bytes of a file: `format` (`kerust.model` or `kerust.weights`), `extra` metadata, the tensors.
pub(crate) fn encode(
    format: &str,
    extra: &[(&str, String)],
    tensors: &[(String, &Tensor)],
) -> Result<Vec<u8>> {
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), format.to_string());
    metadata.insert("format_version".to_string(), FORMAT_VERSION.to_string());
    for (k, v) in extra {
        metadata.insert((*k).to_string(), v.clone());
    }
    let mut seen = std::collections::HashSet::new();
    let mut raw: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid_argument(
                "weights",
                name,
                "two weights have this name; rename a layer",
            ));
        }
        if name.is_empty() || name == "__metadata__" {
            return Err(Error::invalid_argument("weights", name, "is not a valid tensor name"));
        }
        let bytes: Vec<u8> = t.iter().flat_map(|x| x.to_le_bytes()).collect();
        raw.push((name.clone(), t.shape().to_vec(), bytes));
    }
    let sum = checksum(&metadata, raw.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())));
    metadata.insert("checksum".to_string(), sum);
    Ok(serialize(&metadata, raw))
}

/// The safetensors bytes of `metadata` and `tensors` (all `F32`), the same for the same content: the header
/// lists the metadata in key order and the tensors in name order (the safetensors crate's writer takes a
/// `HashMap` and so orders the metadata differently on every call), tensor data follows in that order, and the
/// header is padded with spaces to a multiple of 8 bytes, as safetensors writes it.
fn serialize(
    metadata: &BTreeMap<String, String>,
    mut tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
) -> Vec<u8> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = format!("{{\"__metadata__\":{}", json(metadata));
    let mut offset = 0usize;
    for (name, shape, data) in &tensors {
        let end = offset + data.len();
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
            json(name),
            json(shape)
        ));
        offset = end;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, _, data) in &tensors {
        out.extend_from_slice(data);
    }
    out
}

/// JSON text of a header value (a string, a map of strings, a shape): these always serialize.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// What a file that is no safetensors file seems to be, from its first bytes: a Keras `.h5` (HDF5) or `.keras`
/// (zip) model, or text. `None` for anything else, which the header checks then describe.
fn looks_like(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        return Some("an HDF5 file, such as a Keras .h5 model");
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Some("a zip archive, such as a Keras 3 .keras model");
    }
    // A safetensors file starts with its header length, a little-endian u64 whose high bytes are zero: eight
    // bytes of printable text are a header far larger than any file.
    let head = bytes.get(..8)?;
    let text = head.iter().all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    match bytes.first() {
        Some(b'{' | b'[') if text => Some("a JSON text file"),
        _ if text => Some("a text file"),
        _ => None,
    }
}

/// Parses and checks `bytes` (from `source`, for messages): the safetensors structure, the format version,
/// the checksum (required when the file says it is a kerust file), and `F32` tensors.
pub(crate) fn decode(bytes: &[u8], source: &str) -> Result<Decoded> {
    let len = bytes.len();
    if let Some(kind) = looks_like(bytes) {
        return Err(format_error(
            source,
            format!(
                "not a kerust model file (this looks like {kind}); kerust reads the safetensors files that \
                 Model::save and save_weights write"
            ),
        ));
    }
    let Some(head) = bytes.get(..8) else {
        return Err(format_error(
            source,
            format!("truncated: the file has {len} bytes, fewer than the 8 of the header length"),
        ));
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(head);
    let header_len = u64::from_le_bytes(n);
    if header_len > (len as u64).saturating_sub(8) {
        return Err(format_error(
            source,
            format!(
                "truncated or corrupt: the header length at byte 0 says the header ends at byte {}, but the \
                 file ends at byte {len}",
                header_len.saturating_add(8)
            ),
        ));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| format_error(source, explain(&e, bytes)))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| format_error(source, e.to_string()))?;
    let metadata: BTreeMap<String, String> =
        meta.metadata().clone().unwrap_or_default().into_iter().collect();

    if let Some(v) = metadata.get("format_version") {
        match v.parse::<u32>() {
            Ok(v) if v <= FORMAT_VERSION => {}
            Ok(v) => {
                return Err(format_error(
                    source,
                    format!(
                        "format_version {v} is from a newer kerust; this version reads format_version up to \
                         {FORMAT_VERSION}"
                    ),
                ))
            }
            Err(_) => return Err(format_error(source, format!("format_version `{v}` is not a number"))),
        }
    }
    let is_kerust = metadata.get("format").is_some_and(|f| f.starts_with("kerust"));
    if is_kerust && !metadata.contains_key("format_version") {
        return Err(format_error(source, "the metadata has no `format_version`"));
    }

    let mut tensors = Vec::new();
    let mut raw = Vec::new();
    for name in meta.offset_keys() {
        let view = st.tensor(&name).map_err(|e| format_error(source, format!("tensor {name}: {e}")))?;
        if view.dtype() != Dtype::F32 {
            return Err(format_error(
                source,
                format!("tensor {name} has dtype {:?}; expected F32", view.dtype()),
            ));
        }
        raw.push((name, view.shape().to_vec(), view.data()));
    }
    if is_kerust {
        let Some(stored) = metadata.get("checksum") else {
            return Err(format_error(source, "the metadata has no `checksum`"));
        };
        let computed = checksum(&metadata, raw.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), &d[..])));
        if *stored != computed {
            return Err(format_error(
                source,
                format!("checksum mismatch: the file is corrupt (stored {stored}, computed {computed})"),
            ));
        }
    }
    for (name, shape, data) in raw {
        let values: Vec<f32> =
            data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let t = ArrayD::from_shape_vec(IxDyn(&shape), values)
            .map_err(|e| format_error(source, format!("tensor {name} of shape {shape:?}: {e}")))?;
        tensors.push((name, t));
    }
    let positions = tensors.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
    Ok(Decoded { metadata, tensors, positions })
}

/// A safetensors error, with the byte offsets where they help.
fn explain(e: &SafeTensorError, bytes: &[u8]) -> String {
    match e {
        SafeTensorError::MetadataIncompleteBuffer => {
            // The data section must end where the last tensor ends.
            let n = bytes.get(..8).map_or(0, |h| {
                let mut a = [0u8; 8];
                a.copy_from_slice(h);
                u64::from_le_bytes(a) as usize
            });
            let end = bytes
                .get(8..8 + n)
                .and_then(|h| serde_json::from_slice::<serde_json::Value>(h).ok())
                .and_then(|v| {
                    v.as_object()?.values().filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64()).max()
                })
                .unwrap_or(0);
            format!(
                "truncated or corrupt: the tensors end at byte {} of the file, but the file has {} bytes",
                8 + n as u64 + end,
                bytes.len()
            )
        }
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let a = ndarray::array![[1.0f32, -2.5], [3.0, f32::MIN_POSITIVE]].into_dyn();
        let b = ndarray::array![7.0f32].into_dyn();
        let bytes = encode("kerust.weights", &[], &[("a/kernel".into(), &a), ("a/bias".into(), &b)]).unwrap();
        let d = decode(&bytes, "t").unwrap();
        assert_eq!(d.get("a/kernel"), Some(&a));
        assert_eq!(d.get("a/bias"), Some(&b));
        assert!(encode("kerust.weights", &[], &[("x".into(), &a), ("x".into(), &b)]).is_err());
        let err = decode(&bytes[..bytes.len() - 3], "t").err().unwrap().to_string();
        assert!(err.contains("byte"), "{err}");
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode(&flipped, "t").err().unwrap().to_string().contains("checksum"));
    }
}
