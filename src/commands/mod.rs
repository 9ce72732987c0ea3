//! Operator commands run from a terminal instead of serving: `promcast
//! train`, `promcast forecast`, `promcast forget` and `promcast eval`. They
//! use the same wiring, models and data path as the server.

pub mod eval;
pub mod forecast;
pub mod forget;
pub mod nab;
pub mod train;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `work` on every item, `jobs` items at a time on threads of their own,
/// taken in `order` (indices into `items`); `finished` hears of each
/// result with how many items are done. The results in the items' order.
pub fn work_through<T: Sync, R: Send>(
    items: &[T],
    order: &[usize],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    finished: impl Fn(&T, &R, usize) + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let result = work(&items[i]);
                    finished(&items[i], &result, done.fetch_add(1, Ordering::Relaxed) + 1);
                    crate::lock::lock(&results)[i] = Some(result);
                }
            });
        }
    });
    crate::lock::lock(&results).drain(..).flatten().collect()
}

/// Left-aligned text columns, a header row, and a rule under it. The
/// last cell of a row shorter than the header runs on over the columns it
/// lacks (a reason instead of numbers) without widening its own.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        let sized = if row.len() < header.len() {
            row.len().saturating_sub(1)
        } else {
            row.len()
        };
        for (w, cell) in widths.iter_mut().zip(&row[..sized]) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    out += &line(
        &mut widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    );
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = table(
            &["family", "mae"],
            &[
                vec!["cpu".into(), "0.25".into()],
                vec!["memory_used".into(), "1".into()],
            ],
        );
        assert_eq!(
            t,
            "family       mae\n-----------  ----\ncpu          0.25\nmemory_used  1\n"
        );
    }

    #[test]
    fn a_short_rows_last_cell_runs_on() {
        let t = table(
            &["file", "a", "b"],
            &[
                vec!["x".into(), "1".into(), "2".into()],
                vec!["y".into(), "not scored: too short".into()],
            ],
        );
        assert_eq!(
            t,
            "file  a  b\n----  -  -\nx     1  2\ny     not scored: too short\n"
        );
    }
}
