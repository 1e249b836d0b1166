//! Criterion benchmarks of the presence engine at a smaller scale than the 1M job
//! (`examples/presence_bench.rs`): range lookup, sign-in parsing, and a whole batch.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ip_presence::{IpRangeTable, MemoryState, PresenceEngine, ProcessOptions, parse_all};

#[path = "support/data.rs"]
mod data;

use data::{BenchSpec, bench_config, generate};

fn spec() -> BenchSpec {
    BenchSpec {
        sign_ins: 20_000,
        users: 2_000,
        ..BenchSpec::default()
    }
}

fn lookup(c: &mut Criterion) {
    let config = bench_config(&spec());
    let table = IpRangeTable::new(&config.ranges).unwrap();
    let ips: Vec<std::net::IpAddr> = (0..1024u32)
        .map(|i| {
            if i % 10 < 7 {
                std::net::IpAddr::from([100 + (i % 20) as u8, 20, (i % 45) as u8, (i % 200) as u8])
            } else {
                format!("2001:db8:{:x}:{:x}::{:x}", i % 20, i % 45, i)
                    .parse()
                    .unwrap()
            }
        })
        .collect();
    let mut g = c.benchmark_group("ip_range_table");
    g.throughput(Throughput::Elements(ips.len() as u64));
    g.bench_function("lookup_2000_nested_ranges", |b| {
        b.iter(|| {
            for ip in &ips {
                black_box(table.lookup(*ip));
            }
        })
    });
    g.finish();
}

fn engine(c: &mut Criterion) {
    let spec = spec();
    let dir = tempfile::tempdir().unwrap();
    let files = generate(dir.path(), &spec).unwrap();
    let bytes = std::fs::read(&files.sign_ins).unwrap();
    let engine = PresenceEngine::new(bench_config(&spec)).unwrap();
    let opts = ProcessOptions::at(spec.now());
    let mut g = c.benchmark_group("presence");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.sample_size(20);
    g.bench_function("parse_20k_json_lines", |b| {
        b.iter(|| black_box(parse_all(&bytes).unwrap().len()))
    });
    g.bench_function("process_20k_sign_ins", |b| {
        b.iter(|| {
            let mut st = MemoryState::new();
            let r = engine
                .process(&mut st, parse_all(&bytes).unwrap(), &opts)
                .unwrap();
            black_box(r.access_events.len())
        })
    });
    g.finish();
}

criterion_group!(benches, lookup, engine);
criterion_main!(benches);
