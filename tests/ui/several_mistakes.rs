use trainmon::prelude::*;

// Every mistake of one item is reported in one compile.
#[on_batch_end(every = 0, colour = "red")]
async unsafe fn log_batch(batch: &BatchLogs) {
    println!("{}", batch.loss());
}

fn main() {}
