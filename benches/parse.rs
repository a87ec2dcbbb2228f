//! Parse throughput on a generated 10,000-instruction Dockerfile: the syntax pass alone
//! (what `lb parse --format dump` does) and both passes (what a build does). Then 100,000
//! instructions (issue 14: hostile Dockerfiles must cost time linear in their length):
//! parsed and planned, in one stage and in 2,000 stages that copy from one another, and
//! 100,000 ENV and LABEL lines applied to a config as a build's metadata steps do.

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

/// `n` instructions in `stages` stages, each stage built on or copying from an earlier one
/// by name: every lookup the planner makes.
fn generate_staged(n: usize, stages: usize) -> String {
    let per_stage = n / stages;
    let mut s = String::from("ARG BASE=busybox\n");
    for st in 0..stages {
        match st {
            0 => s.push_str("FROM ${BASE} AS s0\n"),
            _ if st % 2 == 0 => s.push_str(&format!("FROM s{} AS s{st}\n", st - 1)),
            _ => s.push_str(&format!("FROM busybox AS s{st}\n")),
        }
        for i in 1..per_stage {
            let line = match i % 5 {
                0 => format!("ENV E{i}=v{i} PATH=/x:$PATH\n"),
                1 => format!("LABEL l{i}=\"value {i}\"\n"),
                2 if st > 0 => format!("COPY --from=s{} /a /b{i}\n", st / 2),
                3 => format!("ARG A{i}=d{i}\n"),
                _ => format!("RUN echo {i}\n"),
            };
            s.push_str(&line);
        }
    }
    s
}

fn bench_100k(c: &mut Criterion) {
    let mut g = c.benchmark_group("100k_instructions");
    g.sample_size(10);
    let no_args = std::collections::BTreeMap::new();
    for (name, stages) in [
        ("one_stage", 1),
        ("2000_stages", 2000),
        ("100000_stages", 100_000),
    ] {
        let text = generate_staged(100_000, stages);
        let bytes = text.as_bytes();
        let df = lb_parser::parse(bytes).unwrap();
        assert_eq!(df.instructions.len(), 100_001);
        let plan = lb_builder::plan(&df, &no_args, None).unwrap();
        assert_eq!(plan.stages.len(), stages);
        g.throughput(Throughput::Elements(df.instructions.len() as u64));
        g.bench_function(format!("parse+plan/{name}"), |b| {
            b.iter(|| {
                let df = lb_parser::parse(bytes).unwrap();
                lb_builder::plan(&df, &no_args, None).unwrap()
            })
        });
    }
    // What a build does with 100,000 metadata lines besides writing one image: each applied
    // to the stage's config, with the change that goes into its step's cache key.
    for kind in ["ENV", "LABEL"] {
        let mut text = String::from("FROM busybox\n");
        for i in 0..100_000 {
            text.push_str(&format!("{kind} k{i}=v{i}-${{k{}}}\n", i / 2));
        }
        let bytes = text.as_bytes();
        g.throughput(Throughput::Elements(100_000));
        g.bench_function(format!("parse+plan+config/{kind}"), |b| {
            b.iter(|| {
                let df = lb_parser::parse(bytes).unwrap();
                let plan = lb_builder::plan(&df, &no_args, None).unwrap();
                let mut cfg = lb_builder::ImageConfig::default();
                for ins in &plan.stages[0].steps {
                    cfg.apply_change(ins, &lb_parser::shell::NoEnv)
                        .unwrap()
                        .unwrap();
                }
                cfg
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_100k);
criterion_main!(benches);
