use trainmon::prelude::*;

#[on_epoch_end(rank = 1)]
fn on_rank_one() {}

fn main() {
    on_rank_one();
}
