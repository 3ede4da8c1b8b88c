//! `kill -9` in the middle of sustained writes loses no acknowledged
//! record. The test runs itself as the writer: the child process appends
//! from four threads and prints each acknowledged sequence number; the
//! parent kills it with SIGKILL part way, reopens the log and checks every
//! acknowledged record is there, intact.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use vigil_store::wal::{Wal, WalConfig};

fn payload(tag: u64) -> Vec<u8> {
    format!("record-{tag}-{}", "y".repeat((tag % 97) as usize)).into_bytes()
}

#[test]
fn writer_child() {
    let Some(dir) = std::env::var_os("VIGIL_WAL_CRASH_DIR") else {
        return;
    };
    let (wal, _) = Wal::open(
        std::path::Path::new(&dir),
        WalConfig {
            segment_bytes: 256 << 10,
        },
    )
    .unwrap();
    let wal = std::sync::Arc::new(wal);
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let tags: Vec<u64> = (0..5).map(|k| t * 1_000_000_000 + i * 5 + k).collect();
                    let batch: Vec<Vec<u8>> = tags.iter().map(|&g| payload(g)).collect();
                    let first = wal.append(&batch).unwrap();
                    // Acknowledged: seq and what it holds.
                    for (k, g) in tags.iter().enumerate() {
                        println!("ack {} {g}", first + k as u64);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn kill_9_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "writer_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("VIGIL_WAL_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let mut parts = line.split_whitespace();
        if parts.next() != Some("ack") {
            continue;
        }
        let seq: u64 = parts.next().unwrap().parse().unwrap();
        let tag: u64 = parts.next().unwrap().parse().unwrap();
        acked.push((seq, tag));
        if acked.len() >= 20_000 {
            // SIGKILL, mid-stream: the writers are still appending.
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(
        acked.len() >= 20_000,
        "child stopped early after {}",
        acked.len()
    );
    let (wal, recovery) = Wal::open(
        dir.path(),
        WalConfig {
            segment_bytes: 256 << 10,
        },
    )
    .unwrap();
    let records: std::collections::HashMap<u64, Vec<u8>> =
        wal.read_from(1).unwrap().into_iter().collect();
    assert!(records.len() as u64 == recovery.records);
    for (seq, tag) in &acked {
        assert_eq!(
            records.get(seq),
            Some(&payload(*tag)),
            "acknowledged record {seq} lost or damaged"
        );
    }
    // The log goes on after the crash.
    let next = wal.next_seq();
    assert_eq!(wal.append(&[b"after".to_vec()]).unwrap(), next);
}
