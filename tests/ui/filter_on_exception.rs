use trainmon::prelude::*;

#[on_exception(once = 1)]
fn report(error: &trainmon::Error) {
    println!("{error}");
}

fn main() {}
