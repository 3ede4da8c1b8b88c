//! Syslog messages (RFC 5424 and RFC 3164) as events.
//!
//! Parsing never fails: a message in neither format (plenty of network
//! gear writes its own) becomes an event whose `message` is the whole
//! line, with `syslog_format` = `raw`, so nothing is dropped for its form.
//!
//! Fields: `facility`, `severity` (names), `hostname`, `appname`, `procid`,
//! `msgid`, `timestamp` (as written), `message`, structured data as
//! `sd.<id>.<param>`, and `syslog_format` (`rfc5424`, `rfc3164`, `raw`).

use vigil_event::{intern, Event, Value};

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Parses one syslog message (without its transport framing).
pub fn parse(line: &str) -> Event {
    let line = line.trim_end_matches(['\r', '\n', '\0']);
    let mut e = Event::with_capacity(10);
    let Some((pri, rest)) = pri(line) else {
        push(&mut e, "syslog_format", "raw");
        push(&mut e, "message", line);
        return e;
    };
    push(
        &mut e,
        "facility",
        FACILITIES
            .get((pri / 8) as usize)
            .copied()
            .unwrap_or("unknown"),
    );
    push(&mut e, "severity", SEVERITIES[(pri % 8) as usize]);
    if let Some(rest) = rest.strip_prefix("1 ") {
        rfc5424(rest, &mut e);
    } else {
        rfc3164(rest, &mut e);
    }
    e
}

fn push(e: &mut Event, name: &str, v: &str) {
    e.push(intern(name), Value::Str(v.into()));
}

fn pri(line: &str) -> Option<(u32, &str)> {
    let rest = line.strip_prefix('<')?;
    let end = rest.find('>')?;
    let n: u32 = rest[..end].parse().ok().filter(|n| *n <= 191)?;
    Some((n, &rest[end + 1..]))
}

fn rfc5424(rest: &str, e: &mut Event) {
    push(e, "syslog_format", "rfc5424");
    let mut parts = rest.splitn(6, ' ');
    let names = ["timestamp", "hostname", "appname", "procid", "msgid"];
    for name in names {
        match parts.next() {
            Some("-") | None => {}
            Some(v) => push(e, name, v),
        }
    }
    let tail = parts.next().unwrap_or("");
    let msg = if let Some(after_nil) = tail.strip_prefix('-') {
        after_nil
    } else if tail.starts_with('[') {
        structured_data(tail, e)
    } else {
        tail
    };
    let msg = msg.strip_prefix(' ').unwrap_or(msg);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    push(e, "message", msg);
}

/// Parses `[id k="v" ...][id2 ...]`; returns what follows.
fn structured_data<'a>(mut s: &'a str, e: &mut Event) -> &'a str {
    while let Some(body) = s.strip_prefix('[') {
        let id_end = body.find([' ', ']']).unwrap_or(body.len());
        let id = &body[..id_end];
        let mut i = id_end;
        let bytes = body.as_bytes();
        loop {
            while i < body.len() && bytes[i] == b' ' {
                i += 1;
            }
            if i >= body.len() {
                return "";
            }
            if bytes[i] == b']' {
                i += 1;
                break;
            }
            let Some(eq) = body[i..].find('=') else {
                return "";
            };
            let name = &body[i..i + eq];
            i += eq + 1;
            if bytes.get(i) != Some(&b'"') {
                return "";
            }
            i += 1;
            let mut value = String::new();
            while i < body.len() {
                match bytes[i] {
                    b'\\' if i + 1 < body.len() => {
                        value.push(body[i + 1..].chars().next().unwrap_or('\\'));
                        i += 1 + body[i + 1..]
                            .chars()
                            .next()
                            .map(char::len_utf8)
                            .unwrap_or(1);
                    }
                    b'"' => {
                        i += 1;
                        break;
                    }
                    _ => {
                        let c = body[i..].chars().next().unwrap_or(' ');
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
            push(e, &format!("sd.{id}.{name}"), &value);
        }
        s = &body[i..];
    }
    s
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn rfc3164(rest: &str, e: &mut Event) {
    push(e, "syslog_format", "rfc3164");
    let mut s = rest;
    // `Mmm dd hh:mm:ss ` (day padded with a space when single-digit).
    if s.len() >= 16 && MONTHS.contains(&&s[..3]) && s.as_bytes()[15] == b' ' {
        push(e, "timestamp", &s[..15]);
        s = &s[16..];
        if let Some((host, after)) = s.split_once(' ') {
            if !host.ends_with(':') && !host.contains('[') {
                push(e, "hostname", host);
                s = after;
            }
        }
    }
    // `TAG[PID]: message` or `TAG: message`.
    let tag_end = s.find([':', '[', ' ']).unwrap_or(0);
    if tag_end > 0
        && s[..tag_end]
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./".contains(c))
    {
        let tag = &s[..tag_end];
        let mut after = &s[tag_end..];
        if let Some(pid_part) = after.strip_prefix('[') {
            if let Some(close) = pid_part.find(']') {
                push(e, "procid", &pid_part[..close]);
                after = &pid_part[close + 1..];
            }
        }
        if let Some(msg) = after.strip_prefix(':') {
            push(e, "appname", tag);
            push(e, "message", msg.strip_prefix(' ').unwrap_or(msg));
            return;
        }
    }
    push(e, "message", s);
}

/// Splits a TCP byte stream into messages: octet-counted frames
/// (`<length> <message>`, RFC 6587) when a frame starts with a digit,
/// newline-delimited otherwise. Returns the messages and how many bytes
/// were consumed; the rest is an incomplete frame to keep for the next
/// read.
pub fn split_frames(buf: &[u8]) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest[0] == b'\n' || rest[0] == b'\r' || rest[0] == 0 {
            pos += 1;
            continue;
        }
        if rest[0].is_ascii_digit() {
            let Some(sp) = rest.iter().position(|b| *b == b' ') else {
                break;
            };
            if let Some(len) = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|_| sp <= 9)
            {
                if rest.len() < sp + 1 + len {
                    break;
                }
                out.push(String::from_utf8_lossy(&rest[sp + 1..sp + 1 + len]).into_owned());
                pos += sp + 1 + len;
                continue;
            }
        }
        match rest.iter().position(|b| *b == b'\n') {
            Some(nl) => {
                out.push(String::from_utf8_lossy(&rest[..nl]).into_owned());
                pos += nl + 1;
            }
            None => break,
        }
    }
    (out, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_with_structured_data() {
        let e = parse("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Appl\\\"ication\"] An application event");
        assert_eq!(e.get_str("facility"), Some("local4"));
        assert_eq!(e.get_str("severity"), Some("notice"));
        assert_eq!(e.get_str("hostname"), Some("mymachine.example.com"));
        assert_eq!(e.get_str("appname"), Some("evntslog"));
        assert_eq!(e.get_str("procid"), Some("1234"));
        assert_eq!(e.get_str("msgid"), Some("ID47"));
        assert_eq!(
            e.get_str("sd.exampleSDID@32473.eventSource"),
            Some("Appl\"ication")
        );
        assert_eq!(e.get_str("message"), Some("An application event"));
    }

    #[test]
    fn rfc5424_nil_fields() {
        let e = parse("<34>1 2003-10-11T22:14:15.003Z - su - - - 'su root' failed");
        assert_eq!(e.get_str("appname"), Some("su"));
        assert_eq!(e.get("hostname"), None);
        assert_eq!(e.get_str("message"), Some("'su root' failed"));
    }

    #[test]
    fn rfc3164() {
        let e = parse(
            "<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed for lonvick on /dev/pts/8",
        );
        assert_eq!(e.get_str("facility"), Some("auth"));
        assert_eq!(e.get_str("severity"), Some("crit"));
        assert_eq!(e.get_str("hostname"), Some("mymachine"));
        assert_eq!(e.get_str("appname"), Some("su"));
        assert_eq!(e.get_str("procid"), Some("123"));
        assert_eq!(
            e.get_str("message"),
            Some("'su root' failed for lonvick on /dev/pts/8")
        );
        let e = parse("<13>Feb  5 17:32:18 10.0.0.99 sshd: Accepted password");
        assert_eq!(e.get_str("hostname"), Some("10.0.0.99"));
        assert_eq!(e.get_str("appname"), Some("sshd"));
    }

    #[test]
    fn anything_else_is_kept_raw() {
        let e = parse("no priority at all");
        assert_eq!(e.get_str("syslog_format"), Some("raw"));
        assert_eq!(e.get_str("message"), Some("no priority at all"));
        let e = parse("<999>bad pri");
        assert_eq!(e.get_str("syslog_format"), Some("raw"));
        let e = parse("<13>");
        assert_eq!(e.get_str("message"), Some(""));
        // Truncated structured data does not panic.
        let e = parse("<13>1 - - - - - [id a=\"unclosed");
        assert_eq!(e.get_str("syslog_format"), Some("rfc5424"));
    }

    #[test]
    fn tcp_framing() {
        let (msgs, used) = split_frames(b"<13>a\n9 <13>b\nc d12 <13>partial");
        assert_eq!(msgs, vec!["<13>a", "<13>b\nc d"]);
        assert_eq!(used, 17);
        let (msgs, used) = split_frames(b"<13>no newline yet");
        assert!(msgs.is_empty());
        assert_eq!(used, 0);
    }
}
