use std::cell::Cell;
use trainmon::prelude::*;

// A resource is shared between hooks and threads: its type must be `Sync`.
#[on_epoch_end]
fn counts(seen: Res<Cell<u32>>) {
    seen.set(seen.get() + 1);
}

fn main() {}
