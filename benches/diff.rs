//! Diff of the largest authority's two days: sort-and-merge against roaring.

use criterion::{Criterion, criterion_group, criterion_main};
use nemsms_diff::{domain::diff, domain::parse, sim::generate};
use roaring::RoaringBitmap;

fn bench(c: &mut Criterion) {
    let (day1, day2) = generate::list_pair(740_000, 0.001, 3);
    let old = parse::parse_list(&day1).expect("parses").keys;
    let new = parse::parse_list(&day2).expect("parses").keys;
    let expected = diff::diff(&old, &new);
    assert_eq!(expected.n_signed_up(), 740);
    assert_eq!(expected.n_signed_off(), 740);
    let mut group = c.benchmark_group("diff");
    group.bench_function("merge 740k vs 740k", |b| {
        b.iter(|| {
            let changes = diff::diff(&old, &new);
            assert_eq!(changes.n_signed_up(), 740);
            changes
        })
    });
    group.bench_function("roaring 740k vs 740k, incl. building bitmaps", |b| {
        b.iter(|| {
            let o = RoaringBitmap::from_sorted_iter(old.cpr.iter().copied()).expect("sorted");
            let n = RoaringBitmap::from_sorted_iter(new.cpr.iter().copied()).expect("sorted");
            let up = &n - &o;
            let off = &o - &n;
            assert_eq!(up.len() as usize, expected.cpr.signed_up.len());
            (up, off)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
