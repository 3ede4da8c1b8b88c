//! Sigma for Vigil: parse, validate, compile and evaluate rules.
//!
//! Rules are parsed from YAML ([`rule::parse_file`]) into validated
//! [`Rule`]s, then compiled together into one [`RuleSet`] by a
//! [`RuleSetBuilder`]. The design decision that shapes this crate: a rule
//! set is compiled once and evaluated cheaply many times. Rules are indexed
//! by log source (Windows channel and event ID), and the literal strings of
//! every rule are searched for together with one Aho-Corasick automaton per
//! field, so an event is fully evaluated only against the few rules that
//! could match it. See `DESIGN.md`.
//!
//! This crate does no I/O: callers hand it text and events.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod automaton;
mod bucket;
mod byte_string;
pub mod condition;
pub mod correlation;
pub mod error;
mod eval;
pub mod glob;
mod keyed;
pub mod logsource;
pub mod modifier;
pub mod pattern;
pub mod rule;
pub mod ruleset;
pub mod yaml;

pub use error::RuleError;
pub use logsource::LogSourceMap;
pub use modifier::Placeholders;
pub use rule::{Document, Filter, Level, LogSource, Rule};
pub use ruleset::{Match, RuleSet, RuleSetBuilder, Scratch};
