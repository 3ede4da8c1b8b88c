//! The inputs waiting to be read, and how many threads read each.
//!
//! A worker reads a file's EVTX chunks (or JSON batches) itself when the
//! file is one chunk, or while the files still queued can keep every
//! other worker busy meanwhile, several times over: handing chunks to
//! the pool costs two thread switches each, for no parallelism when the
//! other cores have files of their own (nine EVTX files in ten are one
//! chunk; 1× corpus, 21 alternating runs: hunt 73.9 → 64.2 ms,
//! parse-only 41.3 → 35.2 ms). Any other file is split over the pool, so
//! that a large log among small ones does not keep one core busy while
//! the others wait (the corpus as one 22 MiB file among 64 small ones:
//! hunt 86.0 ms read alone, 61.1 split over the pool), nor two large
//! logs end with one of them read by one core alone.

use super::inputs::Input;
use std::collections::VecDeque;
use std::sync::Mutex;

/// An EVTX file of one chunk (with its header): the pool could not
/// split it.
const ONE_CHUNK: u64 = 4096 + 65536;

/// How many times its own size the files still queued must hold, for
/// each other worker, for a file to be read by one worker alone: the
/// others then stay busy well after it is done.
const MARGIN: u64 = 4;

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
        let alone = input.len <= ONE_CHUNK
            || (w.inputs.len() as u64 >= others
                && w.bytes >= input.len.saturating_mul(others * MARGIN));
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

    const MIB: u64 = 1 << 20;

    #[test]
    fn one_chunk_files_are_read_alone() {
        assert_eq!(
            plan(&[ONE_CHUNK, ONE_CHUNK, 4096], 2),
            [(ONE_CHUNK, 1), (ONE_CHUNK, 1), (4096, 1)]
        );
    }

    #[test]
    fn a_file_is_read_alone_while_four_times_it_is_left() {
        assert_eq!(
            plan(&[MIB, MIB, MIB, MIB, MIB, MIB], 2),
            [(MIB, 1), (MIB, 1), (MIB, 2), (MIB, 2), (MIB, 2), (MIB, 2)]
        );
    }

    #[test]
    fn a_large_file_among_small_ones_uses_the_pool() {
        assert_eq!(
            plan(&[100 * MIB, 2 * MIB, MIB], 2),
            [(100 * MIB, 2), (2 * MIB, 2), (MIB, 2)]
        );
    }

    #[test]
    fn two_large_files_both_use_the_pool() {
        assert_eq!(
            plan(&[500 * MIB, 400 * MIB], 2),
            [(500 * MIB, 2), (400 * MIB, 2)]
        );
    }

    #[test]
    fn a_single_thread_reads_every_file_alone() {
        assert_eq!(plan(&[5 * MIB, MIB], 1), [(5 * MIB, 1), (MIB, 1)]);
    }

    #[test]
    fn more_cores_need_more_left_for_the_others() {
        // Four workers: the three others need three files and twelve
        // times this one's bytes left.
        let mut sizes = vec![MIB; 14];
        sizes.insert(0, 2 * MIB);
        let p = plan(&sizes, 4);
        assert_eq!(p[0], (2 * MIB, 4));
        assert_eq!(p[1], (MIB, 1));
        assert_eq!(p[2], (MIB, 1));
        assert_eq!(p[3], (MIB, 4));
    }
}
