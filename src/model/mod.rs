//! The forecasting model: a burn LSTM over a window of normalised values
//! and calendar inputs, with one output per model step up to the longest
//! horizon. Knows time series, not HTTP or Prometheus.

mod fused_lstm;
pub mod network;
pub mod store;
pub mod train;
pub mod window;

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, Int, Tensor, TensorData};

pub use network::{LstmNet, NetSpec};
pub use window::{FEATURES, Grid, Pass, Shape, Window};

/// The burn backend models run on, chosen at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (the default).
    Flex,
    /// burn's deprecated ndarray CPU backend (cargo feature `ndarray`).
    NdArray,
    /// GPU through wgpu (cargo feature `wgpu`).
    Wgpu,
}

/// A backend this binary was built without.
#[derive(Debug, thiserror::Error)]
#[error("backend {0} is not compiled into this binary: rebuild with `--features {0}`")]
pub struct BackendUnavailable(Backend);

impl Backend {
    /// The burn device for this backend.
    pub fn device(self) -> Result<Device, BackendUnavailable> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // kept selectable on purpose, see `--backend`
            Backend::NdArray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[allow(unreachable_patterns)] // reachable when a feature is off
            other => Err(BackendUnavailable(other)),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Flex => "flex",
            Backend::NdArray => "ndarray",
            Backend::Wgpu => "wgpu",
        })
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flex" => Ok(Backend::Flex),
            "ndarray" => Ok(Backend::NdArray),
            "wgpu" => Ok(Backend::Wgpu),
            other => Err(format!(
                "unknown backend {other:?}: use flex, ndarray or wgpu"
            )),
        }
    }
}

/// Runs `net` over `passes` and returns, per window (the index of its pass
/// in `passes`, and the window), the predicted normalised change from the
/// window's last value at each model step `1..=K`, or at as many steps as
/// its seasonal input holds (a window built for one step gets one).
pub fn predict(
    net: &LstmNet,
    passes: &[&Pass],
    windows: &[(usize, &Window)],
    device: &Device,
) -> Vec<Vec<f32>> {
    if windows.is_empty() {
        return Vec::new();
    }
    let inputs: Vec<&[f32]> = passes.iter().map(|p| &p.features[..]).collect();
    let reads = windows.iter().map(|(p, w)| (*p, w.points()));
    let (x, rows) = pass_inputs(&inputs, reads, device);
    let states = net.states(x, &rows);
    let mut out = vec![Vec::new(); windows.len()];
    let mut lengths: Vec<usize> = windows.iter().map(|(_, w)| w.seasonal.len()).collect();
    lengths.sort_unstable();
    lengths.dedup();
    for steps in lengths {
        let picked: Vec<usize> = (0..windows.len())
            .filter(|&i| windows[i].1.seasonal.len() == steps)
            .collect();
        let seasonal: Vec<f32> = picked
            .iter()
            .flat_map(|&i| windows[i].1.seasonal.iter().copied())
            .collect();
        let s = Tensor::<2>::from_data(TensorData::new(seasonal, [picked.len(), steps]), device);
        let chosen = if picked.len() == windows.len() {
            states.clone()
        } else {
            let index: Vec<i64> = picked.iter().map(|&i| i as i64).collect();
            let index = TensorData::new(index, [picked.len()]);
            states
                .clone()
                .select(0, Tensor::<1, Int>::from_data(index, device))
        };
        let predicted = net.head(chosen, s, steps).into_data();
        let flat: Vec<f32> = predicted.try_to_vec().unwrap_or_default();
        for (&i, values) in picked.iter().zip(flat.chunks(steps.max(1))) {
            out[i] = values.to_vec();
        }
    }
    out
}

/// Passes' inputs (`points × FEATURES` each, of any length) as one tensor
/// `[passes, points, FEATURES]`, the shorter ones padded at the end, and
/// for each read `(pass, steps)` the row of [`LstmNet::forward`] that holds
/// the state after the first `steps` points of pass `pass`. Padding comes
/// after every step a forecast reads, so it cannot change one: the network
/// only looks back.
fn pass_inputs(
    passes: &[&[f32]],
    reads: impl IntoIterator<Item = (usize, usize)>,
    device: &Device,
) -> (Tensor<3>, Vec<usize>) {
    let points = passes.iter().map(|p| p.len()).max().unwrap_or(0) / FEATURES;
    let mut inputs = vec![0.0; passes.len() * points * FEATURES];
    if points > 0 {
        for (slot, p) in inputs.chunks_mut(points * FEATURES).zip(passes) {
            slot[..p.len()].copy_from_slice(p);
        }
    }
    let x = Tensor::<3>::from_data(
        TensorData::new(inputs, [passes.len(), points, FEATURES]),
        device,
    );
    let rows = reads
        .into_iter()
        .map(|(pass, steps)| pass * points + steps - 1)
        .collect();
    (x, rows)
}
