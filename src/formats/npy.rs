//! numpy's `.npy` and `.npz` files, as far as Keras' sequence datasets need them: integer arrays, and
//! one-dimensional object arrays of lists of ints (ragged sequences, pickled: only the opcodes and globals numpy
//! writes for such an array are accepted, and no code runs).
//!
//! ```
//! use kerust::formats::npy::{self, NpyArray};
//! // What `np.save(f, np.array([1, 2, 3]))` writes.
//! let mut bytes = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
//! let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }";
//! bytes.extend(format!("{header:<117}\n").bytes());
//! for v in [1i64, 2, 3] {
//!     bytes.extend(v.to_le_bytes());
//! }
//! let NpyArray::Ints { shape, data } = npy::read_npy(&bytes)? else { unreachable!() };
//! assert_eq!((shape, data), (vec![3], vec![1, 2, 3]));
//! # Ok::<(), kerust::Error>(())
//! ```
use super::zip::{self, ZipLimits};
use crate::{Error, Result};

/// An array read from a `.npy` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NpyArray {
    /// An integer array (any of numpy's `int8`-`int64`, `uint8`-`uint64` in either byte order), widened to
    /// `i64`, in C order.
    Ints {
        /// The array's shape.
        shape: Vec<usize>,
        /// The elements, row-major.
        data: Vec<i64>,
    },
    /// A one-dimensional object array whose elements are Python lists of ints: one `Vec` a row.
    IntLists(Vec<Vec<i64>>),
}

/// What [`read_npz`] accepts: 64 members, 256 MiB each uncompressed, 512 MiB in all (Keras' `imdb.npz` holds
/// some 40 MB).
pub const NPZ_LIMITS: ZipLimits =
    ZipLimits { max_entries: 64, max_entry_bytes: 256 << 20, max_total_bytes: 512 << 20 };

fn err(place: &str, reason: impl Into<String>) -> Error {
    Error::FileFormat { format: "npy", place: place.to_string(), reason: reason.into() }
}

/// Reads an `.npz` archive (numpy's `savez` or `savez_compressed`): `(member name without .npy, array)` for
/// each `.npy` member, in the archive's order; other members are skipped, as Keras' loader skips them.
///
/// # Errors
/// [`Error::FileFormat`] naming the format (`zip`, `npy` or `pickle`), the member and what was expected and
/// what came: a malformed or oversized archive (beyond [`NPZ_LIMITS`]), a member that [`read_npy`] refuses.
pub fn read_npz(bytes: &[u8]) -> Result<Vec<(String, NpyArray)>> {
    let mut out = Vec::new();
    for (name, data) in zip::read(bytes, &NPZ_LIMITS)? {
        let Some(stem) = name.strip_suffix(".npy") else { continue };
        let array = read_npy(&data).map_err(|e| match e {
            Error::FileFormat { format, place, reason } => {
                Error::FileFormat { format, place: format!("member {name}: {place}"), reason }
            }
            other => other,
        })?;
        out.push((stem.to_string(), array));
    }
    Ok(out)
}

/// Reads one `.npy` file (format versions 1 to 3): an integer array, or an object array of lists of ints.
///
/// # Errors
/// [`Error::FileFormat`]: not the `.npy` magic, a version other than 1-3, a header that is not numpy's dict
/// (`descr`, `fortran_order`, `shape`), another dtype (floats, strings, ...), a data length that does not
/// match the shape, a multi-dimensional Fortran-ordered array, or an object array that is not a pickled
/// one-dimensional array of lists of ints.
pub fn read_npy(bytes: &[u8]) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(err("magic", "the 6 bytes \\x93NUMPY that start a .npy file, found other bytes"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10usize),
        2 | 3 if bytes.len() >= 12 => {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(err("magic", format!("format version 1, 2 or 3, found {v}"))),
    };
    let end = start.checked_add(header_len).filter(|&e| e <= bytes.len()).ok_or_else(|| {
        err(
            "header",
            format!("{header_len} bytes of header, but the file has {} after the magic", bytes.len() - start),
        )
    })?;
    let header = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| err("header", "an ASCII header, found bytes that are not UTF-8"))?;
    let header = Header::parse(header)?;
    let data = &bytes[end..];
    match header.descr.as_str() {
        // Older numpy wrote the object dtype as '|O8'.
        "|O" | "|O8" => {
            if header.shape.len() != 1 {
                return Err(err(
                    "header",
                    format!("an object array of one dimension, found shape {:?}", header.shape),
                ));
            }
            let rows = super::pickle::read_object_array_of_int_lists(data)?;
            if rows.len() != header.shape[0] {
                return Err(err(
                    "data",
                    format!(
                        "{} elements as the header's shape says, found {} in the pickle",
                        header.shape[0],
                        rows.len()
                    ),
                ));
            }
            Ok(NpyArray::IntLists(rows))
        }
        descr => {
            let (big_endian, signed, size) = int_descr(descr)?;
            if header.fortran_order && header.shape.len() > 1 {
                return Err(err(
                    "header",
                    "a C-ordered array (fortran_order False), found a Fortran-ordered one",
                ));
            }
            let count = header.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            let expected = count.and_then(|c| c.checked_mul(size));
            if expected != Some(data.len()) {
                return Err(err(
                    "data",
                    format!(
                        "{} bytes for shape {:?} of {descr}, found {}",
                        expected.map_or("more than addressable".to_string(), |e| e.to_string()),
                        header.shape,
                        data.len()
                    ),
                ));
            }
            let mut values = Vec::with_capacity(data.len() / size);
            for (i, chunk) in data.chunks_exact(size).enumerate() {
                let mut raw = [0u8; 8];
                raw[..size].copy_from_slice(chunk);
                if big_endian {
                    raw[..size].reverse();
                }
                let unsigned = u64::from_le_bytes(raw);
                let v = if signed {
                    let shift = 64 - 8 * size as u32;
                    ((unsigned << shift) as i64) >> shift
                } else {
                    i64::try_from(unsigned).map_err(|_| {
                        err("data", format!("element {i}: an integer that fits in i64, found {unsigned}"))
                    })?
                };
                values.push(v);
            }
            Ok(NpyArray::Ints { shape: header.shape, data: values })
        }
    }
}

/// `(big-endian, signed, size)` of an integer dtype such as `<i8` or `|u1`.
fn int_descr(descr: &str) -> Result<(bool, bool, usize)> {
    let b = descr.as_bytes();
    let parsed = match b {
        [order @ (b'<' | b'>' | b'|'), kind @ (b'i' | b'u'), size @ (b'1' | b'2' | b'4' | b'8')] => {
            let size = usize::from(size - b'0');
            (*order != b'|' || size == 1).then_some((*order == b'>', *kind == b'i', size))
        }
        _ => None,
    };
    parsed.ok_or_else(|| {
        err(
            "header",
            format!(
                "an integer dtype (such as '<i8') or an object array ('|O'), found {:?}",
                descr.chars().take(40).collect::<String>()
            ),
        )
    })
}

/// The header dict: `{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }`.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    fn parse(text: &str) -> Result<Header> {
        let mut p = Parser { s: text.as_bytes(), pos: 0 };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        p.expect(b'{')?;
        loop {
            if p.peek() == Some(b'}') {
                p.pos += 1;
                break;
            }
            let key = p.string()?;
            p.expect(b':')?;
            match key.as_str() {
                "descr" => descr = Some(p.string()?),
                "fortran_order" => fortran_order = Some(p.boolean()?),
                "shape" => shape = Some(p.shape()?),
                other => {
                    return Err(err(
                        "header",
                        format!(
                            "the keys descr, fortran_order and shape, found {:?}",
                            other.chars().take(40).collect::<String>()
                        ),
                    ))
                }
            }
            match p.peek() {
                Some(b',') => p.pos += 1,
                Some(b'}') => {}
                _ => return Err(p.fail("',' or '}'")),
            }
        }
        if p.peek().is_some() {
            return Err(p.fail("the end of the header after '}'"));
        }
        match (descr, fortran_order, shape) {
            (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header { descr, fortran_order, shape }),
            _ => Err(err("header", "all three keys descr, fortran_order and shape, found fewer")),
        }
    }
}

/// A cursor over the header's Python literal; whitespace is skipped before every token.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.s.get(self.pos).is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
        self.s.get(self.pos).copied()
    }

    fn fail(&self, expected: &str) -> Error {
        let found = String::from_utf8_lossy(&self.s[self.pos.min(self.s.len())..]);
        let found: String = found.chars().take(20).collect();
        err("header", format!("{expected} at character {}, found {found:?}", self.pos))
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.fail(&format!("'{}'", char::from(c))))
        }
    }

    fn string(&mut self) -> Result<String> {
        let Some(quote @ (b'\'' | b'"')) = self.peek() else { return Err(self.fail("a quoted string")) };
        let start = self.pos + 1;
        let Some(len) = self.s[start..].iter().position(|&b| b == quote) else {
            return Err(self.fail("a closed string"));
        };
        self.pos = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn word(&mut self, w: &str) -> bool {
        self.peek();
        if self.s[self.pos..].starts_with(w.as_bytes()) {
            self.pos += w.len();
            true
        } else {
            false
        }
    }

    fn boolean(&mut self) -> Result<bool> {
        if self.word("True") {
            Ok(true)
        } else if self.word("False") {
            Ok(false)
        } else {
            Err(self.fail("True or False"))
        }
    }

    /// A tuple of non-negative ints, `()`, `(3,)` or `(2, 3)`; Python 2's `3L` is accepted.
    fn shape(&mut self) -> Result<Vec<usize>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    return Ok(dims);
                }
                Some(b'0'..=b'9') => {
                    let start = self.pos;
                    while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                        self.pos += 1;
                    }
                    let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
                    let dim = digits.parse::<usize>().map_err(|_| {
                        err("header", format!("a dimension that fits in usize, found {digits}"))
                    })?;
                    if dims.len() == 32 {
                        return Err(err("header", "at most 32 dimensions (numpy's limit), found more"));
                    }
                    dims.push(dim);
                    if self.s.get(self.pos) == Some(&b'L') {
                        self.pos += 1;
                    }
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b')') => {}
                        _ => return Err(self.fail("',' or ')' in the shape")),
                    }
                }
                _ => return Err(self.fail("a dimension or ')' in the shape")),
            }
        }
    }
}
