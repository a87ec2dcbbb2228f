//! Any bytes through everything the parser crate does: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../parser/tests/support/exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| exercise::exercise(data));
