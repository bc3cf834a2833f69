//! Work spread over a few threads of the caller, results in order.

/// `f` over `items`, results in the order of `items`: on up to `max_threads` scoped
/// threads (never more than the machine's parallelism), each taking at least `per_thread`
/// items; on the calling thread when one would do. A panic in `f` is raised again here.
pub fn map_in_order<T: Sync, R: Send>(
    items: &[T],
    max_threads: usize,
    per_thread: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(max_threads)
        .min(items.len().div_ceil(per_thread.max(1)));
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_the_order_of_the_items_whatever_the_threads() {
        let items: Vec<u32> = (0..1000).collect();
        for (max, per) in [(1, 1), (4, 8), (4, 1), (16, 100), (4, 5000)] {
            let out = map_in_order(&items, max, per, |&i| u64::from(i) * 3);
            assert_eq!(
                out,
                items.iter().map(|&i| u64::from(i) * 3).collect::<Vec<_>>()
            );
        }
        assert!(map_in_order(&[] as &[u32], 4, 8, |&i| i).is_empty());
    }

    #[test]
    fn a_panic_in_a_thread_reaches_the_caller() {
        let items: Vec<u32> = (0..64).collect();
        let caught = std::panic::catch_unwind(|| {
            map_in_order(&items, 4, 1, |&i| {
                assert!(i != 50, "item fifty");
                i
            })
        });
        assert!(caught.is_err());
    }
}
