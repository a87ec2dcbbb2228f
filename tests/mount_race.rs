//! A `:ro` volume raced writable (CVE-2021-30465 class): while a container starts with a
//! shared volume at `/data` and a read-only bind nested at `/data/a`, something with
//! access to the shared volume (another container, here the test itself) swaps `a` (a
//! directory) and `b` (a symlink to `/data`) with `renameat2(RENAME_EXCHANGE)` as fast
//! as it can. A runtime that resolves `/data/a` once for the bind and again for the
//! read-only remount can land the remount on `/data` and leave the bind writable. lb
//! makes the bind on the descriptor it resolved, read-only before it is attached: the
//! read-only source must never be written, whatever the race gives.

use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod common;
use common::*;

fn exchange(a: &CString, b: &CString) {
    // SAFETY: valid C strings; the result is ignored (a failed swap is a lost round).
    unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        );
    }
}

#[test]
fn a_read_only_bind_stays_read_only_under_a_rename_race() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap();
    let shared = dir.join("shared");
    let protected = dir.join("protected");
    std::fs::create_dir_all(shared.join("a")).unwrap();
    std::fs::create_dir_all(&protected).unwrap();
    std::os::unix::fs::symlink("/data", shared.join("b")).unwrap();
    let a = CString::new(shared.join("a").to_str().unwrap()).unwrap();
    let b = CString::new(shared.join("b").to_str().unwrap()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                exchange(&a, &b);
            }
        })
    };
    let vol = format!("{}:/data", shared.display());
    let ro = format!("{}:/data/a:ro", protected.display());
    let mut started = 0;
    for _ in 0..40 {
        let (code, _, _) = run(
            &env,
            &["--network", "none", "-v", &vol, "-v", &ro],
            &[
                "sh",
                "-c",
                "for d in /data/a /data/b /data /; do echo x > $d/pwned; done 2>/dev/null; true",
            ],
        );
        started += usize::from(code == 0);
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();
    let written: Vec<_> = std::fs::read_dir(&protected)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        written.is_empty(),
        "the read-only bind was written: {written:?}"
    );
    assert!(started > 0, "no container started during the race");
}
