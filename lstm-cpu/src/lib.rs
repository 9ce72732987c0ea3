//! One LSTM layer over whole sequences on host memory: the forward pass,
//! keeping what training needs, and backpropagation through time. The
//! arithmetic behind promcast's fused burn operation
//! (`promcast::model::fused_lstm`), which owns the tensors and the shapes.
//!
//! Layout: row-major `f32`; gates side by side in the order input, forget,
//! cell candidate, output; the state starts at zero.
//!
//! How it is fast: per step, one product of the hidden state with all four
//! gates' recurrent weights, the gate arithmetic fused behind it, several
//! sequences at once so that each weight row read serves several of them,
//! chunks of sequences on separate threads; backwards, the weights'
//! gradient as one product per block of sequences over all of its steps,
//! each tile of it summed in registers; and loops written for the
//! compiler to vectorise (compiled for AVX2 where the CPU has it, with an
//! `exp` built from arithmetic rather than a library call).

/// Gates per hidden unit.
pub const GATES: usize = 4;
/// Sequences advanced together.
const BLOCK: usize = 6;
/// Calls `f::<R, FMA>(args)` with `R` the number of sequences in a block,
/// `n`, as a constant: each block size gets its own register tiles.
macro_rules! per_block {
    ($n:expr, $f:ident($($arg:expr),*)) => {
        match $n {
            1 => $f::<1, FMA>($($arg),*),
            2 => $f::<2, FMA>($($arg),*),
            3 => $f::<3, FMA>($($arg),*),
            4 => $f::<4, FMA>($($arg),*),
            5 => $f::<5, FMA>($($arg),*),
            _ => $f::<BLOCK, FMA>($($arg),*),
        }
    };
}

/// Fewest sequences worth a thread of their own.
const MIN_PER_THREAD: usize = 16;

/// The shapes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Sequences.
    pub batch: usize,
    /// Time steps per sequence.
    pub steps: usize,
    /// Input features per step.
    pub inputs: usize,
    /// Hidden units.
    pub hidden: usize,
}

impl Dims {
    /// Gate pre-activations per step: `4 · hidden`.
    pub fn gates(self) -> usize {
        GATES * self.hidden
    }

    fn with_batch(self, batch: usize) -> Self {
        Self { batch, ..self }
    }

    fn check(self, x: &[f32], w: Weights<'_>) {
        let g = self.gates();
        assert_eq!(
            x.len(),
            self.batch * self.steps * self.inputs,
            "input length"
        );
        assert_eq!(w.input.len(), self.inputs * g, "input weights length");
        assert_eq!(w.hidden.len(), self.hidden * g, "hidden weights length");
        assert_eq!(w.bias.len(), g, "bias length");
    }
}

/// A layer's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    /// `[inputs, 4·hidden]`
    pub input: &'a [f32],
    /// `[hidden, 4·hidden]`
    pub hidden: &'a [f32],
    /// `[4·hidden]`: the input and hidden transforms' biases summed.
    pub bias: &'a [f32],
}

/// What the forward pass keeps for the backward one: the four gates after
/// their activations and the cell state, per sequence and step.
#[derive(Debug, Clone)]
pub struct Trace {
    /// `[batch, steps, 4·hidden]`
    gates: Vec<f32>,
    /// `[batch, steps, hidden]`
    cells: Vec<f32>,
}

/// Gradients of the loss with respect to each operand, in its layout.
#[derive(Debug, Clone)]
pub struct Grads {
    /// `[batch, steps, inputs]`
    pub input: Vec<f32>,
    /// `[inputs, 4·hidden]`
    pub input_weights: Vec<f32>,
    /// `[hidden, 4·hidden]`
    pub hidden_weights: Vec<f32>,
    /// `[4·hidden]`
    pub bias: Vec<f32>,
}

/// Runs the layer over `x` (`[batch, steps, inputs]`) and returns the
/// hidden state at every step (`[batch, steps, hidden]`), with the trace
/// [`backward`] needs when `keep_trace`.
///
/// # Panics
/// When a buffer's length disagrees with `d`.
pub fn forward(d: Dims, x: &[f32], w: Weights<'_>, keep_trace: bool) -> (Vec<f32>, Option<Trace>) {
    run_forward(d, x, w, keep_trace, true)
}

/// Runs the layer over `x` (`[batch, steps, inputs]`) and returns only the
/// hidden state after the last step (`[batch, hidden]`): what a last layer
/// needs at inference, without writing out every step.
///
/// # Panics
/// When a buffer's length disagrees with `d`.
pub fn last_states(d: Dims, x: &[f32], w: Weights<'_>) -> Vec<f32> {
    run_forward(d, x, w, false, false).0
}

fn run_forward(
    d: Dims,
    x: &[f32],
    w: Weights<'_>,
    keep_trace: bool,
    every_step: bool,
) -> (Vec<f32>, Option<Trace>) {
    d.check(x, w);
    let per_seq = d.steps * d.hidden;
    let out_per_seq = if every_step { per_seq } else { d.hidden };
    let mut out = vec![0.0f32; d.batch * out_per_seq];
    let mut trace = keep_trace.then(|| Trace {
        gates: vec![0.0; d.batch * d.steps * d.gates()],
        cells: vec![0.0; d.batch * per_seq],
    });
    // The input and recurrent weights as one `[inputs + hidden, 4·hidden]`
    // matrix, so that a step's gates are one product.
    let stacked = panels(&[w.input, w.hidden].concat(), d.inputs + d.hidden);
    let stacked = stacked.as_slice();
    let per = chunk(d.batch);
    let xs = x.chunks(per * d.steps * d.inputs);
    let outs = out.chunks_mut(per * out_per_seq);
    let traces: Vec<Option<(&mut [f32], &mut [f32])>> = match &mut trace {
        Some(t) => t
            .gates
            .chunks_mut(per * d.steps * d.gates())
            .zip(t.cells.chunks_mut(per * per_seq))
            .map(Some)
            .collect(),
        None => (0..d.batch.div_ceil(per)).map(|_| None).collect(),
    };
    let jobs = xs.zip(outs).zip(traces).map(|((x, out), trace)| {
        let d = d.with_batch(out.len() / out_per_seq);
        move || {
            forward_chunk(
                d,
                w,
                stacked,
                x,
                Out {
                    values: out,
                    every_step,
                },
                trace,
            )
        }
    });
    run_all(jobs.collect());
    (out, trace)
}

/// Where a chunk's hidden states go: every step's, or the last one's.
struct Out<'a> {
    values: &'a mut [f32],
    every_step: bool,
}

/// Backpropagation through time: the gradients of every operand, given the
/// inputs and output of a [`forward`] pass with its trace, and `d_hidden`,
/// the gradient of the loss with respect to that output.
///
/// # Panics
/// When a buffer's length disagrees with `d`.
pub fn backward(
    d: Dims,
    x: &[f32],
    w: Weights<'_>,
    hidden: &[f32],
    trace: &Trace,
    d_hidden: &[f32],
) -> Grads {
    d.check(x, w);
    let g = d.gates();
    let per_seq = d.steps * d.hidden;
    assert_eq!(hidden.len(), d.batch * per_seq, "output length");
    assert_eq!(d_hidden.len(), hidden.len(), "output gradient length");
    assert_eq!(trace.cells.len(), hidden.len(), "trace length");
    let per = chunk(d.batch);
    let k_len = d.inputs + d.hidden;
    // `[inputs + hidden, 4·hidden]` stacked, as in the forward pass, and
    // transposed: the gradient flowing back to a step's input and previous
    // hidden state is then one tiled product, like the forward one. Its
    // columns are padded with zeros to a multiple of 8, which the product
    // walks in vector-wide tiles rather than one column at a time.
    let transposed = transpose(&[w.input, w.hidden].concat(), k_len, g);
    let padded: Vec<f32> = transposed
        .chunks_exact(k_len)
        .flat_map(|row| {
            row.iter()
                .copied()
                .chain(std::iter::repeat_n(0.0, padded_width(k_len) - k_len))
        })
        .collect();
    let stacked_t = panels(&padded, g);
    let stacked_t = stacked_t.as_slice();
    let mut input = vec![0.0f32; x.len()];
    // Per chunk: the stacked weights' gradient, then the bias's.
    let mut partial = vec![vec![0.0f32; (k_len + 1) * g]; d.batch.div_ceil(per)];
    let jobs = input
        .chunks_mut(per * d.steps * d.inputs)
        .zip(partial.iter_mut())
        .enumerate()
        .map(|(n, (dx, sums))| {
            let d = d.with_batch(dx.len() / (d.steps * d.inputs));
            let span = |len: usize| n * per * len..(n * per + d.batch) * len;
            let saved = Saved {
                x: &x[span(d.steps * d.inputs)],
                h: &hidden[span(per_seq)],
                dh: &d_hidden[span(per_seq)],
                gates: &trace.gates[span(d.steps * g)],
                cells: &trace.cells[span(per_seq)],
            };
            move || backward_chunk(d, saved, stacked_t, dx, sums)
        });
    run_all(jobs.collect());
    let mut parts = partial.into_iter();
    let mut sum = parts.next().expect("at least one chunk");
    for p in parts {
        add(&mut sum, &p);
    }
    let bias = sum.split_off(k_len * g);
    let hidden_weights = sum.split_off(d.inputs * g);
    Grads {
        input,
        input_weights: sum,
        hidden_weights,
        bias,
    }
}

/// Runs each job on a thread of its own, or the only one on this thread
/// (starting a thread costs more than a small batch).
fn run_all<F: FnOnce() + Send>(mut jobs: Vec<F>) {
    if jobs.len() == 1 {
        if let Some(job) = jobs.pop() {
            job();
        }
        return;
    }
    std::thread::scope(|scope| {
        for job in jobs {
            scope.spawn(job);
        }
    });
}

/// [`forward`] for one chunk of sequences.
fn forward_chunk(
    d: Dims,
    w: Weights<'_>,
    stacked: &[f32],
    x: &[f32],
    out: Out<'_>,
    trace: Option<(&mut [f32], &mut [f32])>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        fn avx2(
            d: Dims,
            w: Weights<'_>,
            stacked: &[f32],
            x: &[f32],
            out: Out<'_>,
            trace: Option<(&mut [f32], &mut [f32])>,
        ) {
            forward_steps::<true>(d, w, stacked, x, out, trace);
        }
        // SAFETY: this CPU has just been checked for AVX2 and FMA.
        return unsafe { avx2(d, w, stacked, x, out, trace) };
    }
    forward_steps::<false>(d, w, stacked, x, out, trace);
}

/// The body of [`forward_chunk`], `BLOCK` sequences at a time, inlined into
/// each instruction-set variant.
#[inline(always)]
fn forward_steps<const FMA: bool>(
    d: Dims,
    w: Weights<'_>,
    stacked: &[f32],
    x: &[f32],
    out: Out<'_>,
    mut trace: Option<(&mut [f32], &mut [f32])>,
) {
    let g = d.gates();
    let k_len = d.inputs + d.hidden;
    let mut z = vec![0.0f32; BLOCK * k_len];
    let mut gates = vec![0.0f32; BLOCK * g];
    let mut h = vec![0.0f32; BLOCK * d.hidden];
    let mut c = vec![0.0f32; BLOCK * d.hidden];
    for first in (0..d.batch).step_by(BLOCK) {
        let n = BLOCK.min(d.batch - first);
        h.fill(0.0);
        c.fill(0.0);
        for t in 0..d.steps {
            // Each sequence's input and previous hidden state side by
            // side, against the input and recurrent weights stacked.
            for s in 0..n {
                let at = (first + s) * d.steps + t;
                let xt = &x[at * d.inputs..][..d.inputs];
                let ht = &h[s * d.hidden..][..d.hidden];
                put_column(&mut z, n, s, 0, xt);
                put_column(&mut z, n, s, d.inputs, ht);
            }
            let z = &z[..k_len * n];
            per_block!(n, gate_products(z, stacked, w.bias, &mut gates));
            for s in 0..n {
                let at = (first + s) * d.steps + t;
                let row = &mut gates[s * g..(s + 1) * g];
                let (i, rest) = row.split_at_mut(d.hidden);
                let (f, rest) = rest.split_at_mut(d.hidden);
                let (cand, o) = rest.split_at_mut(d.hidden);
                let hs = &mut h[s * d.hidden..][..d.hidden];
                let cs = &mut c[s * d.hidden..][..d.hidden];
                cell_step::<FMA>(i, f, cand, o, cs, hs);
                if out.every_step {
                    out.values[at * d.hidden..][..d.hidden].copy_from_slice(hs);
                } else if t + 1 == d.steps {
                    out.values[(first + s) * d.hidden..][..d.hidden].copy_from_slice(hs);
                }
                if let Some((tg, tc)) = trace.as_mut() {
                    tg[at * g..][..g].copy_from_slice(row);
                    tc[at * d.hidden..][..d.hidden].copy_from_slice(cs);
                }
            }
        }
    }
}

/// One chunk's slices of what the forward pass saw and kept.
#[derive(Clone, Copy)]
struct Saved<'a> {
    x: &'a [f32],
    h: &'a [f32],
    dh: &'a [f32],
    gates: &'a [f32],
    cells: &'a [f32],
}

/// `gates[s] = bias + z[s] · stacked` for the `R` sequences whose inputs
/// `z` holds transposed (`[k_len, R]`), tile by tile of output columns,
/// each tile's sums held in registers over the whole of `k`; `stacked` is
/// laid out by [`panels`].
#[inline(always)]
fn gate_products<const R: usize, const FMA: bool>(
    z: &[f32],
    stacked: &[f32],
    bias: &[f32],
    gates: &mut [f32],
) {
    let k_len = z.len() / R;
    let mut rest = stacked;
    for (j, width) in tiles(bias.len()) {
        let (this, tail) = rest.split_at(k_len * width);
        rest = tail;
        match width {
            16 => gate_tile::<R, 16, FMA>(z, this, bias, gates, j),
            8 => gate_tile::<R, 8, FMA>(z, this, bias, gates, j),
            _ => gate_tile::<R, 1, FMA>(z, this, bias, gates, j),
        }
    }
}

/// Columns `j..j + W` of [`gate_products`], from their panel.
#[inline(always)]
fn gate_tile<const R: usize, const W: usize, const FMA: bool>(
    z: &[f32],
    panel: &[f32],
    bias: &[f32],
    gates: &mut [f32],
    j: usize,
) {
    let g = bias.len();
    let mut acc = [[0.0f32; W]; R];
    for row in &mut acc {
        row.copy_from_slice(&bias[j..j + W]);
    }
    for (zk, wk) in z.chunks_exact(R).zip(panel.chunks_exact(W)) {
        let wk: &[f32; W] = wk.try_into().expect("a whole tile");
        for (row, &zs) in acc.iter_mut().zip(zk) {
            for l in 0..W {
                row[l] = madd::<FMA>(zs, wk[l], row[l]);
            }
        }
    }
    for (s, row) in acc.iter().enumerate() {
        gates[s * g + j..][..W].copy_from_slice(row);
    }
}

/// The column tiles [`gate_products`] walks for `cols` columns: `(first
/// column, width)`, 16 wide, then 8, then 1.
fn tiles(cols: usize) -> impl Iterator<Item = (usize, usize)> {
    let wide = cols / 16 * 16;
    let middle = wide + (cols - wide) / 8 * 8;
    (0..wide)
        .step_by(16)
        .map(|j| (j, 16))
        .chain((wide..middle).step_by(8).map(|j| (j, 8)))
        .chain((middle..cols).map(|j| (j, 1)))
}

/// A row-major matrix of `rows` rows rearranged as [`gate_products`] reads
/// it: tile by tile of columns, each tile's rows one after another, so the
/// product walks its weights front to back instead of a row apart.
fn panels(m: &[f32], rows: usize) -> Vec<f32> {
    let cols = m.len() / rows;
    let mut out = Vec::with_capacity(m.len());
    for (j, width) in tiles(cols) {
        for row in m.chunks_exact(cols) {
            out.extend_from_slice(&row[j..j + width]);
        }
    }
    out
}

/// Applies the gate activations in place and advances the cell state `c`
/// and hidden state `h` by one step. A function of its own so that the
/// compiler knows the six slices apart and vectorises the loop.
#[inline(always)]
fn cell_step<const FMA: bool>(
    i: &mut [f32],
    f: &mut [f32],
    cand: &mut [f32],
    o: &mut [f32],
    c: &mut [f32],
    h: &mut [f32],
) {
    let n = h.len();
    let (i, f, cand, o, c) = (
        &mut i[..n],
        &mut f[..n],
        &mut cand[..n],
        &mut o[..n],
        &mut c[..n],
    );
    for j in 0..n {
        (i[j], f[j], cand[j], o[j]) = (
            sigmoid::<FMA>(i[j]),
            sigmoid::<FMA>(f[j]),
            tanh::<FMA>(cand[j]),
            sigmoid::<FMA>(o[j]),
        );
        c[j] = f[j] * c[j] + i[j] * cand[j];
        h[j] = o[j] * tanh::<FMA>(c[j]);
    }
}

/// One step back through the cell: from the gates after activation `[i,
/// f, cand, o]`, the cell state `c` and the one before it, the output's
/// gradient `dh` and the gradients flowing back from the next step (which
/// it replaces with this step's, for the cell), writes the gradients of
/// the four gates' pre-activations. A function of its own so that the
/// compiler knows the slices apart and vectorises the loop.
#[inline(always)]
fn cell_grad<const FMA: bool>(
    [i, f, cand, o]: [&[f32]; 4],
    c: &[f32],
    c_prev: &[f32],
    dh: &[f32],
    dh_next: &mut [f32],
    dc_next: &mut [f32],
    [da_i, da_f, da_c, da_o]: [&mut [f32]; 4],
) {
    let n = c.len();
    let (i, f, cand, o) = (&i[..n], &f[..n], &cand[..n], &o[..n]);
    let (c_prev, dh, dh_next, dc_next) =
        (&c_prev[..n], &dh[..n], &mut dh_next[..n], &mut dc_next[..n]);
    let (da_i, da_f, da_c, da_o) = (
        &mut da_i[..n],
        &mut da_f[..n],
        &mut da_c[..n],
        &mut da_o[..n],
    );
    for j in 0..n {
        let dh = dh[j] + dh_next[j];
        let tc = tanh::<FMA>(c[j]);
        let dc = dc_next[j] + dh * o[j] * (1.0 - tc * tc);
        da_i[j] = dc * cand[j] * i[j] * (1.0 - i[j]);
        da_f[j] = dc * c_prev[j] * f[j] * (1.0 - f[j]);
        da_c[j] = dc * i[j] * (1.0 - cand[j] * cand[j]);
        da_o[j] = dh * tc * o[j] * (1.0 - o[j]);
        dc_next[j] = dc * f[j];
    }
}

/// Backpropagation through time over one chunk of sequences: writes the
/// input gradients into `dx` and adds the chunk's weight gradients to
/// `sums` (the stacked weights', then the bias's).
fn backward_chunk(d: Dims, saved: Saved<'_>, stacked_t: &[f32], dx: &mut [f32], sums: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        fn avx2(d: Dims, saved: Saved<'_>, stacked_t: &[f32], dx: &mut [f32], sums: &mut [f32]) {
            backward_steps::<true>(d, saved, stacked_t, dx, sums);
        }
        // SAFETY: this CPU has just been checked for AVX2 and FMA.
        return unsafe { avx2(d, saved, stacked_t, dx, sums) };
    }
    backward_steps::<false>(d, saved, stacked_t, dx, sums);
}

/// The body of [`backward_chunk`], `BLOCK` sequences at a time, inlined
/// into each instruction-set variant.
#[inline(always)]
fn backward_steps<const FMA: bool>(
    d: Dims,
    saved: Saved<'_>,
    stacked_t: &[f32],
    dx: &mut [f32],
    sums: &mut [f32],
) {
    let Saved {
        x,
        h,
        dh: dh_out,
        gates,
        cells,
    } = saved;
    let (g, hid) = (d.gates(), d.hidden);
    let k_len = d.inputs + hid;
    let k_pad = padded_width(k_len);
    let zeros = vec![0.0f32; k_pad.max(g)];
    let mut da = vec![0.0f32; BLOCK * g];
    let mut da_t = vec![0.0f32; g * BLOCK];
    let mut back = vec![0.0f32; BLOCK * k_pad];
    // The block's every step, row by row (sequence, then step): what each
    // step read (its input, the hidden state before, and a 1 for the
    // bias) and its gates' gradients. The weights' gradient is their
    // product once the block is done, rather than a sum of per-step outer
    // products that would read and write the whole gradient at each step.
    let mut read = vec![0.0f32; BLOCK * d.steps * (k_len + 1)];
    let mut da_all = vec![0.0f32; BLOCK * d.steps * g];
    let mut dh_next = vec![0.0f32; BLOCK * hid];
    let mut dc_next = vec![0.0f32; BLOCK * hid];
    for first in (0..d.batch).step_by(BLOCK) {
        let n = BLOCK.min(d.batch - first);
        dh_next.fill(0.0);
        dc_next.fill(0.0);
        for t in (0..d.steps).rev() {
            for s in 0..n {
                let at = (first + s) * d.steps + t;
                let row = &gates[at * g..][..g];
                let (i, rest) = row.split_at(hid);
                let (f, rest) = rest.split_at(hid);
                let (cand, o) = rest.split_at(hid);
                let c_prev = if t > 0 {
                    &cells[(at - 1) * hid..][..hid]
                } else {
                    &zeros[..hid]
                };
                let da = &mut da[s * g..][..g];
                let (da_i, rest) = da.split_at_mut(hid);
                let (da_f, rest) = rest.split_at_mut(hid);
                let (da_c, da_o) = rest.split_at_mut(hid);
                cell_grad::<FMA>(
                    [i, f, cand, o],
                    &cells[at * hid..][..hid],
                    c_prev,
                    &dh_out[at * hid..][..hid],
                    &mut dh_next[s * hid..][..hid],
                    &mut dc_next[s * hid..][..hid],
                    [da_i, da_f, da_c, da_o],
                );
                let row = s * d.steps + t;
                da_all[row * g..][..g].copy_from_slice(da);
                let read = &mut read[row * (k_len + 1)..][..k_len + 1];
                read[..d.inputs].copy_from_slice(&x[at * d.inputs..][..d.inputs]);
                read[d.inputs..k_len].copy_from_slice(if t > 0 {
                    &h[(at - 1) * hid..][..hid]
                } else {
                    &zeros[..hid]
                });
                read[k_len] = 1.0;
                put_column(&mut da_t, n, s, 0, da);
            }
            let da_t = &da_t[..g * n];
            // [dx, dh] = da · stackedᵀ: the gate products run backwards.
            let no_bias = &zeros[..k_pad];
            per_block!(n, gate_products(da_t, stacked_t, no_bias, &mut back));
            for s in 0..n {
                let at = (first + s) * d.steps + t;
                let (back_x, back_h) = back[s * k_pad..][..k_len].split_at(d.inputs);
                dx[at * d.inputs..][..d.inputs].copy_from_slice(back_x);
                dh_next[s * hid..][..hid].copy_from_slice(back_h);
            }
        }
        let rows = n * d.steps;
        transposed_product::<FMA>(
            &read[..rows * (k_len + 1)],
            &da_all[..rows * g],
            sums,
            k_len + 1,
        );
    }
}

/// `c += aᵀ · b`, with `a` `[rows, k]`, `b` `[rows, g]` and `c` `[k, g]`,
/// all row-major: a tile of `c` at a time, its sums held in registers over
/// every row.
#[inline(always)]
fn transposed_product<const FMA: bool>(a: &[f32], b: &[f32], c: &mut [f32], k: usize) {
    let g = c.len() / k;
    let mut i = 0;
    while i < k {
        let height = if i + 4 <= k { 4 } else { 1 };
        for (j, width) in tiles(g) {
            match (height, width) {
                (4, 16) => product_tile::<4, 16, FMA>(a, b, c, [k, g], [i, j]),
                (4, 8) => product_tile::<4, 8, FMA>(a, b, c, [k, g], [i, j]),
                (4, _) => product_tile::<4, 1, FMA>(a, b, c, [k, g], [i, j]),
                (_, 16) => product_tile::<1, 16, FMA>(a, b, c, [k, g], [i, j]),
                (_, 8) => product_tile::<1, 8, FMA>(a, b, c, [k, g], [i, j]),
                _ => product_tile::<1, 1, FMA>(a, b, c, [k, g], [i, j]),
            }
        }
        i += height;
    }
}

/// Rows `i..i + H` and columns `j..j + W` of [`transposed_product`]'s
/// `c`, whose shape is `[k, g]`.
#[inline(always)]
fn product_tile<const H: usize, const W: usize, const FMA: bool>(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    [k, g]: [usize; 2],
    [i, j]: [usize; 2],
) {
    let mut acc = [[0.0f32; W]; H];
    for (ar, br) in a.chunks_exact(k).zip(b.chunks_exact(g)) {
        let bw: &[f32; W] = br[j..j + W].try_into().expect("a whole tile");
        let aw: &[f32; H] = ar[i..i + H].try_into().expect("a whole tile");
        for (row, &aq) in acc.iter_mut().zip(aw) {
            for l in 0..W {
                row[l] = madd::<FMA>(aq, bw[l], row[l]);
            }
        }
    }
    for (q, row) in acc.iter().enumerate() {
        add(&mut c[(i + q) * g + j..][..W], row);
    }
}

/// Writes `values` down column `s` of the `n`-column matrix `m` from row
/// `first` on: several sequences' vectors side by side, as the products
/// read them.
#[inline(always)]
fn put_column(m: &mut [f32], n: usize, s: usize, first: usize, values: &[f32]) {
    for (cell, &v) in m[first * n + s..].iter_mut().step_by(n).zip(values) {
        *cell = v;
    }
}

/// `cols` rounded up to a multiple of 8.
fn padded_width(cols: usize) -> usize {
    cols.div_ceil(8) * 8
}

/// `rows × cols` row-major → `cols × rows` row-major.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// Sequences per thread: all of them on one thread for small batches.
fn chunk(batch: usize) -> usize {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(batch / MIN_PER_THREAD)
        .max(1);
    batch.div_ceil(threads).max(1)
}

/// `a·b + c`: fused where the CPU has it (the caller says so); without
/// that, `mul_add` would be a library call.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

#[inline(always)]
fn add(acc: &mut [f32], v: &[f32]) {
    for (y, &vj) in acc.iter_mut().zip(v) {
        *y += vj;
    }
}

#[inline(always)]
fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp::<FMA>(-x))
}

#[inline(always)]
fn tanh<const FMA: bool>(x: f32) -> f32 {
    2.0 * sigmoid::<FMA>(2.0 * x) - 1.0
}

/// `e^x` to within a few units in the last place, in arithmetic the
/// compiler can vectorise (the library's `exp` is a call per element):
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` by its Taylor series to the
/// 6th power (error below 2e-7), `2^n` built in the exponent bits.
#[inline(always)]
fn exp<const FMA: bool>(x: f32) -> f32 {
    // Past these e^x leaves f32's normal range: clamp to 2^-126 and 2^127.
    let x = x.clamp(-87.3, 88.0);
    // Adding 1.5·2^23 rounds x·log2(e) to an integer n and leaves n in the
    // low mantissa bits, with neither a rounding instruction (the baseline
    // instruction set has none) nor a float-to-integer conversion.
    const ROUND: f32 = 12_582_912.0;
    let t = madd::<FMA>(x, std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    // ln 2 in two parts, so that n·ln 2 is subtracted without rounding error.
    let r = madd::<FMA>(-n, 1.428_606_8e-6, madd::<FMA>(-n, 0.693_145_75, x));
    // Horner's rule from the 6th power down.
    let p = [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0]
        .into_iter()
        .fold(1.0 / 720.0, |p, c| madd::<FMA>(p, r, c));
    // (bits + 127) << 23 shifts the magic number's bits out and leaves
    // n + 127 as the exponent: 2^n.
    f32::from_bits(t.to_bits().wrapping_add(127) << 23) * p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both variants: with fused multiply-adds (a library call where the
    /// CPU lacks them, slow but exact) and without.
    #[test]
    fn fast_exp_is_within_a_few_ulps() {
        exp_is_within_a_few_ulps::<false>();
        exp_is_within_a_few_ulps::<true>();
    }

    fn exp_is_within_a_few_ulps<const FMA: bool>() {
        let mut worst = 0.0f64;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0;
            let want = f64::from(x).exp();
            worst = worst.max((f64::from(exp::<FMA>(x)) - want).abs() / want);
        }
        assert!(worst < 5e-7, "relative error {worst} (FMA: {FMA})");
        assert_eq!(
            exp::<FMA>(-1000.0),
            exp::<FMA>(-87.3),
            "very negative inputs clamp"
        );
        assert!(
            exp::<FMA>(1000.0).is_finite(),
            "very large inputs stay finite"
        );
        assert!((tanh::<FMA>(-20.0) + 1.0).abs() < 1e-6);
        assert!((sigmoid::<FMA>(30.0) - 1.0).abs() < 1e-6);
    }

    /// The loss `Σ hidden · weights` and its gradients with respect to the
    /// input and to every parameter, against central differences, over
    /// enough sequences for two threads and a partial block.
    #[test]
    fn gradients_match_finite_differences() {
        let d = Dims {
            batch: 37,
            steps: 6,
            inputs: 3,
            hidden: 5,
        };
        let g = d.gates();
        let mut seed = 12345u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        };
        let x: Vec<f32> = (0..d.batch * d.steps * d.inputs).map(|_| next()).collect();
        let wi: Vec<f32> = (0..d.inputs * g).map(|_| next()).collect();
        let wh: Vec<f32> = (0..d.hidden * g).map(|_| next()).collect();
        let b: Vec<f32> = (0..g).map(|_| next()).collect();
        let weights: Vec<f32> = (0..d.batch * d.steps * d.hidden).map(|_| next()).collect();
        let w = Weights {
            input: &wi,
            hidden: &wh,
            bias: &b,
        };
        let loss_of = |x: &[f32], w: Weights<'_>| -> f64 {
            let (h, _) = forward(d, x, w, false);
            h.iter().zip(&weights).map(|(a, b)| f64::from(a * b)).sum()
        };
        let loss = |x: &[f32]| loss_of(x, w);
        let (h, trace) = forward(d, &x, w, true);
        let last: Vec<f32> = h
            .chunks(d.steps * d.hidden)
            .flat_map(|seq| &seq[(d.steps - 1) * d.hidden..])
            .copied()
            .collect();
        assert_eq!(
            last_states(d, &x, w),
            last,
            "the last step alone, as in the full output"
        );
        let grads = backward(d, &x, w, &h, &trace.unwrap(), &weights);
        for i in (0..x.len()).step_by(7) {
            let eps = 1e-2;
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * f64::from(eps));
            let analytic = f64::from(grads.input[i]);
            assert!(
                (numeric - analytic).abs() < 2e-3 * numeric.abs().max(1.0),
                "input {i}: numeric {numeric}, analytic {analytic}"
            );
        }
        // Each parameter, nudged in a copy of the weights.
        let operands: [(&str, &[f32], &[f32]); 3] = [
            ("input weight", &wi, &grads.input_weights),
            ("hidden weight", &wh, &grads.hidden_weights),
            ("bias", &b, &grads.bias),
        ];
        for (which, (name, values, analytic)) in operands.into_iter().enumerate() {
            assert_eq!(values.len(), analytic.len(), "{name} gradient length");
            for i in (0..values.len()).step_by(3) {
                let eps = 1e-2;
                let nudged = |by: f32| {
                    let mut p = [wi.clone(), wh.clone(), b.clone()];
                    p[which][i] += by;
                    let [wi, wh, b] = &p;
                    loss_of(
                        &x,
                        Weights {
                            input: wi,
                            hidden: wh,
                            bias: b,
                        },
                    )
                };
                let numeric = (nudged(eps) - nudged(-eps)) / (2.0 * f64::from(eps));
                let analytic = f64::from(analytic[i]);
                assert!(
                    (numeric - analytic).abs() < 2e-3 * numeric.abs().max(1.0),
                    "{name} {i}: numeric {numeric}, analytic {analytic}"
                );
            }
        }
    }
}
