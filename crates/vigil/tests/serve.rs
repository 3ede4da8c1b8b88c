//! `vigil serve` as a process: `kill -9` in the middle of sustained
//! ingest loses none of the events whose acknowledgement the sender got.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn vigil_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

/// Starts the server; returns it and its address (read from its log).
/// The caller kills and waits for it.
#[allow(clippy::zombie_processes)]
fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = vigil_cmd()
        .args(["serve", "--config"])
        .arg(dir.join("vigil.toml"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        if let Some(addr) = line.trim().strip_prefix("vigil: listening on http://") {
            let addr = addr.to_string();
            // Keep draining its log so it never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = String::new();
                let _ = err.read_to_string(&mut sink);
            });
            return (child, addr);
        }
    }
}

fn post(addr: &str, path: &str, token: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n")?.1.to_string()))
}

fn get(addr: &str, path: &str, token: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_string())
}

#[test]
fn kill_9_during_sustained_bulk_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("rules")).unwrap();
    std::fs::write(
        d.join("rules/all.yml"),
        "title: every test event\nid: all-events\nlogsource: {product: test}\ndetection:\n  sel: {seq|exists: true}\n  condition: sel\nlevel: low\n",
    )
    .unwrap();
    std::fs::write(
        d.join("vigil.toml"),
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\nrules = [{:?}]\nalert_group_field = \"seq\"\n",
            d.join("data"),
            d.join("rules")
        ),
    )
    .unwrap();
    let out = vigil_cmd()
        .args(["tokens", "create", "load", "--role", "admin", "--data-dir"])
        .arg(d.join("data"))
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("vgl_"), "{token}");

    let (mut server, addr) = start(d);
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acked, stop, addr, token) = (acked.clone(), stop.clone(), addr.clone(), token.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let first = seq;
                let mut body = String::new();
                for _ in 0..50 {
                    body.push_str(&format!(
                        "{{\"index\":{{}}}}\n{{\"seq\":\"{seq}\",\"msg\":\"load\"}}\n"
                    ));
                    seq += 1;
                }
                match post(&addr, "/_bulk", &token, &body) {
                    Some((200, resp)) => {
                        let r: serde_json::Value = serde_json::from_str(&resp).unwrap();
                        for (i, item) in r["items"].as_array().unwrap().iter().enumerate() {
                            if item["index"]["status"] == 201 {
                                acked.lock().unwrap().push(first + i as u64);
                            }
                        }
                    }
                    // Refused (429) or the server is gone: nothing acked.
                    _ => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        })
    };
    // Let load build up, then kill -9 while requests are in flight.
    while acked.lock().unwrap().len() < 5_000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    let acked = acked.lock().unwrap().clone();

    let (mut server, addr) = start(d);
    // Every acknowledged event ends up detected: one alert per seq.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        seen.clear();
        let mut offset = 0;
        loop {
            let body = get(
                &addr,
                &format!("/api/v1/alerts?limit=1000&offset={offset}&sort=id"),
                &token,
            )
            .unwrap();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let page = v["alerts"].as_array().unwrap();
            for a in page {
                seen.insert(a["group"].as_str().unwrap().parse::<u64>().unwrap());
            }
            if page.len() < 1000 {
                break;
            }
            offset += 1000;
        }
        if acked.iter().all(|s| seen.contains(s)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server.kill().unwrap();
    let lost: Vec<&u64> = acked.iter().filter(|s| !seen.contains(s)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(acked.len() >= 5_000);
}
