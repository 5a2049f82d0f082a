use trainmon::prelude::*;

#[on_train_end]
fn report(error: &trainmon::Error) {
    println!("{error}");
}

fn main() {}
