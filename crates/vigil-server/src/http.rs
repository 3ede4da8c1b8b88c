//! The HTTP API: ingest endpoints that shippers speak, the alert API,
//! rules, metrics, the OpenAPI document.

use crate::auth::{Authenticator, Need, Principal};
use crate::db::{AlertQuery, Db};
use crate::detect::{now_ns, Pipeline, Rules};
use crate::Config;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value as Json_};
use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use vigil_store::wal::{Wal, WalConfig};

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    db: Arc<Db>,
    auth: Authenticator,
    pipeline: Arc<Pipeline>,
    received: Mutex<HashMap<&'static str, (u64, u64)>>,
    rejected: AtomicU64,
    dropped: AtomicU64,
}

impl AppState {
    /// Opens the event log, loads rules, starts detection.
    ///
    /// # Errors
    /// The log cannot be opened (corruption is reported with its place),
    /// or rules cannot be read.
    pub fn start(config: Config, db: Arc<Db>) -> Result<AppState, String> {
        let (wal, recovery) = Wal::open(&config.data_dir.join("wal"), WalConfig::default())
            .map_err(|e| e.to_string())?;
        if recovery.truncated_bytes > 0 {
            eprintln!(
                "vigil: event log: cut {} bytes of a write interrupted by a crash (never acknowledged)",
                recovery.truncated_bytes
            );
        }
        let pipeline = Pipeline::start(&config, db.clone(), Arc::new(wal))?;
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                db,
                auth: Authenticator::default(),
                pipeline,
                received: Mutex::new(HashMap::new()),
                rejected: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// Stops detection after it has drained the log (bounded wait).
    pub fn shutdown(&self) {
        let p = &self.inner.pipeline;
        for _ in 0..100 {
            if p.backlog() == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        p.stop();
    }

    /// Events through detection so far, and p50/p99 event-to-alert
    /// latency in seconds (for benchmarks).
    pub fn detection_progress(&self) -> (u64, Option<(f64, f64)>) {
        let c = &self.inner.pipeline.counters;
        (
            c.events_detected.load(Ordering::Relaxed),
            c.latency_percentiles(),
        )
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.config.data_dir
    }

    /// Events not yet through detection.
    pub fn backlog(&self) -> u64 {
        self.inner.pipeline.backlog()
    }
}

/// An API error: a status and a message for the caller. Internal details
/// go to the server's log, not to the response.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({"error": self.1}))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"vigil\", Bearer".parse().expect("static"),
            );
        }
        if self.0 == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, "1".parse().expect("static"));
        }
        r
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    eprintln!("vigil: internal error: {e}");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
}

/// Checks the caller's credentials against what the route needs.
fn authorize(state: &AppState, headers: &HeaderMap, need: Need) -> Result<Principal, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let p = state
        .inner
        .auth
        .check(&state.inner.db, header)
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "authentication required".into()))?;
    if !p.role.allows(need) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("role '{}' may not do this", p.role.as_str()),
        ));
    }
    Ok(p)
}

/// One route: method, path, what it needs, what it does. The router and
/// the OpenAPI document are both built from this table.
pub struct RouteDoc {
    /// HTTP method.
    pub method: &'static str,
    /// Path (axum syntax).
    pub path: &'static str,
    /// Required permission; `None` for the health check alone.
    pub need: Option<Need>,
    /// Summary.
    pub summary: &'static str,
}

/// Every route of the API.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "GET",
        path: "/healthz",
        need: None,
        summary: "Liveness check (no authentication)",
    },
    RouteDoc {
        method: "GET",
        path: "/",
        need: Some(Need::Ingest),
        summary: "Elasticsearch-compatible cluster info (Beats/Logstash start-up probe)",
    },
    RouteDoc {
        method: "GET",
        path: "/_license",
        need: Some(Need::Ingest),
        summary: "Elasticsearch-compatible license probe",
    },
    RouteDoc {
        method: "POST",
        path: "/_bulk",
        need: Some(Need::Ingest),
        summary: "Elasticsearch bulk API: index/create actions, NDJSON, gzip; per-item results",
    },
    RouteDoc {
        method: "PUT",
        path: "/_bulk",
        need: Some(Need::Ingest),
        summary: "Elasticsearch bulk API (PUT, as the official clients send it)",
    },
    RouteDoc {
        method: "POST",
        path: "/{index}/_bulk",
        need: Some(Need::Ingest),
        summary: "Elasticsearch bulk API with a default index",
    },
    RouteDoc {
        method: "PUT",
        path: "/{index}/_bulk",
        need: Some(Need::Ingest),
        summary: "Elasticsearch bulk API with a default index (PUT)",
    },
    RouteDoc {
        method: "POST",
        path: "/services/collector/event",
        need: Some(Need::Ingest),
        summary: "Splunk HEC events",
    },
    RouteDoc {
        method: "POST",
        path: "/services/collector/raw",
        need: Some(Need::Ingest),
        summary: "Splunk HEC raw lines",
    },
    RouteDoc {
        method: "POST",
        path: "/api/v1/events",
        need: Some(Need::Ingest),
        summary: "Events as NDJSON or a JSON array",
    },
    RouteDoc {
        method: "GET",
        path: "/api/v1/alerts",
        need: Some(Need::Read),
        summary: "Alerts, filtered (status, level, rule, host, since, until), sorted and paged",
    },
    RouteDoc {
        method: "GET",
        path: "/api/v1/alerts/{id}",
        need: Some(Need::Read),
        summary: "One alert with its events and comments",
    },
    RouteDoc {
        method: "PATCH",
        path: "/api/v1/alerts/{id}",
        need: Some(Need::Triage),
        summary: "Change status (new, acknowledged, closed with a resolution) or assignee",
    },
    RouteDoc {
        method: "POST",
        path: "/api/v1/alerts/{id}/comments",
        need: Some(Need::Triage),
        summary: "Comment on an alert",
    },
    RouteDoc {
        method: "GET",
        path: "/api/v1/rules",
        need: Some(Need::Read),
        summary: "Rules loaded, and every rule that failed with its reason",
    },
    RouteDoc {
        method: "POST",
        path: "/api/v1/rules/reload",
        need: Some(Need::Admin),
        summary: "Reload rules from disk",
    },
    RouteDoc {
        method: "POST",
        path: "/api/v1/rules/{id}/enable",
        need: Some(Need::Admin),
        summary: "Switch a rule back on",
    },
    RouteDoc {
        method: "POST",
        path: "/api/v1/rules/{id}/disable",
        need: Some(Need::Admin),
        summary: "Switch a rule off (kept across restarts and reloads)",
    },
    RouteDoc {
        method: "GET",
        path: "/api/v1/audit",
        need: Some(Need::Admin),
        summary: "The audit log",
    },
    RouteDoc {
        method: "GET",
        path: "/metrics",
        need: Some(Need::Read),
        summary: "Prometheus metrics",
    },
    RouteDoc {
        method: "GET",
        path: "/api/openapi.json",
        need: Some(Need::Read),
        summary: "This API's OpenAPI document",
    },
];

/// The router.
pub fn app(state: AppState) -> Router {
    let limit = state.inner.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(es_info).head(es_info))
        .route("/_license", get(es_license))
        // The bulk API takes POST and PUT (the official Python client PUTs).
        .route("/_bulk", post(bulk).put(bulk))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .route("/services/collector/event", post(hec_event))
        .route("/services/collector", post(hec_event))
        .route("/services/collector/raw", post(hec_raw))
        .route("/api/v1/events", post(events))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert).patch(patch_alert))
        .route("/api/v1/alerts/{id}/comments", post(comment))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/rules/reload", post(reload))
        .route("/api/v1/rules/{id}/enable", post(enable_rule))
        .route("/api/v1/rules/{id}/disable", post(disable_rule))
        .route("/api/v1/audit", get(audit))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        // Beats and Logstash probe and install templates and policies on
        // start; they only need a success.
        .route(
            "/_template/{name}",
            get(ok_empty).put(ok_empty).head(ok_empty),
        )
        .route(
            "/_index_template/{name}",
            get(ok_empty).put(ok_empty).head(ok_empty),
        )
        .route("/_ilm/policy/{name}", get(ok_empty).put(ok_empty))
        .route("/_ingest/pipeline/{name}", get(ok_empty).put(ok_empty))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn ok_empty(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Json_>, ApiError> {
    authorize(&s, &headers, Need::Ingest)?;
    Ok(Json(json!({})))
}

async fn es_info(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&s, &headers, Need::Ingest)?;
    let info = json!({
        "name": "vigil", "cluster_name": "vigil", "cluster_uuid": "vigil",
        "version": {"number": "8.11.0", "build_flavor": "default", "build_type": "tar", "lucene_version": "9.8.0",
                     "minimum_wire_compatibility_version": "7.17.0", "minimum_index_compatibility_version": "7.0.0"},
        "tagline": "You Know, for Search"
    });
    Ok(([ELASTIC_PRODUCT], Json(info)).into_response())
}

/// The official Elasticsearch clients refuse a server without this header.
const ELASTIC_PRODUCT: (&str, &str) = ("x-elastic-product", "Elasticsearch");

async fn es_license(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Json_>, ApiError> {
    authorize(&s, &headers, Need::Ingest)?;
    Ok(Json(
        json!({"license": {"status": "active", "type": "basic", "uid": "vigil"}}),
    ))
}

/// The body, gunzipped when the request says so, within the size limit.
fn body_bytes(s: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, ApiError> {
    let gz = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gz {
        return Ok(body.to_vec());
    }
    let limit = s.inner.config.max_body_bytes as u64;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
    if out.len() as u64 > limit {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {limit} bytes once decompressed"),
        ));
    }
    Ok(out)
}

/// Stores events in the log; returns once they are durable. Blocks (it
/// waits for `fsync`), so async callers go through `block_in_place`.
fn store(
    s: &AppState,
    listener: &'static str,
    peer: &SocketAddr,
    docs: &[String],
    bytes: u64,
) -> Result<(), ApiError> {
    tokio::task::block_in_place(|| s.store_events(listener, &peer.to_string(), docs, bytes, None))
        .map_err(internal)
}

impl AppState {
    /// Appends events to the log (durably) and wakes detection.
    ///
    /// # Errors
    /// The log's write or sync failed: nothing of the batch may be
    /// acknowledged.
    pub fn store_events(
        &self,
        listener: &'static str,
        peer: &str,
        docs: &[String],
        bytes: u64,
        product: Option<&str>,
    ) -> Result<(), String> {
        if docs.is_empty() {
            return Ok(());
        }
        let t = now_ns();
        // A record is a one-line JSON header (receive time, listener,
        // peer, tenant, product), a newline, and the document exactly as
        // the sender wrote it: nothing is re-encoded on the way in.
        let header = serde_json::to_string(
            &json!({"t": t, "l": listener, "p": peer, "tenant": "default", "prod": product}),
        )
        .unwrap_or_default();
        let records: Vec<Vec<u8>> = docs
            .iter()
            .map(|d| {
                let mut r = Vec::with_capacity(header.len() + 1 + d.len());
                r.extend_from_slice(header.as_bytes());
                r.push(b'\n');
                r.extend_from_slice(d.as_bytes());
                r
            })
            .collect();
        self.inner
            .pipeline
            .wal
            .append(&records)
            .map_err(|e| e.to_string())?;
        self.inner.pipeline.notify();
        let mut rec = self
            .inner
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let e = rec.entry(listener).or_default();
        e.0 += docs.len() as u64;
        e.1 += bytes;
        Ok(())
    }

    /// Whether ingest should push back (detection is too far behind).
    pub fn overloaded(&self) -> bool {
        self.inner.pipeline.backlog() > self.inner.config.max_backlog_events
    }

    /// Counts events dropped at a UDP listener.
    pub fn count_dropped(&self, n: u64) {
        self.inner.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// The start of every ingest handler but `_bulk` (which answers 429 per
/// item): credentials, back-pressure, the body.
fn ingest_body(s: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, ApiError> {
    authorize(s, headers, Need::Ingest)?;
    if overloaded(s) {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "Vigil is behind on detection; retry".into(),
        ));
    }
    body_bytes(s, headers, body)
}

fn overloaded(s: &AppState) -> bool {
    s.overloaded()
}

async fn bulk(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    bulk_with(s, peer, headers, body, None).await
}

async fn bulk_index(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(index): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    bulk_with(s, peer, headers, body, Some(index)).await
}

async fn bulk_with(
    s: AppState,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Bytes,
    index: Option<String>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers, Need::Ingest)?;
    let started = std::time::Instant::now();
    let data = body_bytes(&s, &headers, &body)?;
    let text = String::from_utf8_lossy(&data);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    // (action, index, doc or the error for this item)
    let mut items: Vec<(String, String, Result<String, String>)> = Vec::new();
    while let Some(action_line) = lines.next() {
        let action: Json_ = match serde_json::from_str(action_line) {
            Ok(a) => a,
            Err(e) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("malformed action line: {e}"),
                ))
            }
        };
        let Some((kind, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "empty action line".into(),
            ));
        };
        let idx = meta
            .get("_index")
            .and_then(|i| i.as_str())
            .map(str::to_string)
            .or_else(|| index.clone())
            .unwrap_or_else(|| "default".into());
        match kind.as_str() {
            "index" | "create" => {
                let doc = lines.next().ok_or_else(|| {
                    ApiError(StatusCode::BAD_REQUEST, "action without a document".into())
                })?;
                // Checked without building a tree; stored as sent.
                let parsed = if !doc.trim_start().starts_with('{') {
                    Err("document is not a JSON object".to_string())
                } else {
                    serde_json::from_str::<serde::de::IgnoredAny>(doc)
                        .map(|_| doc.trim().to_string())
                        .map_err(|e| format!("document is not valid JSON: {e}"))
                };
                items.push((kind.clone(), idx, parsed));
            }
            "update" => {
                lines.next();
                items.push((
                    kind.clone(),
                    idx,
                    Err("update is not supported: Vigil keeps events as sent".into()),
                ));
            }
            "delete" => items.push((
                kind.clone(),
                idx,
                Err("delete is not supported: Vigil keeps events as sent".into()),
            )),
            other => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("unknown bulk action '{other}'"),
                ))
            }
        }
    }
    let busy = overloaded(&s);
    let docs: Vec<String> = if busy {
        Vec::new()
    } else {
        items
            .iter()
            .filter_map(|(_, _, d)| d.as_ref().ok().cloned())
            .collect()
    };
    store(&s, "bulk", &peer, &docs, data.len() as u64)?;
    // The response is written as text: a 1,000-item bulk answer built as
    // JSON values costs more than storing the events.
    let quote = |t: &str| serde_json::to_string(t).unwrap_or_else(|_| "\"\"".into());
    let mut errors = false;
    let mut rejected = 0u64;
    let mut list = String::with_capacity(items.len() * 170);
    for (i, (kind, idx, d)) in items.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        let body = match (d, busy) {
            (Ok(_), false) => format!(
                "{{\"_index\":{},\"_id\":null,\"_version\":1,\"result\":\"created\",\"status\":201,\"_shards\":{{\"total\":1,\"successful\":1,\"failed\":0}}}}",
                quote(idx)
            ),
            (Ok(_), true) => format!(
                "{{\"_index\":{},\"status\":429,\"error\":{{\"type\":\"es_rejected_execution_exception\",\"reason\":\"Vigil is behind on detection; retry\"}}}}",
                quote(idx)
            ),
            (Err(e), _) => format!(
                "{{\"_index\":{},\"status\":400,\"error\":{{\"type\":\"mapper_parsing_exception\",\"reason\":{}}}}}",
                quote(idx),
                quote(e)
            ),
        };
        if d.is_err() || busy {
            errors = true;
            rejected += 1;
        }
        list.push_str(&format!("{{{}:{body}}}", quote(kind)));
    }
    s.inner.rejected.fetch_add(rejected, Ordering::Relaxed);
    let text = format!(
        "{{\"took\":{},\"errors\":{errors},\"items\":[{list}]}}",
        started.elapsed().as_millis()
    );
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        [ELASTIC_PRODUCT],
        text,
    )
        .into_response())
}

async fn events(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let data = ingest_body(&s, &headers, &body)?;
    let text = String::from_utf8_lossy(&data);
    let mut docs = Vec::new();
    let mut rejected = Vec::new();
    if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Json_>(&text) {
            Ok(Json_::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    if item.is_object() {
                        docs.push(item);
                    } else {
                        rejected.push(json!({"item": i, "reason": "not a JSON object"}));
                    }
                }
            }
            Ok(_) | Err(_) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "body is not a JSON array of objects".into(),
                ))
            }
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Json_>(line) {
                Ok(d) if d.is_object() => docs.push(d),
                Ok(_) => rejected.push(json!({"line": i + 1, "reason": "not a JSON object"})),
                Err(e) => {
                    rejected.push(json!({"line": i + 1, "reason": format!("invalid JSON: {e}")}))
                }
            }
        }
    }
    let raw: Vec<String> = docs.iter().map(Json_::to_string).collect();
    store(&s, "api", &peer, &raw, data.len() as u64)?;
    s.inner
        .rejected
        .fetch_add(rejected.len() as u64, Ordering::Relaxed);
    let status = if docs.is_empty() && !rejected.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"accepted": docs.len(), "rejected": rejected})),
    )
        .into_response())
}

async fn hec_event(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let data = ingest_body(&s, &headers, &body)?;
    let mut docs = Vec::new();
    // HEC bodies are JSON objects one after another, not always newline
    // separated.
    for (i, item) in serde_json::Deserializer::from_slice(&data)
        .into_iter::<Json_>()
        .enumerate()
    {
        let item = item.map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("event {}: invalid JSON: {e}", i + 1),
            )
        })?;
        let mut doc = match item.get("event") {
            Some(Json_::Object(o)) => Json_::Object(o.clone()),
            Some(Json_::String(text)) => json!({"message": text}),
            Some(other) => json!({"message": other.to_string()}),
            None => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("event {}: no 'event' field", i + 1),
                ))
            }
        };
        if let Some(o) = doc.as_object_mut() {
            for k in ["host", "source", "sourcetype", "index", "time"] {
                if let Some(v) = item.get(k) {
                    o.entry(k.to_string()).or_insert(v.clone());
                }
            }
            if let Some(Json_::Object(fields)) = item.get("fields") {
                for (k, v) in fields {
                    o.entry(k.clone()).or_insert(v.clone());
                }
            }
        }
        docs.push(doc);
    }
    let raw: Vec<String> = docs.iter().map(Json_::to_string).collect();
    store(&s, "hec", &peer, &raw, data.len() as u64)?;
    Ok(Json(json!({"text": "Success", "code": 0})).into_response())
}

async fn hec_raw(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let data = ingest_body(&s, &headers, &body)?;
    let docs: Vec<Json_> = String::from_utf8_lossy(&data)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| json!({"message": l}))
        .collect();
    let raw: Vec<String> = docs.iter().map(Json_::to_string).collect();
    store(&s, "hec", &peer, &raw, data.len() as u64)?;
    Ok(Json(json!({"text": "Success", "code": 0})).into_response())
}

async fn list_alerts(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AlertQuery>,
) -> Result<Json<Json_>, ApiError> {
    authorize(&s, &headers, Need::Read)?;
    let (alerts, total) = s
        .inner
        .db
        .alerts(&q)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(json!({"total": total, "alerts": alerts})))
}

async fn get_alert(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Json_>, ApiError> {
    authorize(&s, &headers, Need::Read)?;
    match s.inner.db.alert(id).map_err(internal)? {
        Some((alert, events, comments)) => Ok(Json(
            json!({"alert": alert, "events": events, "comments": comments}),
        )),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no alert {id}"))),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertPatch {
    status: Option<String>,
    resolution: Option<String>,
    assignee: Option<String>,
}

async fn patch_alert(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let p = authorize(&s, &headers, Need::Triage)?;
    let patch: AlertPatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))?;
    if let Some(st) = &patch.status {
        if !matches!(st.as_str(), "new" | "acknowledged" | "closed") {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("status '{st}' is not new, acknowledged or closed"),
            ));
        }
        if st == "closed" && patch.resolution.is_none() {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "closing an alert needs a resolution: true_positive, false_positive or benign"
                    .into(),
            ));
        }
    }
    if let Some(r) = &patch.resolution {
        if !matches!(r.as_str(), "true_positive" | "false_positive" | "benign") {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("resolution '{r}' is not true_positive, false_positive or benign"),
            ));
        }
        if patch.status.as_deref() != Some("closed") {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "a resolution goes with status closed".into(),
            ));
        }
    }
    let found = s
        .inner
        .db
        .update_alert(
            id,
            &p.name,
            patch.status.as_deref(),
            patch.resolution.as_deref(),
            patch.assignee.as_deref(),
        )
        .map_err(internal)?;
    if !found {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no alert {id}")));
    }
    let (alert, _, _) = s
        .inner
        .db
        .alert(id)
        .map_err(internal)?
        .ok_or_else(|| internal("alert vanished"))?;
    Ok(Json(json!({"alert": alert})))
}

async fn comment(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = authorize(&s, &headers, Need::Triage)?;
    let v: Json_ = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))?;
    let text = v
        .get("text")
        .and_then(|t| t.as_str())
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "body needs a non-empty 'text'".into(),
            )
        })?;
    if !s.inner.db.comment(id, &p.name, text).map_err(internal)? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no alert {id}")));
    }
    Ok((StatusCode::CREATED, Json(json!({"ok": true}))).into_response())
}

async fn rules(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Json_>, ApiError> {
    authorize(&s, &headers, Need::Read)?;
    let rules = s
        .inner
        .pipeline
        .rules
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let failed: Vec<Json_> = rules
        .errors
        .iter()
        .map(|e| json!({"path": e.path.as_deref(), "line": e.line, "field": e.field, "reason": e.reason}))
        .collect();
    Ok(Json(json!({"loaded": rules.set.len(), "failed": failed})))
}

async fn enable_rule(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    set_rule(s, headers, id, true).await
}

async fn disable_rule(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    set_rule(s, headers, id, false).await
}

async fn set_rule(
    s: AppState,
    headers: HeaderMap,
    id: String,
    enabled: bool,
) -> Result<Json<Json_>, ApiError> {
    let p = authorize(&s, &headers, Need::Admin)?;
    s.inner
        .db
        .set_rule_enabled(&id, enabled, &p.name)
        .map_err(internal)?;
    let reloaded = reload_rules(&s).await?;
    Ok(Json(
        json!({"id": id, "enabled": enabled, "loaded": reloaded.0, "failed": reloaded.1}),
    ))
}

/// Reloads rules from disk, minus the disabled ones; (loaded, failed).
async fn reload_rules(s: &AppState) -> Result<(usize, usize), ApiError> {
    let config = s.inner.config.clone();
    let disabled = s.inner.db.disabled_rules().map_err(internal)?;
    let rules = tokio::task::spawn_blocking(move || Rules::load_without(&config, &disabled))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let counts = (rules.set.len(), rules.errors.len());
    s.inner.pipeline.replace_rules(rules);
    Ok(counts)
}

async fn reload(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Json_>, ApiError> {
    let p = authorize(&s, &headers, Need::Admin)?;
    let (loaded, failed) = reload_rules(&s).await?;
    s.inner.db.audit(
        &p.name,
        "rules.reload",
        "",
        &format!("loaded {loaded}, failed {failed}"),
    );
    Ok(Json(json!({"loaded": loaded, "failed": failed})))
}

async fn audit(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Json_>, ApiError> {
    authorize(&s, &headers, Need::Admin)?;
    Ok(Json(
        json!({"entries": s.inner.db.audit_log(1000).map_err(internal)?}),
    ))
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&s, &headers, Need::Read)?;
    let i = &s.inner;
    let c = &i.pipeline.counters;
    let mut out = String::new();
    out.push_str("# TYPE vigil_events_received_total counter\n");
    for (src, (n, _)) in i.received.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        out.push_str(&format!(
            "vigil_events_received_total{{source=\"{src}\"}} {n}\n"
        ));
    }
    out.push_str("# TYPE vigil_bytes_received_total counter\n");
    for (src, (_, b)) in i.received.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        out.push_str(&format!(
            "vigil_bytes_received_total{{source=\"{src}\"}} {b}\n"
        ));
    }
    let samples = c.latency_samples.load(Ordering::Relaxed);
    let rules = i
        .pipeline
        .rules
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    out.push_str(&format!(
        "# TYPE vigil_events_rejected_total counter\nvigil_events_rejected_total {}\n\
         # TYPE vigil_events_dropped_total counter\nvigil_events_dropped_total {}\n\
         # TYPE vigil_backlog_events gauge\nvigil_backlog_events {}\n\
         # TYPE vigil_events_detected_total counter\nvigil_events_detected_total {}\n\
         # TYPE vigil_alert_matches_total counter\nvigil_alert_matches_total {}\n\
         # TYPE vigil_records_undecodable_total counter\nvigil_records_undecodable_total {}\n\
         # TYPE vigil_detection_latency_seconds summary\nvigil_detection_latency_seconds_sum {}\nvigil_detection_latency_seconds_count {}\n\
         # TYPE vigil_detection_latency_max_seconds gauge\nvigil_detection_latency_max_seconds {}\n\
         # TYPE vigil_rules_loaded gauge\nvigil_rules_loaded {}\n# TYPE vigil_rules_failed gauge\nvigil_rules_failed {}\n",
        i.rejected.load(Ordering::Relaxed),
        i.dropped.load(Ordering::Relaxed),
        i.pipeline.backlog(),
        c.events_detected.load(Ordering::Relaxed),
        c.matches.load(Ordering::Relaxed),
        c.bad_records.load(Ordering::Relaxed),
        c.latency_us_sum.load(Ordering::Relaxed) as f64 / 1e6,
        samples,
        c.latency_us_max.load(Ordering::Relaxed) as f64 / 1e6,
        rules.set.len(),
        rules.errors.len(),
    ));
    let cs = i
        .pipeline
        .engine
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .stats();
    let groups = i
        .pipeline
        .engine
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .group_count();
    out.push_str(&format!(
        "# TYPE vigil_correlation_groups gauge\nvigil_correlation_groups {groups}\n\
         # TYPE vigil_correlation_inputs_total counter\nvigil_correlation_inputs_total {}\n\
         # TYPE vigil_correlation_late_total counter\nvigil_correlation_late_total {}\n\
         # TYPE vigil_correlation_evicted_groups_total counter\nvigil_correlation_evicted_groups_total {}\n\
         # TYPE vigil_correlation_dropped_entries_total counter\nvigil_correlation_dropped_entries_total {}\n\
         # TYPE vigil_correlation_matches_total counter\nvigil_correlation_matches_total {}\n",
        cs.inputs, cs.late, cs.evicted_groups, cs.dropped_entries, cs.matches
    ));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// The OpenAPI document, built from [`ROUTES`].
pub fn openapi_document() -> Json_ {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        let security = match r.need {
            None => json!([]),
            Some(_) => json!([{"bearer": []}, {"basic": []}]),
        };
        entry[r.method.to_ascii_lowercase()] = json!({
            "summary": r.summary,
            "security": security,
            "x-vigil-permission": r.need.map(|n| format!("{n:?}").to_ascii_lowercase()),
            "responses": {"200": {"description": "success"}, "401": {"description": "authentication required"}, "403": {"description": "role not allowed"}}
        });
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Vigil API", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}}},
        "paths": paths,
    })
}

async fn openapi(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Json_>, ApiError> {
    authorize(&s, &headers, Need::Read)?;
    Ok(Json(openapi_document()))
}
