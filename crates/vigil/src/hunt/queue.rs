//! The inputs waiting to be read, and how many threads read each.
//!
//! A worker reads a file's EVTX chunks (or JSON batches) itself while
//! the files still queued can keep every other worker busy meanwhile:
//! handing chunks to the pool costs two thread switches each, for no
//! parallelism when the other cores have files of their own (nine EVTX
//! files in ten are one chunk; 1× corpus, 21 alternating runs: hunt 73.9
//! → 64.2 ms, parse-only 41.3 → 35.2 ms). A file larger than what is left
//! for the others, or one of the last, is split over the pool, so that a
//! large log among small ones does not keep one core busy while the
//! others wait (the corpus as one 22 MiB file among 64 small ones: hunt
//! 86.0 ms read alone, 61.1 split over the pool).

use super::inputs::Input;
use std::collections::VecDeque;
use std::sync::Mutex;

/// The inputs not yet taken, in the order they are read (largest first).
pub(super) struct Queue {
    inner: Mutex<Waiting>,
}

struct Waiting {
    inputs: VecDeque<Input>,
    /// Their bytes, in all.
    bytes: u64,
}

impl Queue {
    pub fn new(inputs: Vec<Input>) -> Queue {
        let bytes = inputs.iter().map(|i| i.len).sum();
        Queue {
            inner: Mutex::new(Waiting {
                inputs: inputs.into(),
                bytes,
            }),
        }
    }

    /// The next input, and how many threads should read it when there
    /// are `threads` workers (one per core): 1 (the worker alone) or
    /// `threads`.
    pub fn next(&self, threads: usize) -> Option<(Input, usize)> {
        let mut w = self.inner.lock().expect("queue");
        let input = w.inputs.pop_front()?;
        w.bytes -= input.len;
        let others = threads.saturating_sub(1) as u64;
        let alone = w.inputs.len() as u64 >= others && w.bytes >= input.len.saturating_mul(others);
        Some((input, if alone { 1 } else { threads }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hunt::inputs::InputKind;

    fn input(len: u64) -> Input {
        Input {
            path: format!("{len}.evtx").into(),
            kind: InputKind::Evtx,
            len,
        }
    }

    fn plan(sizes: &[u64], threads: usize) -> Vec<(u64, usize)> {
        let q = Queue::new(sizes.iter().map(|&s| input(s)).collect());
        std::iter::from_fn(|| q.next(threads))
            .map(|(i, t)| (i.len, t))
            .collect()
    }

    #[test]
    fn small_files_are_read_alone_until_the_last() {
        assert_eq!(
            plan(&[3, 2, 2, 1, 1], 2),
            [(3, 1), (2, 1), (2, 1), (1, 1), (1, 2)]
        );
    }

    #[test]
    fn a_file_larger_than_the_rest_uses_the_pool() {
        assert_eq!(plan(&[100, 2, 1], 2), [(100, 2), (2, 2), (1, 2)]);
    }

    #[test]
    fn a_single_thread_reads_every_file_alone() {
        assert_eq!(plan(&[5, 1], 1), [(5, 1), (1, 1)]);
    }

    #[test]
    fn more_cores_need_more_left_for_the_others() {
        // Four workers: the three others need three files and thrice this
        // one's bytes left.
        assert_eq!(
            plan(&[4, 4, 4, 4, 1, 1], 4),
            [(4, 1), (4, 4), (4, 4), (4, 4), (1, 4), (1, 4)]
        );
    }
}
