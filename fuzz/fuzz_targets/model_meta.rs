//! A model's metadata file, as promcast reads it at start: parsed and
//! checked. Nothing may panic, and what passes the checks is what serving
//! relies on (a positive step, a window layout that fits the network).
#![no_main]

use promcast::model::store::parse_meta;
use promcast_fuzz::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = parse_meta(data, "cpu", "cpu.json") {
        assert!(meta.step_ms > 0);
        assert_eq!(meta.spec.window, meta.shape.window);
        assert_eq!(meta.spec.outputs, meta.shape.horizon_steps);
        assert!(meta.shape.segment >= 1 && meta.shape.history_points() >= meta.shape.window);
    }
});
