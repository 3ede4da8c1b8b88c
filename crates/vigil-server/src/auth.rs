//! Who is calling, and what they may do.
//!
//! Credentials accepted (every route but `/healthz` needs one):
//! - `Authorization: Bearer <token>` — API tokens (`vigil tokens create`);
//! - `Authorization: Basic <user:password>` — accounts; also how Beats and
//!   Logstash authenticate to `_bulk`. A verified password is remembered
//!   for five minutes (by a hash of the credentials), so a shipper's every
//!   request does not pay for argon2id;
//! - `Authorization: ApiKey <base64(id:key)>` — Elasticsearch-style API
//!   keys: the token `vgl_<id>_<key>` split at its second underscore;
//! - `Authorization: Splunk <token>` — Splunk HEC.

use crate::db::Db;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads, and works alerts.
    Analyst,
    /// Reads only.
    Viewer,
    /// Ingests only (shippers).
    Ingest,
}

impl Role {
    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "analyst" => Role::Analyst,
            "viewer" => Role::Viewer,
            "ingest" => Role::Ingest,
            _ => return None,
        })
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
            Role::Ingest => "ingest",
        }
    }

    /// Whether the role may do `need`.
    pub fn allows(self, need: Need) -> bool {
        match need {
            Need::Ingest => matches!(self, Role::Admin | Role::Ingest),
            Need::Read => matches!(self, Role::Admin | Role::Analyst | Role::Viewer),
            Need::Triage => matches!(self, Role::Admin | Role::Analyst),
            Need::Admin => self == Role::Admin,
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Send events.
    Ingest,
    /// Read alerts, rules, metrics.
    Read,
    /// Change alerts.
    Triage,
    /// Administer.
    Admin,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user name or token label.
    pub name: String,
    /// The role.
    pub role: Role,
}

/// Checks credentials.
pub struct Authenticator {
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

const CACHE_TTL: Duration = Duration::from_secs(300);
const CACHE_MAX: usize = 10_000;

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator {
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl Authenticator {
    /// The caller that an `Authorization` header value names, if valid.
    pub fn check(&self, db: &Db, header: Option<&str>) -> Option<Principal> {
        let header = header?.trim();
        let (scheme, cred) = header.split_once(' ')?;
        let cred = cred.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" | "splunk" => self.token(db, cred),
            "apikey" => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(cred)
                    .ok()?;
                let text = String::from_utf8(raw).ok()?;
                let (id, key) = text.split_once(':')?;
                self.token(db, &format!("vgl_{id}_{key}"))
            }
            "basic" => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(cred)
                    .ok()?;
                let text = String::from_utf8(raw).ok()?;
                let (user, password) = text.split_once(':')?;
                let key: [u8; 32] = Sha256::digest(text.as_bytes()).into();
                if let Some((p, at)) = self.cache.lock().ok()?.get(&key) {
                    if at.elapsed() < CACHE_TTL {
                        return Some(p.clone());
                    }
                }
                // A token given as the password (user `token`) also works.
                let p = if user == "token" {
                    self.token(db, password)?
                } else {
                    Principal {
                        name: user.to_string(),
                        role: db.verify_password(user, password)?,
                    }
                };
                let mut cache = self.cache.lock().ok()?;
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key, (p.clone(), Instant::now()));
                Some(p)
            }
            _ => None,
        }
    }

    fn token(&self, db: &Db, token: &str) -> Option<Principal> {
        db.verify_token(token)
            .map(|(name, role)| Principal { name, role })
    }
}
