//! The server's database (SQLite): accounts, API tokens, alerts, comments,
//! the audit log, and how far detection has read the event log.

use crate::auth::Role;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;
use vigil_ingest::rfc3339;
use vigil_sigma::correlation::EngineSnapshot;

/// The database. Calls are short; one connection behind a mutex serves.
pub struct Db {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, hash TEXT NOT NULL, created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS alerts (
  id INTEGER PRIMARY KEY, rule_id TEXT, rule_title TEXT NOT NULL, level TEXT, tags TEXT NOT NULL,
  group_key TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, count INTEGER NOT NULL,
  status TEXT NOT NULL, resolution TEXT, assignee TEXT, matched_fields TEXT NOT NULL, event TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_fold ON alerts(rule_id, group_key, last_seen);
CREATE INDEX IF NOT EXISTS alerts_seen ON alerts(last_seen);
CREATE TABLE IF NOT EXISTS alert_events (alert_id INTEGER NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL, PRIMARY KEY (alert_id, seq));
CREATE TABLE IF NOT EXISTS comments (id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL, author TEXT NOT NULL, at INTEGER NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS disabled_rules (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS blobs (k TEXT PRIMARY KEY, v TEXT NOT NULL);
";

/// Events kept per alert (the first ones; the count goes on).
pub const EVENTS_PER_ALERT: i64 = 100;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| format!("no randomness: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One match to fold into alerts.
#[derive(Debug, Clone)]
pub struct NewMatch {
    /// Rule id (or title when the rule has none).
    pub rule_id: String,
    /// Rule title.
    pub rule_title: String,
    /// Level.
    pub level: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Grouping key (the host by default).
    pub group_key: String,
    /// Event time.
    pub ts: i64,
    /// The fields that matched.
    pub matched_fields: Vec<String>,
    /// The event as JSON.
    pub event: String,
}

/// An alert as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    /// Id.
    pub id: i64,
    /// Rule id.
    pub rule_id: Option<String>,
    /// Rule title.
    pub rule_title: String,
    /// Level.
    pub level: Option<String>,
    /// ATT&CK and other tags.
    pub tags: Vec<String>,
    /// The grouping key (host).
    pub group: String,
    /// First event time (RFC 3339).
    pub first_seen: String,
    /// Last event time (RFC 3339).
    pub last_seen: String,
    /// Matches folded in.
    pub count: i64,
    /// new, acknowledged, closed.
    pub status: String,
    /// For closed alerts: true_positive, false_positive, benign.
    pub resolution: Option<String>,
    /// Who works on it.
    pub assignee: Option<String>,
    /// Fields that matched (of the first event).
    pub matched_fields: Vec<String>,
    /// The first event.
    pub event: serde_json::Value,
}

/// An alert with its events and comments.
pub type AlertDetail = (Alert, Vec<serde_json::Value>, Vec<serde_json::Value>);

/// Filters of the alert list.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertQuery {
    /// Status.
    pub status: Option<String>,
    /// Level (exact).
    pub level: Option<String>,
    /// Rule id.
    pub rule: Option<String>,
    /// Host (grouping key).
    pub host: Option<String>,
    /// Last seen at or after (RFC 3339).
    pub since: Option<String>,
    /// Last seen before (RFC 3339).
    pub until: Option<String>,
    /// `last_seen` (default), `first_seen`, `count`, `level`; prefix `-`
    /// for descending (default `-last_seen`).
    pub sort: Option<String>,
    /// Page size (default 50, at most 1000).
    pub limit: Option<i64>,
    /// Offset.
    pub offset: Option<i64>,
}

/// Nanoseconds since the epoch from RFC 3339 (`2026-01-02T03:04:05Z`,
/// fractions and offsets allowed).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()?
        .timestamp_nanos_opt()
}

impl Db {
    /// Opens (and creates) the database.
    ///
    /// # Errors
    /// SQLite errors, with the path.
    pub fn open(path: &Path) -> Result<Db, String> {
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates `admin` with a random password when there is no user at
    /// all; returns the password then.
    pub fn ensure_admin(&self) -> Result<Option<String>, String> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if n > 0 {
            return Ok(None);
        }
        let password = random_hex(12)?;
        self.add_user("admin", Role::Admin, &password)?;
        Ok(Some(password))
    }

    /// Adds a user (argon2id-hashed password).
    pub fn add_user(&self, name: &str, role: Role, password: &str) -> Result<(), String> {
        if name.is_empty() || password.len() < 8 {
            return Err("a user needs a name and a password of at least 8 characters".into());
        }
        let hash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| e.to_string())?
            .to_string();
        self.conn()
            .execute(
                "INSERT INTO users (name, role, password, created) VALUES (?1, ?2, ?3, ?4)",
                params![name, role.as_str(), hash, now_ns()],
            )
            .map_err(|e| format!("adding user '{name}': {e}"))?;
        self.audit("cli", "user.add", name, role.as_str());
        Ok(())
    }

    /// Sets a user's password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), String> {
        if password.len() < 8 {
            return Err("a password needs at least 8 characters".into());
        }
        let hash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| e.to_string())?
            .to_string();
        let n = self
            .conn()
            .execute(
                "UPDATE users SET password = ?1 WHERE name = ?2",
                params![hash, name],
            )
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("no user '{name}'"));
        }
        self.audit("cli", "user.passwd", name, "");
        Ok(())
    }

    /// Users and their roles.
    pub fn users(&self) -> Result<Vec<(String, String)>, String> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT name, role FROM users ORDER BY name")
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }

    /// Checks a password; the user's role if it is right.
    pub fn verify_password(&self, name: &str, password: &str) -> Option<Role> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT password, role FROM users WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .ok()
            .flatten();
        let (hash, role) = row?;
        let parsed = PasswordHash::new(&hash).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .ok()?;
        Role::parse(&role)
    }

    /// Creates an API token; returns it (shown once; only its hash is
    /// kept).
    pub fn create_token(&self, name: &str, role: Role) -> Result<String, String> {
        let id = random_hex(4)?;
        let secret = random_hex(24)?;
        self.conn()
            .execute(
                "INSERT INTO tokens (id, name, role, hash, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, name, role.as_str(), sha256_hex(&secret), now_ns()],
            )
            .map_err(|e| e.to_string())?;
        self.audit(
            "cli",
            "token.create",
            &id,
            &format!("{name} {}", role.as_str()),
        );
        Ok(format!("vgl_{id}_{secret}"))
    }

    /// Tokens: id, name, role, revoked.
    pub fn tokens(&self) -> Result<Vec<(String, String, String, bool)>, String> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT id, name, role, revoked FROM tokens ORDER BY created")
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0))
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }

    /// Revokes a token by id.
    pub fn revoke_token(&self, id: &str) -> Result<(), String> {
        let n = self
            .conn()
            .execute("UPDATE tokens SET revoked = 1 WHERE id = ?1", params![id])
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("no token '{id}'"));
        }
        self.audit("cli", "token.revoke", id, "");
        Ok(())
    }

    /// Checks a token (`vgl_<id>_<secret>`); its name and role if valid.
    pub fn verify_token(&self, token: &str) -> Option<(String, Role)> {
        let rest = token.strip_prefix("vgl_")?;
        let (id, secret) = rest.split_once('_')?;
        let (name, role, hash, revoked): (String, String, String, i64) = self
            .conn()
            .query_row(
                "SELECT name, role, hash, revoked FROM tokens WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .ok()
            .flatten()?;
        let given = sha256_hex(secret);
        // Compare in constant time.
        let same = given.len() == hash.len()
            && given
                .bytes()
                .zip(hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same || revoked != 0 {
            return None;
        }
        Role::parse(&role).map(|r| (format!("token:{id} ({name})"), r))
    }

    /// Records a change.
    pub fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) {
        let _ = self.conn().execute(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now_ns(), actor, action, target, detail],
        );
    }

    /// The audit log, newest first.
    pub fn audit_log(&self, limit: i64) -> Result<Vec<serde_json::Value>, String> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map(params![limit], |r| {
                Ok(serde_json::json!({
                    "at": rfc3339(r.get(0)?), "actor": r.get::<_, String>(1)?, "action": r.get::<_, String>(2)?,
                    "target": r.get::<_, String>(3)?, "detail": r.get::<_, String>(4)?,
                }))
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }

    /// Ids of rules switched off.
    pub fn disabled_rules(&self) -> Result<Vec<String>, String> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT id FROM disabled_rules ORDER BY id")
            .map_err(|e| e.to_string())?;
        let rows = st.query_map([], |r| r.get(0)).map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }

    /// Switches a rule off or on (and records who did).
    pub fn set_rule_enabled(&self, id: &str, enabled: bool, actor: &str) -> Result<(), String> {
        let sql = if enabled {
            "DELETE FROM disabled_rules WHERE id = ?1"
        } else {
            "INSERT OR IGNORE INTO disabled_rules (id) VALUES (?1)"
        };
        self.conn()
            .execute(sql, params![id])
            .map_err(|e| e.to_string())?;
        self.audit(
            actor,
            if enabled {
                "rule.enable"
            } else {
                "rule.disable"
            },
            id,
            "",
        );
        Ok(())
    }

    /// How far detection has read the event log (next sequence to read).
    pub fn checkpoint(&self) -> Result<u64, String> {
        let v: Option<i64> = self
            .conn()
            .query_row("SELECT v FROM state WHERE k = 'detected_up_to'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| e.to_string())?;
        Ok(v.unwrap_or(1) as u64)
    }

    /// Folds matches into alerts and moves the checkpoint, in one
    /// transaction. A match joins the open alert of its rule and group
    /// whose last match is at most `window_ns` before it; otherwise it
    /// opens a new alert. Matches are grouped first, so a batch costs one
    /// lookup and one update per alert, not per match.
    pub fn fold(
        &self,
        matches: &[NewMatch],
        window_ns: i64,
        next_seq: u64,
        correlation: Option<&EngineSnapshot>,
    ) -> Result<(), String> {
        let mut groups: std::collections::BTreeMap<(&str, &str), Vec<&NewMatch>> =
            std::collections::BTreeMap::new();
        for m in matches {
            groups
                .entry((&m.rule_id, &m.group_key))
                .or_default()
                .push(m);
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        for ((rule_id, group_key), mut ms) in groups {
            ms.sort_by_key(|m| m.ts);
            // The alert being extended: id, first, last, count, events kept.
            let mut current: Option<(i64, i64, i64, i64, i64)> = None;
            let flush = |tx: &rusqlite::Transaction<'_>,
                         c: &(i64, i64, i64, i64, i64)|
             -> Result<(), String> {
                tx.execute(
                    "UPDATE alerts SET count = ?2, first_seen = ?3, last_seen = ?4 WHERE id = ?1",
                    params![c.0, c.3, c.1, c.2],
                )
                .map(|_| ())
                .map_err(|e| e.to_string())
            };
            for m in ms {
                let joins = current.as_ref().is_some_and(|c| m.ts - c.2 <= window_ns);
                if !joins {
                    if let Some(c) = current.take() {
                        flush(&tx, &c)?;
                    }
                    let open: Option<(i64, i64, i64, i64)> = tx
                        .query_row(
                            "SELECT id, first_seen, last_seen, count FROM alerts WHERE rule_id = ?1 AND group_key = ?2 AND status != 'closed' AND last_seen >= ?3 ORDER BY last_seen DESC LIMIT 1",
                            params![rule_id, group_key, m.ts - window_ns],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                        )
                        .optional()
                        .map_err(|e| e.to_string())?;
                    current = Some(match open {
                        Some((id, first, last, count)) => {
                            let kept: i64 = tx
                                .query_row(
                                    "SELECT COUNT(*) FROM alert_events WHERE alert_id = ?1",
                                    params![id],
                                    |r| r.get(0),
                                )
                                .map_err(|e| e.to_string())?;
                            (id, first.min(m.ts), last.max(m.ts), count + 1, kept)
                        }
                        None => {
                            tx.execute(
                                "INSERT INTO alerts (rule_id, rule_title, level, tags, group_key, first_seen, last_seen, count, status, matched_fields, event) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1, 'new', ?7, ?8)",
                                params![
                                    m.rule_id,
                                    m.rule_title,
                                    m.level,
                                    serde_json::to_string(&m.tags).unwrap_or_default(),
                                    m.group_key,
                                    m.ts,
                                    serde_json::to_string(&m.matched_fields).unwrap_or_default(),
                                    m.event
                                ],
                            )
                            .map_err(|e| e.to_string())?;
                            (tx.last_insert_rowid(), m.ts, m.ts, 1, 0)
                        }
                    });
                } else if let Some(c) = current.as_mut() {
                    c.1 = c.1.min(m.ts);
                    c.2 = c.2.max(m.ts);
                    c.3 += 1;
                }
                if let Some(c) = current.as_mut() {
                    if c.4 < EVENTS_PER_ALERT {
                        c.4 += 1;
                        tx.execute(
                            "INSERT INTO alert_events (alert_id, seq, event) VALUES (?1, ?2, ?3)",
                            params![c.0, c.4, m.event],
                        )
                        .map_err(|e| e.to_string())?;
                    }
                }
            }
            if let Some(c) = current {
                flush(&tx, &c)?;
            }
        }
        tx.execute(
            "INSERT INTO state (k, v) VALUES ('detected_up_to', ?1) ON CONFLICT(k) DO UPDATE SET v = ?1",
            params![next_seq as i64],
        )
        .map_err(|e| e.to_string())?;
        // Correlation windows are stored with the checkpoint, so that after
        // a crash they match the events detection has seen, no more, no
        // less.
        if let Some(snap) = correlation {
            let text = serde_json::to_string(snap).map_err(|e| e.to_string())?;
            tx.execute(
                "INSERT INTO blobs (k, v) VALUES ('correlation', ?1) ON CONFLICT(k) DO UPDATE SET v = ?1",
                params![text],
            )
            .map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())
    }

    /// The stored correlation state, if any.
    pub fn correlation_snapshot(&self) -> Result<Option<EngineSnapshot>, String> {
        let text: Option<String> = self
            .conn()
            .query_row("SELECT v FROM blobs WHERE k = 'correlation'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| e.to_string())?;
        match text {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| format!("stored correlation state: {e}")),
        }
    }

    fn row_to_alert(r: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
        let tags: String = r.get(4)?;
        let fields: String = r.get(12)?;
        let event: String = r.get(13)?;
        Ok(Alert {
            id: r.get(0)?,
            rule_id: r.get(1)?,
            rule_title: r.get(2)?,
            level: r.get(3)?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            group: r.get(5)?,
            first_seen: rfc3339(r.get(6)?),
            last_seen: rfc3339(r.get(7)?),
            count: r.get(8)?,
            status: r.get(9)?,
            resolution: r.get(10)?,
            assignee: r.get(11)?,
            matched_fields: serde_json::from_str(&fields).unwrap_or_default(),
            event: serde_json::from_str(&event).unwrap_or(serde_json::Value::Null),
        })
    }

    /// Alerts matching the query, and how many match in all.
    pub fn alerts(&self, q: &AlertQuery) -> Result<(Vec<Alert>, i64), String> {
        let mut clauses = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut add = |clause: &str, v: rusqlite::types::Value| {
            args.push(v);
            clauses.push(clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(s) = &q.status {
            add("status = ?", s.clone().into());
        }
        if let Some(s) = &q.level {
            add("level = ?", s.clone().into());
        }
        if let Some(s) = &q.rule {
            add("rule_id = ?", s.clone().into());
        }
        if let Some(s) = &q.host {
            add("group_key = ?", s.clone().into());
        }
        if let Some(s) = &q.since {
            add(
                "last_seen >= ?",
                parse_rfc3339(s)
                    .ok_or(format!("since: '{s}' is not RFC 3339"))?
                    .into(),
            );
        }
        if let Some(s) = &q.until {
            add(
                "last_seen < ?",
                parse_rfc3339(s)
                    .ok_or(format!("until: '{s}' is not RFC 3339"))?
                    .into(),
            );
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sort = q.sort.as_deref().unwrap_or("-last_seen");
        let (desc, key) = match sort.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, sort),
        };
        let column = match key {
            "last_seen" => "last_seen",
            "first_seen" => "first_seen",
            "count" => "count",
            "level" => "CASE level WHEN 'critical' THEN 5 WHEN 'high' THEN 4 WHEN 'medium' THEN 3 WHEN 'low' THEN 2 ELSE 1 END",
            "id" => "id",
            other => return Err(format!("sort: unknown key '{other}' (last_seen, first_seen, count, level, id)")),
        };
        let limit = q.limit.unwrap_or(50).clamp(1, 1000);
        let offset = q.offset.unwrap_or(0).max(0);
        let conn = self.conn();
        let total: i64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM alerts {filter}"),
                rusqlite::params_from_iter(args.iter()),
                |r| r.get(0),
            )
            .map_err(|e| e.to_string())?;
        let sql = format!(
            "SELECT id, rule_id, rule_title, level, tags, group_key, first_seen, last_seen, count, status, resolution, assignee, matched_fields, event FROM alerts {filter} ORDER BY {column} {}, id {} LIMIT {limit} OFFSET {offset}",
            if desc { "DESC" } else { "ASC" },
            if desc { "DESC" } else { "ASC" }
        );
        let mut st = conn.prepare(&sql).map_err(|e| e.to_string())?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args.iter()), Self::row_to_alert)
            .map_err(|e| e.to_string())?;
        let list = rows.collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        Ok((list, total))
    }

    /// One alert, its events and comments.
    pub fn alert(&self, id: i64) -> Result<Option<AlertDetail>, String> {
        let conn = self.conn();
        let alert = conn
            .query_row(
                "SELECT id, rule_id, rule_title, level, tags, group_key, first_seen, last_seen, count, status, resolution, assignee, matched_fields, event FROM alerts WHERE id = ?1",
                params![id],
                Self::row_to_alert,
            )
            .optional()
            .map_err(|e| e.to_string())?;
        let Some(alert) = alert else { return Ok(None) };
        let mut st = conn
            .prepare("SELECT event FROM alert_events WHERE alert_id = ?1 ORDER BY seq")
            .map_err(|e| e.to_string())?;
        let events = st
            .query_map(params![id], |r| r.get::<_, String>(0))
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .map(|s| serde_json::from_str(&s).unwrap_or(serde_json::Value::Null))
            .collect();
        let mut st = conn
            .prepare("SELECT author, at, text FROM comments WHERE alert_id = ?1 ORDER BY id")
            .map_err(|e| e.to_string())?;
        let comments = st
            .query_map(params![id], |r| {
                Ok(serde_json::json!({"author": r.get::<_, String>(0)?, "at": rfc3339(r.get(1)?), "text": r.get::<_, String>(2)?}))
            })
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .collect();
        Ok(Some((alert, events, comments)))
    }

    /// Changes an alert's status, resolution or assignee (validated by
    /// the caller) and records it in the audit log.
    pub fn update_alert(
        &self,
        id: i64,
        actor: &str,
        status: Option<&str>,
        resolution: Option<&str>,
        assignee: Option<&str>,
    ) -> Result<bool, String> {
        let n = self
            .conn()
            .execute(
                "UPDATE alerts SET status = COALESCE(?2, status), resolution = CASE WHEN ?2 IS NOT NULL AND ?2 != 'closed' THEN NULL ELSE COALESCE(?3, resolution) END, assignee = COALESCE(?4, assignee) WHERE id = ?1",
                params![id, status, resolution, assignee],
            )
            .map_err(|e| e.to_string())?;
        if n > 0 {
            let detail = serde_json::json!({"status": status, "resolution": resolution, "assignee": assignee}).to_string();
            self.audit(actor, "alert.update", &id.to_string(), &detail);
        }
        Ok(n > 0)
    }

    /// Adds a comment to an alert and records it in the audit log.
    pub fn comment(&self, id: i64, actor: &str, text: &str) -> Result<bool, String> {
        let exists: Option<i64> = self
            .conn()
            .query_row("SELECT id FROM alerts WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| e.to_string())?;
        if exists.is_none() {
            return Ok(false);
        }
        self.conn()
            .execute(
                "INSERT INTO comments (alert_id, author, at, text) VALUES (?1, ?2, ?3, ?4)",
                params![id, actor, now_ns(), text],
            )
            .map_err(|e| e.to_string())?;
        self.audit(actor, "alert.comment", &id.to_string(), text);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let ns = parse_rfc3339("2026-11-20T10:01:05.123456Z").unwrap();
        assert_eq!(rfc3339(ns), "2026-11-20T10:01:05.123456Z");
        assert_eq!(
            parse_rfc3339("2026-11-20T12:01:05+02:00"),
            parse_rfc3339("2026-11-20T10:01:05Z")
        );
        assert_eq!(parse_rfc3339("nope"), None);
    }

    #[test]
    fn users_tokens_and_first_admin() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("v.db")).unwrap();
        let pw = db.ensure_admin().unwrap().unwrap();
        assert!(db.ensure_admin().unwrap().is_none());
        assert_eq!(db.verify_password("admin", &pw), Some(Role::Admin));
        assert_eq!(db.verify_password("admin", "wrong-password"), None);
        let t = db.create_token("beats", Role::Ingest).unwrap();
        assert_eq!(db.verify_token(&t).map(|x| x.1), Some(Role::Ingest));
        assert_eq!(db.verify_token(&format!("{t}x")), None);
        let id = t.split('_').nth(1).unwrap();
        db.revoke_token(id).unwrap();
        assert_eq!(db.verify_token(&t), None);
        assert!(db.add_user("x", Role::Viewer, "short").is_err());
    }
}
