//! Parse throughput of a key-only list on one core and on all cores.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nemsms_diff::domain::diff::Change;
use nemsms_diff::domain::keys::{self, KeyKind};
use nemsms_diff::register::wire::{self, ListKind};
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

    // A delliste as it comes over the wire: 740k entries, our simulator's
    // shape (one entry a line) and an indented one (a change list, every
    // element on its own line), each parsed from a reader as it streams.
    let text = std::str::from_utf8(&list).expect("ascii");
    let entries: Vec<(KeyKind, u32, Change)> = text
        .lines()
        .skip(1)
        .enumerate()
        .map(|(i, line)| {
            let kind = if line.len() == 10 {
                KeyKind::Cpr
            } else {
                KeyKind::Cvr
            };
            let key = keys::parse_kind(kind, line.as_bytes()).expect("generated key");
            let change = if i % 3 == 0 {
                Change::SignedOff
            } else {
                Change::SignedUp
            };
            (kind, key, change)
        })
        .collect();
    let mut compact = wire::delliste_start().into_bytes();
    for &(kind, key, _) in &entries {
        wire::write_entry(&mut compact, kind, key, None);
    }
    compact.extend_from_slice(wire::DELLISTE_END.as_bytes());
    let mut indented = wire::delliste_start().into_bytes();
    for &(kind, key, change) in &entries {
        let mut one = Vec::new();
        wire::write_entry(&mut one, kind, key, Some(change));
        let one = String::from_utf8(one).expect("ascii");
        // <Slutbruger>\n    <CPR>…</CPR>\n    <Aendring>…</Aendring>\n  </Slutbruger>
        let one = one
            .trim_end()
            .replace("<Slutbruger><", "  <Slutbruger>\n    <")
            .replace("><Aendring>", ">\n    <Aendring>")
            .replace("</Aendring></Slutbruger>", "</Aendring>\n  </Slutbruger>\n");
        indented.extend_from_slice(one.as_bytes());
    }
    indented.extend_from_slice(wire::DELLISTE_END.as_bytes());
    let mut group = c.benchmark_group("delliste");
    for (name, body, kind) in [
        ("full list, one entry a line", &compact, ListKind::Full),
        ("change list, indented", &indented, ListKind::Change),
    ] {
        let generic = wire::parse_delliste_generic(&body[..], kind).expect("parses");
        assert_eq!(generic.count, entries.len() as u64);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{name}, 740k entries"), |b| {
            b.iter(|| {
                let d = wire::parse_delliste(&body[..], kind).expect("parses");
                assert_eq!(d.count, generic.count);
                assert_eq!((&d.cpr_up, &d.cpr_off), (&generic.cpr_up, &generic.cpr_off));
                d
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
