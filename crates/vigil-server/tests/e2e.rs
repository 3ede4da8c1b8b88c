//! End-to-end tests over real sockets: a server on a loopback port, a
//! plain HTTP/1.1 client, the database and log in a temporary directory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use vigil_server::auth::Role;
use vigil_server::db::Db;
use vigil_server::{app, AppState, Config, ROUTES};

struct Server {
    addr: SocketAddr,
    admin: String,
    state: AppState,
    _rt: tokio::runtime::Runtime,
}

const RULE: &str = "title: Logon failure admin\nid: rule-4625\nlevel: medium\ntags: [attack.credential-access]\nlogsource: {product: windows, service: security}\ndetection:\n  sel: {EventID: 4625, TargetUserName|startswith: adm}\n  condition: sel\n";

fn start(dir: &Path) -> Server {
    start_with(dir, Vec::new()).0
}

const SYSLOG_RULE: &str = "title: su to root failed\nid: rule-su\nlevel: high\nlogsource: {product: linux}\ndetection:\n  keywords: [\"'su root' failed\"]\n  condition: keywords\n";

fn start_with(
    dir: &Path,
    syslog: Vec<vigil_server::config::SyslogListener>,
) -> (Server, Vec<SocketAddr>) {
    start_full(dir, syslog, 60)
}

fn start_full(
    dir: &Path,
    syslog: Vec<vigil_server::config::SyslogListener>,
    lateness_secs: u64,
) -> (Server, Vec<SocketAddr>) {
    start_config(dir, syslog, |c| c.correlation_lateness_secs = lateness_secs)
}

fn start_config(
    dir: &Path,
    syslog: Vec<vigil_server::config::SyslogListener>,
    tweak: impl FnOnce(&mut Config),
) -> (Server, Vec<SocketAddr>) {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("r.yml"), RULE).unwrap();
    std::fs::write(rules.join("su.yml"), SYSLOG_RULE).unwrap();
    let mut config = Config {
        data_dir: dir.join("data"),
        rules: vec![rules],
        syslog: syslog.clone(),
        ..Config::default()
    };
    tweak(&mut config);
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let db = Arc::new(Db::open(&config.data_dir.join("vigil.db")).unwrap());
    let _ = db.ensure_admin().unwrap();
    let admin = db.create_token("test-admin", Role::Admin).unwrap();
    let state = AppState::start(config, db).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(state.clone());
    rt.spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let syslog_addrs = rt
        .block_on(vigil_server::syslog::spawn_all(&syslog, state.clone()))
        .unwrap();
    (
        Server {
            addr,
            admin,
            state,
            _rt: rt,
        },
        syslog_addrs,
    )
}

/// Sends one request; returns status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
    extra: &[(&str, &str)],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    // Undo chunked encoding, if any.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body.as_str();
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body
    };
    (status, body)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("condition not met in 5 s");
}

/// Posts NDJSON events to `/api/v1/events` as the admin.
fn post_events(s: &Server, body: &str) -> (u16, String) {
    http(
        s.addr,
        "POST",
        "/api/v1/events",
        Some(&bearer(&s.admin)),
        body.as_bytes(),
        &[],
    )
}

fn winlogbeat(user: &str, host: &str) -> String {
    format!("{{\"@timestamp\":\"2026-11-20T10:01:00.000Z\",\"winlog\":{{\"channel\":\"Security\",\"event_id\":4625,\"computer_name\":\"{host}\",\"event_data\":{{\"TargetUserName\":\"{user}\"}}}}}}")
}

fn alerts(s: &Server, query: &str) -> serde_json::Value {
    let (st, body) = http(
        s.addr,
        "GET",
        &format!("/api/v1/alerts{query}"),
        Some(&bearer(&s.admin)),
        b"",
        &[],
    );
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn bulk_from_a_shipper_raises_an_alert_and_folds_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let ingest = s.state_token(Role::Ingest);
    let body = format!(
        "{{\"index\":{{\"_index\":\"winlogbeat-8\"}}}}\n{}\n{{\"create\":{{}}}}\n{}\n{{\"index\":{{}}}}\n{}\n",
        winlogbeat("admin_jo", "dc01"),
        winlogbeat("admin_jo", "dc01"),
        winlogbeat("bob", "dc01")
    );
    let (st, resp) = http(
        s.addr,
        "POST",
        "/_bulk",
        Some(&bearer(&ingest)),
        body.as_bytes(),
        &[("Content-Type", "application/x-ndjson")],
    );
    assert_eq!(st, 200, "{resp}");
    let r: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(r["errors"], false);
    assert_eq!(r["items"].as_array().unwrap().len(), 3);
    assert_eq!(r["items"][1]["create"]["status"], 201);
    wait_for(|| alerts(&s, "")["total"] == 1 && alerts(&s, "")["alerts"][0]["count"] == 2);
    let a = &alerts(&s, "")["alerts"][0];
    assert_eq!(a["rule_id"], "rule-4625");
    assert_eq!(a["group"], "dc01");
    assert_eq!(a["status"], "new");
    assert_eq!(
        a["matched_fields"],
        serde_json::json!(["EventID", "TargetUserName"])
    );
    // Filters and paging.
    assert_eq!(alerts(&s, "?status=closed")["total"], 0);
    // A rule can group its alerts by another field.
    std::fs::write(
        dir.path().join("rules/by_user.yml"),
        RULE.replace("rule-4625", "rule-by-user") + "vigil:\n  alert_group_by: TargetUserName\n",
    )
    .unwrap();
    http(
        s.addr,
        "POST",
        "/api/v1/rules/reload",
        Some(&bearer(&s.admin)),
        b"",
        &[],
    );
    post_events(&s, &winlogbeat("admin_al", "dc01"));
    wait_for(|| alerts(&s, "?rule=rule-by-user")["total"] == 1);
    assert_eq!(
        alerts(&s, "?rule=rule-by-user")["alerts"][0]["group"],
        "admin_al"
    );
    assert_eq!(
        alerts(&s, "?host=dc01&level=medium&limit=1")["alerts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (st, _) = http(
        s.addr,
        "GET",
        "/api/v1/alerts?sort=bogus",
        Some(&bearer(&s.admin)),
        b"",
        &[],
    );
    assert_eq!(st, 400);
}

#[test]
fn gzip_bulk_and_per_item_errors() {
    use flate2::write::GzEncoder;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let body = format!(
        "{{\"index\":{{}}}}\n{}\n{{\"index\":{{}}}}\nnot json\n{{\"delete\":{{\"_id\":\"1\"}}}}\n",
        winlogbeat("adm1", "h")
    );
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(body.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let (st, resp) = http(
        s.addr,
        "POST",
        "/idx/_bulk",
        Some(&bearer(&s.admin)),
        &gz,
        &[("Content-Encoding", "gzip")],
    );
    assert_eq!(st, 200, "{resp}");
    let r: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(r["errors"], true);
    let statuses: Vec<i64> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i.as_object().unwrap().values().next().unwrap()["status"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(statuses, vec![201, 400, 400]);
    assert_eq!(r["items"][0]["index"]["_index"], "idx");
    wait_for(|| alerts(&s, "")["total"] == 1);
}

#[test]
fn hec_and_events_api() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let t = s.state_token(Role::Ingest);
    let hec = format!("{{\"time\": 1700000000, \"host\": \"dc02\", \"event\": {}}}{{\"event\": \"plain text line\"}}", winlogbeat("adm2", "dc02"));
    let (st, resp) = http(
        s.addr,
        "POST",
        "/services/collector/event",
        Some(&format!("Splunk {t}")),
        hec.as_bytes(),
        &[],
    );
    assert_eq!(
        (st, resp.as_str()),
        (200, "{\"text\":\"Success\",\"code\":0}")
    );
    let (st, resp) = http(
        s.addr,
        "POST",
        "/api/v1/events",
        Some(&bearer(&t)),
        format!("{}\n{{broken\n", winlogbeat("adm3", "dc03")).as_bytes(),
        &[],
    );
    assert_eq!(st, 200);
    let r: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(r["accepted"], 1);
    assert_eq!(r["rejected"][0]["line"], 2);
    let (st, _) = http(
        s.addr,
        "POST",
        "/api/v1/events",
        Some(&bearer(&t)),
        b"[{\"a\":1}, 2]",
        &[],
    );
    assert_eq!(st, 200);
    wait_for(|| alerts(&s, "")["total"] == 2);
}

#[test]
fn triage_comments_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    post_events(&s, &winlogbeat("adm", "h1"));
    wait_for(|| alerts(&s, "")["total"] == 1);
    let id = alerts(&s, "")["alerts"][0]["id"].as_i64().unwrap();
    let analyst = s.state_token(Role::Analyst);
    let path = format!("/api/v1/alerts/{id}");
    let (st, body) = http(
        s.addr,
        "PATCH",
        &path,
        Some(&bearer(&analyst)),
        br#"{"status": "closed"}"#,
        &[],
    );
    assert_eq!(st, 400, "closing needs a resolution: {body}");
    let (st, _) = http(
        s.addr,
        "PATCH",
        &path,
        Some(&bearer(&analyst)),
        br#"{"status": "acknowledged", "assignee": "jo"}"#,
        &[],
    );
    assert_eq!(st, 200);
    let (st, body) = http(
        s.addr,
        "PATCH",
        &path,
        Some(&bearer(&analyst)),
        br#"{"status": "closed", "resolution": "false_positive"}"#,
        &[],
    );
    assert_eq!(st, 200, "{body}");
    let (st, _) = http(
        s.addr,
        "POST",
        &format!("{path}/comments"),
        Some(&bearer(&analyst)),
        br#"{"text": "service account, known"}"#,
        &[],
    );
    assert_eq!(st, 201);
    let (st, body) = http(s.addr, "GET", &path, Some(&bearer(&analyst)), b"", &[]);
    assert_eq!(st, 200);
    let one: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["alert"]["status"], "closed");
    assert_eq!(one["alert"]["resolution"], "false_positive");
    assert_eq!(one["alert"]["assignee"], "jo");
    assert_eq!(one["comments"][0]["text"], "service account, known");
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    // The event keeps how it arrived.
    let receipt = &one["events"][0]["_vigil"];
    assert_eq!(receipt["listener"], "api");
    assert_eq!(receipt["tenant"], "default");
    assert!(
        receipt["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{receipt}"
    );
    assert!(receipt["received"].as_str().unwrap().ends_with('Z'));
    assert_eq!(one["events"][0]["winlog"]["event_id"], 4625);
    let (st, body) = http(
        s.addr,
        "GET",
        "/api/v1/audit",
        Some(&bearer(&s.admin)),
        b"",
        &[],
    );
    assert_eq!(st, 200);
    let actions: Vec<String> = serde_json::from_str::<serde_json::Value>(&body).unwrap()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "alert.update").count(), 2);
    assert!(actions.contains(&"alert.comment".to_string()));
    // A closed alert does not absorb new matches: a new one opens.
    post_events(&s, &winlogbeat("adm", "h1"));
    wait_for(|| alerts(&s, "")["total"] == 2);
}

/// Every route refuses a request without credentials (but /healthz), and
/// each role is refused where it has no business.
#[test]
fn every_route_is_authenticated_and_roles_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let tokens = [
        (Role::Ingest, s.state_token(Role::Ingest)),
        (Role::Viewer, s.state_token(Role::Viewer)),
        (Role::Analyst, s.state_token(Role::Analyst)),
    ];
    for r in ROUTES {
        let path = r.path.replace("{index}", "x").replace("{id}", "1");
        let (st, _) = http(s.addr, r.method, &path, None, b"", &[]);
        match r.need {
            None => assert_eq!(st, 200, "{} {}", r.method, r.path),
            Some(need) => {
                assert_eq!(st, 401, "{} {} without credentials", r.method, r.path);
                let (st, _) = http(
                    s.addr,
                    r.method,
                    &path,
                    Some("Bearer vgl_nope_nope"),
                    b"",
                    &[],
                );
                assert_eq!(st, 401, "{} {} with a bad token", r.method, r.path);
                for (role, t) in &tokens {
                    let (st, _) = http(s.addr, r.method, &path, Some(&bearer(t)), b"", &[]);
                    if role.allows(need) {
                        assert_ne!(st, 401, "{} {} as {role:?}", r.method, r.path);
                        assert_ne!(st, 403, "{} {} as {role:?}", r.method, r.path);
                    } else {
                        assert_eq!(st, 403, "{} {} as {role:?}", r.method, r.path);
                    }
                }
            }
        }
    }
    // Basic auth with the first admin's password works; a wrong one not.
    let (st, _) = http(
        s.addr,
        "GET",
        "/api/v1/alerts",
        Some("Basic YWRtaW46d3Jvbmc="),
        b"",
        &[],
    );
    assert_eq!(st, 401);
}

/// A restart keeps alerts, and events stored but not yet detected (here
/// written to the log while no server ran) are detected on start.
#[test]
fn restart_keeps_alerts_and_detects_unprocessed_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = start(dir.path());
        post_events(&s, &winlogbeat("adm", "h1"));
        wait_for(|| alerts(&s, "")["total"] == 1);
        s.state.shutdown();
    }
    {
        let (wal, _) =
            vigil_store::wal::Wal::open(&dir.path().join("data/wal"), Default::default()).unwrap();
        let rec = format!(
            "{{\"t\": 0, \"l\": \"api\", \"p\": \"test\"}}\n{}",
            winlogbeat("adm", "h2")
        );
        wal.append(&[rec.into_bytes()]).unwrap();
    }
    let s = start(dir.path());
    wait_for(|| alerts(&s, "")["total"] == 2);
    assert_eq!(alerts(&s, "?host=h1")["alerts"][0]["count"], 1);
}

#[test]
fn openapi_lists_every_route() {
    let doc = vigil_server::openapi_document();
    for r in ROUTES {
        assert!(
            doc["paths"][r.path][r.method.to_ascii_lowercase()].is_object(),
            "{} {}",
            r.method,
            r.path
        );
    }
}

impl Server {
    fn state_token(&self, role: Role) -> String {
        // Tokens are created through the database, as `vigil tokens create` does.
        let db = Db::open(&self.state_db_path()).unwrap();
        db.create_token("test", role).unwrap()
    }

    fn state_db_path(&self) -> std::path::PathBuf {
        self.state.data_dir().join("vigil.db")
    }
}

fn listener(
    protocol: vigil_server::config::SyslogProtocol,
    tls: Option<(&Path, &Path)>,
) -> vigil_server::config::SyslogListener {
    vigil_server::config::SyslogListener {
        listen: "127.0.0.1:0".into(),
        protocol,
        tls_cert: tls.map(|t| t.0.to_path_buf()),
        tls_key: tls.map(|t| t.1.to_path_buf()),
        product: Some("linux".into()),
    }
}

#[test]
fn syslog_over_udp_tcp_and_tls_raises_alerts() {
    use vigil_server::config::SyslogProtocol::*;
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = ck.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (s, addrs) = start_with(
        dir.path(),
        vec![
            listener(Udp, None),
            listener(Tcp, None),
            listener(Tls, Some((&cert, &key))),
        ],
    );

    // UDP: one RFC 3164 datagram.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        b"<34>Oct 11 22:14:15 host-udp su[1]: 'su root' failed for lonvick",
        addrs[0],
    )
    .unwrap();
    wait_for(|| {
        alerts(&s, "?host=-")["total"].as_i64().unwrap_or(0) >= 1
            || alerts(&s, "?rule=rule-su")["total"] == 1
    });

    // TCP: newline framing and octet counting on one connection.
    let mut tcp = TcpStream::connect(addrs[1]).unwrap();
    let framed = "<34>1 2026-11-20T10:00:00Z host-tcp su 2 - - 'su root' failed (octet)";
    tcp.write_all(
        format!(
            "<34>Oct 11 22:14:16 host-tcp su: 'su root' failed (newline)\n{} {framed}",
            framed.len()
        )
        .as_bytes(),
    )
    .unwrap();
    drop(tcp);

    // TLS.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addrs[2]).await.unwrap();
        let mut tls = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"<34>Oct 11 22:14:17 host-tls su: 'su root' failed (tls)\n")
            .await
            .unwrap();
        tls.shutdown().await.unwrap();
    });
    // All four messages match; the rule's alerts group by host, and
    // syslog events have no `Computer`, so they fold into one alert.
    wait_for(|| alerts(&s, "?rule=rule-su")["alerts"][0]["count"] == 4);
    let (st, m) = http(s.addr, "GET", "/metrics", Some(&bearer(&s.admin)), b"", &[]);
    assert_eq!(st, 200);
    assert!(
        m.contains("vigil_events_received_total{source=\"syslog-udp\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("vigil_events_received_total{source=\"syslog-tcp\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("vigil_events_received_total{source=\"syslog-tls\"} 1"),
        "{m}"
    );
}

/// Rules: failures are visible, a rule can be switched off and on, and a
/// change on disk is picked up without a restart.
#[test]
fn rules_api_disable_and_reload_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    std::fs::write(
        dir.path().join("rules/broken.yml"),
        "title: b\nlogsource: {}\ndetection:\n  sel: {a|nope: 1}\n  condition: sel\n",
    )
    .unwrap();
    let (st, body) = http(
        s.addr,
        "POST",
        "/api/v1/rules/reload",
        Some(&bearer(&s.admin)),
        b"",
        &[],
    );
    assert_eq!(st, 200, "{body}");
    let (_, body) = http(
        s.addr,
        "GET",
        "/api/v1/rules",
        Some(&bearer(&s.admin)),
        b"",
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["loaded"], 2);
    assert!(
        v["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown modifier 'nope'"),
        "{v}"
    );
    // Off: no alert.
    let (st, _) = http(
        s.addr,
        "POST",
        "/api/v1/rules/rule-4625/disable",
        Some(&bearer(&s.admin)),
        b"",
        &[],
    );
    assert_eq!(st, 200);
    post_events(&s, &winlogbeat("adm", "h1"));
    wait_for(|| s.state.backlog() == 0);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(alerts(&s, "")["total"], 0);
    // On again.
    http(
        s.addr,
        "POST",
        "/api/v1/rules/rule-4625/enable",
        Some(&bearer(&s.admin)),
        b"",
        &[],
    );
    post_events(&s, &winlogbeat("adm", "h1"));
    wait_for(|| alerts(&s, "")["total"] == 1);
    // A new rule file is picked up by the watcher.
    std::fs::write(
        dir.path().join("rules/new.yml"),
        RULE.replace("rule-4625", "rule-new"),
    )
    .unwrap();
    wait_for(|| {
        let (_, body) = http(
            s.addr,
            "GET",
            "/api/v1/rules",
            Some(&bearer(&s.admin)),
            b"",
            &[],
        );
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["loaded"] == 3
    });
}

/// Correlation rules run live; their windows survive a restart; the base
/// rule's own matches are not alerts (`generate` is false).
#[test]
fn live_correlation_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let corr = "title: Brute force\nid: corr-brute\nlevel: high\ncorrelation:\n  type: event_count\n  rules: [logon_failed]\n  group-by: [TargetUserName]\n  timespan: 10m\n  condition: {gte: 3}\n---\ntitle: Logon failed\nid: base-failed\nname: logon_failed\nlogsource: {product: windows, service: security}\ndetection:\n  sel: {EventID: 4625}\n  condition: sel\n";
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/corr.yml"), corr).unwrap();
    let event = |user: &str, sec: u32| {
        format!("{{\"@timestamp\":\"2026-11-20T10:00:{sec:02}.000Z\",\"winlog\":{{\"channel\":\"Security\",\"event_id\":4625,\"computer_name\":\"dc9\",\"event_data\":{{\"TargetUserName\":\"{user}\"}}}}}}")
    };
    {
        let s = start_full(dir.path(), Vec::new(), 1).0;
        let body = format!(
            "{}\n{}\n{}\n",
            event("zoe", 1),
            event("zoe", 2),
            event("max", 3)
        );
        post_events(&s, &body);
        wait_for(|| s.state.backlog() == 0);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(alerts(&s, "?rule=corr-brute")["total"], 0);
        assert_eq!(
            alerts(&s, "?rule=base-failed")["total"],
            0,
            "generate: false"
        );
        s.state.shutdown();
    }
    let s = start_full(dir.path(), Vec::new(), 1).0;
    post_events(&s, &event("zoe", 4));
    wait_for(|| alerts(&s, "?rule=corr-brute")["total"] == 1);
    let a = &alerts(&s, "?rule=corr-brute")["alerts"][0];
    assert_eq!(a["level"], "high");
    assert_eq!(a["event"]["correlation_type"], "event_count");
    assert_eq!(a["event"]["group"]["TargetUserName"], "zoe");
    assert_eq!(a["event"]["value"], 3.0);
    assert_eq!(a["event"]["events"].as_array().unwrap().len(), 3);
}

/// When detection falls behind, ingest pushes back: 429 with Retry-After
/// for the events API, per-item 429 in `_bulk` (as Elasticsearch does);
/// nothing refused is stored, so a retry is safe.
#[test]
fn back_pressure_answers_429() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_config(dir.path(), Vec::new(), |c| c.max_backlog_events = 1).0;
    // Stop detection, so that what is stored stays behind.
    s.state.shutdown();
    let two = format!("{}\n{}\n", winlogbeat("adm", "h"), winlogbeat("adm", "h"));
    let (st, _) = post_events(&s, &two);
    assert_eq!(st, 200, "accepted while the backlog is within bounds");
    assert_eq!(s.state.backlog(), 2);
    let mut sock = TcpStream::connect(s.addr).unwrap();
    let body = winlogbeat("adm", "h");
    write!(sock, "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{body}", s.admin, body.len()).unwrap();
    let mut resp = String::new();
    sock.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 429"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("retry-after: 1"),
        "{resp}"
    );
    let bulk = format!("{{\"index\":{{}}}}\n{}\n", winlogbeat("adm", "h"));
    let (st, resp) = http(
        s.addr,
        "POST",
        "/_bulk",
        Some(&bearer(&s.admin)),
        bulk.as_bytes(),
        &[],
    );
    assert_eq!(st, 200);
    let r: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(r["errors"], true);
    assert_eq!(r["items"][0]["index"]["status"], 429);
    assert_eq!(s.state.backlog(), 2, "nothing refused was stored");
}
