//! Parse throughput of a key-only list on one core and on all cores.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nemsms_diff::{domain::parse, sim::generate};

fn bench(c: &mut Criterion) {
    let (list, _) = generate::list_pair(740_000, 0.0, 1);
    let expected = parse::parse_list(&list)
        .expect("generated list parses")
        .keys
        .len();
    assert_eq!(expected, 740_000);
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(list.len() as u64));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        group.bench_function(format!("key-only 740k keys, {threads} thread(s)"), |b| {
            b.iter(|| {
                let parsed = pool.install(|| parse::parse_list(&list)).expect("parses");
                assert_eq!(parsed.keys.len(), expected);
                parsed
            })
        });
    }
    let typed = {
        let text = std::str::from_utf8(&list).expect("ascii");
        let mut out = String::from("type;nummer\n");
        for line in text.lines().skip(1) {
            out.push_str(if line.len() == 10 { "CPR;" } else { "CVR;" });
            out.push_str(line);
            out.push('\n');
        }
        out.into_bytes()
    };
    group.throughput(Throughput::Bytes(typed.len() as u64));
    group.bench_function("type;nummer 740k keys", |b| {
        b.iter(|| {
            let parsed = parse::parse_list(&typed).expect("parses");
            assert_eq!(parsed.keys.len(), expected);
            parsed
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
