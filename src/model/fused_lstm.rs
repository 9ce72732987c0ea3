//! A fused LSTM layer for burn's CPU backends, added through burn's
//! backend-extension mechanism, with its own backward pass for training.
//!
//! Why: burn's stock `Lstm` runs eight small `Linear`s and a dozen
//! element-wise operations per time step, each a separate tensor operation
//! (and, in training, a separate autodiff node); on the CPU backends that
//! per-operation overhead, not arithmetic, is where the time goes (about
//! 0.65 ms for one 24-step window of the reference network on flex, against
//! 0.05 ms for a plain loop). Here one layer over whole sequences is one
//! backend operation, and its gradient one backward step; the arithmetic is
//! the `lstm_cpu` crate's. A second operation gives only the last step's
//! state, which is all the head reads from the last layer.
//!
//! The operations are registered for flex and ndarray, plain and under
//! autodiff. Other backends (wgpu) keep burn's stock layer; [`forward`] and
//! [`last_state`] pick.

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
use lstm_cpu::{Dims, GATES, Trace, Weights};

/// Backend operations running one LSTM layer over whole sequences.
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

    /// As [`Self::lstm_layer`], but only the hidden state after the last
    /// step, `[batch, hidden]`: what the last layer gives the head.
    fn lstm_last(
        input: FloatTensor<Self>,
        input_weights: FloatTensor<Self>,
        hidden_weights: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [batch, steps, _] = input.shape().dims();
        let hidden = bias.shape().dims::<1>()[0] / GATES;
        let every = Self::lstm_layer(input, input_weights, hidden_weights, bias);
        let slices: [burn::backend::Slice; 3] =
            [(..).into(), (steps - 1..steps).into(), (..).into()];
        let last = Self::float_slice(every, &slices);
        Self::float_reshape(last, [batch, hidden].into())
    }
}

/// The operation on a CPU backend: host buffers in, host buffers out.
macro_rules! on_the_host {
    ($backend:ty) => {
        impl FusedLstm for $backend {
            fn lstm_layer(
                input: FloatTensor<Self>,
                input_weights: FloatTensor<Self>,
                hidden_weights: FloatTensor<Self>,
                bias: FloatTensor<Self>,
            ) -> FloatTensor<Self> {
                inference::<Self>(input, input_weights, hidden_weights, bias, true)
            }

            fn lstm_last(
                input: FloatTensor<Self>,
                input_weights: FloatTensor<Self>,
                hidden_weights: FloatTensor<Self>,
                bias: FloatTensor<Self>,
            ) -> FloatTensor<Self> {
                inference::<Self>(input, input_weights, hidden_weights, bias, false)
            }
        }
    };
}

on_the_host!(burn::backend::Flex);
#[cfg(feature = "ndarray")]
on_the_host!(burn::backend::NdArray);

/// The forward pass without a trace, on any CPU backend: every step's
/// hidden state, or only the last one's.
fn inference<B: Backend>(
    input: FloatTensor<B>,
    input_weights: FloatTensor<B>,
    hidden_weights: FloatTensor<B>,
    bias: FloatTensor<B>,
    every_step: bool,
) -> FloatTensor<B> {
    let device = input.device();
    let op = Operands::read::<B>(input, input_weights, hidden_weights, bias);
    if every_step {
        let (hidden, _) = lstm_cpu::forward(op.d, &op.x, op.weights(), false);
        write::<B>(hidden, op.output_shape(), &device)
    } else {
        let last = lstm_cpu::last_states(op.d, &op.x, op.weights());
        write::<B>(last, vec![op.d.batch, op.d.hidden], &device)
    }
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
                let (hidden, trace) = lstm_cpu::forward(op.d, &op.x, op.weights(), true);
                let out = write::<B>(hidden.clone(), op.output_shape(), &device);
                let saved = Saved {
                    op,
                    hidden,
                    trace: trace.expect("a trace was asked for"),
                };
                prep.finish(Arc::new(saved), out)
            }
            OpsKind::UnTracked(prep) => {
                let (hidden, _) = lstm_cpu::forward(op.d, &op.x, op.weights(), false);
                prep.finish(write::<B>(hidden, op.output_shape(), &device))
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
        let d_hidden = floats(read::<B>(grad));
        let op = &saved.op;
        let d = op.d;
        let g = lstm_cpu::backward(
            d,
            &op.x,
            op.weights(),
            &saved.hidden,
            &saved.trace,
            &d_hidden,
        );
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
    match fused(layer, input, Dispatch::lstm_layer) {
        Ok(hidden) => Tensor::from_dispatch(hidden),
        Err(input) => layer.forward(input, None).0,
    }
}

/// Runs `layer` over `input` `[batch, steps, inputs]` from a zero state and
/// returns the hidden state after the last step, `[batch, hidden]`.
pub fn last_state(layer: &Lstm, input: Tensor<3>) -> Tensor<2> {
    match fused(layer, input, Dispatch::lstm_last) {
        Ok(last) => Tensor::from_dispatch(last),
        Err(input) => {
            let [batch, steps, _] = input.dims();
            let every = layer.forward(input, None).0;
            every
                .narrow(1, steps - 1, 1)
                .reshape([batch, layer.d_hidden])
        }
    }
}

/// Calls the fused operation `op` on `input` and `layer`'s packed weights,
/// or gives `input` back where the backend or the layer rules it out.
#[allow(clippy::result_large_err)] // the tensor handed back is moved once, never propagated
fn fused(
    layer: &Lstm,
    input: Tensor<3>,
    op: impl FnOnce(
        FloatTensor<Dispatch>,
        FloatTensor<Dispatch>,
        FloatTensor<Dispatch>,
        FloatTensor<Dispatch>,
    ) -> FloatTensor<Dispatch>,
) -> Result<FloatTensor<Dispatch>, Tensor<3>> {
    match (fusable(&input.device()), Packed::of(layer)) {
        (true, Some(packed)) => Ok(op(
            input.into_dispatch(),
            packed.input_weights.into_dispatch(),
            packed.hidden_weights.into_dispatch(),
            packed.bias.into_dispatch(),
        )),
        _ => Err(input),
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

/// One call's operands, read back to the host with their shapes checked.
#[derive(Debug)]
struct Operands {
    d: Dims,
    x: Vec<f32>,
    wx: Vec<f32>,
    wh: Vec<f32>,
    b: Vec<f32>,
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
            x: floats(input),
            wx: floats(input_weights),
            wh: floats(hidden_weights),
            b: floats(bias),
        }
    }

    fn weights(&self) -> Weights<'_> {
        Weights {
            input: &self.wx,
            hidden: &self.wh,
            bias: &self.b,
        }
    }

    fn output_shape(&self) -> Vec<usize> {
        vec![self.d.batch, self.d.steps, self.d.hidden]
    }
}

fn dims<const D: usize>(data: &TensorData) -> [usize; D] {
    data.shape().as_slice().try_into().unwrap_or_else(|_| {
        panic!(
            "expected a tensor of rank {D}, got shape {:?}",
            data.shape()
        )
    })
}

/// A tensor's values as `f32`, without a copy when they already are.
fn floats(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .try_into_vec()
        .expect("an f32 tensor's values read as f32")
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
            let want = layer.forward(x.clone(), None).0;
            let (off, scale) = worst(forward(&layer, x.clone()), want.clone());
            assert!(off < 1e-5, "batch {batch}, steps {steps}: off by {off}");
            let want_last = want.narrow(1, steps - 1, 1).reshape([batch, hidden]);
            let (off_last, _) = worst(last_state(&layer, x), want_last);
            assert!(
                off_last < 1e-5,
                "batch {batch}, steps {steps}: last step off by {off_last}"
            );
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
            // The last step alone, as the last layer feeds the head.
            let last_weights = weights
                .clone()
                .narrow(1, steps - 1, 1)
                .reshape([batch, hidden]);
            let fused_last = (last_state(&layer, x.clone()) * last_weights.clone())
                .sum()
                .backward();
            let stock_out = layer.forward(x.clone(), None).0;
            let stock_last = (stock_out.narrow(1, steps - 1, 1).reshape([batch, hidden])
                * last_weights)
                .sum()
                .backward();
            let w = layer.cell_gate.hidden_transform.weight.val();
            let (off, scale) = worst(w.grad(&fused_last).unwrap(), w.grad(&stock_last).unwrap());
            assert!(
                off <= 1e-4 * scale.max(1.0),
                "last state, batch {batch}: off by {off}"
            );
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
