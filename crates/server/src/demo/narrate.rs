//! The demo's narration: labelled lines, sections, and JSON laid out to fit the line.

use serde_json::Value;

use agentsigna_core::engine::views::CaseView;

pub(super) const W: usize = 12;

/// One line of narration; hidden characters in it (the demo prints what the server
/// answered) are shown as markers (`⟨U+202E⟩`).
pub(super) fn say(label: &str, text: impl std::fmt::Display) {
    let text = text.to_string();
    println!("  {label:<W$} {}", agentsigna_core::text::visible(&text));
}

pub(super) fn more(text: impl std::fmt::Display) {
    say("", text);
}

pub(super) fn section(n: u32, title: &str) {
    println!("\n{n}. {title}\n{}", "-".repeat(title.chars().count() + 3));
}

pub(super) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// JSON on one line, spaced: `{"a": 1, "b": [2, 3]}`.
pub(super) fn flat(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let items: Vec<String> =
                m.iter().map(|(k, x)| format!("{}: {}", Value::String(k.clone()), flat(x))).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(flat).collect::<Vec<_>>().join(", ")),
        _ => v.to_string(),
    }
}

/// Pretty JSON that keeps any member fitting in the line on one line.
pub(super) fn layout(v: &Value, pad: usize, head: &str, tail: &str, out: &mut Vec<String>) {
    let indent = " ".repeat(pad);
    let items: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, x)| (format!("{}: ", Value::String(k.clone())), x)).collect(),
        Value::Array(a) => a.iter().map(|x| (String::new(), x)).collect(),
        _ => Vec::new(),
    };
    let one_line = format!("{indent}{head}{}{tail}", flat(v));
    if items.is_empty() || one_line.chars().count() <= 86 {
        out.push(one_line);
        return;
    }
    let (open, close) = if v.is_object() { ("{", "}") } else { ("[", "]") };
    out.push(format!("{indent}{head}{open}"));
    let n = items.len();
    for (i, (key, x)) in items.into_iter().enumerate() {
        layout(x, pad + 2, &key, if i + 1 < n { "," } else { "" }, out);
    }
    out.push(format!("{indent}{close}{tail}"));
}

pub(super) fn needs(n: u32) -> String {
    format!("needs {n} approval{}", if n == 1 { "" } else { "s" })
}

pub(super) fn roles(roles: &[String]) -> String {
    if roles.is_empty() {
        "any approver".to_owned()
    } else {
        format!("role {}", roles.join(" + "))
    }
}

/// The trust moves the last outcome of a case caused (its `trust.updated` ledger entries).
pub(super) fn trust_moves(case: &CaseView) -> String {
    let events = &case.core.events;
    let last = events.iter().rposition(|e| e.entry.kind == "outcome.recorded").map_or(0, |i| i + 1);
    let moves: Vec<String> = events[last.min(events.len())..]
        .iter()
        .filter(|e| e.entry.kind == "trust.updated")
        .map(|e| {
            let data = &e.entry.data;
            let who = s(&data["subject"]).split_once(':').map_or("?", |(_, id)| id);
            format!("{who} {} → {}", data["before"], data["after"])
        })
        .collect();
    if moves.is_empty() {
        "unchanged (this case already counted a worse outcome)".to_owned()
    } else {
        moves.join(", ")
    }
}
