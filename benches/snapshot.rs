//! Snapshot encode and decode of the largest authority's list (740k keys).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nemsms_diff::{domain::parse, sim::generate, store::snapshot};

fn bench(c: &mut Criterion) {
    let (list, _) = generate::list_pair(740_000, 0.0, 2);
    let keys = parse::parse_list(&list).expect("parses").keys;
    let snap = snapshot::Snapshot {
        meta: snapshot::Meta {
            authority: 29189846,
            date: jiff::civil::date(2026, 1, 1),
            taken_at: 0,
            n_rows: keys.len() as u64,
            n_duplicates: 0,
        },
        keys,
    };
    let bytes = snapshot::encode(&snap);
    let per_key = bytes.len() as f64 / snap.keys.len() as f64;
    eprintln!("snapshot: {} bytes, {per_key:.3} bytes/key", bytes.len());
    assert!(
        per_key < 1.2,
        "740k realistic keys fit in under 1.2 bytes/key"
    );
    let mut group = c.benchmark_group("snapshot");
    group.throughput(Throughput::Elements(snap.keys.len() as u64));
    group.bench_function("encode 740k keys", |b| {
        b.iter(|| {
            let out = snapshot::encode(&snap);
            assert_eq!(out.len(), bytes.len());
            out
        })
    });
    group.bench_function("decode 740k keys", |b| {
        b.iter(|| {
            let back = snapshot::decode(&bytes).expect("decodes");
            assert_eq!(back.keys.len(), snap.keys.len());
            back
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
