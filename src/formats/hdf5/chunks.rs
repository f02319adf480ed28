//! Chunked datasets: the chunk index (a version-1 B-tree, or a layout-4 single chunk, implicit list or fixed
//! array), each chunk's filters undone, and its elements copied into the row-major result.
use super::read::{at, err, unfilter, Cur, Reader};
use crate::Result;

const MAX_BTREE_DEPTH: usize = 64;

pub(super) struct Chunked<'s> {
    pub(super) shape: &'s [u64],
    pub(super) esize: usize,
    pub(super) pipeline: &'s [(u16, Vec<u32>)],
    pub(super) total: usize,
}

impl Chunked<'_> {
    /// Checks the chunk dimensions and returns their element count.
    fn chunk_len(&self, r: &Reader, dims: &[u64], path: &str) -> Result<usize> {
        let mut n = 1u64;
        for &d in dims {
            if d == 0 {
                return Err(err(at(path), "a chunk dimension of 0"));
            }
            n = n.checked_mul(d).filter(|&n| n <= r.limits.max_elements).ok_or_else(|| {
                err(
                    at(path),
                    format!("chunks of more than {} elements (Limits::max_elements)", r.limits.max_elements),
                )
            })?;
        }
        Ok(n as usize)
    }

    /// Copies one chunk (at element offsets `off`, of dimensions `dims`) into `out`, clipped at the edges.
    fn place(&self, out: &mut [u8], chunk: &[u8], off: &[u64], dims: &[u64], path: &str) -> Result<()> {
        let rank = self.shape.len();
        for k in 0..rank {
            if off[k] >= self.shape[k] || off[k] % dims[k] != 0 {
                return Err(err(
                    at(path),
                    format!(
                        "a chunk at offset {off:?} outside the dataspace {:?} or off the chunk grid {dims:?}",
                        self.shape
                    ),
                ));
            }
        }
        let last = rank - 1;
        let run = (dims[last].min(self.shape[last] - off[last])) as usize * self.esize;
        let mut idx = vec![0u64; rank]; // position inside the chunk, last dimension excluded
        loop {
            let (mut src, mut dst) = (0u64, 0u64);
            for k in 0..rank {
                src = src * dims[k] + idx[k];
                dst = dst * self.shape[k] + off[k] + idx[k];
            }
            let (src, dst) = (src as usize * self.esize, dst as usize * self.esize);
            out[dst..dst + run].copy_from_slice(&chunk[src..src + run]);
            // Next row: increment the leading dimensions, each clipped at the dataset's edge.
            let mut k = last;
            loop {
                if k == 0 {
                    return Ok(());
                }
                k -= 1;
                idx[k] += 1;
                if idx[k] < dims[k] && off[k] + idx[k] < self.shape[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
    }

    fn one(
        &self,
        r: &mut Reader,
        out: &mut [u8],
        (addr, size, mask): (u64, u64, u32),
        off: &[u64],
        dims: &[u64],
        path: &str,
    ) -> Result<()> {
        r.count_object(path)?;
        let len = self.chunk_len(r, dims, path)?;
        let expect = len.checked_mul(self.esize).ok_or_else(|| err(at(path), "a chunk's size overflows"))?;
        r.count_bytes(expect as u64, path)?;
        let raw = r.slice(addr, size, path)?;
        let chunk = if self.pipeline.is_empty() {
            if raw.len() != expect {
                return Err(err(
                    at(path),
                    format!("an unfiltered chunk of {} bytes (expected {expect})", raw.len()),
                ));
            }
            raw.to_vec()
        } else {
            unfilter(raw, self.pipeline, mask, expect, self.esize, path)?
        };
        self.place(out, &chunk, off, dims, path)
    }

    /// A layout-3 chunked dataset: chunks indexed by a version-1 B-tree.
    pub(super) fn read_btree(
        &self,
        r: &mut Reader,
        addr: Option<u64>,
        dims: &[u64],
        path: &str,
    ) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.total];
        if let Some(addr) = addr.filter(|_| self.total > 0) {
            self.btree_node(r, &mut out, addr, dims, path, 0)?;
        }
        Ok(out)
    }

    fn btree_node(
        &self,
        r: &mut Reader,
        out: &mut [u8],
        addr: u64,
        dims: &[u64],
        path: &str,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_BTREE_DEPTH {
            return Err(err(at(path), format!("a chunk B-tree deeper than {MAX_BTREE_DEPTH} levels")));
        }
        r.count_object(path)?;
        let mut c = r.cur(addr, path)?;
        if c.take(4).ok() != Some(b"TREE") || c.u8()? != 1 {
            return Err(err(at(path), format!("no chunk B-tree node (TREE, type 1) at address {addr}")));
        }
        let level = c.u8()?;
        let entries = c.u16()? as usize;
        c.skip(2 * c.so)?;
        let rank = self.shape.len();
        for _ in 0..entries {
            let size = u64::from(c.u32()?);
            let mask = c.u32()?;
            let mut off = Vec::with_capacity(rank);
            for _ in 0..=rank {
                off.push(c.uint(8)?);
            }
            off.pop();
            let child =
                c.addr()?.ok_or_else(|| err(at(path), "a chunk B-tree child at the undefined address"))?;
            if level > 0 {
                self.btree_node(r, out, child, dims, path, depth + 1)?;
            } else {
                self.one(r, out, (child, size, mask), &off, dims, path)?;
            }
        }
        Ok(())
    }

    /// A layout-4 chunked dataset (files written with libver "latest"): single chunk, implicit or fixed-array
    /// index.
    pub(super) fn read_v4(&self, r: &mut Reader, c: &mut Cur, path: &str) -> Result<Vec<u8>> {
        let flags = c.u8()?;
        let ndims = c.u8()? as usize;
        let enc = c.u8()? as usize;
        if ndims != self.shape.len() + 1 || !(1..=8).contains(&enc) {
            return Err(err(
                at(path),
                format!(
                    "chunks of rank {} for a dataspace of rank {}",
                    ndims.saturating_sub(1),
                    self.shape.len()
                ),
            ));
        }
        let mut dims = Vec::with_capacity(ndims);
        for _ in 0..ndims {
            dims.push(c.uint(enc)?);
        }
        dims.pop();
        let index = c.u8()?;
        let mut out = vec![0u8; self.total];
        let clen = self.chunk_len(r, &dims, path)?;
        let cbytes = (clen * self.esize) as u64;
        // The chunk grid, row-major: chunk i's element offsets.
        let grid: Vec<u64> = self.shape.iter().zip(&dims).map(|(s, d)| s.div_ceil(*d)).collect();
        let offsets = |mut i: u64| {
            let mut off = vec![0u64; dims.len()];
            for k in (0..dims.len()).rev() {
                off[k] = (i % grid[k]) * dims[k];
                i /= grid[k];
            }
            off
        };
        let nchunks = grid.iter().product::<u64>();
        // Partial edge chunks may be stored unfiltered (flag bit 0).
        let edge_mask = |off: &[u64]| {
            if flags & 1 != 0 && off.iter().zip(&dims).zip(self.shape).any(|((o, d), s)| o + d > *s) {
                u32::MAX
            } else {
                0
            }
        };
        match index {
            1 => {
                let (size, mask) = if flags & 2 != 0 { (c.len()?, c.u32()?) } else { (cbytes, 0) };
                if let Some(addr) = c.addr()?.filter(|_| self.total > 0) {
                    self.one(r, &mut out, (addr, size, mask), &vec![0; dims.len()], &dims, path)?;
                }
            }
            2 => {
                if let Some(addr) = c.addr()?.filter(|_| self.total > 0) {
                    for i in 0..nchunks {
                        let a = i.checked_mul(cbytes).and_then(|o| addr.checked_add(o)).ok_or_else(|| err(at(path), "chunk address overflows"))?;
                        let off = offsets(i);
                        self.one(r, &mut out, (a, cbytes, u32::MAX), &off, &dims, path)?;
                    }
                }
            }
            3 => {
                c.u8()?;
                let Some(addr) = c.addr()?.filter(|_| self.total > 0) else { return Ok(out) };
                let mut h = r.cur(addr, path)?;
                if h.take(4).ok() != Some(b"FAHD") {
                    return Err(err(at(path), format!("no fixed array header (FAHD) at address {addr}")));
                }
                h.u8()?;
                let client = h.u8()?;
                let entry = h.u8()? as usize;
                let page_bits = h.u8()?;
                let n = h.len()?;
                let block = h.addr()?.ok_or_else(|| err(at(path), "a fixed array without a data block"))?;
                if n != nchunks || page_bits >= 64 || n > (1u64 << page_bits) {
                    return Err(err(at(path), format!("a fixed array of {n} chunks (expected {nchunks}, in one page of {})", 1u128 << page_bits.min(64))));
                }
                let mut b = r.cur(block, path)?;
                if b.take(4).ok() != Some(b"FADB") {
                    return Err(err(at(path), format!("no fixed array data block (FADB) at address {block}")));
                }
                b.skip(2 + b.so)?;
                r.count_bytes(n.saturating_mul(entry as u64), path)?;
                for i in 0..n {
                    let mut e = Cur { buf: b.take(entry)?, pos: 0, so: b.so, sl: b.sl };
                    let a = e.addr()?;
                    let (size, mask) = if client == 1 {
                        let sz = entry.checked_sub(b.so + 4).ok_or_else(|| err(at(path), "a fixed array entry too short"))?;
                        (e.uint(sz.min(8))?, e.u32()?)
                    } else {
                        (cbytes, 0)
                    };
                    let off = offsets(i);
                    if let Some(a) = a {
                        let mask = mask | edge_mask(&off);
                        self.one(r, &mut out, (a, size, mask), &off, &dims, path)?;
                    }
                }
            }
            k => {
                return Err(err(
                    at(path),
                    format!("chunk index type {k} (extensible array or B-tree, for resizable datasets: not supported)"),
                ))
            }
        }
        Ok(out)
    }
}
