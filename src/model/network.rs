//! The LSTM network: stacked burn `Lstm` layers and a linear head reading
//! the hidden state at a forecast's step of its pass, one output per model
//! step ahead, added to the window's seasonal-naive curve weighted per step.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
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

    /// The weights in burn's serialised form, as a saved model holds them.
    pub fn to_bytes(&self) -> Result<Bytes, String> {
        self.clone()
            .into_record()
            .into_bytes()
            .map_err(|e| e.to_string())
    }

    /// A network of `spec` on `device` with the weights `bytes` hold
    /// (from [`LstmNet::to_bytes`]).
    pub fn from_bytes(spec: NetSpec, device: &Device, bytes: Bytes) -> Result<Self, String> {
        let record = ModuleRecord::from_bytes(bytes).map_err(|e| e.to_string())?;
        Self::new(spec, device)
            .try_load_record(record)
            .map_err(|e| e.to_string())
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
        let steps = seasonal.shape().dims::<2>()[1];
        self.head(self.states(x, rows), seasonal, steps)
    }

    /// The last layer's hidden state at each of `rows` of passes
    /// `[passes, points, inputs]` → `[rows, hidden]`.
    pub fn states(&self, x: Tensor<3>, rows: &[usize]) -> Tensor<2> {
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
        if at_ends {
            fused_lstm::last_state(last_layer, h)
        } else {
            let all = fused_lstm::forward(last_layer, h);
            let hidden = all.shape().dims::<3>()[2];
            let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows.len()]), &device);
            all.reshape([passes * points, hidden]).select(0, index)
        }
    }

    /// The forecast of the first `steps` steps ahead from hidden `states`
    /// `[rows, hidden]` and seasonal-naive changes `[rows, steps]`: the
    /// whole head, or its first outputs only (an anomaly score's rows read
    /// one step), which costs that share of it.
    pub fn head(&self, states: Tensor<2>, seasonal: Tensor<2>, steps: usize) -> Tensor<2> {
        let [hidden, outputs] = self.head.weight.shape().dims();
        let weight = self.seasonal_weight.val();
        if steps >= outputs {
            return self.head.forward(states) + seasonal * weight.unsqueeze::<2>();
        }
        let mut out = states.matmul(self.head.weight.val().slice([0..hidden, 0..steps]));
        if let Some(bias) = &self.head.bias {
            out = out + bias.val().slice(0..steps).unsqueeze::<2>();
        }
        out + seasonal * weight.slice(0..steps).unsqueeze::<2>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs of the head, computed alone, are the whole head's
    /// first outputs: an anomaly row reads what a forecast would.
    #[test]
    fn a_head_cut_to_its_first_steps_matches_the_whole_head() {
        let spec = NetSpec {
            inputs: 5,
            window: 8,
            hidden: 6,
            layers: 2,
            outputs: 7,
        };
        let device = Device::flex();
        let net = LstmNet::new(spec, &device);
        let values: Vec<f32> = (0..3 * 8 * 5)
            .map(|i| ((i * 37) % 11) as f32 / 11.0 - 0.5)
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(values, [3, 8, 5]), &device);
        let states = net.states(x, &[3, 15, 23]);
        let seasonal: Vec<f32> = (0..3 * 7).map(|i| (i % 5) as f32 * 0.1).collect();
        let whole = net
            .head(
                states.clone(),
                Tensor::<2>::from_data(TensorData::new(seasonal.clone(), [3, 7]), &device),
                7,
            )
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let first: Vec<f32> = seasonal.chunks(7).flat_map(|c| c[..2].to_vec()).collect();
        let cut = net
            .head(
                states,
                Tensor::<2>::from_data(TensorData::new(first, [3, 2]), &device),
                2,
            )
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for row in 0..3 {
            for step in 0..2 {
                let (a, b) = (whole[row * 7 + step], cut[row * 2 + step]);
                assert!(
                    (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                    "{row} {step}: {a} {b}"
                );
            }
        }
    }
}
