//! The LSTM network: stacked burn `Lstm` layers and a linear head reading
//! the hidden state at a forecast's step of its pass, one output per model
//! step ahead, added to the window's seasonal-naive curve weighted per step.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::fused_lstm;

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
    /// Per step ahead, how much of the seasonal-naive change to add. Learnt,
    /// so a family without a daily cycle can turn it off.
    seasonal_weight: Param<Tensor<1>>,
    window: usize,
}

/// Starting weight of the seasonal-naive curve: halfway, so training moves
/// it either way quickly.
const SEASONAL_WEIGHT_INIT: f32 = 0.5;

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
            seasonal_weight: Param::from_tensor(
                Tensor::ones([spec.outputs], device).mul_scalar(SEASONAL_WEIGHT_INIT),
            ),
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

    /// Runs passes `[passes, points, inputs]` and reads a forecast at each
    /// of `rows` (`pass · points + step`), given its seasonal-naive changes
    /// `[rows, outputs]` → predicted changes `[rows, outputs]`.
    pub fn forward(&self, x: Tensor<3>, rows: &[usize], seasonal: Tensor<2>) -> Tensor<2> {
        let [passes, points, _] = x.shape().dims();
        let device = x.device();
        let (last_layer, below) = self
            .layers
            .split_last()
            .expect("a network has at least one layer");
        let h = below
            .iter()
            .fold(x, |h, layer| fused_lstm::forward(layer, h));
        // Instant queries read each pass once, at its end: the last layer
        // then keeps only its final state.
        let at_ends = rows.len() == passes
            && rows
                .iter()
                .enumerate()
                .all(|(pass, &row)| row == pass * points + points - 1);
        let states = if at_ends {
            fused_lstm::last_state(last_layer, h)
        } else {
            let all = fused_lstm::forward(last_layer, h);
            let hidden = all.shape().dims::<3>()[2];
            let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows.len()]), &device);
            all.reshape([passes * points, hidden]).select(0, index)
        };
        self.head.forward(states) + seasonal * self.seasonal_weight.val().unsqueeze::<2>()
    }
}
