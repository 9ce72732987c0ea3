//! Links the fuzz targets against libFuzzer from Debian's
//! `libfuzzer-14-dev` (or the `LIBFUZZER_A` archive): it supplies `main`,
//! the mutator and the sanitizer-coverage callbacks that the instrumented
//! code calls. Taking it from the system rather than from the
//! `libfuzzer-sys` crate keeps `cc` out of the build graph, whose features
//! would change how burn's build-time dependencies compile (see README.md).

fn main() {
    let archive = std::env::var("LIBFUZZER_A")
        .unwrap_or_else(|_| "/usr/lib/llvm-14/lib/libFuzzer.a".to_owned());
    println!("cargo:rerun-if-env-changed=LIBFUZZER_A");
    println!("cargo:rerun-if-changed={archive}");
    if !std::path::Path::new(&archive).is_file() {
        panic!("{archive} is missing: apt-get install libfuzzer-14-dev, or set LIBFUZZER_A");
    }
    println!("cargo:rustc-link-arg-bins={archive}");
    println!("cargo:rustc-link-arg-bins=-lstdc++");
}
