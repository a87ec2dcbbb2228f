//! `build_cases.rs` again, on stores made with the vfs storage driver (`common::setup` tells
//! by this binary's name).

#[path = "build_cases.rs"]
mod cases;
