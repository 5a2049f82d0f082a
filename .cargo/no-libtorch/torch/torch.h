/* Found only when libtorch's own headers are not there: on a fresh clone, before libtorch is set
 * up. `.cargo/config.toml` puts this directory on CPLUS_INCLUDE_PATH, which the compiler searches
 * after libtorch's include directories, so that torch-sys's build says what to do, and stops. */
#error "libtorch is not set up in this clone yet: run `cargo xtask run --example early_stop` once (it installs libtorch 2.11.0; then plain cargo works too)"
#include "stop here"
