//! What every fuzz target shares: the entry point libFuzzer calls.
//!
//! The targets link Debian's libFuzzer (`libfuzzer-14-dev`, see build.rs),
//! which provides `main` and calls `LLVMFuzzerTestOneInput` with each input;
//! [`fuzz_target!`] defines that function around a closure over the input.
//! A panic cannot unwind out of an `extern "C"` function: it aborts, which
//! libFuzzer reports as a crash and saves the input.

/// Defines libFuzzer's entry point: `fuzz_target!(|data: &[u8]| { ... });`.
#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        /// Called by libFuzzer once per input.
        ///
        /// # Safety
        /// libFuzzer passes `size` readable bytes at `data`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn LLVMFuzzerTestOneInput(data: *const u8, size: usize) -> i32 {
            let input: &[u8] = if size == 0 {
                &[]
            } else {
                // SAFETY: libFuzzer's contract, above.
                unsafe { std::slice::from_raw_parts(data, size) }
            };
            let run = |$data: &[u8]| $body;
            run(input);
            0
        }
    };
}
