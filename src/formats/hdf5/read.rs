//! The reader: every offset and length checked against the file, every count and size bounded by [`Limits`]
//! before anything is allocated, and an object that is its own ancestor an error.
use std::collections::HashMap;
use std::io::Read;

use super::tree::{Attr, Data, Dataset, Group, Node};
use super::Limits;
use crate::{Error, Result};

const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
/// HDF5's own limit on a dataspace's rank.
const MAX_RANK: usize = 32;
/// The deepest B-tree (group or chunk index) followed.
const MAX_BTREE_DEPTH: usize = 64;

pub(super) fn err(place: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::FileFormat { format: "hdf5", place: place.into(), reason: reason.into() }
}

pub(super) fn at(path: &str) -> String {
    format!("object at {}", if path.is_empty() { "/" } else { path })
}

/// A bounds-checked little-endian cursor over part of the file.
#[derive(Clone)]
pub(super) struct Cur<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) so: usize,
    pub(super) sl: usize,
}

impl<'a> Cur<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            err(
                "structure",
                format!(
                    "{n} bytes at position {} run past the end of their block ({} bytes)",
                    self.pos,
                    self.buf.len()
                ),
            )
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(super) fn skip(&mut self, n: usize) -> Result<()> {
        self.take(n).map(|_| ())
    }
    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16> {
        Ok(self.uint(2)? as u16)
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(self.uint(4)? as u32)
    }
    /// An unsigned little-endian integer of `n` (at most 8) bytes.
    pub(super) fn uint(&mut self, n: usize) -> Result<u64> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }
    /// An address; `None` for the undefined address (all bits set).
    pub(super) fn addr(&mut self) -> Result<Option<u64>> {
        let v = self.uint(self.so)?;
        let undefined = if self.so == 8 { u64::MAX } else { (1u64 << (8 * self.so)) - 1 };
        Ok((v != undefined).then_some(v))
    }
    pub(super) fn len(&mut self) -> Result<u64> {
        self.uint(self.sl)
    }
    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

/// A header message: its type and body.
struct Msg<'a> {
    kind: u16,
    flags: u8,
    data: &'a [u8],
}

/// An element type, as far as the reader converts it.
#[derive(Clone, Debug, PartialEq)]
enum Dtype {
    Int { size: usize, signed: bool, big: bool },
    Float { size: usize, big: bool },
    FixedStr { size: usize, space_pad: bool },
    VlenStr,
}

impl Dtype {
    fn size(&self, so: usize) -> usize {
        match self {
            Dtype::Int { size, .. } | Dtype::Float { size, .. } | Dtype::FixedStr { size, .. } => *size,
            Dtype::VlenStr => 4 + so + 4,
        }
    }
}

pub(super) struct Reader<'a> {
    pub(super) file: &'a [u8],
    base: u64,
    pub(super) so: usize,
    pub(super) sl: usize,
    pub(super) limits: &'a Limits,
    objects: usize,
    bytes_read: u64,
    global_heaps: HashMap<u64, HashMap<u16, &'a [u8]>>,
}

/// Reads an HDF5 file's bytes into its root group; see [`super::read`].
pub(super) fn read(bytes: &[u8], limits: &Limits) -> Result<Group> {
    // The superblock is at 0, or at 512, 1024, 2048, ... after a user block.
    let mut offset = 0usize;
    while bytes.get(offset..offset + 8) != Some(SIGNATURE) {
        offset = if offset == 0 { 512 } else { offset * 2 };
        if offset + 8 > bytes.len() {
            return Err(err("superblock", "no HDF5 signature (\\x89HDF\\r\\n\\x1a\\n): not an HDF5 file"));
        }
    }
    let mut c = Cur { buf: bytes, pos: offset + 8, so: 8, sl: 8 };
    let version = c.u8()?;
    let root = match version {
        0 | 1 => {
            c.skip(4)?; // free-space, root symbol table, reserved, shared header versions
            let (so, sl) = (c.u8()?, c.u8()?);
            check_sizes(so, sl)?;
            (c.so, c.sl) = (so as usize, sl as usize);
            c.skip(1 + 2 + 2 + 4)?; // reserved, group leaf and internal K, consistency flags
            if version == 1 {
                c.skip(4)?;
            }
            let base = c.addr()?.unwrap_or(0);
            c.skip(3 * c.so)?; // free-space, end-of-file, driver info addresses
            c.skip(c.so)?; // root entry: link name offset
            let root = c.addr()?.ok_or_else(|| err("superblock", "the root group has no object header"))?;
            (base, root)
        }
        2 | 3 => {
            let (so, sl) = (c.u8()?, c.u8()?);
            check_sizes(so, sl)?;
            (c.so, c.sl) = (so as usize, sl as usize);
            c.skip(1)?;
            let base = c.addr()?.unwrap_or(0);
            c.skip(2 * c.so)?; // superblock extension, end-of-file addresses
            let root = c.addr()?.ok_or_else(|| err("superblock", "the root group has no object header"))?;
            (base, root)
        }
        v => return Err(err("superblock", format!("version {v} (expected 0 to 3)"))),
    };
    let mut r = Reader {
        file: bytes,
        base: root.0,
        so: c.so,
        sl: c.sl,
        limits,
        objects: 0,
        bytes_read: 0,
        global_heaps: HashMap::new(),
    };
    let mut stack = Vec::new();
    match r.object(root.1, "", 0, &mut stack)? {
        Node::Group(g) => Ok(g),
        Node::Dataset(_) => Err(err(at(""), "the root object is a dataset (expected a group)")),
    }
}

fn check_sizes(so: u8, sl: u8) -> Result<()> {
    if ![2, 4, 8].contains(&so) || ![2, 4, 8].contains(&sl) {
        return Err(err(
            "superblock",
            format!("offsets of {so} and lengths of {sl} bytes (expected 2, 4 or 8)"),
        ));
    }
    Ok(())
}

impl<'a> Reader<'a> {
    /// A cursor at file address `addr` (relative to the base address), reading at most to the file's end.
    pub(super) fn cur(&self, addr: u64, path: &str) -> Result<Cur<'a>> {
        let pos = addr
            .checked_add(self.base)
            .and_then(|p| usize::try_from(p).ok())
            .filter(|&p| p <= self.file.len())
            .ok_or_else(|| {
                err(at(path), format!("address {addr} is past the file's end ({} bytes)", self.file.len()))
            })?;
        Ok(Cur { buf: self.file, pos, so: self.so, sl: self.sl })
    }

    /// The `len` bytes at `addr`, counted against the bytes-read limit.
    pub(super) fn slice(&mut self, addr: u64, len: u64, path: &str) -> Result<&'a [u8]> {
        self.count_bytes(len, path)?;
        let n =
            usize::try_from(len).map_err(|_| err(at(path), format!("{len} bytes do not fit in memory")))?;
        let mut c = self.cur(addr, path)?;
        c.take(n).map_err(|_| {
            err(
                at(path),
                format!("{len} bytes at address {addr} run past the file's end ({} bytes)", self.file.len()),
            )
        })
    }

    pub(super) fn count_bytes(&mut self, n: u64, path: &str) -> Result<()> {
        self.bytes_read = self.bytes_read.saturating_add(n);
        if self.bytes_read > self.limits.max_bytes_read {
            return Err(err(
                at(path),
                format!("more than {} bytes read (Limits::max_bytes_read)", self.limits.max_bytes_read),
            ));
        }
        Ok(())
    }

    pub(super) fn count_object(&mut self, path: &str) -> Result<()> {
        self.objects += 1;
        if self.objects > self.limits.max_objects {
            return Err(err(
                at(path),
                format!("more than {} objects (Limits::max_objects)", self.limits.max_objects),
            ));
        }
        Ok(())
    }

    /// The object (group or dataset) whose header is at `addr`.
    fn object(&mut self, addr: u64, path: &str, depth: usize, stack: &mut Vec<u64>) -> Result<Node> {
        if depth > self.limits.max_depth {
            return Err(err(
                at(path),
                format!("nested deeper than {} groups (Limits::max_depth)", self.limits.max_depth),
            ));
        }
        if stack.contains(&addr) {
            return Err(err(at(path), format!("a cycle: the object at address {addr} contains itself")));
        }
        self.count_object(path)?;
        let msgs = self.messages(addr, path)?;
        let mut attrs = Vec::new();
        for m in &msgs {
            if m.flags & 0x02 != 0 && matches!(m.kind, 1 | 3 | 8 | 0x0B | 0x0C) {
                return Err(err(at(path), format!("a shared message of type {} (not supported)", m.kind)));
            }
            if m.kind == 0x0C {
                attrs.push(self.attribute(m.data, path)?);
            }
        }
        if let Some(info) = msgs.iter().find(|m| m.kind == 0x15) {
            self.dense_attributes(info.data, path, &mut attrs)?;
        }
        let find = |kind| msgs.iter().find(|m| m.kind == kind).map(|m| m.data);
        if let (Some(space), Some(dtype), Some(layout)) = (find(1), find(3), find(8)) {
            let (shape, count) = self.dataspace(space, path)?;
            let dtype = self.datatype(dtype, path)?;
            let raw = self.dataset_bytes(layout, find(0x0B), &shape, count, &dtype, path)?;
            let data = convert(&raw, &dtype, path)?;
            return Ok(Node::Dataset(Dataset {
                shape: shape.into_iter().map(|d| d as usize).collect(),
                data,
                attrs,
            }));
        }
        stack.push(addr);
        let mut links: Vec<(String, u64, Option<u64>)> = Vec::new();
        if let Some(stab) = find(0x11) {
            let mut c = Cur { buf: stab, pos: 0, so: self.so, sl: self.sl };
            let btree = c.addr()?;
            let heap = c.addr()?.ok_or_else(|| err(at(path), "a symbol table without a local heap"))?;
            let names = self.local_heap(heap, path)?;
            if let Some(btree) = btree {
                self.group_btree(btree, names, path, 0, &mut links)?;
            }
        }
        for m in msgs.iter().filter(|m| m.kind == 6) {
            if let Some(link) = self.link(m.data, path)? {
                links.push(link);
            }
        }
        if let Some(info) = find(2) {
            self.dense_links(info, path, &mut links)?;
        }
        let mut members = Vec::with_capacity(links.len().min(1024));
        for (name, target, _) in links {
            if name.is_empty() || name.contains('/') || name == "." {
                return Err(err(at(path), format!("a member named {name:?} (expected a name without `/`)")));
            }
            if members.iter().any(|(n, _)| *n == name) {
                return Err(err(at(path), format!("two members named {name:?}")));
            }
            let child = format!("{path}/{name}");
            let node = self.object(target, &child, depth + 1, stack)?;
            members.push((name, node));
        }
        stack.pop();
        Ok(Node::Group(Group { attrs, members }))
    }

    /// An object header's messages (version 1 or 2), continuation blocks followed.
    fn messages(&mut self, addr: u64, path: &str) -> Result<Vec<Msg<'a>>> {
        let mut c = self.cur(addr, path)?;
        let mut msgs = Vec::new();
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        if c.buf.get(c.pos..c.pos + 4) == Some(b"OHDR") {
            c.skip(4)?;
            let version = c.u8()?;
            if version != 2 {
                return Err(err(
                    at(path),
                    format!("object header version {version} after OHDR (expected 2)"),
                ));
            }
            let flags = c.u8()?;
            if flags & 0x20 != 0 {
                c.skip(16)?;
            }
            if flags & 0x10 != 0 {
                c.skip(4)?;
            }
            let size = c.uint(1 << (flags & 3))?;
            let start = c.pos as u64 - self.base;
            self.v2_block(start, size, flags, path, &mut msgs, &mut blocks)?;
            let mut i = 0;
            while i < blocks.len() {
                let (a, l) = blocks[i];
                i += 1;
                self.count_object(path)?;
                let head = self.slice(a, 4.min(l), path)?;
                if head != b"OCHK" || l < 8 {
                    return Err(err(at(path), format!("continuation block at {a} has no OCHK signature")));
                }
                self.v2_block(a.saturating_add(4), l - 8, flags, path, &mut msgs, &mut blocks)?;
            }
            return Ok(msgs);
        }
        let version = c.u8()?;
        if version != 1 {
            return Err(err(
                at(path),
                format!("object header version {version} (expected 1, or OHDR for 2)"),
            ));
        }
        c.skip(1)?;
        let count = c.u16()? as usize;
        c.skip(4)?;
        let size = u64::from(c.u32()?);
        c.skip(4)?; // alignment of the first message to 8 bytes
        blocks.push((c.pos as u64 - self.base, size));
        let mut i = 0;
        while i < blocks.len() && msgs.len() < count {
            let (a, l) = blocks[i];
            if i > 0 {
                self.count_object(path)?;
            }
            i += 1;
            let block = self.slice(a, l, path)?;
            let mut b = Cur { buf: block, pos: 0, so: self.so, sl: self.sl };
            while b.remaining() >= 8 && msgs.len() < count {
                let kind = b.u16()?;
                let size = b.u16()? as usize;
                let flags = b.u8()?;
                b.skip(3)?;
                let data = b.take(size).map_err(|_| {
                    err(at(path), format!("message of type {kind} runs past its header block"))
                })?;
                self.message(kind, flags, data, path, &mut msgs, &mut blocks)?;
            }
        }
        Ok(msgs)
    }

    fn v2_block(
        &mut self,
        addr: u64,
        size: u64,
        flags: u8,
        path: &str,
        msgs: &mut Vec<Msg<'a>>,
        blocks: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        let block = self.slice(addr, size, path)?;
        let mut b = Cur { buf: block, pos: 0, so: self.so, sl: self.sl };
        let head = if flags & 0x04 != 0 { 6 } else { 4 };
        while b.remaining() >= head {
            let kind = u16::from(b.u8()?);
            let size = b.u16()? as usize;
            let mflags = b.u8()?;
            if flags & 0x04 != 0 {
                b.skip(2)?;
            }
            let data = b
                .take(size)
                .map_err(|_| err(at(path), format!("message of type {kind} runs past its header block")))?;
            self.message(kind, mflags, data, path, msgs, blocks)?;
        }
        Ok(())
    }

    fn message(
        &mut self,
        kind: u16,
        flags: u8,
        data: &'a [u8],
        path: &str,
        msgs: &mut Vec<Msg<'a>>,
        blocks: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        match kind {
            0 => {}
            0x10 => {
                let mut c = Cur { buf: data, pos: 0, so: self.so, sl: self.sl };
                let a = c.addr()?.ok_or_else(|| err(at(path), "a continuation to the undefined address"))?;
                let l = c.len()?;
                if blocks.contains(&(a, l)) {
                    return Err(err(at(path), format!("a header continuation loops back to address {a}")));
                }
                blocks.push((a, l));
            }
            _ => {
                self.count_object(path)?;
                msgs.push(Msg { kind, flags, data });
            }
        }
        Ok(())
    }

    /// Names in a local heap's data segment, by offset.
    fn local_heap(&mut self, addr: u64, path: &str) -> Result<&'a [u8]> {
        let mut c = self.cur(addr, path)?;
        if c.take(4).ok() != Some(b"HEAP") {
            return Err(err(at(path), format!("no local heap (HEAP) at address {addr}")));
        }
        c.skip(4)?;
        let size = c.len()?;
        c.len()?;
        let data = c.addr()?.ok_or_else(|| err(at(path), "a local heap without data"))?;
        self.slice(data, size, path)
    }

    /// The members of a symbol-table group: its version-1 B-tree's symbol nodes, in name order.
    fn group_btree(
        &mut self,
        addr: u64,
        names: &'a [u8],
        path: &str,
        depth: usize,
        links: &mut Vec<(String, u64, Option<u64>)>,
    ) -> Result<()> {
        if depth > MAX_BTREE_DEPTH {
            return Err(err(at(path), format!("a group B-tree deeper than {MAX_BTREE_DEPTH} levels")));
        }
        self.count_object(path)?;
        let mut c = self.cur(addr, path)?;
        if c.take(4).ok() != Some(b"TREE") || c.u8()? != 0 {
            return Err(err(at(path), format!("no group B-tree node (TREE, type 0) at address {addr}")));
        }
        let level = c.u8()?;
        let entries = c.u16()? as usize;
        c.skip(2 * self.so)?;
        self.count_bytes((entries * (self.so + self.sl)) as u64, path)?;
        for _ in 0..entries {
            c.len()?; // key: a name's heap offset
            let child =
                c.addr()?.ok_or_else(|| err(at(path), "a group B-tree child at the undefined address"))?;
            if level > 0 {
                self.group_btree(child, names, path, depth + 1, links)?;
            } else {
                self.symbol_node(child, names, path, links)?;
            }
        }
        Ok(())
    }

    fn symbol_node(
        &mut self,
        addr: u64,
        names: &'a [u8],
        path: &str,
        links: &mut Vec<(String, u64, Option<u64>)>,
    ) -> Result<()> {
        self.count_object(path)?;
        let mut c = self.cur(addr, path)?;
        if c.take(4).ok() != Some(b"SNOD") {
            return Err(err(at(path), format!("no symbol table node (SNOD) at address {addr}")));
        }
        c.skip(2)?;
        let n = c.u16()? as usize;
        self.count_bytes((n * (2 * self.so + 24)) as u64, path)?;
        for _ in 0..n {
            let name_at = c.len()?;
            let target = c.addr()?.ok_or_else(|| err(at(path), "a group member at the undefined address"))?;
            c.skip(24)?;
            let name = usize::try_from(name_at)
                .ok()
                .and_then(|o| names.get(o..))
                .and_then(|s| s.iter().position(|&b| b == 0).map(|e| &s[..e]))
                .ok_or_else(|| {
                    err(at(path), format!("a member name at heap offset {name_at}, outside the heap"))
                })?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| {
                err(at(path), format!("member name {:?} is not UTF-8", String::from_utf8_lossy(name)))
            })?;
            self.count_object(path)?;
            links.push((name, target, None));
        }
        Ok(())
    }

    /// A link message: `(name, object address, creation order)`, or `None` for a soft or external link.
    fn link(&mut self, data: &[u8], path: &str) -> Result<Option<(String, u64, Option<u64>)>> {
        let mut c = Cur { buf: data, pos: 0, so: self.so, sl: self.sl };
        let version = c.u8()?;
        if version != 1 {
            return Err(err(at(path), format!("link message version {version} (expected 1)")));
        }
        let flags = c.u8()?;
        let kind = if flags & 0x08 != 0 { c.u8()? } else { 0 };
        let order = if flags & 0x04 != 0 { Some(c.uint(8)?) } else { None };
        if flags & 0x10 != 0 {
            c.skip(1)?;
        }
        let len = c.uint(1 << (flags & 3))? as usize;
        let name = c.take(len)?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| {
            err(at(path), format!("link name {:?} is not UTF-8", String::from_utf8_lossy(name)))
        })?;
        if kind != 0 {
            return Err(err(
                at(path),
                format!("member {name:?} is a soft or external link (type {kind}; only hard links are read)"),
            ));
        }
        let target =
            c.addr()?.ok_or_else(|| err(at(path), format!("link {name:?} to the undefined address")))?;
        self.count_object(path)?;
        Ok(Some((name, target, order)))
    }

    /// Links in dense storage: the fractal heap of a link info message, through its name index.
    fn dense_links(
        &mut self,
        info: &[u8],
        path: &str,
        links: &mut Vec<(String, u64, Option<u64>)>,
    ) -> Result<()> {
        let mut c = Cur { buf: info, pos: 0, so: self.so, sl: self.sl };
        c.skip(1)?;
        let flags = c.u8()?;
        if flags & 1 != 0 {
            c.skip(8)?;
        }
        let Some(heap) = c.addr()? else { return Ok(()) };
        let btree = c.addr()?.ok_or_else(|| err(at(path), "dense links without a name index"))?;
        let heap = super::dense::FractalHeap::open(self, heap, path)?;
        let mut found = Vec::new();
        for id in super::dense::btree2_records(self, btree, 5, path)? {
            let bytes = heap.object(self, &id[4..], path)?;
            if let Some(link) = self.link(&bytes, path)? {
                found.push(link);
            }
        }
        // The name index is in hash order: creation order where the file tracks it, names otherwise.
        if found.iter().all(|l| l.2.is_some()) {
            found.sort_by_key(|l| l.2);
        } else {
            found.sort_by(|a, b| a.0.cmp(&b.0));
        }
        links.extend(found);
        Ok(())
    }

    /// Attributes in dense storage (an attribute info message's fractal heap).
    fn dense_attributes(&mut self, info: &[u8], path: &str, attrs: &mut Vec<(String, Attr)>) -> Result<()> {
        let mut c = Cur { buf: info, pos: 0, so: self.so, sl: self.sl };
        c.skip(1)?;
        let flags = c.u8()?;
        if flags & 1 != 0 {
            c.skip(2)?;
        }
        let Some(heap) = c.addr()? else { return Ok(()) };
        let btree = c.addr()?.ok_or_else(|| err(at(path), "dense attributes without a name index"))?;
        let heap = super::dense::FractalHeap::open(self, heap, path)?;
        let mut found = Vec::new();
        for rec in super::dense::btree2_records(self, btree, 8, path)? {
            let order = u32::from_le_bytes(rec[9..13].try_into().expect("4 bytes"));
            let bytes = heap.object(self, &rec[..8], path)?;
            found.push((order, self.attribute(&bytes, path)?));
        }
        found.sort_by_key(|a| a.0);
        attrs.extend(found.into_iter().map(|(_, a)| a));
        Ok(())
    }

    /// A dataspace message: the dimensions and their product, bounded.
    fn dataspace(&mut self, data: &[u8], path: &str) -> Result<(Vec<u64>, u64)> {
        let mut c = Cur { buf: data, pos: 0, so: self.so, sl: self.sl };
        let version = c.u8()?;
        let rank = c.u8()? as usize;
        let flags = c.u8()?;
        let null = match version {
            1 => {
                c.skip(5)?;
                false
            }
            2 => c.u8()? == 2,
            v => return Err(err(at(path), format!("dataspace version {v} (expected 1 or 2)"))),
        };
        if rank > MAX_RANK {
            return Err(err(at(path), format!("dataspace rank {rank} (at most {MAX_RANK})")));
        }
        if null {
            return Ok((vec![0], 0));
        }
        let _ = flags;
        let mut dims = Vec::with_capacity(rank);
        let mut count = 1u64;
        for _ in 0..rank {
            let d = c.len()?;
            count = count.checked_mul(d).filter(|&n| n <= self.limits.max_elements).ok_or_else(|| {
                err(
                    at(path),
                    format!("more than {} elements (Limits::max_elements)", self.limits.max_elements),
                )
            })?;
            dims.push(d);
        }
        if dims.iter().any(|&d| usize::try_from(d).is_err()) {
            return Err(err(at(path), "a dimension that does not fit in memory"));
        }
        Ok((dims, count))
    }

    /// A datatype message: the element types Keras' files use.
    fn datatype(&mut self, data: &[u8], path: &str) -> Result<Dtype> {
        let mut c = Cur { buf: data, pos: 0, so: self.so, sl: self.sl };
        let head = c.u8()?;
        let bits = c.take(3)?;
        let size = c.u32()? as usize;
        let class = head & 0x0F;
        let big = bits[0] & 1 != 0;
        let t = match class {
            0 if [1, 2, 4, 8].contains(&size) => Dtype::Int { size, signed: bits[0] & 0x08 != 0, big },
            1 if [4, 8].contains(&size) && bits[0] & 0x40 == 0 => Dtype::Float { size, big },
            3 if size > 0 => Dtype::FixedStr { size, space_pad: bits[0] & 0x0F == 2 },
            9 if bits[0] & 0x0F == 1 => Dtype::VlenStr,
            _ => {
                let name = [
                    "integer",
                    "float",
                    "time",
                    "string",
                    "bitfield",
                    "opaque",
                    "compound",
                    "reference",
                    "enum",
                    "variable-length",
                    "array",
                ]
                .get(class as usize)
                .unwrap_or(&"unknown");
                return Err(err(
                    at(path),
                    format!("a datatype of class {class} ({name}) and size {size} (expected integers of 1-8 bytes, IEEE floats of 4 or 8, strings)"),
                ));
            }
        };
        Ok(t)
    }

    /// An attribute message (versions 1 to 3).
    fn attribute(&mut self, data: &[u8], path: &str) -> Result<(String, Attr)> {
        let mut c = Cur { buf: data, pos: 0, so: self.so, sl: self.sl };
        let version = c.u8()?;
        if !(1..=3).contains(&version) {
            return Err(err(at(path), format!("attribute message version {version} (expected 1 to 3)")));
        }
        c.skip(1)?;
        let (name_len, type_len, space_len) = (c.u16()? as usize, c.u16()? as usize, c.u16()? as usize);
        if version == 3 {
            c.skip(1)?;
        }
        let pad = |n: usize| if version == 1 { n.div_ceil(8) * 8 } else { n };
        let name = c.take(pad(name_len))?;
        let name = &name[..name_len.min(name.len())];
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        let name = String::from_utf8(name.to_vec()).map_err(|_| {
            err(at(path), format!("attribute name {:?} is not UTF-8", String::from_utf8_lossy(name)))
        })?;
        let place = format!("{} attribute {name:?}", if path.is_empty() { "/" } else { path });
        let dtype = c.take(pad(type_len))?;
        let space = c.take(pad(space_len))?;
        let dtype = self.datatype(dtype, &place)?;
        let (_, count) = self.dataspace(space, &place)?;
        let size = dtype.size(self.so) as u64;
        let n = count.checked_mul(size).filter(|&n| n <= c.remaining() as u64).ok_or_else(|| {
            err(
                at(&place),
                format!("{count} elements of {size} bytes in a message of {} bytes", c.remaining()),
            )
        })?;
        let raw = c.take(n as usize)?;
        let scalar = space.get(1) == Some(&0);
        let value = match dtype {
            Dtype::FixedStr { size, space_pad } => {
                let strs = raw
                    .chunks_exact(size)
                    .map(|s| fixed_str(s, space_pad, &place))
                    .collect::<Result<Vec<_>>>()?;
                strings(strs, scalar)
            }
            Dtype::VlenStr => {
                let mut strs = Vec::with_capacity(count as usize);
                for e in raw.chunks_exact(size as usize) {
                    strs.push(self.vlen_str(e, &place)?);
                }
                strings(strs, scalar)
            }
            _ => match convert(raw, &dtype, &place)? {
                Data::F32(v) => Attr::F64(v.into_iter().map(f64::from).collect()),
                Data::F64(v) => Attr::F64(v),
                Data::I32(v) => Attr::I64(v.into_iter().map(i64::from).collect()),
                Data::I64(v) => Attr::I64(v),
                Data::U8(v) => Attr::I64(v.into_iter().map(i64::from).collect()),
            },
        };
        self.count_object(path)?;
        Ok((name, value))
    }

    /// A variable-length string element: its length, and its global heap collection and object index.
    fn vlen_str(&mut self, e: &[u8], path: &str) -> Result<String> {
        let mut c = Cur { buf: e, pos: 0, so: self.so, sl: self.sl };
        let len = c.u32()? as usize;
        let coll = c.addr()?;
        let index = c.u32()?;
        let Some(coll) = coll.filter(|_| len > 0) else { return Ok(String::new()) };
        if !self.global_heaps.contains_key(&coll) {
            let objs = self.global_heap(coll, path)?;
            self.global_heaps.insert(coll, objs);
        }
        let obj = u16::try_from(index)
            .ok()
            .and_then(|i| self.global_heaps[&coll].get(&i).copied())
            .ok_or_else(|| err(at(path), format!("a string at global heap object {index} of the collection at {coll}, which has no such object")))?;
        let s = obj.get(..len).ok_or_else(|| {
            err(at(path), format!("a string of {len} bytes in a global heap object of {}", obj.len()))
        })?;
        let s = s.split(|&b| b == 0).next().unwrap_or_default();
        String::from_utf8(s.to_vec()).map_err(|_| err(at(path), "a variable-length string that is not UTF-8"))
    }

    fn global_heap(&mut self, addr: u64, path: &str) -> Result<HashMap<u16, &'a [u8]>> {
        self.count_object(path)?;
        let mut c = self.cur(addr, path)?;
        if c.take(4).ok() != Some(b"GCOL") {
            return Err(err(at(path), format!("no global heap collection (GCOL) at address {addr}")));
        }
        c.skip(4)?;
        let size = c.len()?;
        let body = self.slice(addr, size, path)?;
        let mut c = Cur { buf: body, pos: 8 + self.sl, so: self.so, sl: self.sl };
        let mut objs = HashMap::new();
        while c.remaining() >= 8 + self.sl {
            let index = c.u16()?;
            c.skip(6)?;
            let len = c.len()?;
            if index == 0 {
                break;
            }
            let n = usize::try_from(len).ok().filter(|&n| n <= c.remaining()).ok_or_else(|| {
                err(at(path), format!("global heap object {index} of {len} bytes runs past its collection"))
            })?;
            objs.insert(index, c.take(n)?);
            c.skip(n.div_ceil(8) * 8 - n).ok();
            self.count_object(path)?;
        }
        Ok(objs)
    }

    /// A dataset's raw bytes, row-major, from its layout (compact, contiguous or chunked) and filters.
    fn dataset_bytes(
        &mut self,
        layout: &[u8],
        filters: Option<&[u8]>,
        shape: &[u64],
        count: u64,
        dtype: &Dtype,
        path: &str,
    ) -> Result<Vec<u8>> {
        if matches!(dtype, Dtype::FixedStr { .. } | Dtype::VlenStr) {
            return Err(err(at(path), "a dataset of strings (expected numbers)"));
        }
        let esize = dtype.size(self.so) as u64;
        let total = count.checked_mul(esize).ok_or_else(|| err(at(path), "the dataset's size overflows"))?;
        self.count_bytes(total, path)?;
        let mut c = Cur { buf: layout, pos: 0, so: self.so, sl: self.sl };
        let version = c.u8()?;
        if !(3..=4).contains(&version) {
            return Err(err(at(path), format!("data layout version {version} (expected 3 or 4)")));
        }
        let class = c.u8()?;
        match class {
            0 => {
                let n = c.u16()? as u64;
                if n != total {
                    return Err(err(
                        at(path),
                        format!("{n} bytes of compact data for {count} elements of {esize} bytes"),
                    ));
                }
                Ok(c.take(n as usize)?.to_vec())
            }
            1 => {
                let addr = c.addr()?;
                let size = c.len()?;
                let Some(addr) = addr else { return Ok(vec![0; total as usize]) };
                if size != total {
                    return Err(err(
                        at(path),
                        format!("{size} bytes of contiguous data for {count} elements of {esize} bytes"),
                    ));
                }
                Ok(self.slice(addr, size, path)?.to_vec())
            }
            2 => {
                if shape.is_empty() {
                    return Err(err(
                        at(path),
                        "a chunked layout for a scalar dataspace (chunks need a rank of 1 or more)",
                    ));
                }
                let pipeline = filters.map(|f| parse_filters(f, path)).transpose()?.unwrap_or_default();
                let chunked = super::chunks::Chunked {
                    shape,
                    esize: esize as usize,
                    pipeline: &pipeline,
                    total: total as usize,
                };
                if version == 3 {
                    let rank = c.u8()? as usize;
                    let addr = c.addr()?;
                    if rank != shape.len() + 1 {
                        return Err(err(
                            at(path),
                            format!(
                                "chunk dimensionality {rank} for a dataspace of rank {} (expected rank + 1)",
                                shape.len()
                            ),
                        ));
                    }
                    let mut dims = Vec::with_capacity(rank);
                    for _ in 0..rank {
                        dims.push(u64::from(c.u32()?));
                    }
                    chunked.read_btree(self, addr, &dims[..shape.len()], path)
                } else {
                    chunked.read_v4(self, &mut c, path)
                }
            }
            k => Err(err(
                at(path),
                format!("data layout class {k} (expected 0 compact, 1 contiguous, 2 chunked)"),
            )),
        }
    }
}

/// A filter pipeline message: `(filter id, client data)` in the order they were applied when writing.
fn parse_filters(data: &[u8], path: &str) -> Result<Vec<(u16, Vec<u32>)>> {
    let mut c = Cur { buf: data, pos: 0, so: 8, sl: 8 };
    let version = c.u8()?;
    let n = c.u8()? as usize;
    if version == 1 {
        c.skip(6)?;
    } else if version != 2 {
        return Err(err(at(path), format!("filter pipeline version {version} (expected 1 or 2)")));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = c.u16()?;
        let name_len = if version == 1 || id >= 256 { c.u16()? as usize } else { 0 };
        let flags = c.u16()?;
        let values = c.u16()? as usize;
        c.skip(if version == 1 { name_len.div_ceil(8) * 8 } else { name_len })?;
        let mut client = Vec::with_capacity(values.min(c.remaining() / 4));
        for _ in 0..values {
            client.push(c.u32()?);
        }
        if version == 1 && values % 2 == 1 {
            c.skip(4)?;
        }
        if !matches!(id, 1..=3) && flags & 1 == 0 {
            return Err(err(
                at(path),
                format!("filter {id} (only deflate 1, shuffle 2 and fletcher32 3 are read)"),
            ));
        }
        out.push((id, client));
    }
    Ok(out)
}

/// Undoes a chunk's filters (in reverse), skipping those its mask says were not applied; the result must be
/// `expect` bytes, and inflating stops one byte past that.
pub(super) fn unfilter(
    raw: &[u8],
    pipeline: &[(u16, Vec<u32>)],
    mask: u32,
    expect: usize,
    esize: usize,
    path: &str,
) -> Result<Vec<u8>> {
    let mut data = raw.to_vec();
    for (i, (id, _)) in pipeline.iter().enumerate().rev() {
        if mask & (1 << i) != 0 {
            continue;
        }
        data = match id {
            1 => {
                let mut out = Vec::with_capacity(expect);
                flate2::read::ZlibDecoder::new(&data[..])
                    .take(expect as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| err(at(path), format!("a chunk's deflate data is corrupt: {e}")))?;
                out
            }
            2 => {
                let n = data.len() / esize.max(1);
                let mut out = data.clone();
                for (b, plane) in data[..n * esize].chunks_exact(n.max(1)).enumerate().take(esize) {
                    for (j, &byte) in plane.iter().enumerate() {
                        out[j * esize + b] = byte;
                    }
                }
                out
            }
            3 => {
                let n = data
                    .len()
                    .checked_sub(4)
                    .ok_or_else(|| err(at(path), "a fletcher32 chunk of under 4 bytes"))?;
                data.truncate(n);
                data
            }
            _ => return Err(err(at(path), format!("filter {id} is not supported"))),
        };
    }
    if data.len() != expect {
        return Err(err(
            at(path),
            format!("a chunk of {} bytes after its filters (expected {expect})", data.len()),
        ));
    }
    Ok(data)
}

fn fixed_str(s: &[u8], space_pad: bool, path: &str) -> Result<String> {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    let mut s = &s[..end];
    if space_pad {
        while s.last() == Some(&b' ') {
            s = &s[..s.len() - 1];
        }
    }
    String::from_utf8(s.to_vec()).map_err(|_| err(at(path), "a fixed-length string that is not UTF-8"))
}

fn strings(mut strs: Vec<String>, scalar: bool) -> Attr {
    if scalar && strs.len() == 1 {
        Attr::Str(strs.pop().expect("one"))
    } else {
        Attr::Strs(strs)
    }
}

/// Raw element bytes to numbers, in the host's order.
fn convert(raw: &[u8], dtype: &Dtype, path: &str) -> Result<Data> {
    fn each<const N: usize, T>(raw: &[u8], big: bool, f: impl Fn([u8; N]) -> T) -> Vec<T> {
        raw.chunks_exact(N)
            .map(|c| {
                let mut b: [u8; N] = c.try_into().expect("N bytes");
                if big {
                    b.reverse();
                }
                f(b)
            })
            .collect()
    }
    Ok(match *dtype {
        Dtype::Float { size: 4, big } => Data::F32(each(raw, big, f32::from_le_bytes)),
        Dtype::Float { size: 8, big } => Data::F64(each(raw, big, f64::from_le_bytes)),
        Dtype::Int { size: 1, signed: false, .. } => Data::U8(raw.to_vec()),
        Dtype::Int { size: 1, signed: true, .. } => {
            Data::I32(raw.iter().map(|&b| i32::from(b as i8)).collect())
        }
        Dtype::Int { size: 2, signed, big } => Data::I32(each(raw, big, |b| {
            if signed {
                i32::from(i16::from_le_bytes(b))
            } else {
                i32::from(u16::from_le_bytes(b))
            }
        })),
        Dtype::Int { size: 4, signed: true, big } => Data::I32(each(raw, big, i32::from_le_bytes)),
        Dtype::Int { size: 4, signed: false, big } => {
            Data::I64(each(raw, big, |b| i64::from(u32::from_le_bytes(b))))
        }
        Dtype::Int { size: 8, signed: true, big } => Data::I64(each(raw, big, i64::from_le_bytes)),
        Dtype::Int { size: 8, signed: false, big } => {
            let v = each(raw, big, u64::from_le_bytes);
            if let Some(x) = v.iter().find(|&&x| x > i64::MAX as u64) {
                return Err(err(at(path), format!("an unsigned 64-bit value {x} above i64::MAX")));
            }
            Data::I64(v.into_iter().map(|x| x as i64).collect())
        }
        ref t => return Err(err(at(path), format!("elements of type {t:?} (expected numbers)"))),
    })
}
