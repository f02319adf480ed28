//! The pickle subset that numpy writes for a one-dimensional object array of Python lists of ints (the ragged
//! sequences of Keras' `imdb.npz` and `reuters.npz`), and nothing else.
//!
//! A pickle is a program for a stack machine. This reader runs only the opcodes such a stream uses (protocols
//! 2 to 5: `PROTO`, `FRAME`, the memo, ints, strings and bytes, lists, tuples, `GLOBAL`/`STACK_GLOBAL`,
//! `REDUCE`, `BUILD`), and only the three globals Keras' own restricted unpickler allows: `numpy.ndarray`,
//! `numpy.dtype` and `_reconstruct` of `numpy.core.multiarray` or `numpy._core.multiarray`. No code runs:
//! `REDUCE` records the call, and the result is then checked against the one shape numpy produces,
//! `_reconstruct(ndarray, (0,), b'b')` with the state `(1, (n,), dtype('O8'), fortran, [list, ...])`.
//!
//! Hostile input: every count and length is checked against the bytes that remain before anything is sized
//! by it; what the machine builds is counted, and a stream that builds more than 16 MiB plus 16 bytes per
//! byte of the stream is an error (real data builds about 3 bytes per byte); values live in an arena and refer to each other by index, and the result is read to a fixed depth
//! (array, list, int), so no input recurses; a list shared by two rows is refused rather than copied.
use std::collections::HashMap;

use crate::{Error, Result};

/// A value on the machine's stack: small values inline, the rest an index into the arena.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Node(usize),
}

/// The only callables a stream may name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    Reconstruct,
    Ndarray,
    Dtype,
}

/// A list's items: plain ints are kept unboxed, so that a list of word indices costs 8 bytes an entry.
#[derive(Debug)]
enum Items {
    Ints(Vec<i64>),
    Mixed(Vec<Value>),
}

#[derive(Debug)]
enum Node {
    /// A `str` or `bytes` (both are only compared with known ASCII text).
    Text(Vec<u8>),
    List(Items),
    Tuple(Vec<Value>),
    Global(Global),
    /// `callable(*args)` as recorded by `REDUCE`, with the state `BUILD` gave it.
    Object {
        class: Global,
        args: Value,
        state: Option<Value>,
    },
    /// A list already handed out as a row: a second reference to it is an error.
    Taken,
}

fn err(place: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::FileFormat { format: "pickle", place: place.into(), reason: reason.into() }
}

/// The stack machine.
struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The offset of the opcode being run, for messages.
    at: usize,
    arena: Vec<Node>,
    stack: Vec<Value>,
    /// Stack lengths at each `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Bytes held in the arena, the lists and the memo (the stack is counted from its length).
    held: usize,
    /// The most bytes the machine may hold: see [`memory_limit`].
    limit: usize,
}

/// What one memo entry costs, about (a hash map's key, value and overhead).
const MEMO_ENTRY_BYTES: usize = 48;

/// The most bytes the reader holds for a stream of `len` bytes: 16 MiB, plus 16 bytes for each byte of the
/// stream. Real data needs far less (an int of a list takes at least 2 bytes of the stream and 8 in memory);
/// without a bound, a stream of one-byte opcodes that each make an object would take some 60 times its size.
fn memory_limit(len: usize) -> usize {
    (16usize << 20).saturating_add(len.saturating_mul(16))
}

impl<'a> Machine<'a> {
    fn place(&self) -> String {
        format!("opcode at byte {}", self.at)
    }

    fn fail<T>(&self, reason: impl Into<String>) -> Result<T> {
        Err(err(self.place(), reason))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        match self.pos.checked_add(n).filter(|&end| end <= self.bytes.len()) {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => self.fail(format!(
                "{n} bytes of argument, but only {} remain in the stream (truncated?)",
                self.bytes.len() - self.pos
            )),
        }
    }

    fn le(&mut self, n: usize) -> Result<u64> {
        Ok(self.take(n)?.iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
    }

    /// A length prefix of `n` bytes, which must fit in what remains.
    fn len_prefixed(&mut self, n: usize) -> Result<&'a [u8]> {
        let len = self.le(n)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.take(len)
    }

    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.fail("a value on the stack, found none (or only a MARK)");
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    /// The values above the topmost `MARK`, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let Some(mark) = self.marks.pop() else {
            return self.fail("a MARK before this opcode, found none");
        };
        Ok(self.stack.split_off(mark))
    }

    fn push_node(&mut self, node: Node) {
        self.held += std::mem::size_of::<Node>()
            + match &node {
                Node::Text(t) => t.len(),
                Node::Tuple(t) => t.len() * std::mem::size_of::<Value>(),
                _ => 0,
            };
        self.arena.push(node);
        self.stack.push(Value::Node(self.arena.len() - 1));
    }

    fn text(&self, v: Value) -> Option<&[u8]> {
        match v {
            Value::Node(i) => match &self.arena[i] {
                Node::Text(t) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    fn global(&self, module: &[u8], name: &[u8]) -> Result<Global> {
        match (module, name) {
            (b"numpy.core.multiarray" | b"numpy._core.multiarray", b"_reconstruct") => {
                Ok(Global::Reconstruct)
            }
            (b"numpy", b"ndarray") => Ok(Global::Ndarray),
            (b"numpy", b"dtype") => Ok(Global::Dtype),
            _ => self.fail(format!(
                "a numpy array's globals (numpy.ndarray, numpy.dtype, numpy.core.multiarray._reconstruct), \
                 found `{}.{}`",
                String::from_utf8_lossy(module),
                String::from_utf8_lossy(name)
            )),
        }
    }

    fn append(&mut self, list: Value, items: Vec<Value>) -> Result<()> {
        let Value::Node(i) = list else {
            return self.fail(format!("APPEND(S) onto a list, found {list:?}"));
        };
        let Node::List(existing) = &mut self.arena[i] else {
            return self.fail("APPEND(S) onto a list, found another kind of object");
        };
        let value_bytes = std::mem::size_of::<Value>();
        for item in items {
            match (&mut *existing, item) {
                (Items::Ints(ints), Value::Int(v)) => {
                    ints.push(v);
                    self.held += 8;
                }
                (Items::Mixed(values), item) => {
                    values.push(item);
                    self.held += value_bytes;
                }
                (Items::Ints(ints), item) => {
                    self.held += (ints.len() + 1) * value_bytes;
                    let mut values: Vec<Value> = ints.iter().map(|&v| Value::Int(v)).collect();
                    values.push(item);
                    *existing = Items::Mixed(values);
                }
            }
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let Some(&top) = self.stack.last() else {
            return self.fail("a value on the stack to memoize, found none");
        };
        if self.memo.insert(key, top).is_none() {
            self.held += MEMO_ENTRY_BYTES;
        }
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        match u32::try_from(key).ok().and_then(|k| self.memo.get(&k)) {
            Some(&v) => {
                self.stack.push(v);
                Ok(())
            }
            None => self.fail(format!("memo entry {key}, which was never stored")),
        }
    }

    /// Runs to `STOP` and returns the one value left.
    fn run(&mut self) -> Result<Value> {
        loop {
            let in_use = self.held + (self.stack.len() + self.marks.len()) * std::mem::size_of::<Value>();
            if in_use > self.limit {
                return self.fail(format!(
                    "a stream that builds at most {} bytes of objects (16 MiB + 16 per byte of its {}), found \
                     one that builds more",
                    self.limit,
                    self.bytes.len()
                ));
            }
            self.at = self.pos;
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    // PROTO
                    let v = self.take(1)?[0];
                    if !(2..=5).contains(&v) {
                        return self.fail(format!("protocol 2 to 5, found {v}"));
                    }
                }
                0x95 => {
                    // FRAME: a length hint for buffered readers; the whole stream is in memory.
                    self.take(8)?;
                }
                b'.' => {
                    let value = self.pop()?;
                    if !self.stack.is_empty() || !self.marks.is_empty() {
                        return self.fail("STOP with exactly one value on the stack, found more, or a MARK");
                    }
                    return Ok(value);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.le(1)?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.le(2)?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'J' => {
                    let v = self.le(4)? as u32 as i32;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                0x8a => {
                    // LONG1: a little-endian two's-complement integer of n bytes.
                    let n = usize::from(self.take(1)?[0]);
                    if n > 8 {
                        return self.fail(format!("an integer of at most 8 bytes, found one of {n}"));
                    }
                    let raw = self.le(n)?;
                    let v = if n == 0 {
                        0
                    } else {
                        let shift = 64 - 8 * n as u32;
                        ((raw << shift) as i64) >> shift
                    };
                    self.stack.push(Value::Int(v));
                }
                // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8, SHORT_BINBYTES, BINBYTES, BINBYTES8,
                // SHORT_BINSTRING, BINSTRING (Python 2's str).
                0x8c | b'C' | b'U' => {
                    let t = self.len_prefixed(1)?.to_vec();
                    self.push_node(Node::Text(t));
                }
                b'X' | b'B' | b'T' => {
                    let t = self.len_prefixed(4)?.to_vec();
                    self.push_node(Node::Text(t));
                }
                0x8d | 0x8e => {
                    let t = self.len_prefixed(8)?.to_vec();
                    self.push_node(Node::Text(t));
                }
                b']' => self.push_node(Node::List(Items::Ints(Vec::new()))),
                b')' => self.push_node(Node::Tuple(Vec::new())),
                b'a' => {
                    let item = self.pop()?;
                    let list = self.pop()?;
                    self.append(list, vec![item])?;
                    self.stack.push(list);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.pop()?;
                    self.append(list, items)?;
                    self.stack.push(list);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push_node(Node::Tuple(items));
                }
                b'c' => {
                    // GLOBAL: "module\nname\n".
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(module, name)?;
                    self.push_node(Node::Global(g));
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (self.text(module), self.text(name)) else {
                        return self.fail("STACK_GLOBAL's module and name as strings, found other values");
                    };
                    let g = self.global(module, name)?;
                    self.push_node(Node::Global(g));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let class = match callable {
                        Value::Node(i) => match self.arena[i] {
                            Node::Global(g) => g,
                            _ => return self.fail("REDUCE of a global, found another object"),
                        },
                        other => return self.fail(format!("REDUCE of a global, found {other:?}")),
                    };
                    // Kept by reference: copying the tuple would let a stream that reduces one large tuple
                    // many times grow memory quadratically.
                    if self.tuple(args).is_none() {
                        return self.fail(format!("REDUCE's arguments as a tuple, found {args:?}"));
                    }
                    self.push_node(Node::Object { class, args, state: None });
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.pop()?;
                    match target {
                        Value::Node(i) => match &mut self.arena[i] {
                            Node::Object { state: s @ None, .. } => *s = Some(state),
                            _ => return self.fail("BUILD on an object made by REDUCE, once"),
                        },
                        other => return self.fail(format!("BUILD on an object, found {other:?}")),
                    }
                    self.stack.push(target);
                }
                b'q' => {
                    let k = self.le(1)? as u32;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.le(4)? as u32;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).unwrap_or(u32::MAX);
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.le(1)?;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.le(4)?;
                    self.memo_get(k)?;
                }
                other => {
                    return self.fail(format!(
                        "one of the opcodes numpy writes for an object array of lists of ints, found 0x{other:02x} \
                         ({:?})",
                        char::from(other)
                    ))
                }
            }
        }
    }

    /// A newline-terminated argument of GLOBAL, at most 256 bytes.
    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = &self.bytes[self.pos..];
        let Some(n) = rest.iter().take(256).position(|&b| b == b'\n') else {
            return self.fail("a newline-terminated module or name of at most 256 bytes");
        };
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    fn node(&self, v: Value) -> Option<&Node> {
        match v {
            Value::Node(i) => Some(&self.arena[i]),
            _ => None,
        }
    }

    fn tuple(&self, v: Value) -> Option<&[Value]> {
        match self.node(v) {
            Some(Node::Tuple(t)) => Some(t),
            _ => None,
        }
    }
}

/// Reads a pickled one-dimensional numpy object array whose elements are lists of ints, as `np.save` writes
/// it after the `.npy` header, into one `Vec<i64>` a row.
///
/// # Errors
/// [`Error::FileFormat`] (format `"pickle"`) naming the byte offset of the first opcode outside the subset, a
/// global other than numpy's array globals, a truncated stream, or a result that is not such an array (another
/// dtype, more than one dimension, an element that is not a list of ints, an int beyond 64 bits).
pub(crate) fn read_object_array_of_int_lists(bytes: &[u8]) -> Result<Vec<Vec<i64>>> {
    let mut m = Machine {
        bytes,
        pos: 0,
        at: 0,
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        held: 0,
        limit: memory_limit(bytes.len()),
    };
    let top = m.run()?;
    if m.pos != bytes.len() {
        return Err(err(
            format!("byte {}", m.pos),
            format!("the end of the stream after STOP, found {} more bytes", bytes.len() - m.pos),
        ));
    }
    let bad = |what: &str| err("result", format!("numpy's pickle of an object array: {what}"));

    let Some(&Node::Object { class: Global::Reconstruct, args, state }) = m.node(top) else {
        return Err(bad("expected _reconstruct(...) at the top, found another object"));
    };
    let args = m.tuple(args).unwrap_or_default();
    let is_ndarray =
        args.first().and_then(|&a| m.node(a)).is_some_and(|n| matches!(n, Node::Global(Global::Ndarray)));
    if args.len() != 3 || !is_ndarray {
        return Err(bad("expected _reconstruct(numpy.ndarray, (0,), b'b')"));
    }
    let Some(state) = state.and_then(|s| m.tuple(s)) else {
        return Err(bad("expected the array's state tuple (version, shape, dtype, fortran, data)"));
    };
    let [_version, shape, dtype, _fortran, data] = state else {
        return Err(bad(&format!("expected a state tuple of 5 items, found {}", state.len())));
    };
    let rows = match m.tuple(*shape) {
        Some(&[Value::Int(n)]) if n >= 0 => n as u64,
        Some(s) => {
            return Err(bad(&format!("expected a one-dimensional shape (n,), found {} dimensions", s.len())))
        }
        None => return Err(bad("expected the shape as a tuple")),
    };
    match m.node(*dtype) {
        Some(&Node::Object { class: Global::Dtype, args, .. }) => {
            let name = m.tuple(args).and_then(|a| a.first()).and_then(|&a| m.text(a));
            if name != Some(b"O8".as_slice()) {
                let found = name.map(String::from_utf8_lossy);
                return Err(bad(&format!("expected dtype('O8') (object), found dtype({found:?})")));
            }
        }
        _ => return Err(bad("expected a numpy.dtype(...) as the state's dtype")),
    }
    let row_ids: Vec<Value> = match m.node(*data) {
        Some(Node::List(Items::Mixed(v))) => v.clone(),
        Some(Node::List(Items::Ints(v))) if v.is_empty() => Vec::new(),
        Some(Node::List(Items::Ints(_))) => {
            return Err(bad("expected each element to be a list, found an int"))
        }
        _ => return Err(bad("expected the elements as a list")),
    };
    if row_ids.len() as u64 != rows {
        return Err(bad(&format!("the shape says {rows} elements, the data holds {}", row_ids.len())));
    }
    let mut out = Vec::with_capacity(row_ids.len());
    for (r, v) in row_ids.into_iter().enumerate() {
        let Value::Node(i) = v else {
            return Err(bad(&format!("expected element {r} to be a list of ints, found {v:?}")));
        };
        match std::mem::replace(&mut m.arena[i], Node::Taken) {
            Node::List(Items::Ints(ints)) => out.push(ints),
            Node::Taken => {
                return Err(bad(&format!("element {r} is a list already used by another element")))
            }
            Node::List(Items::Mixed(_)) => {
                return Err(bad(&format!(
                    "expected element {r} to be a list of ints, found other items in it"
                )))
            }
            _ => {
                return Err(bad(&format!("expected element {r} to be a list of ints, found another object")))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps(np.array([[1, 300], []], dtype=object)... )`-like stream at protocol 2 built by hand.
    fn stream(rows: &[u8]) -> Vec<u8> {
        let mut b =
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R".to_vec();
        b.extend_from_slice(b"(K\x01K\x02\x85cnumpy\ndtype\nU\x02O8\x89\x88\x87R");
        b.extend_from_slice(b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]");
        b.extend_from_slice(rows);
        b.extend_from_slice(b"tb.");
        b
    }

    #[test]
    fn reads_a_hand_made_protocol_2_stream() {
        // rows: [1, 300, -2] (APPENDS) and [] shared through the memo would be refused; here two lists.
        let s = stream(b"(](K\x01M\x2c\x01J\xfe\xff\xff\xffe]e");
        assert_eq!(read_object_array_of_int_lists(&s).unwrap(), vec![vec![1, 300, -2], vec![]]);
    }

    #[test]
    fn a_list_used_twice_is_refused() {
        let s = stream(b"(]q\x00h\x00e");
        let e = read_object_array_of_int_lists(&s).unwrap_err().to_string();
        assert!(e.contains("already used"), "{e}");
    }

    #[test]
    fn a_foreign_global_is_refused() {
        let e = read_object_array_of_int_lists(b"\x80\x02cos\nsystem\n.").unwrap_err().to_string();
        assert!(e.contains("found `os.system`"), "{e}");
    }

    #[test]
    fn long1_is_signed() {
        let s = stream(b"(](\x8a\x02\x00\xff\x8a\x00\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7fe]e");
        assert_eq!(read_object_array_of_int_lists(&s).unwrap()[0], vec![-256, 0, i64::MAX]);
    }
}
