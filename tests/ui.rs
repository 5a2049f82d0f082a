//! Compile-fail tests of the attributes: each file in `ui/` is one mistake, and its `.stderr`
//! holds the expected diagnostics, under the offending token. Regenerate after a compiler
//! update with `TRYBUILD=overwrite cargo xtask test --test ui`, and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
