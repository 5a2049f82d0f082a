//! Runnable examples of trainmon, one file each in this directory:
//!
//! - `cargo run --example early_stop`: the classic callbacks tutorial — batch logger every 10
//!   batches, epoch logger, early stopping with patience, and plots of loss, accuracy and time
//!   per epoch.
//! - `cargo run --example full_monitoring`: every built-in hook at once — logger, progress
//!   bars, early stopping, checkpoints, a learning-rate schedule, metric files, TensorBoard,
//!   plots, a summary — into one run directory.
//! - `cargo run --example data_parallel -- --nproc 2`: an MLP trained by two processes under
//!   torchrun, on PyTorch's distributed engine.
//! - `cargo run --release --example char_lm`: a character language model with a training step
//!   of its own, over batches of its own type, on text it writes.
//! - `cargo run --release --example gan`: a tiny GAN on eight Gaussians on a ring, its two
//!   optimizers stepped in turn by a step that optimizes by hand.
