//! The one way an async runtime is made: the publisher, AliveBesked, the
//! push receiver and the lab's servers each run on a two-thread tokio
//! runtime (the machines this runs on have two cores; the work is I/O);
//! and the helpers that order work: futures in order, items largest first.

use anyhow::Context;

/// A multi-thread tokio runtime with two workers, I/O and timers enabled.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs futures to completion, first polling each in the order given, and
/// gives their results in that order; the first error ends it. A lapin
/// publish queues its frames when first polled, so many publishes started
/// together leave in order and in one write to the broker rather than
/// one wake-up of the connection each.
pub async fn in_order<T, E, F>(mut futs: Vec<std::pin::Pin<Box<F>>>) -> Result<Vec<T>, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let mut results: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    let mut left = futs.len();
    std::future::poll_fn(move |cx| {
        for (fut, result) in futs.iter_mut().zip(results.iter_mut()) {
            if result.is_some() {
                continue;
            }
            if let std::task::Poll::Ready(r) = fut.as_mut().poll(cx) {
                *result = Some(r?);
                left -= 1;
            }
        }
        if left == 0 {
            std::task::Poll::Ready(Ok(results.iter_mut().filter_map(Option::take).collect()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::in_order;
    use std::time::Duration;

    #[test]
    fn in_order_starts_each_in_order_and_keeps_the_results_in_order() {
        let rt = super::runtime().unwrap();
        let started = std::sync::Mutex::new(Vec::new());
        let started = &started;
        let futs = (0..40u64)
            .map(|i| {
                Box::pin(async move {
                    started.lock().unwrap().push(i);
                    // Later ones finish first.
                    tokio::time::sleep(Duration::from_millis(40 - i)).await;
                    Ok::<u64, String>(i * 10)
                })
            })
            .collect();
        let got = rt.block_on(in_order(futs)).unwrap();
        assert_eq!(got, (0..40).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(*started.lock().unwrap(), (0..40).collect::<Vec<_>>());
        let futs = (0..5u64)
            .map(|i| {
                Box::pin(async move {
                    if i == 3 {
                        Err(format!("no {i}"))
                    } else {
                        Ok(i)
                    }
                })
            })
            .collect();
        assert_eq!(rt.block_on(in_order(futs)), Err("no 3".to_owned()));
    }
}

/// Runs `work` on every item on the current rayon pool, largest first
/// (started late, the biggest item would run alone at the end): each
/// worker takes the next item in size order, ties in input order. The
/// results come back in input order.
pub fn largest_first<T: Sync, R: Send>(
    items: &[T],
    size: impl Fn(&T) -> u64,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let mut order: Vec<(u64, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, t)| (size(t), i))
        .collect();
    order.sort_by_key(|&(bytes, i)| (std::cmp::Reverse(bytes), i));
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    rayon::scope(|scope| {
        for _ in 0..rayon::current_num_threads().min(items.len()) {
            scope.spawn(|_| {
                while let Some(&(_, i)) =
                    order.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    let r = work(&items[i]);
                    *slots[i].lock().expect("lock") = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().expect("lock").expect("every item was run"))
        .collect()
}

#[cfg(test)]
mod largest_first_tests {
    #[test]
    fn largest_first_starts_the_biggest_and_keeps_the_input_order() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let started = std::sync::Mutex::new(Vec::new());
        let sizes = [3u64, 9, 1, 9, 5];
        let got = pool.install(|| {
            super::largest_first(
                &sizes,
                |&s| s,
                |&s| {
                    started.lock().unwrap().push(s);
                    s * 2
                },
            )
        });
        assert_eq!(got, vec![6, 18, 2, 18, 10]);
        assert_eq!(*started.lock().unwrap(), vec![9, 9, 5, 3, 1]);
    }
}
