//! A fused LSTM layer for burn's CPU backends, added through burn's
//! backend-extension mechanism, with its own backward pass for training.
//!
//! Why: burn's stock `Lstm` runs eight small `Linear`s and a dozen
//! element-wise operations per time step, each a separate tensor operation
//! (and, in training, a separate autodiff node); on the CPU backends that
//! per-operation overhead, not arithmetic, is where the time goes (about
//! 0.65 ms for one 24-step window of the reference network on flex, against
//! 0.05 ms for a plain loop). Here a whole layer over whole sequences is one
//! backend operation: per step, the input projection and one product with
//! all four gates' recurrent weights side by side, the gate arithmetic fused
//! in the same loop, several sequences at once and across threads; and one
//! backward operation that runs backpropagation through time from what the
//! forward pass kept.
//!
//! The operation is registered for flex and ndarray, plain and under
//! autodiff. Other backends (wgpu) keep burn's stock layer; [`forward`]
//! picks.

// burn deprecates ndarray; promcast keeps it selectable (`--backend ndarray`).
#![cfg_attr(feature = "ndarray", allow(deprecated))]

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::nn::Lstm;
use burn::tensor::{Device, Tensor, TensorData};

/// Gates in the packed weight layout, in this order: input, forget, cell
/// candidate, output.
const GATES: usize = 4;
/// Sequences advanced together, so that each row of recurrent weights read
/// from cache serves several multiply-adds.
const BLOCK: usize = 4;
/// Fewest sequences worth a thread of their own.
const MIN_PER_THREAD: usize = 16;

/// A backend operation running one LSTM layer over whole sequences.
#[backend_extension(Flex, NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait FusedLstm: Backend {
    /// `input` `[batch, steps, inputs]`, `input_weights` `[inputs, 4·hidden]`,
    /// `hidden_weights` `[hidden, 4·hidden]`, `bias` `[4·hidden]` (gates in
    /// the order input, forget, cell, output; zero initial state) → the
    /// hidden state at every step, `[batch, steps, hidden]`.
    fn lstm_layer(
        input: FloatTensor<Self>,
        input_weights: FloatTensor<Self>,
        hidden_weights: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl FusedLstm for burn::backend::Flex {
    fn lstm_layer(
        input: FloatTensor<Self>,
        input_weights: FloatTensor<Self>,
        hidden_weights: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        inference::<Self>(input, input_weights, hidden_weights, bias)
    }
}

#[cfg(feature = "ndarray")]
impl FusedLstm for burn::backend::NdArray {
    fn lstm_layer(
        input: FloatTensor<Self>,
        input_weights: FloatTensor<Self>,
        hidden_weights: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        inference::<Self>(input, input_weights, hidden_weights, bias)
    }
}

/// The forward pass without a trace, on any CPU backend.
fn inference<B: Backend>(
    input: FloatTensor<B>,
    input_weights: FloatTensor<B>,
    hidden_weights: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let device = input.device();
    let op = Operands::read::<B>(input, input_weights, hidden_weights, bias);
    let (hidden, _) = op.forward(false);
    write::<B>(hidden, op.d.output_shape(), &device)
}

impl<B: Backend, C: CheckpointStrategy> FusedLstm for Autodiff<B, C> {
    fn lstm_layer(
        input: FloatTensor<Self>,
        input_weights: FloatTensor<Self>,
        hidden_weights: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let device = input.primitive().device();
        let nodes = [
            input.node(),
            input_weights.node(),
            hidden_weights.node(),
            bias.node(),
        ];
        let op = Operands::read::<B>(
            input.into_primitive(),
            input_weights.into_primitive(),
            hidden_weights.into_primitive(),
            bias.into_primitive(),
        );
        match LayerBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (hidden, trace) = op.forward(true);
                let out = write::<B>(hidden.clone(), op.d.output_shape(), &device);
                let saved = Saved {
                    op,
                    hidden,
                    trace: trace.expect("a trace was asked for"),
                };
                prep.finish(Arc::new(saved), out)
            }
            OpsKind::UnTracked(prep) => {
                let (hidden, _) = op.forward(false);
                prep.finish(write::<B>(hidden, op.d.output_shape(), &device))
            }
        }
    }
}

/// Backpropagation through time for [`FusedLstm::lstm_layer`].
#[derive(Debug)]
struct LayerBackward;

/// What the backward pass needs from the forward one.
#[derive(Debug)]
struct Saved {
    op: Operands,
    hidden: Vec<f32>,
    trace: Trace,
}

impl<B: Backend> Backward<B, 4> for LayerBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let device = grad.device();
        let saved = ops.state;
        let d_hidden = floats(&read::<B>(grad)).into_owned();
        let g = saved.op.backward(&saved.hidden, &saved.trace, &d_hidden);
        let d = saved.op.d;
        let shapes = [
            vec![d.batch, d.steps, d.inputs],
            vec![d.inputs, d.gates()],
            vec![d.hidden, d.gates()],
            vec![d.gates()],
        ];
        for ((parent, grad), shape) in ops
            .parents
            .into_iter()
            .zip([g.input, g.input_weights, g.hidden_weights, g.bias])
            .zip(shapes)
        {
            if let Some(node) = parent {
                grads.register::<B>(node.id, write::<B>(grad, shape, &device));
            }
        }
    }
}

/// Reads a tensor back to the host. The fused operation is registered only
/// for CPU backends, whose reads are complete when asked.
fn read<B: Backend>(tensor: FloatTensor<B>) -> TensorData {
    let future = std::pin::pin!(B::float_into_data(tensor));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.poll(&mut cx) {
        std::task::Poll::Ready(data) => data.expect("a CPU tensor reads back"),
        std::task::Poll::Pending => panic!("the fused LSTM runs on CPU backends only"),
    }
}

fn write<B: Backend>(values: Vec<f32>, shape: Vec<usize>, device: &B::Device) -> FloatTensor<B> {
    B::float_from_data(TensorData::new(values, shape), device)
}

/// Runs `layer` over `input` `[batch, steps, inputs]` from a zero state and
/// returns the hidden state at every step: the fused operation where the
/// backend has it, burn's own layer elsewhere.
pub fn forward(layer: &Lstm, input: Tensor<3>) -> Tensor<3> {
    match (fusable(&input.device()), Packed::of(layer)) {
        (true, Some(packed)) => Tensor::from_dispatch(Dispatch::lstm_layer(
            input.into_dispatch(),
            packed.input_weights.into_dispatch(),
            packed.hidden_weights.into_dispatch(),
            packed.bias.into_dispatch(),
        )),
        _ => layer.forward(input, None).0,
    }
}

/// Whether the fused operation runs on `device`: a CPU backend that has
/// it, with or without autodiff.
fn fusable(device: &Device) -> bool {
    use burn::backend::DispatchDevice;
    fn cpu(device: &DispatchDevice) -> bool {
        match device {
            DispatchDevice::Flex(_) => true,
            #[cfg(feature = "ndarray")]
            DispatchDevice::NdArray(_) => true,
            DispatchDevice::Autodiff(inner) => cpu(&inner.clone().inner()),
            #[allow(unreachable_patterns)] // reachable with other backends compiled in
            _ => false,
        }
    }
    cpu(device.as_dispatch())
}

/// A layer's four gates' weights side by side.
struct Packed {
    input_weights: Tensor<2>,
    hidden_weights: Tensor<2>,
    bias: Tensor<1>,
}

impl Packed {
    /// `None` for layers the kernel does not compute: a coupled forget gate,
    /// cell clipping, reversed or time-major input, or activations other
    /// than sigmoid and tanh.
    fn of(layer: &Lstm) -> Option<Self> {
        use burn::nn::activation::Activation;
        let plain = layer.clip.is_none()
            && !layer.reverse
            && layer.batch_first
            && matches!(layer.gate_activation, Activation::Sigmoid(_))
            && matches!(layer.cell_activation, Activation::Tanh(_))
            && matches!(layer.hidden_activation, Activation::Tanh(_));
        let gates = [
            &layer.input_gate,
            layer.forget_gate.as_ref().filter(|_| plain)?,
            &layer.cell_gate,
            &layer.output_gate,
        ];
        let bias = |linear: &burn::nn::Linear| linear.bias.as_ref().map(|b| b.val());
        let biases = gates
            .iter()
            .map(|g| {
                let input = bias(&g.input_transform);
                let hidden = bias(&g.hidden_transform);
                match (input, hidden) {
                    (Some(a), Some(b)) => a + b,
                    (Some(a), None) | (None, Some(a)) => a,
                    (None, None) => Tensor::zeros(
                        [layer.d_hidden],
                        &layer.input_gate.input_transform.weight.device(),
                    ),
                }
            })
            .collect();
        Some(Self {
            input_weights: Tensor::cat(
                gates
                    .iter()
                    .map(|g| g.input_transform.weight.val())
                    .collect(),
                1,
            ),
            hidden_weights: Tensor::cat(
                gates
                    .iter()
                    .map(|g| g.hidden_transform.weight.val())
                    .collect(),
                1,
            ),
            bias: Tensor::cat(biases, 0),
        })
    }
}

/// Shapes of one call, checked once.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    steps: usize,
    inputs: usize,
    hidden: usize,
}

impl Dims {
    fn gates(self) -> usize {
        GATES * self.hidden
    }

    fn output_shape(self) -> Vec<usize> {
        vec![self.batch, self.steps, self.hidden]
    }

    /// The same shapes for `batch` of the sequences.
    fn with_batch(self, batch: usize) -> Self {
        Self { batch, ..self }
    }
}

/// One call's operands, read back to the host with their shapes checked.
#[derive(Debug)]
struct Operands {
    d: Dims,
    /// `[batch, steps, inputs]`
    x: Vec<f32>,
    /// `[inputs, 4·hidden]`
    wx: Vec<f32>,
    /// `[hidden, 4·hidden]`
    wh: Vec<f32>,
    /// `[4·hidden]`
    b: Vec<f32>,
}

/// What the forward pass keeps for the backward one, per sequence and step:
/// the four gates after their activations and the cell state.
#[derive(Debug)]
struct Trace {
    /// `[batch, steps, 4·hidden]`
    gates: Vec<f32>,
    /// `[batch, steps, hidden]`
    cells: Vec<f32>,
}

/// Gradients with respect to each operand, in the operands' layouts.
struct Grads {
    input: Vec<f32>,
    input_weights: Vec<f32>,
    hidden_weights: Vec<f32>,
    bias: Vec<f32>,
}

impl Operands {
    fn read<B: Backend>(
        input: FloatTensor<B>,
        input_weights: FloatTensor<B>,
        hidden_weights: FloatTensor<B>,
        bias: FloatTensor<B>,
    ) -> Self {
        let (input, input_weights) = (read::<B>(input), read::<B>(input_weights));
        let (hidden_weights, bias) = (read::<B>(hidden_weights), read::<B>(bias));
        let [batch, steps, inputs] = dims::<3>(&input);
        let [hidden, gates] = dims::<2>(&hidden_weights);
        assert_eq!(
            gates,
            GATES * hidden,
            "hidden weights must be [hidden, 4·hidden]"
        );
        assert_eq!(
            dims::<2>(&input_weights),
            [inputs, gates],
            "input weights shape"
        );
        assert_eq!(dims::<1>(&bias), [gates], "bias shape");
        Self {
            d: Dims {
                batch,
                steps,
                inputs,
                hidden,
            },
            x: floats(&input).into_owned(),
            wx: floats(&input_weights).into_owned(),
            wh: floats(&hidden_weights).into_owned(),
            b: floats(&bias).into_owned(),
        }
    }

    /// The hidden state at every step, and the trace when asked for.
    fn forward(&self, keep_trace: bool) -> (Vec<f32>, Option<Trace>) {
        let d = self.d;
        let per_seq = d.steps * d.hidden;
        let mut out = vec![0.0f32; d.batch * per_seq];
        let mut trace = keep_trace.then(|| Trace {
            gates: vec![0.0; d.batch * d.steps * d.gates()],
            cells: vec![0.0; d.batch * per_seq],
        });
        let per = chunk(d.batch);
        let x = self.x.chunks(per * d.steps * d.inputs);
        let outs = out.chunks_mut(per * per_seq);
        let traces: Vec<Option<(&mut [f32], &mut [f32])>> = match &mut trace {
            Some(t) => t
                .gates
                .chunks_mut(per * d.steps * d.gates())
                .zip(t.cells.chunks_mut(per * per_seq))
                .map(Some)
                .collect(),
            None => (0..d.batch.div_ceil(per)).map(|_| None).collect(),
        };
        std::thread::scope(|scope| {
            for ((x, out), trace) in x.zip(outs).zip(traces) {
                let d = d.with_batch(out.len() / per_seq);
                scope.spawn(move || fastest(|| self.forward_chunk(d, x, out, trace)));
            }
        });
        (out, trace)
    }

    /// [`Self::forward`] for one chunk of sequences, `BLOCK` at a time.
    #[inline(always)]
    fn forward_chunk(
        &self,
        d: Dims,
        x: &[f32],
        out: &mut [f32],
        mut trace: Option<(&mut [f32], &mut [f32])>,
    ) {
        let g = d.gates();
        let mut gates = vec![0.0f32; BLOCK * g];
        let mut h = vec![0.0f32; BLOCK * d.hidden];
        let mut c = vec![0.0f32; BLOCK * d.hidden];
        for first in (0..d.batch).step_by(BLOCK) {
            let n = BLOCK.min(d.batch - first);
            h.fill(0.0);
            c.fill(0.0);
            for t in 0..d.steps {
                for s in 0..n {
                    let row = &mut gates[s * g..(s + 1) * g];
                    row.copy_from_slice(&self.b);
                    let xt = &x[((first + s) * d.steps + t) * d.inputs..][..d.inputs];
                    for (k, &xk) in xt.iter().enumerate() {
                        axpy(row, xk, &self.wx[k * g..(k + 1) * g]);
                    }
                }
                for k in 0..d.hidden {
                    let w = &self.wh[k * g..(k + 1) * g];
                    for s in 0..n {
                        axpy(&mut gates[s * g..(s + 1) * g], h[s * d.hidden + k], w);
                    }
                }
                for s in 0..n {
                    let at = (first + s) * d.steps + t;
                    let row = &mut gates[s * g..(s + 1) * g];
                    let (i, rest) = row.split_at_mut(d.hidden);
                    let (f, rest) = rest.split_at_mut(d.hidden);
                    let (cand, o) = rest.split_at_mut(d.hidden);
                    let hs = &mut h[s * d.hidden..(s + 1) * d.hidden];
                    let cs = &mut c[s * d.hidden..(s + 1) * d.hidden];
                    for j in 0..d.hidden {
                        (i[j], f[j], cand[j], o[j]) =
                            (sigmoid(i[j]), sigmoid(f[j]), tanh(cand[j]), sigmoid(o[j]));
                        cs[j] = f[j] * cs[j] + i[j] * cand[j];
                        hs[j] = o[j] * tanh(cs[j]);
                    }
                    out[at * d.hidden..][..d.hidden].copy_from_slice(hs);
                    if let Some((tg, tc)) = trace.as_mut() {
                        tg[at * g..][..g].copy_from_slice(row);
                        tc[at * d.hidden..][..d.hidden].copy_from_slice(cs);
                    }
                }
            }
        }
    }

    /// Backpropagation through time: the gradients of every operand, given
    /// the forward pass's `hidden` output and `trace` and the gradient
    /// `d_hidden` of the loss with respect to that output.
    fn backward(&self, hidden: &[f32], trace: &Trace, d_hidden: &[f32]) -> Grads {
        let d = self.d;
        let g = d.gates();
        let per = chunk(d.batch);
        let per_seq = d.steps * d.hidden;
        // Transposed weights turn the products with the gate gradients into
        // contiguous multiply-adds.
        let wx_t = transpose(&self.wx, d.inputs, g);
        let wh_t = transpose(&self.wh, d.hidden, g);
        let mut input = vec![0.0f32; self.x.len()];
        let partial: Vec<Grads> = std::thread::scope(|scope| {
            let workers: Vec<_> = input
                .chunks_mut(per * d.steps * d.inputs)
                .enumerate()
                .map(|(n, dx)| {
                    let d = d.with_batch(dx.len() / (d.steps * d.inputs));
                    let seqs = n * per..n * per + d.batch;
                    let (wx_t, wh_t) = (&wx_t, &wh_t);
                    let span = |len: usize| seqs.start * len..seqs.end * len;
                    let x = &self.x[span(d.steps * d.inputs)];
                    let h = &hidden[span(per_seq)];
                    let dh = &d_hidden[span(per_seq)];
                    let gates = &trace.gates[span(d.steps * g)];
                    let cells = &trace.cells[span(per_seq)];
                    scope.spawn(move || {
                        fastest(|| backward_chunk(d, x, h, dh, gates, cells, wx_t, wh_t, dx))
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a backward worker panicked"))
                .collect()
        });
        let mut sum = Grads {
            input: Vec::new(),
            input_weights: vec![0.0; d.inputs * g],
            hidden_weights: vec![0.0; d.hidden * g],
            bias: vec![0.0; g],
        };
        for p in partial {
            add(&mut sum.input_weights, &p.input_weights);
            add(&mut sum.hidden_weights, &p.hidden_weights);
            add(&mut sum.bias, &p.bias);
        }
        sum.input = input;
        sum
    }
}

/// Backpropagation through time over one chunk of sequences: writes the
/// input gradients into `dx` and returns the chunk's weight gradients.
#[allow(clippy::too_many_arguments)] // the chunk's slices of the saved pass
#[inline(always)]
fn backward_chunk(
    d: Dims,
    x: &[f32],
    h: &[f32],
    dh_out: &[f32],
    gates: &[f32],
    cells: &[f32],
    wx_t: &[f32],
    wh_t: &[f32],
    dx: &mut [f32],
) -> Grads {
    let (g, hid) = (d.gates(), d.hidden);
    let mut dwx = vec![0.0f32; d.inputs * g];
    let mut dwh = vec![0.0f32; hid * g];
    let mut db = vec![0.0f32; g];
    let mut da = vec![0.0f32; g];
    let mut dh_next = vec![0.0f32; hid];
    let mut dc_next = vec![0.0f32; hid];
    for s in 0..d.batch {
        dh_next.fill(0.0);
        dc_next.fill(0.0);
        for t in (0..d.steps).rev() {
            let at = s * d.steps + t;
            let row = &gates[at * g..][..g];
            let (i, rest) = row.split_at(hid);
            let (f, rest) = rest.split_at(hid);
            let (cand, o) = rest.split_at(hid);
            let c = &cells[at * hid..][..hid];
            let dh = &dh_out[at * hid..][..hid];
            for j in 0..hid {
                let c_prev = if t > 0 {
                    cells[(at - 1) * hid + j]
                } else {
                    0.0
                };
                let dh = dh[j] + dh_next[j];
                let tc = tanh(c[j]);
                let dc = dc_next[j] + dh * o[j] * (1.0 - tc * tc);
                da[j] = dc * cand[j] * i[j] * (1.0 - i[j]);
                da[hid + j] = dc * c_prev * f[j] * (1.0 - f[j]);
                da[2 * hid + j] = dc * i[j] * (1.0 - cand[j] * cand[j]);
                da[3 * hid + j] = dh * tc * o[j] * (1.0 - o[j]);
                dc_next[j] = dc * f[j];
            }
            add(&mut db, &da);
            let xt = &x[at * d.inputs..][..d.inputs];
            for (k, &xk) in xt.iter().enumerate() {
                axpy(&mut dwx[k * g..(k + 1) * g], xk, &da);
            }
            let dxt = &mut dx[at * d.inputs..][..d.inputs];
            dxt.fill(0.0);
            dh_next.fill(0.0);
            for (j, &daj) in da.iter().enumerate() {
                axpy(dxt, daj, &wx_t[j * d.inputs..][..d.inputs]);
                axpy(&mut dh_next, daj, &wh_t[j * hid..][..hid]);
            }
            if t > 0 {
                let h_prev = &h[(at - 1) * hid..][..hid];
                for (k, &hk) in h_prev.iter().enumerate() {
                    axpy(&mut dwh[k * g..(k + 1) * g], hk, &da);
                }
            }
        }
    }
    Grads {
        input: Vec::new(),
        input_weights: dwx,
        hidden_weights: dwh,
        bias: db,
    }
}

/// Sequences per thread: all of them on one thread for small batches.
fn chunk(batch: usize) -> usize {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(batch / MIN_PER_THREAD)
        .max(1);
    batch.div_ceil(threads).max(1)
}

fn dims<const D: usize>(data: &TensorData) -> [usize; D] {
    data.shape().as_slice().try_into().unwrap_or_else(|_| {
        panic!(
            "expected a tensor of rank {D}, got shape {:?}",
            data.shape()
        )
    })
}

fn floats(data: &TensorData) -> std::borrow::Cow<'_, [f32]> {
    match data.as_slice::<f32>() {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(
            data.clone()
                .convert::<f32>()
                .try_into_vec()
                .unwrap_or_default(),
        ),
    }
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

/// Runs `f` compiled for AVX2 where the CPU has it. The hot loops are
/// written plainly for the compiler to vectorise, and without this it may
/// only assume the x86-64 baseline (SSE2: four lanes).
#[inline(always)]
fn fastest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: this CPU has just been checked for AVX2.
        return unsafe { avx2(f) };
    }
    f()
}

/// `acc += a·w`, element by element.
#[inline(always)]
fn axpy(acc: &mut [f32], a: f32, w: &[f32]) {
    for (y, &wj) in acc.iter_mut().zip(w) {
        *y += a * wj;
    }
}

#[inline(always)]
fn add(acc: &mut [f32], v: &[f32]) {
    for (y, &vj) in acc.iter_mut().zip(v) {
        *y += vj;
    }
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// `e^x` to within a few units in the last place, in arithmetic the
/// compiler can vectorise (the library's `exp` is a call per element):
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` by its Taylor series to the
/// 6th power (error below 2e-7), `2^n` built in the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Past these e^x leaves f32's normal range: clamp to 0 and to 2^127.
    let x = x.clamp(-87.3, 88.0);
    // Adding and removing 1.5·2^23 rounds to the nearest integer without a
    // rounding instruction, which the baseline instruction set lacks.
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    // ln 2 in two parts, so that n·ln 2 is subtracted without rounding error.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    f32::from_bits(((n as i32 + 127) as u32) << 23) * p
}

#[cfg(test)]
mod tests {
    use burn::nn::LstmConfig;
    use burn::tensor::Distribution;

    use super::*;

    /// Largest absolute difference, after checking that the shapes agree.
    fn worst<const D: usize>(got: Tensor<D>, want: Tensor<D>) -> (f32, f32) {
        let (got, want) = (got.into_data(), want.into_data());
        assert_eq!(got.shape(), want.shape());
        let (got, want) = (
            got.try_into_vec::<f32>().unwrap(),
            want.try_into_vec::<f32>().unwrap(),
        );
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let off = got
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        (off, scale)
    }

    /// Batches below, at and above the block size and across threads.
    const CASES: [(usize, usize, usize, usize); 3] =
        [(1, 24, 1, 50), (5, 9, 3, 7), (67, 13, 50, 50)];

    /// The fused layer against burn's `Lstm` on random weights and inputs.
    fn outputs_match_burn(device: &Device) {
        for (batch, steps, inputs, hidden) in CASES {
            let layer = LstmConfig::new(inputs, hidden, true).init(device);
            assert!(
                Packed::of(&layer).is_some(),
                "a default LSTM layer must take the fused path"
            );
            let x = Tensor::<3>::random(
                [batch, steps, inputs],
                Distribution::Normal(0.0, 1.5),
                device,
            );
            let (off, scale) = worst(forward(&layer, x.clone()), layer.forward(x, None).0);
            assert!(off < 1e-5, "batch {batch}, steps {steps}: off by {off}");
            assert!(
                scale > 0.05,
                "a test whose outputs are all near zero proves little"
            );
        }
    }

    /// Gradients of the fused layer's backward pass against burn's autodiff
    /// through its own `Lstm`, for the input and every weight and bias, with
    /// a loss that weighs every step's output differently.
    fn gradients_match_burn(device: &Device) {
        let device = device.clone().autodiff();
        assert!(fusable(&device));
        for (batch, steps, inputs, hidden) in CASES {
            let layer = LstmConfig::new(inputs, hidden, true).init(&device);
            let x = Tensor::<3>::random(
                [batch, steps, inputs],
                Distribution::Normal(0.0, 1.5),
                &device,
            )
            .require_grad();
            let weights = Tensor::<3>::random(
                [batch, steps, hidden],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let grads_of = |out: Tensor<3>| (out * weights.clone()).sum().backward();
            let fused = grads_of(forward(&layer, x.clone()));
            let stock = grads_of(layer.forward(x.clone(), None).0);
            let mut checked = vec![worst(x.grad(&fused).unwrap(), x.grad(&stock).unwrap())];
            let gates = [
                &layer.input_gate,
                layer.forget_gate.as_ref().unwrap(),
                &layer.cell_gate,
                &layer.output_gate,
            ];
            for linear in gates
                .iter()
                .flat_map(|g| [&g.input_transform, &g.hidden_transform])
            {
                let w = linear.weight.val();
                checked.push(worst(w.grad(&fused).unwrap(), w.grad(&stock).unwrap()));
                let b = linear.bias.as_ref().unwrap().val();
                checked.push(worst(b.grad(&fused).unwrap(), b.grad(&stock).unwrap()));
            }
            for (n, (off, scale)) in checked.into_iter().enumerate() {
                assert!(
                    scale > 1e-3,
                    "gradient {n} is all near zero, which proves little"
                );
                assert!(
                    off <= 1e-4 * scale.max(1.0),
                    "batch {batch}, steps {steps}, gradient {n}: off by {off} (scale {scale})"
                );
            }
        }
    }

    #[test]
    fn fast_exp_is_within_a_few_ulps() {
        let mut worst = 0.0f64;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0;
            let want = f64::from(x).exp();
            worst = worst.max((f64::from(exp(x)) - want).abs() / want);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.3), "very negative inputs clamp");
        assert!(exp(1000.0).is_finite(), "very large inputs stay finite");
        assert!((tanh(-20.0) + 1.0).abs() < 1e-6 && (sigmoid(30.0) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn fused_layer_matches_burn_lstm_on_flex() {
        assert!(fusable(&Device::flex()));
        outputs_match_burn(&Device::flex());
        gradients_match_burn(&Device::flex());
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn fused_layer_matches_burn_lstm_on_ndarray() {
        assert!(fusable(&Device::ndarray()));
        outputs_match_burn(&Device::ndarray());
        gradients_match_burn(&Device::ndarray());
    }
}
