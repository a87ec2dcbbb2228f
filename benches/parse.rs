//! Parse throughput on a generated 10,000-instruction Dockerfile: the syntax pass alone
//! (what `lb parse --format dump` does) and both passes (what a build does).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A Dockerfile of `n` instructions that mixes every form a real one uses.
fn generate(n: usize) -> String {
    let mut s = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\n");
    let mut count = 1;
    let mut i: usize = 0;
    while count < n {
        let stage: usize = i / 50;
        let line = match i % 50 {
            0 => format!("FROM --platform=$BUILDPLATFORM ${{BASE}} AS stage{stage}\n"),
            1 => "ENV PATH=/usr/local/bin:$PATH LANG=C.UTF-8 \\\n    HOME=/root\n".to_string(),
            2 => format!("LABEL org.opencontainers.image.title=\"stage {stage}\" version={i}\n"),
            3 => "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n    apt-get update && \\\n    apt-get install -y --no-install-recommends curl ca-certificates && \\\n    rm -rf /var/lib/apt/lists/*\n".to_string(),
            4 => "COPY --chown=app:app --chmod=0644 [\"src/a file.txt\", \"/app/\"]\n".to_string(),
            5 => "RUN <<EOF\nset -eu\necho building $HOME\nmake -j2 all\nEOF\n".to_string(),
            6 => "HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -f http://localhost/ || exit 1\n".to_string(),
            7 => "# a comment line that the parser skips\n".to_string(),
            8 => format!("COPY --from=stage{} /out/bin /usr/local/bin/\n", stage.saturating_sub(1)),
            9 => "ENTRYPOINT [\"/usr/local/bin/app\", \"--config\", \"/etc/app.toml\"]\n".to_string(),
            _ => format!("RUN echo step {i} && test -d /app || mkdir -p /app/{i}\n"),
        };
        if !line.starts_with('#') {
            count += 1;
        }
        s.push_str(&line);
        i += 1;
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = generate(10_000);
    let bytes = text.as_bytes();
    assert_eq!(lb_parser::parse(bytes).unwrap().instructions.len(), 10_000);
    let mut g = c.benchmark_group("parse_10k_instructions");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.sample_size(30);
    g.bench_function("syntax", |b| {
        b.iter(|| lb_parser::parse_syntax(bytes).unwrap())
    });
    g.bench_function("syntax+typed", |b| {
        b.iter(|| lb_parser::parse(bytes).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
