//! Layer diff and apply against the tools they replace, side by side in one run, on an upper
//! directory of 2,000 files of 100 KiB of random data (205 MB):
//!
//! - diff+hash: `write_diff` (uncompressed, diffID computed) vs `tar -c | sha256sum`
//! - apply: `apply_layer` vs GNU `tar -x`
//! - gzip: `write_diff` with gzip level 6 vs `tar -c | gzip -6`
//!
//! Run: `cargo bench --bench layers`; each pair is one criterion group.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lb_layerstore::{ApplyOptions, DiffOptions, LayerCompression, apply_layer, write_diff};

const FILES: usize = 2000;
const SIZE: usize = 100 * 1024;

fn make_tree(dir: &Path) {
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut buf = vec![0u8; SIZE];
    for i in 0..FILES {
        let sub = dir.join(format!("d{:02}", i % 20));
        fs::create_dir_all(&sub).unwrap();
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        fs::File::create(sub.join(format!("f{i:04}")))
            .unwrap()
            .write_all(&buf)
            .unwrap();
    }
}

fn sh(script: &str) {
    let st = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(st.success(), "{script}");
}

fn bench(c: &mut Criterion) {
    let work = tempfile::tempdir().unwrap();
    let upper = work.path().join("upper");
    make_tree(&upper);
    let layer_path = work.path().join("layer.tar");
    let mut layer = fs::File::create(&layer_path).unwrap();
    write_diff(
        &upper,
        &mut layer,
        LayerCompression::None,
        DiffOptions::default(),
    )
    .unwrap();
    drop(layer);
    let bytes = (FILES * SIZE) as u64;
    let up = upper.display().to_string();
    let lp = layer_path.display().to_string();

    let mut g = c.benchmark_group("diff_and_hash");
    g.throughput(Throughput::Bytes(bytes)).sample_size(10);
    g.bench_function("lb write_diff", |b| {
        b.iter(|| {
            write_diff(
                &upper,
                std::io::sink(),
                LayerCompression::None,
                DiffOptions::default(),
            )
            .unwrap()
        })
    });
    g.bench_function("tar -c | sha256sum", |b| {
        b.iter(|| sh(&format!("tar -C {up} -cf - . | sha256sum > /dev/null")))
    });
    g.finish();

    let out = work.path().join("out");
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Bytes(bytes)).sample_size(10);
    let opts = ApplyOptions::for_snapshot();
    g.bench_function("lb apply_layer", |b| {
        b.iter(|| {
            let _ = fs::remove_dir_all(&out);
            fs::create_dir(&out).unwrap();
            apply_layer(fs::File::open(&layer_path).unwrap(), &out, opts).unwrap()
        })
    });
    let o = out.display().to_string();
    g.bench_function("tar -x", |b| {
        b.iter(|| sh(&format!("rm -rf {o} && mkdir {o} && tar -C {o} -xf {lp}")))
    });
    g.finish();

    let mut g = c.benchmark_group("gzip6");
    g.throughput(Throughput::Bytes(bytes)).sample_size(10);
    g.bench_function("lb write_diff gzip(6)", |b| {
        b.iter(|| {
            write_diff(
                &upper,
                std::io::sink(),
                LayerCompression::Gzip(6),
                DiffOptions::default(),
            )
            .unwrap()
        })
    });
    g.bench_function("tar -c | gzip -6", |b| {
        b.iter(|| sh(&format!("tar -C {up} -cf - . | gzip -6 > /dev/null")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
