//! `container_files_cli.rs` again, on stores made with the vfs storage driver (`common::setup` tells
//! by this binary's name).

#[path = "container_files_cli.rs"]
mod cases;
