//! The LSTM network: stacked burn `Lstm` layers and a linear head reading
//! the last hidden state, one output per model step ahead.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// The shape of a network, stored with every saved model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    /// Input features per time step.
    pub inputs: usize,
    /// Time steps per input window.
    pub window: usize,
    /// Hidden units per LSTM layer.
    pub hidden: usize,
    /// Stacked LSTM layers.
    pub layers: usize,
    /// Outputs: one per model step ahead.
    pub outputs: usize,
}

/// A stacked LSTM with a multi-horizon linear head.
#[derive(Module, Debug)]
pub struct LstmNet {
    layers: Vec<Lstm>,
    head: Linear,
    window: usize,
}

impl LstmNet {
    /// A freshly initialised network on `device`.
    pub fn new(spec: NetSpec, device: &Device) -> Self {
        let layers = (0..spec.layers)
            .map(|i| {
                let d_in = if i == 0 { spec.inputs } else { spec.hidden };
                LstmConfig::new(d_in, spec.hidden, true).init(device)
            })
            .collect();
        Self {
            layers,
            head: LinearConfig::new(spec.hidden, spec.outputs).init(device),
            window: spec.window,
        }
    }

    /// The network's shape, read back from its parameters.
    pub fn spec(&self) -> NetSpec {
        let [hidden, outputs] = self.head.weight.shape().dims();
        let [inputs, _] = self.layers[0]
            .input_gate
            .input_transform
            .weight
            .shape()
            .dims();
        NetSpec {
            inputs,
            window: self.window,
            hidden,
            layers: self.layers.len(),
            outputs,
        }
    }

    /// `[batch, window, inputs]` → `[batch, outputs]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let mut h = x;
        for layer in &self.layers {
            h = layer.forward(h, None).0;
        }
        let [batch, steps, hidden] = h.dims();
        let last = h.narrow(1, steps - 1, 1).reshape([batch, hidden]);
        self.head.forward(last)
    }
}
