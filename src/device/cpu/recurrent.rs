//! Recurrent kernels on the CPU: the input projection of every step as one matrix product, then per step one
//! product of the state with the recurrent kernel (all gates at once) and one pass over the gates.
//! Back-propagation through time keeps each step's gate gradients, so that the kernels' gradients are again
//! one product each over all steps. Each product goes through [`gemm`]; the gate loops run on one thread, so
//! results do not depend on the thread count.
use ndarray::{s, ArrayView2, ArrayViewMut2};

use super::{gemm, CpuStorage};
use crate::device::{
    RecurrentCell, RecurrentGeometry, RecurrentInputs, RecurrentKernels, RecurrentPart, Unary,
};

/// The auxiliary buffer's parts, in order, as lengths.
struct Layout {
    /// Input projections `x W + b_in`, `(batch, time, width)`.
    xp: usize,
    /// States `h` before each step and after the last, `(time + 1, batch, units)`.
    h: usize,
    /// LSTM cell states, like `h`.
    c: usize,
    /// Gate pre-activations per step, `(time, batch, width)`.
    pre: usize,
    /// Gate activations per step, like `pre`.
    act: usize,
    /// The recurrent product's left operand per step (`h` times the recurrent dropout mask), `(time, batch,
    /// units)`.
    hin: usize,
    /// LSTM: `act(c)`; GRU with reset after: `h U_h + b_rec_h`; GRU without: `r · hin`. `(time, batch, units)`.
    extra: usize,
    /// One step's recurrent product, `(batch, width)`.
    rp: usize,
    /// Gradients of the input projections, like `xp`.
    dxp: usize,
    /// Gradients of the recurrent products, like `pre`.
    drp: usize,
    /// Gradients of `h` and `c` carried back, and two scratch rows, `(batch, units)` each.
    dh: usize,
}

impl Layout {
    fn new(g: &RecurrentGeometry) -> Self {
        let (b, t, u, w) = (g.batch, g.time, g.units, g.width());
        let c = if g.cell == RecurrentCell::Lstm { (t + 1) * b * u } else { 0 };
        Layout {
            xp: b * t * w,
            h: (t + 1) * b * u,
            c,
            pre: t * b * w,
            act: t * b * w,
            hin: t * b * u,
            extra: t * b * u,
            rp: b * w,
            dxp: b * t * w,
            drp: t * b * w,
            dh: 4 * b * u,
        }
    }

    fn lens(&self) -> [usize; 11] {
        [
            self.xp, self.h, self.c, self.pre, self.act, self.hin, self.extra, self.rp, self.dxp, self.drp,
            self.dh,
        ]
    }

    fn total(&self) -> usize {
        self.lens().iter().sum()
    }
}

/// The parts of the auxiliary buffer, mutably.
struct Parts<'a> {
    xp: &'a mut [f32],
    h: &'a mut [f32],
    c: &'a mut [f32],
    pre: &'a mut [f32],
    act: &'a mut [f32],
    hin: &'a mut [f32],
    extra: &'a mut [f32],
    rp: &'a mut [f32],
    dxp: &'a mut [f32],
    drp: &'a mut [f32],
    dh: &'a mut [f32],
}

fn carve<'a>(buf: &'a mut [f32], layout: &Layout) -> Parts<'a> {
    let mut rest = buf;
    let mut take = |n: usize| {
        let (a, b) = std::mem::take(&mut rest).split_at_mut(n);
        rest = b;
        a
    };
    Parts {
        xp: take(layout.xp),
        h: take(layout.h),
        c: take(layout.c),
        pre: take(layout.pre),
        act: take(layout.act),
        hin: take(layout.hin),
        extra: take(layout.extra),
        rp: take(layout.rp),
        dxp: take(layout.dxp),
        drp: take(layout.drp),
        dh: take(layout.dh),
    }
}

fn slice(s: &CpuStorage) -> &[f32] {
    s.array().as_slice().expect("a standard-layout buffer")
}

fn mat(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), data).expect("a matrix of the buffer's length")
}

fn mat_mut(data: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), data).expect("a matrix of the buffer's length")
}

/// The input time index of processing step `s`.
fn time_of(g: &RecurrentGeometry, s: usize) -> usize {
    if g.go_backwards {
        g.time - 1 - s
    } else {
        s
    }
}

/// Whether row `b` is a real step at input time `t`.
fn real(mask: Option<&[f32]>, g: &RecurrentGeometry, b: usize, t: usize) -> bool {
    mask.is_none_or(|m| m[b * g.time + t] != 0.0)
}

impl RecurrentKernels for CpuStorage {
    fn recurrent(i: RecurrentInputs<'_, Self>, g: RecurrentGeometry, out: &mut Self, aux: &mut Self) {
        let layout = Layout::new(&g);
        if aux.array().shape() != [layout.total()] {
            *aux = CpuStorage::from(ndarray::ArrayD::zeros(ndarray::IxDyn(&[layout.total()])));
        }
        let p = carve(aux.array_mut().as_slice_mut().expect("standard layout"), &layout);
        let (bs, ts, fs, u, w) = (g.batch, g.time, g.features, g.units, g.width());
        let (x, kernel, rk) = (slice(i.x), slice(i.kernel), slice(i.recurrent_kernel));
        let mask = i.mask.map(slice);
        let rmask = i.recurrent_mask.map(slice);
        let (act_f, rec_f) = (g.activation, g.recurrent_activation);
        // Every step's input projection in one product, then the input bias.
        gemm(1.0, &mat(x, bs * ts, fs), &mat(kernel, fs, w), 0.0, &mut mat_mut(p.xp, bs * ts, w));
        let bias = i.bias.map(slice);
        if let Some(bias) = bias {
            p.xp.chunks_exact_mut(w)
                .for_each(|row| row.iter_mut().zip(&bias[..w]).for_each(|(a, b)| *a += b));
        }
        let rec_bias = match (g.cell, bias) {
            (RecurrentCell::Gru { reset_after: true }, Some(b)) => Some(&b[w..2 * w]),
            _ => None,
        };
        for (k, init) in i.initial.iter().enumerate() {
            let dst = if k == 0 {
                &mut p.h[..bs * u]
            } else if p.c.is_empty() {
                continue;
            } else {
                &mut p.c[..bs * u]
            };
            match init {
                Some(s) => dst.copy_from_slice(slice(s)),
                None => dst.fill(0.0),
            }
        }
        let reset_before = g.cell == RecurrentCell::Gru { reset_after: false };
        // The columns the first recurrent product covers: all, or z and r when the reset comes first.
        let first = if reset_before { 2 * u } else { w };
        for s in 0..ts {
            let t = time_of(&g, s);
            let (h_done, h_next) = p.h.split_at_mut((s + 1) * bs * u);
            let hprev = &h_done[s * bs * u..];
            let hnext = &mut h_next[..bs * u];
            let hin = &mut p.hin[s * bs * u..(s + 1) * bs * u];
            match rmask {
                Some(m) => hin.iter_mut().zip(hprev.iter().zip(m)).for_each(|(d, (h, m))| *d = h * m),
                None => hin.copy_from_slice(hprev),
            }
            gemm(
                1.0,
                &mat(hin, bs, u),
                &mat(rk, u, w).slice(s![.., ..first]),
                0.0,
                &mut mat_mut(p.rp, bs, w).slice_mut(s![.., ..first]),
            );
            let pre = &mut p.pre[s * bs * w..(s + 1) * bs * w];
            let act = &mut p.act[s * bs * w..(s + 1) * bs * w];
            let extra = &mut p.extra[s * bs * u..(s + 1) * bs * u];
            for b in 0..bs {
                let xp = &p.xp[(b * ts + t) * w..(b * ts + t + 1) * w];
                let rp = &mut p.rp[b * w..(b + 1) * w];
                let (pre, act) = (&mut pre[b * w..(b + 1) * w], &mut act[b * w..(b + 1) * w]);
                let ex = &mut extra[b * u..(b + 1) * u];
                match g.cell {
                    RecurrentCell::Simple => {
                        for j in 0..u {
                            pre[j] = xp[j] + rp[j];
                        }
                        apply(act_f, pre, act);
                    }
                    RecurrentCell::Lstm => {
                        for j in 0..w {
                            pre[j] = xp[j] + rp[j];
                        }
                        apply(rec_f, &pre[..2 * u], &mut act[..2 * u]);
                        apply(act_f, &pre[2 * u..3 * u], &mut act[2 * u..3 * u]);
                        apply(rec_f, &pre[3 * u..], &mut act[3 * u..]);
                    }
                    RecurrentCell::Gru { reset_after } => {
                        if let Some(rb) = rec_bias {
                            rp.iter_mut().zip(rb).for_each(|(a, b)| *a += b);
                        }
                        for j in 0..2 * u {
                            pre[j] = xp[j] + rp[j];
                        }
                        apply(rec_f, &pre[..2 * u], &mut act[..2 * u]);
                        if reset_after {
                            ex.copy_from_slice(&rp[2 * u..]);
                        } else {
                            let hin_b = &hin[b * u..(b + 1) * u];
                            for j in 0..u {
                                ex[j] = act[u + j] * hin_b[j];
                            }
                        }
                    }
                }
            }
            if reset_before {
                // The candidate's product takes the reset state: one more product for all rows.
                gemm(
                    1.0,
                    &mat(extra, bs, u),
                    &mat(rk, u, w).slice(s![.., 2 * u..]),
                    0.0,
                    &mut mat_mut(p.rp, bs, w).slice_mut(s![.., 2 * u..]),
                );
            }
            let (c_done, c_next) = p.c.split_at_mut(if p.c.is_empty() { 0 } else { (s + 1) * bs * u });
            for b in 0..bs {
                let live = real(mask, &g, b, t);
                let hp = &hprev[b * u..(b + 1) * u];
                let hn = &mut hnext[b * u..(b + 1) * u];
                let pre = &mut pre[b * w..(b + 1) * w];
                let act = &mut act[b * w..(b + 1) * w];
                let xp = &p.xp[(b * ts + t) * w..(b * ts + t + 1) * w];
                let rp = &p.rp[b * w..(b + 1) * w];
                let ex = &mut extra[b * u..(b + 1) * u];
                match g.cell {
                    RecurrentCell::Simple => hn.copy_from_slice(&act[..u]),
                    RecurrentCell::Lstm => {
                        let cp = &c_done[s * bs * u + b * u..s * bs * u + (b + 1) * u];
                        let cn = &mut c_next[b * u..(b + 1) * u];
                        for j in 0..u {
                            let c = act[u + j] * cp[j] + act[j] * act[2 * u + j];
                            cn[j] = c;
                        }
                        apply(act_f, cn, ex);
                        for j in 0..u {
                            hn[j] = act[3 * u + j] * ex[j];
                        }
                        if !live {
                            cn.copy_from_slice(cp);
                        }
                    }
                    RecurrentCell::Gru { reset_after } => {
                        for j in 0..u {
                            let rec = if reset_after { act[u + j] * ex[j] } else { rp[2 * u + j] };
                            pre[2 * u + j] = xp[2 * u + j] + rec;
                        }
                        apply(act_f, &pre[2 * u..], &mut act[2 * u..]);
                        for j in 0..u {
                            let z = act[j];
                            hn[j] = z * hp[j] + (1.0 - z) * act[2 * u + j];
                        }
                    }
                }
                if !live {
                    hn.copy_from_slice(hp);
                }
            }
        }
        // The result: the outputs (every step's or the last), then the final states.
        let o = out.array_mut().as_slice_mut().expect("standard layout");
        let rows = g.rows();
        let steps = g.output_steps();
        for b in 0..bs {
            let ob = &mut o[b * rows * u..(b + 1) * rows * u];
            for r in 0..steps {
                let s = if g.return_sequences { r + 1 } else { ts };
                ob[r * u..(r + 1) * u].copy_from_slice(&p.h[s * bs * u + b * u..s * bs * u + (b + 1) * u]);
            }
            if g.with_states {
                ob[steps * u..(steps + 1) * u]
                    .copy_from_slice(&p.h[ts * bs * u + b * u..ts * bs * u + (b + 1) * u]);
                if g.cell == RecurrentCell::Lstm {
                    ob[(steps + 1) * u..(steps + 2) * u]
                        .copy_from_slice(&p.c[ts * bs * u + b * u..ts * bs * u + (b + 1) * u]);
                }
            }
        }
    }

    fn recurrent_backward(&self, i: RecurrentInputs<'_, Self>, g: RecurrentGeometry, aux: &mut Self) {
        let layout = Layout::new(&g);
        let p = carve(aux.array_mut().as_slice_mut().expect("standard layout"), &layout);
        let (bs, ts, u, w) = (g.batch, g.time, g.units, g.width());
        let go = slice(self);
        let rk = slice(i.recurrent_kernel);
        let mask = i.mask.map(slice);
        let rmask = i.recurrent_mask.map(slice);
        let (act_f, rec_f) = (g.activation, g.recurrent_activation);
        let rows = g.rows();
        let steps = g.output_steps();
        let (dh, rest) = p.dh.split_at_mut(bs * u);
        let (dc, rest) = rest.split_at_mut(bs * u);
        let (dprev, dtmp) = rest.split_at_mut(bs * u);
        dh.fill(0.0);
        dc.fill(0.0);
        for b in 0..bs {
            let gb = &go[b * rows * u..(b + 1) * rows * u];
            let dhb = &mut dh[b * u..(b + 1) * u];
            if g.with_states {
                add(dhb, &gb[steps * u..(steps + 1) * u]);
                if g.cell == RecurrentCell::Lstm {
                    add(&mut dc[b * u..(b + 1) * u], &gb[(steps + 1) * u..(steps + 2) * u]);
                }
            }
            if !g.return_sequences {
                add(dhb, &gb[..u]);
            }
        }
        let reset_before = g.cell == RecurrentCell::Gru { reset_after: false };
        let first = if reset_before { 2 * u } else { w };
        for s in (0..ts).rev() {
            let t = time_of(&g, s);
            if g.return_sequences {
                for b in 0..bs {
                    add(&mut dh[b * u..(b + 1) * u], &go[(b * rows + s) * u..(b * rows + s + 1) * u]);
                }
            }
            let hprev = &p.h[s * bs * u..(s + 1) * bs * u];
            let pre = &p.pre[s * bs * w..(s + 1) * bs * w];
            let act = &p.act[s * bs * w..(s + 1) * bs * w];
            let extra = &p.extra[s * bs * u..(s + 1) * bs * u];
            let hin = &p.hin[s * bs * u..(s + 1) * bs * u];
            let drp = &mut p.drp[s * bs * w..(s + 1) * bs * w];
            for b in 0..bs {
                let live = real(mask, &g, b, t);
                let dxp = &mut p.dxp[(b * ts + t) * w..(b * ts + t + 1) * w];
                let dr = &mut drp[b * w..(b + 1) * w];
                let dhb = &dh[b * u..(b + 1) * u];
                let dp = &mut dprev[b * u..(b + 1) * u];
                if !live {
                    dxp.fill(0.0);
                    dr.fill(0.0);
                    dp.copy_from_slice(dhb);
                    continue;
                }
                let (pre, act) = (&pre[b * w..(b + 1) * w], &act[b * w..(b + 1) * w]);
                let ex = &extra[b * u..(b + 1) * u];
                match g.cell {
                    RecurrentCell::Simple => {
                        for j in 0..u {
                            dxp[j] = dhb[j] * act_f.df(pre[j], act[j]);
                        }
                        dp.fill(0.0);
                    }
                    RecurrentCell::Lstm => {
                        let cp = &p.c[s * bs * u + b * u..s * bs * u + (b + 1) * u];
                        let cn = &p.c[(s + 1) * bs * u + b * u..(s + 1) * bs * u + (b + 1) * u];
                        let dcb = &mut dc[b * u..(b + 1) * u];
                        for j in 0..u {
                            let (ig, fg, cg, og) = (act[j], act[u + j], act[2 * u + j], act[3 * u + j]);
                            let dct = dcb[j] + dhb[j] * og * act_f.df(cn[j], ex[j]);
                            dxp[j] = dct * cg * rec_f.df(pre[j], ig);
                            dxp[u + j] = dct * cp[j] * rec_f.df(pre[u + j], fg);
                            dxp[2 * u + j] = dct * ig * act_f.df(pre[2 * u + j], cg);
                            dxp[3 * u + j] = dhb[j] * ex[j] * rec_f.df(pre[3 * u + j], og);
                            dcb[j] = dct * fg;
                        }
                        dp.fill(0.0);
                    }
                    RecurrentCell::Gru { reset_after } => {
                        let hp = &hprev[b * u..(b + 1) * u];
                        for j in 0..u {
                            let (z, r, hh) = (act[j], act[u + j], act[2 * u + j]);
                            let dpre_h = dhb[j] * (1.0 - z) * act_f.df(pre[2 * u + j], hh);
                            dxp[2 * u + j] = dpre_h;
                            dxp[j] = dhb[j] * (hp[j] - hh) * rec_f.df(pre[j], z);
                            dp[j] = dhb[j] * z;
                            if reset_after {
                                dxp[u + j] = dpre_h * ex[j] * rec_f.df(pre[u + j], r);
                            }
                        }
                    }
                }
                // The recurrent products' gradients: the input's, except where the reset gate comes between.
                dr.copy_from_slice(dxp);
                if let RecurrentCell::Gru { reset_after: true } = g.cell {
                    for j in 0..u {
                        dr[2 * u + j] *= act[u + j];
                    }
                }
            }
            if reset_before {
                // d(r · hin) from the candidate's product, then the reset gate's gradient.
                gemm(
                    1.0,
                    &mat(drp, bs, w).slice(s![.., 2 * u..]),
                    &mat(rk, u, w).slice(s![.., 2 * u..]).t(),
                    0.0,
                    &mut mat_mut(dtmp, bs, u),
                );
                for b in 0..bs {
                    if !real(mask, &g, b, t) {
                        continue;
                    }
                    let (pre, act) = (&pre[b * w..(b + 1) * w], &act[b * w..(b + 1) * w]);
                    let dxp = &mut p.dxp[(b * ts + t) * w..(b * ts + t + 1) * w];
                    let dr = &mut drp[b * w..(b + 1) * w];
                    for j in 0..u {
                        let k = b * u + j;
                        let d = dtmp[k] * hin[k] * rec_f.df(pre[u + j], act[u + j]);
                        dxp[u + j] = d;
                        dr[u + j] = d;
                        let m = rmask.map_or(1.0, |m| m[k]);
                        dprev[k] += dtmp[k] * act[u + j] * m;
                    }
                }
            }
            // The state's gradient through the recurrent product, for all rows at once.
            gemm(
                1.0,
                &mat(drp, bs, w).slice(s![.., ..first]),
                &mat(rk, u, w).slice(s![.., ..first]).t(),
                0.0,
                &mut mat_mut(dtmp, bs, u),
            );
            for k in 0..bs * u {
                let m = rmask.map_or(1.0, |m| m[k]);
                dh[k] = dprev[k] + dtmp[k] * m;
            }
        }
    }

    fn recurrent_grad(
        &self,
        i: RecurrentInputs<'_, Self>,
        g: RecurrentGeometry,
        part: RecurrentPart,
        out: &mut Self,
        accumulate: bool,
    ) {
        let layout = Layout::new(&g);
        let mut copy = self.array().as_slice().expect("standard layout");
        let mut take = |n: usize| {
            let (a, b) = copy.split_at(n);
            copy = b;
            a
        };
        let [_xp, _h, _c, _pre, _act, hin, extra, _rp, dxp, drp, dh] = layout.lens().map(&mut take);
        let (bs, ts, fs, u, w) = (g.batch, g.time, g.features, g.units, g.width());
        let beta = if accumulate { 1.0 } else { 0.0 };
        let o = out.array_mut().as_slice_mut().expect("standard layout");
        match part {
            RecurrentPart::Input => {
                gemm(
                    1.0,
                    &mat(dxp, bs * ts, w),
                    &mat(slice(i.kernel), fs, w).t(),
                    beta,
                    &mut mat_mut(o, bs * ts, fs),
                );
            }
            RecurrentPart::Kernel => {
                gemm(
                    1.0,
                    &mat(slice(i.x), bs * ts, fs).t(),
                    &mat(dxp, bs * ts, w),
                    beta,
                    &mut mat_mut(o, fs, w),
                );
            }
            RecurrentPart::RecurrentKernel => {
                let mut dst = mat_mut(o, u, w);
                if g.cell == (RecurrentCell::Gru { reset_after: false }) {
                    let drp = mat(drp, ts * bs, w);
                    gemm(
                        1.0,
                        &mat(hin, ts * bs, u).t(),
                        &drp.slice(s![.., ..2 * u]),
                        beta,
                        &mut dst.slice_mut(s![.., ..2 * u]),
                    );
                    gemm(
                        1.0,
                        &mat(extra, ts * bs, u).t(),
                        &drp.slice(s![.., 2 * u..]),
                        beta,
                        &mut dst.slice_mut(s![.., 2 * u..]),
                    );
                } else {
                    gemm(1.0, &mat(hin, ts * bs, u).t(), &mat(drp, ts * bs, w), beta, &mut dst);
                }
            }
            RecurrentPart::Bias => {
                if !accumulate {
                    o.fill(0.0);
                }
                dxp.chunks_exact(w).for_each(|row| add(&mut o[..w], row));
                if g.cell == (RecurrentCell::Gru { reset_after: true }) {
                    drp.chunks_exact(w).for_each(|row| add(&mut o[w..2 * w], row));
                }
            }
            RecurrentPart::Initial(k) => {
                let src = &dh[k * bs * u..(k + 1) * bs * u];
                if accumulate {
                    add(o, src);
                } else {
                    o.copy_from_slice(src);
                }
            }
        }
    }
}

/// `dst = f(src)`, element by element.
fn apply(f: Unary, src: &[f32], dst: &mut [f32]) {
    crate::device::specialise!(f, |op| dst.iter_mut().zip(src).for_each(|(d, &x)| *d = op.f(x)))
}

/// `dst += src`.
fn add(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}
