//! Windows event records (EVTX's JSON rendering, Winlogbeat/ECS documents)
//! flattened into the field names Sigma rules use.
//!
//! From an EVTX record's `Event` object:
//! - `System` children by name (`EventID`, `Channel`, `Computer`, …); an
//!   element's attributes as `Element_Attribute` (`Provider_Name`,
//!   `Security_UserID`, `TimeCreated_SystemTime`), its text as itself.
//! - `EventData` children by their `Name` (`Image`, `CommandLine`, …);
//!   unnamed `Data` items as one list field `Data`.
//! - `UserData`: the leaves under its single wrapper element, by leaf name.
//!
//! These are the names of SigmaHQ's field list (`tests/logsource.json`) and
//! of the EVTX tools Sigma users know (Hayabusa, Chainsaw). Shippers' JSON
//! (Winlogbeat, ECS) gets the same names through [`crate::fieldmap`].

use serde_json::Value as Json;
use vigil_event::{intern, value_from_json, Event, Value};

/// Flattens the JSON rendering of one EVTX record (`{"Event": {...}}`).
pub fn event_from_evtx_json(doc: &Json, event: &mut Event) {
    let root = doc.get("Event").unwrap_or(doc);
    if let Some(system) = root.get("System").and_then(Json::as_object) {
        for (name, v) in system {
            push_element(event, name, v);
        }
    }
    match root.get("EventData") {
        Some(Json::Object(data)) => {
            for (name, v) in data {
                if name == "#attributes" {
                    continue;
                }
                push_element(event, name, v);
            }
        }
        Some(other) if !other.is_null() => push_element(event, "EventData", other),
        _ => {}
    }
    if let Some(Json::Object(user)) = root.get("UserData") {
        for (_wrapper, inner) in user {
            push_leaves(event, inner);
        }
    }
}

/// Pushes an element: its text (or scalar value) under `name`, its
/// attributes as `name_attr`, nested elements as `name_child`.
fn push_element(event: &mut Event, name: &str, v: &Json) {
    match v {
        Json::Object(map) => {
            for (k, child) in map {
                match k.as_str() {
                    "#text" => push_value(event, name, child),
                    "#attributes" => {
                        if let Json::Object(attrs) = child {
                            for (a, av) in attrs {
                                if a == "xmlns" {
                                    continue;
                                }
                                push_value(event, &format!("{name}_{a}"), av);
                            }
                        }
                    }
                    _ => push_element(event, &format!("{name}_{k}"), child),
                }
            }
        }
        other => push_value(event, name, other),
    }
}

fn push_leaves(event: &mut Event, v: &Json) {
    if let Json::Object(map) = v {
        for (k, child) in map {
            match (k.as_str(), child) {
                ("#attributes", _) => {}
                (_, Json::Object(inner)) if !inner.contains_key("#text") => {
                    push_leaves(event, child)
                }
                (_, Json::Object(inner)) => push_value(event, k, &inner["#text"]),
                _ => push_value(event, k, child),
            }
        }
    }
}

fn push_value(event: &mut Event, name: &str, v: &Json) {
    let value = match value_from_json(v) {
        Some(Value::List(items)) if items.is_empty() => Value::Null,
        Some(val) => val,
        None => Value::Str(v.to_string().into()),
    };
    if event.get(name).is_none() {
        event.push(intern(name), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattens_evtx_json() {
        let doc = json!({"Event": {"#attributes": {"xmlns": "x"}, "System": {
            "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon", "Guid": "{5770}"}},
            "EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "pc1",
            "TimeCreated": {"#attributes": {"SystemTime": "2019-01-01T00:00:00Z"}},
            "Security": {"#attributes": {"UserID": "S-1-5-18"}},
            "Correlation": null},
            "EventData": {"Image": "C:\\x.exe", "CommandLine": "x -a", "Empty": null}}});
        let mut e = Event::new();
        event_from_evtx_json(&doc, &mut e);
        assert_eq!(e.get("EventID"), Some(&Value::Int(1)));
        assert_eq!(e.get_str("Provider_Name"), Some("Microsoft-Windows-Sysmon"));
        assert_eq!(e.get_str("Security_UserID"), Some("S-1-5-18"));
        assert_eq!(
            e.get_str("TimeCreated_SystemTime"),
            Some("2019-01-01T00:00:00Z")
        );
        assert_eq!(e.get_str("Image"), Some("C:\\x.exe"));
        assert_eq!(e.get("Empty"), Some(&Value::Null));
        assert_eq!(e.get("Correlation"), Some(&Value::Null));
    }

    #[test]
    fn event_id_with_qualifiers_and_unnamed_data() {
        let doc = json!({"Event": {"System": {"EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 7036}},
            "EventData": {"Data": {"#text": ["a", "b"]}, "Binary": "00"},
            "UserData": {"LogFileCleared": {"#attributes": {"xmlns": "y"}, "SubjectUserName": "bob"}}}});
        let mut e = Event::new();
        event_from_evtx_json(&doc, &mut e);
        assert_eq!(e.get("EventID"), Some(&Value::Int(7036)));
        assert_eq!(e.get("EventID_Qualifiers"), Some(&Value::Int(16384)));
        assert_eq!(
            e.get("Data"),
            Some(&Value::List(vec!["a".into(), "b".into()]))
        );
        assert_eq!(e.get_str("SubjectUserName"), Some("bob"));
    }
}
