//! The forecasting methods `promcast eval` compares promcast's LSTM with:
//! what a Prometheus user has today (a value one season ago,
//! `predict_linear`) and Grafana's `augurs` models (AutoETS, and MSTL with
//! a daily season and an AutoETS trend).
//!
//! Every method sees a regular series (`NaN` where a point is missing) and
//! forecasts from index `i` using points `..=i` only.

use augurs_core::{Fit, Predict};
use augurs_ets::AutoETS;
use augurs_mstl::MSTLModel;

/// A method compared by `promcast eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// promcast's model, as served.
    Lstm,
    /// The value one season (a day, or a week where that is better in
    /// training) before the target.
    SeasonalNaive,
    /// PromQL's `predict_linear`.
    PredictLinear,
    /// augurs' AutoETS (non-seasonal: augurs has no seasonal ETS).
    Ets,
    /// augurs' MSTL, daily season, AutoETS trend.
    Mstl,
}

impl Method {
    /// Every method, in report order.
    pub const ALL: [Method; 5] = [
        Method::Lstm,
        Method::SeasonalNaive,
        Method::PredictLinear,
        Method::Ets,
        Method::Mstl,
    ];

    /// The method's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Lstm => "lstm",
            Method::SeasonalNaive => "seasonal_naive",
            Method::PredictLinear => "predict_linear",
            Method::Ets => "ets",
            Method::Mstl => "mstl",
        }
    }
}

/// How much history ETS and MSTL are refitted on at each origin: enough
/// for MSTL's daily season several times over, bounded so that a refit at
/// every origin stays affordable.
pub const FIT_DAYS: usize = 4;

/// The seasonal-naive forecast of point `i + k` from `i`: the value a
/// whole number of `season`s before the target, at or before `i`.
pub fn seasonal_naive(values: &[f64], i: usize, k: usize, season: usize) -> Option<f64> {
    let back = k.div_ceil(season) * season;
    let j = (i + k).checked_sub(back)?;
    values.get(j).copied().filter(|v| v.is_finite())
}

/// The season for horizon `k`: weekly where the training part holds two
/// weeks and a weekly season forecasts it better than a daily one,
/// else daily.
pub fn choose_season(train: &[f64], k: usize, day: usize) -> usize {
    let week = 7 * day;
    if train.len() < 2 * week + k {
        return day;
    }
    let error = |season: usize| {
        let errors: Vec<f64> = (week..train.len() - k)
            .filter_map(|i| {
                let f = seasonal_naive(train, i, k, season)?;
                let y = train[i + k];
                y.is_finite().then(|| (y - f).abs())
            })
            .collect();
        errors.iter().sum::<f64>() / errors.len().max(1) as f64
    };
    if error(week) < error(day) { week } else { day }
}

/// PromQL's `predict_linear(v[range], h)` at point `i`: the least-squares
/// line through the points in `[t − range, t]` (a closed range, as in the
/// Prometheus 2.x that Debian ships), read `h` seconds after `t`, with the
/// intercept taken at `t` as Prometheus does. Needs two points.
pub fn predict_linear(
    values: &[f64],
    step_ms: i64,
    i: usize,
    range_ms: i64,
    horizon_ms: i64,
) -> Option<f64> {
    let back = usize::try_from(range_ms / step_ms).ok()?;
    let (mut n, mut sx, mut sy, mut sxy, mut sxx) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let from = i.saturating_sub(back);
    for (j, &y) in values.iter().enumerate().take(i + 1).skip(from) {
        if !y.is_finite() {
            continue;
        }
        let x = (j as f64 - i as f64) * step_ms as f64 / 1000.0;
        n += 1.0;
        sx += x;
        sy += y;
        sxy += x * y;
        sxx += x * x;
    }
    if n < 2.0 {
        return None;
    }
    let slope = (sxy - sx * sy / n) / (sxx - sx * sx / n);
    let intercept = sy / n - slope * sx / n;
    Some(intercept + slope * horizon_ms as f64 / 1000.0)
}

/// The methods refitted at every origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refit {
    /// [`Method::Ets`].
    Ets,
    /// [`Method::Mstl`].
    Mstl,
}

impl Refit {
    /// Both, in report order.
    pub const ALL: [Refit; 2] = [Refit::Ets, Refit::Mstl];
}

/// ETS or MSTL refitted on the `FIT_DAYS` before and including `i`
/// (gaps carried forward), forecasting `1..=k_max` points ahead.
pub fn refit(model: Refit, values: &[f64], i: usize, k_max: usize, day: usize) -> Option<Vec<f64>> {
    let from = (i + 1).saturating_sub(FIT_DAYS * day);
    let mut history = Vec::with_capacity(i + 1 - from);
    let mut carried = None;
    for &v in &values[from..=i] {
        if v.is_finite() {
            carried = Some(v);
        }
        if let Some(c) = carried {
            history.push(c);
        }
    }
    let forecast = match model {
        Refit::Ets => AutoETS::non_seasonal()
            .fit(&history)
            .ok()?
            .predict(k_max, None)
            .ok(),
        Refit::Mstl => {
            if history.len() < 2 * day + 1 {
                return None;
            }
            MSTLModel::new(vec![day], AutoETS::non_seasonal().into_trend_model())
                .fit(&history)
                .ok()?
                .predict(k_max, None)
                .ok()
        }
    };
    let point = forecast?.point;
    point.iter().all(|v| v.is_finite()).then_some(point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_naive_reads_the_last_season_before_the_origin() {
        let v: Vec<f64> = (0..20).map(f64::from).collect();
        // Season 4, from 10: one step ahead is point 11 − 4 = 7.
        assert_eq!(seasonal_naive(&v, 10, 1, 4), Some(7.0));
        // Six steps ahead needs two seasons back: 16 − 8 = 8.
        assert_eq!(seasonal_naive(&v, 10, 6, 4), Some(8.0));
        assert_eq!(seasonal_naive(&v, 2, 1, 4), None);
    }

    #[test]
    fn predict_linear_extrapolates_a_line() {
        // y = 2 per minute, sampled every minute; range 5 minutes.
        let v: Vec<f64> = (0..10).map(|i| 2.0 * f64::from(i)).collect();
        assert_eq!(predict_linear(&v, 60_000, 9, 300_000, 600_000), Some(38.0));
        // Noise: points 0, 2, 1 at x = −120, −60, 0 s: slope 1/120, mean 1,
        // mean x −60 → intercept 1.5; 60 s ahead: 2.
        let w = [0.0, 2.0, 1.0];
        let p = predict_linear(&w, 60_000, 2, 120_000, 60_000).unwrap();
        assert!((p - 2.0).abs() < 1e-12, "{p}");
        assert_eq!(
            predict_linear(&[1.0, f64::NAN], 60_000, 1, 60_000, 60_000),
            None
        );
    }

    #[test]
    fn weekly_season_is_chosen_only_when_it_helps() {
        let day = 4;
        // A pattern repeating weekly but not daily.
        let weekly: Vec<f64> = (0..8 * 7 * day).map(|i| ((i / day) % 7) as f64).collect();
        assert_eq!(choose_season(&weekly, 1, day), 7 * day);
        let daily: Vec<f64> = (0..8 * 7 * day).map(|i| (i % day) as f64).collect();
        assert_eq!(choose_season(&daily, 1, day), day);
        assert_eq!(choose_season(&weekly[..10 * day], 1, day), day);
    }

    #[test]
    fn augurs_models_forecast_a_level_series() {
        let day = 24;
        let v: Vec<f64> = (0..5 * day)
            .map(|i| 10.0 + (i as f64 / day as f64 * std::f64::consts::TAU).sin())
            .collect();
        for model in Refit::ALL {
            let f = refit(model, &v, v.len() - 1, 3, day).unwrap();
            assert_eq!(f.len(), 3);
            assert!(f.iter().all(|x| (x - 10.0).abs() < 3.0), "{model:?} {f:?}");
        }
        assert!(refit(Refit::Mstl, &v, day, 3, day).is_none());
    }
}
