//! Runnable examples of trainmon, one file each in this directory:
//!
//! - `cargo run --example early_stop`: the classic callbacks tutorial — batch logger every 10
//!   batches, epoch logger, early stopping with patience, and plots of loss, accuracy and time
//!   per epoch.
