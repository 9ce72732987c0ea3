//! The forecasting model: a burn LSTM over a window of normalised values
//! and calendar inputs, with one output per model step up to the longest
//! horizon. Knows time series, not HTTP or Prometheus.

pub mod fused_lstm;
pub mod network;
pub mod store;
pub mod train;
pub mod window;

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, Tensor, TensorData};

pub use network::{LstmNet, NetSpec};
pub use window::{FEATURES, Grid, Shape, Window};

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

/// Runs `net` on a batch of windows and returns, per window, the predicted
/// normalised change from the window's last value at each model step
/// `1..=K`.
pub fn predict(net: &LstmNet, windows: &[&Window], device: &Device) -> Vec<Vec<f32>> {
    if windows.is_empty() {
        return Vec::new();
    }
    let spec = net.spec();
    let mut inputs = Vec::with_capacity(windows.len() * spec.window * FEATURES);
    let mut seasonal = Vec::with_capacity(windows.len() * spec.outputs);
    for w in windows {
        inputs.extend_from_slice(&w.features);
        seasonal.extend_from_slice(&w.seasonal);
    }
    let x = Tensor::<3>::from_data(
        TensorData::new(inputs, [windows.len(), spec.window, FEATURES]),
        device,
    );
    let s = Tensor::<2>::from_data(
        TensorData::new(seasonal, [windows.len(), spec.outputs]),
        device,
    );
    let out = net.forward(x, s).into_data();
    let flat: Vec<f32> = out.try_to_vec().unwrap_or_default();
    flat.chunks(spec.outputs).map(<[f32]>::to_vec).collect()
}
