//! The writer: the simplest layout every HDF5 reader knows (superblock 0, version-1 object headers,
//! symbol-table groups with a local heap and version-1 B-tree, contiguous datasets, strings fixed-length).
use super::read::err;
use super::tree::{Attr, Data, Dataset, Group, Node};
use crate::Result;

const UNDEFINED: u64 = u64::MAX;
/// Symbol table nodes hold 2 * LEAF_K entries, group B-tree nodes 2 * INTERNAL_K children (HDF5's defaults).
const LEAF_K: usize = 4;
const INTERNAL_K: usize = 16;
const SNOD_SIZE: usize = 8 + 2 * LEAF_K * 40;
const TREE_SIZE: usize = 24 + (2 * INTERNAL_K + 1) * 8 + 2 * INTERNAL_K * 8;

struct Writer {
    out: Vec<u8>,
}

/// What a symbol-table entry caches for a group: its B-tree and local heap.
type Stab = Option<(u64, u64)>;

pub(super) fn write(root: &Group) -> Result<Vec<u8>> {
    let mut w = Writer { out: vec![0; 96] };
    let (addr, stab) = w.group(root, "")?;
    let eof = w.out.len() as u64;
    let mut sb = Vec::with_capacity(96);
    sb.extend_from_slice(b"\x89HDF\r\n\x1a\n");
    sb.extend_from_slice(&[0, 0, 0, 0, 0, 8, 8, 0]);
    sb.extend_from_slice(&(LEAF_K as u16).to_le_bytes());
    sb.extend_from_slice(&(INTERNAL_K as u16).to_le_bytes());
    sb.extend_from_slice(&0u32.to_le_bytes());
    for v in [0, UNDEFINED, eof, UNDEFINED] {
        sb.extend_from_slice(&v.to_le_bytes());
    }
    entry(&mut sb, 0, addr, stab);
    w.out[..96].copy_from_slice(&sb);
    Ok(w.out)
}

/// A symbol-table entry: name offset, object header address, and the cached B-tree and heap of a group.
fn entry(out: &mut Vec<u8>, name: u64, addr: u64, stab: Stab) {
    out.extend_from_slice(&name.to_le_bytes());
    out.extend_from_slice(&addr.to_le_bytes());
    out.extend_from_slice(&u32::from(stab.is_some()).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let (b, h) = stab.unwrap_or((0, 0));
    out.extend_from_slice(&b.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
}

fn pad8(v: &mut Vec<u8>) {
    v.resize(v.len().div_ceil(8) * 8, 0);
}

fn place(path: &str) -> String {
    format!("object at {}", if path.is_empty() { "/" } else { path })
}

fn dataspace(dims: &[u64]) -> Vec<u8> {
    let mut v = vec![1, dims.len() as u8, 0, 0, 0, 0, 0, 0];
    for d in dims {
        v.extend_from_slice(&d.to_le_bytes());
    }
    v
}

fn float_type(size: u32) -> Vec<u8> {
    let (sign, exp_loc, exp_size, mant, bias): (u8, u8, u8, u8, u32) =
        if size == 4 { (31, 23, 8, 23, 127) } else { (63, 52, 11, 52, 1023) };
    let mut v = vec![0x11, 0x20, sign, 0];
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&(size as u16 * 8).to_le_bytes());
    v.extend_from_slice(&[exp_loc, exp_size, 0, mant]);
    v.extend_from_slice(&bias.to_le_bytes());
    v
}

fn int_type(size: u32, signed: bool) -> Vec<u8> {
    let mut v = vec![0x10, if signed { 0x08 } else { 0 }, 0, 0];
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&(size as u16 * 8).to_le_bytes());
    v
}

fn string_type(size: usize, utf8: bool) -> Vec<u8> {
    // Null-padded, as h5py writes numpy bytes.
    let mut v = vec![0x13, 0x01 | if utf8 { 0x10 } else { 0 }, 0, 0];
    v.extend_from_slice(&(size as u32).to_le_bytes());
    v
}

/// An attribute message (version 1): name, datatype, dataspace, then the values.
fn attribute(name: &str, value: &Attr, path: &str) -> Result<Vec<u8>> {
    let (dtype, dims, data): (Vec<u8>, Vec<u64>, Vec<u8>) = match value {
        Attr::Str(s) => {
            let size = s.len().max(1);
            let mut d = s.as_bytes().to_vec();
            d.resize(size, 0);
            (string_type(size, !s.is_ascii()), vec![], d)
        }
        Attr::Strs(v) => {
            let size = v.iter().map(String::len).max().unwrap_or(0).max(1);
            let mut d = Vec::with_capacity(size * v.len());
            for s in v {
                d.extend_from_slice(s.as_bytes());
                d.resize(d.len() + size - s.len(), 0);
            }
            (string_type(size, v.iter().any(|s| !s.is_ascii())), vec![v.len() as u64], d)
        }
        Attr::F64(v) => {
            (float_type(8), vec![v.len() as u64], v.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        Attr::I64(v) => {
            (int_type(8, true), vec![v.len() as u64], v.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
    };
    if name.is_empty() || name.contains('\0') || name.len() >= u16::MAX as usize {
        return Err(err(
            place(path),
            format!("an attribute named {name:?} (expected a non-empty name without NUL)"),
        ));
    }
    let space = dataspace(&dims);
    let mut m = vec![1, 0];
    m.extend_from_slice(&(name.len() as u16 + 1).to_le_bytes());
    m.extend_from_slice(&(dtype.len() as u16).to_le_bytes());
    m.extend_from_slice(&(space.len() as u16).to_le_bytes());
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    pad8(&mut m);
    m.extend_from_slice(&dtype);
    pad8(&mut m);
    m.extend_from_slice(&space);
    pad8(&mut m);
    m.extend_from_slice(&data);
    pad8(&mut m);
    if m.len() > u16::MAX as usize || name.len() >= u16::MAX as usize {
        return Err(err(
            place(path),
            format!("attribute {name:?} takes {} bytes (an attribute message holds at most 65,535)", m.len()),
        ));
    }
    Ok(m)
}

impl Writer {
    fn align(&mut self) -> u64 {
        pad8(&mut self.out);
        self.out.len() as u64
    }

    /// A version-1 object header holding `msgs` (type, padded body); its address.
    fn header(&mut self, msgs: &[(u16, Vec<u8>)], path: &str) -> Result<u64> {
        let addr = self.align();
        let size: usize = msgs.iter().map(|(_, m)| 8 + m.len()).sum();
        let count =
            u16::try_from(msgs.len()).map_err(|_| err(place(path), "more than 65,535 header messages"))?;
        let size = u32::try_from(size).map_err(|_| err(place(path), "an object header over 4 GiB"))?;
        self.out.extend_from_slice(&[1, 0]);
        self.out.extend_from_slice(&count.to_le_bytes());
        self.out.extend_from_slice(&1u32.to_le_bytes());
        self.out.extend_from_slice(&size.to_le_bytes());
        self.out.extend_from_slice(&[0; 4]);
        for (kind, m) in msgs {
            self.out.extend_from_slice(&kind.to_le_bytes());
            self.out.extend_from_slice(&(m.len() as u16).to_le_bytes());
            self.out.extend_from_slice(&[0; 4]);
            self.out.extend_from_slice(m);
        }
        Ok(addr)
    }

    fn attributes(attrs: &[(String, Attr)], path: &str, msgs: &mut Vec<(u16, Vec<u8>)>) -> Result<()> {
        for (i, (name, value)) in attrs.iter().enumerate() {
            if attrs[..i].iter().any(|(n, _)| n == name) {
                return Err(err(place(path), format!("two attributes named {name:?}")));
            }
            msgs.push((0x0C, attribute(name, value, path)?));
        }
        Ok(())
    }

    fn dataset(&mut self, d: &Dataset, path: &str) -> Result<u64> {
        let count = d.shape.iter().try_fold(1usize, |n, &s| n.checked_mul(s));
        if d.shape.len() > 32 || count != Some(d.data.len()) {
            return Err(err(
                place(path),
                format!(
                    "shape {:?} for {} elements (expected their product, rank at most 32)",
                    d.shape,
                    d.data.len()
                ),
            ));
        }
        let (dtype, bytes): (Vec<u8>, Vec<u8>) = match &d.data {
            Data::F32(v) => (float_type(4), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::F64(v) => (float_type(8), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::I64(v) => (int_type(8, true), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::I32(v) => (int_type(4, true), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::U8(v) => (int_type(1, false), v.clone()),
        };
        let data_addr = if bytes.is_empty() { UNDEFINED } else { self.align() };
        self.out.extend_from_slice(&bytes);
        let dims: Vec<u64> = d.shape.iter().map(|&s| s as u64).collect();
        let mut layout = vec![3, 1];
        layout.extend_from_slice(&data_addr.to_le_bytes());
        layout.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        let mut msgs = vec![(1, dataspace(&dims)), (3, dtype), (8, layout)];
        for (_, m) in msgs.iter_mut() {
            pad8(m);
        }
        Self::attributes(&d.attrs, path, &mut msgs)?;
        self.header(&msgs, path)
    }

    /// A group and its members (written first); its header address and its B-tree and heap addresses.
    fn group(&mut self, g: &Group, path: &str) -> Result<(u64, Stab)> {
        let mut members: Vec<&(String, Node)> = g.members.iter().collect();
        // Symbol tables keep their members sorted by name (HDF5 compares the bytes).
        members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for w in members.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(err(place(path), format!("two members named {:?}", w[0].0)));
            }
        }
        let mut entries = Vec::with_capacity(members.len());
        for (name, node) in members {
            if name.is_empty() || name.contains('/') || name.contains('\0') || name == "." {
                return Err(err(
                    place(path),
                    format!("a member named {name:?} (expected a name without `/` or NUL)"),
                ));
            }
            let child = format!("{path}/{name}");
            let (addr, stab) = match node {
                Node::Group(sub) => self.group(sub, &child)?,
                Node::Dataset(d) => (self.dataset(d, &child)?, None),
            };
            entries.push((name.as_str(), addr, stab));
        }
        // Local heap: the empty string at offset 0, then each name, NUL-terminated, padded to 8 bytes.
        let mut names = vec![0u8; 8];
        let mut offsets = Vec::with_capacity(entries.len());
        for (name, _, _) in &entries {
            offsets.push(names.len() as u64);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
            pad8(&mut names);
        }
        let heap = self.align();
        self.out.extend_from_slice(b"HEAP\0\0\0\0");
        self.out.extend_from_slice(&(names.len() as u64).to_le_bytes());
        self.out.extend_from_slice(&1u64.to_le_bytes()); // no free block
        self.out.extend_from_slice(&(heap + 32).to_le_bytes());
        self.out.extend_from_slice(&names);
        // Symbol table nodes of up to 2K entries; the B-tree's children: (address, heap offset of the last name).
        let mut children: Vec<(u64, u64)> = Vec::new();
        for (i, chunk) in entries.chunks(2 * LEAF_K).enumerate() {
            let addr = self.align();
            self.out.extend_from_slice(b"SNOD\x01\0");
            self.out.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
            for (j, (_, a, stab)) in chunk.iter().enumerate() {
                entry(&mut self.out, offsets[i * 2 * LEAF_K + j], *a, *stab);
            }
            self.out.resize(addr as usize + SNOD_SIZE, 0);
            children.push((addr, offsets[i * 2 * LEAF_K + chunk.len() - 1]));
        }
        let mut level = 0u8;
        loop {
            let nodes = children.len().div_ceil(2 * INTERNAL_K).max(1);
            let first = self.align();
            let mut parents = Vec::with_capacity(nodes);
            for n in 0..nodes {
                let part = &children[(n * 2 * INTERNAL_K).min(children.len())
                    ..((n + 1) * 2 * INTERNAL_K).min(children.len())];
                let addr = first + (n * TREE_SIZE) as u64;
                let left = if n == 0 { UNDEFINED } else { addr - TREE_SIZE as u64 };
                let right = if n + 1 == nodes { UNDEFINED } else { addr + TREE_SIZE as u64 };
                self.out.extend_from_slice(b"TREE\0");
                self.out.push(level);
                self.out.extend_from_slice(&(part.len() as u16).to_le_bytes());
                self.out.extend_from_slice(&left.to_le_bytes());
                self.out.extend_from_slice(&right.to_le_bytes());
                // The first key of a node is the name before its first child: the last name of the node before.
                let first_key = if n == 0 { 0 } else { children[n * 2 * INTERNAL_K - 1].1 };
                self.out.extend_from_slice(&first_key.to_le_bytes());
                for (child, last) in part {
                    self.out.extend_from_slice(&child.to_le_bytes());
                    self.out.extend_from_slice(&last.to_le_bytes());
                }
                self.out.resize(addr as usize + TREE_SIZE, 0);
                parents.push((addr, part.last().map_or(0, |p| p.1)));
            }
            if nodes == 1 {
                break;
            }
            children = parents;
            level += 1;
        }
        // The root node is the last written.
        let btree = self.out.len() as u64 - TREE_SIZE as u64;
        let mut stab = btree.to_le_bytes().to_vec();
        stab.extend_from_slice(&heap.to_le_bytes());
        let mut msgs = vec![(0x11, stab)];
        Self::attributes(&g.attrs, path, &mut msgs)?;
        Ok((self.header(&msgs, path)?, Some((btree, heap))))
    }
}
