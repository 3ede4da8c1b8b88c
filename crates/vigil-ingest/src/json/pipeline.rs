//! Jobs run on worker threads, results handed on in order: how a large
//! JSON input is read on every core (see [`super::read_json_par`]).

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Mutex;

/// Runs `run` over the jobs `next_job` gives, on `threads` worker threads,
/// and hands each result to `on_out` on this thread, in job order. At
/// most two jobs per worker are in flight, so memory stays bounded and
/// producing, running and handing on overlap. With one thread, or a
/// single job, nothing is started and all runs here.
///
/// A `next_job` error stops the feeding; the jobs already given are run
/// and handed on, then the error is returned.
pub(super) fn in_order<J: Send, U: Send, E>(
    threads: usize,
    mut next_job: impl FnMut() -> Result<Option<J>, E>,
    run: impl Fn(J) -> U + Sync,
    mut on_out: impl FnMut(U),
) -> Result<(), E> {
    let Some(first) = next_job()? else {
        return Ok(());
    };
    let second = if threads > 1 { next_job()? } else { None };
    let Some(second) = second else {
        on_out(run(first));
        while let Some(job) = next_job()? {
            on_out(run(job));
        }
        return Ok(());
    };
    let in_flight_max = (threads * 2) as u64;
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, J)>(threads * 2);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, U)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let (job_rx, run) = (&job_rx, &run);
            scope.spawn(move || loop {
                let job = job_rx
                    .lock()
                    .map_err(|_| ())
                    .and_then(|rx| rx.recv().map_err(|_| ()));
                let Ok((seq, job)) = job else { return };
                if done_tx.send((seq, run(job))).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        let mut waiting = BTreeMap::new();
        let (mut sent, mut handed_on) = (0u64, 0u64);
        let mut pending = vec![second, first];
        let mut error = None;
        loop {
            while sent - handed_on < in_flight_max {
                let job = match pending.pop() {
                    Some(job) => job,
                    None if error.is_some() => break,
                    None => match next_job() {
                        Ok(Some(job)) => job,
                        Ok(None) => break,
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    },
                };
                if job_tx.send((sent, job)).is_err() {
                    break;
                }
                sent += 1;
            }
            if handed_on == sent {
                break;
            }
            let Ok((seq, out)) = done_rx.recv() else {
                break;
            };
            waiting.insert(seq, out);
            while let Some(out) = waiting.remove(&handed_on) {
                on_out(out);
                handed_on += 1;
            }
        }
        drop(job_tx);
        error.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_in_job_order_and_errors_after_what_came_before() {
        for threads in 1..4 {
            let mut jobs = 0..100u32;
            let mut out = Vec::new();
            let r: Result<(), &str> = in_order(
                threads,
                || Ok(jobs.next()),
                |j| {
                    // Later jobs finish first.
                    std::thread::sleep(std::time::Duration::from_micros(u64::from(100 - j)));
                    j * 2
                },
                |u| out.push(u),
            );
            assert!(r.is_ok());
            assert_eq!(out, (0..100).map(|j| j * 2).collect::<Vec<_>>());

            let mut n = 0;
            let mut out = Vec::new();
            let r = in_order(
                threads,
                || {
                    n += 1;
                    if n > 10 {
                        Err("disk gone")
                    } else {
                        Ok(Some(n))
                    }
                },
                |j| j,
                |u| out.push(u),
            );
            assert_eq!(r, Err("disk gone"));
            assert_eq!(out, (1..=10).collect::<Vec<_>>());
        }
    }
}
