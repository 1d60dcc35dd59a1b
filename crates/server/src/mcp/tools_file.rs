//! The tools file of `agentsigna mcp-gate` (TOML): which upstream tools need authority,
//! and how a call's arguments become an action request.
//!
//! ```toml
//! audience = "erp"              # the target system these tools act on
//! unmapped = "deny"             # tools not listed below: "deny" (default) or "allow"
//! allow = ["list_inventory"]    # read-only tools passed through without authority
//! wait = "PT2M"                 # how long a call may wait for a human decision
//!
//! [[tool]]
//! name = "create_purchase_order"
//! action = "purchase_order.create"
//! counterparty = "/vendor"      # RFC 6901 JSON pointers into the call's arguments
//! amount = "/total"             # a decimal string or an integer in the arguments
//! currency = "/currency"        # or `currency_value = "USD"`
//! description = "/summary"      # or `description_value = "…"`
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use agentsigna_verify::ledger::canonical_json;

/// Default of `wait`: how long a call may wait for a human decision.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Longest `wait` accepted (MCP clients give up on calls long before).
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// What happens to a tool the file neither maps nor allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmapped {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    audience: String,
    #[serde(default)]
    unmapped: Unmapped,
    #[serde(default)]
    allow: Vec<String>,
    wait: Option<String>,
    #[serde(default, rename = "tool")]
    tools: Vec<RawTool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    name: String,
    action: String,
    counterparty: String,
    amount: Option<String>,
    currency: Option<String>,
    currency_value: Option<String>,
    description: Option<String>,
    description_value: Option<String>,
}

/// Where a member of the action request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An RFC 6901 pointer into the call's arguments.
    Pointer(String),
    /// A fixed value from the tools file.
    Value(String),
}

/// A tool whose calls need authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub name: String,
    pub action: String,
    /// Pointer to the counterparty id.
    pub counterparty: String,
    /// Pointer to the amount (with its currency), when the action has one.
    pub amount: Option<(String, Source)>,
    pub description: Option<Source>,
}

/// A validated tools file.
#[derive(Debug, Clone)]
pub struct ToolsFile {
    pub audience: String,
    pub unmapped: Unmapped,
    pub allow: BTreeSet<String>,
    pub wait: Duration,
    pub tools: BTreeMap<String, Mapping>,
}

/// How a tool is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment<'a> {
    /// Forwarded only with a passport.
    Mapped(&'a Mapping),
    /// Forwarded as it is (in `allow`, or unmapped under `unmapped = "allow"`).
    PassThrough,
    /// Never forwarded.
    Denied,
}

/// An argument of a call that cannot become an action request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentError {
    /// The argument, as a JSON pointer (`/total`), or `arguments` for the whole object.
    pub argument: String,
    pub message: String,
}

impl std::fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "argument {}: {}", self.argument, self.message)
    }
}

fn arg_error(argument: &str, message: impl Into<String>) -> ArgumentError {
    ArgumentError { argument: argument.to_owned(), message: message.into() }
}

/// Checks RFC 6901 syntax: empty, or `/`-separated tokens where `~` is followed by 0 or 1.
fn check_pointer(p: &str) -> Result<(), String> {
    if !p.is_empty() && !p.starts_with('/') {
        return Err(format!("{p:?} is not an RFC 6901 JSON pointer (it must start with '/', e.g. \"/{p}\")"));
    }
    let bytes = p.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0') | Some(b'1')) {
            return Err(format!("{p:?} is not an RFC 6901 JSON pointer ('~' must be followed by 0 or 1)"));
        }
    }
    if p.is_empty() {
        return Err("an empty pointer names the whole arguments object, not one argument".into());
    }
    Ok(())
}

fn check_id(what: &str, v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {v:?} must be 1-128 characters of letters, digits and . _ - : @"))
    }
}

impl ToolsFile {
    /// Reads and validates a tools file.
    pub fn load(path: &Path) -> anyhow::Result<ToolsFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the tools file {}: {e}", path.display()))?;
        ToolsFile::parse(&text).map_err(|e| anyhow::anyhow!("tools file {}: {e}", path.display()))
    }

    /// Parses and validates the text of a tools file; the error names the key at fault.
    pub fn parse(text: &str) -> Result<ToolsFile, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| e.message().to_owned() + &location(text, &e))?;
        check_id("audience", &raw.audience)?;
        let wait = match &raw.wait {
            None => DEFAULT_WAIT,
            Some(w) => {
                let secs = agentsigna_core::policy::parse_iso_duration(w)
                    .ok_or_else(|| format!("wait {w:?} is not an ISO 8601 duration such as \"PT2M\""))?;
                let d = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
                if d > MAX_WAIT {
                    return Err(format!("wait {w:?} is longer than the {} s a call may wait", MAX_WAIT.as_secs()));
                }
                d
            }
        };
        let mut allow = BTreeSet::new();
        for name in raw.allow {
            if !allow.insert(name.clone()) {
                return Err(format!("allow: {name:?} is listed twice"));
            }
        }
        let mut tools = BTreeMap::new();
        for t in raw.tools {
            let m = Mapping::from_raw(t)?;
            if allow.contains(&m.name) {
                return Err(format!("tool {:?} is both mapped and in allow: a tool needs authority or not", m.name));
            }
            if tools.contains_key(&m.name) {
                return Err(format!("tool {:?} is mapped twice", m.name));
            }
            tools.insert(m.name.clone(), m);
        }
        Ok(ToolsFile { audience: raw.audience, unmapped: raw.unmapped, allow, wait, tools })
    }

    /// How calls of `name` are treated.
    pub fn treatment(&self, name: &str) -> Treatment<'_> {
        if let Some(m) = self.tools.get(name) {
            Treatment::Mapped(m)
        } else if self.allow.contains(name) || self.unmapped == Unmapped::Allow {
            Treatment::PassThrough
        } else {
            Treatment::Denied
        }
    }

    /// Checks the file against the AgentSigna server, with the target system's token: the
    /// audience is that system, and every mapped action type is declared.
    pub async fn check_server(&self, api: &super::client::Api, system_token: &str) -> anyhow::Result<()> {
        let describe = |e: super::client::ApiFailure| anyhow::anyhow!("{}", e.describe());
        if !api.is_own_system(system_token, &self.audience).await.map_err(describe)? {
            anyhow::bail!(
                "tools file: audience {:?} is not the target system of AGENTSIGNA_SYSTEM_TOKEN at {} \
                 (no such system, or the token belongs to another one)",
                self.audience,
                api.base()
            );
        }
        let declared: BTreeSet<String> = api.action_types(system_token).await.map_err(describe)?.into_iter().collect();
        self.check_actions(&declared).map_err(|e| anyhow::anyhow!("tools file: {e}"))
    }

    /// Checks every mapped tool's action type against the server's declared ones.
    pub fn check_actions(&self, declared: &BTreeSet<String>) -> Result<(), String> {
        let unknown: Vec<String> = self
            .tools
            .values()
            .filter(|m| !declared.contains(&m.action))
            .map(|m| format!("tool {} maps to action {:?}", m.name, m.action))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = declared.iter().map(String::as_str).collect();
        Err(format!(
            "undeclared action type: {} (declared: {}; an admin declares one with PUT /v1/actions/{{type}})",
            unknown.join(", "),
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        ))
    }

    /// Checks the file against the upstream's tools (name → input schema): every mapped
    /// or allowed tool must exist, and a pointer's first token must name a property when
    /// the schema lists its properties.
    pub fn check_against(&self, upstream: &BTreeMap<String, Value>) -> Result<(), String> {
        let missing: Vec<&str> = self
            .tools
            .keys()
            .chain(self.allow.iter())
            .filter(|n| !upstream.contains_key(n.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let known: Vec<&str> = upstream.keys().map(String::as_str).collect();
            return Err(format!(
                "the upstream has no tool named {} (its tools: {})",
                missing.join(", "),
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ));
        }
        for m in self.tools.values() {
            let Some(props) = upstream.get(&m.name).and_then(|s| s.get("properties")).and_then(Value::as_object) else {
                continue;
            };
            for (key, pointer) in m.pointers() {
                let first = pointer[1..].split('/').next().unwrap_or_default().replace("~1", "/").replace("~0", "~");
                if !props.contains_key(&first) {
                    let names: Vec<&str> = props.keys().map(String::as_str).collect();
                    return Err(format!(
                        "tool {:?}: {key} = {pointer:?} names no argument of the tool (its arguments: {})",
                        m.name,
                        names.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }
}

fn location(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!(" (line {})", text[..span.start.min(text.len())].lines().count().max(1)),
        None => String::new(),
    }
}

impl Mapping {
    fn from_raw(t: RawTool) -> Result<Mapping, String> {
        let at = |msg: String| format!("tool {:?}: {msg}", t.name);
        if t.name.is_empty() {
            return Err("a [[tool]] has an empty name".into());
        }
        check_id("action", &t.action).map_err(at)?;
        check_pointer(&t.counterparty).map_err(|e| at(format!("counterparty: {e}")))?;
        let currency = match (&t.currency, &t.currency_value) {
            (Some(_), Some(_)) => return Err(at("give currency (a pointer) or currency_value, not both".into())),
            (Some(p), None) => {
                check_pointer(p).map_err(|e| at(format!("currency: {e}")))?;
                Some(Source::Pointer(p.clone()))
            }
            (None, Some(v)) => {
                if !(v.len() == 3 && v.chars().all(|c| c.is_ascii_uppercase())) {
                    return Err(at(format!("currency_value {v:?} is not an ISO 4217 code such as \"USD\"")));
                }
                Some(Source::Value(v.clone()))
            }
            (None, None) => None,
        };
        let amount = match (&t.amount, currency) {
            (Some(p), Some(c)) => {
                check_pointer(p).map_err(|e| at(format!("amount: {e}")))?;
                Some((p.clone(), c))
            }
            (Some(_), None) => return Err(at("amount needs currency (a pointer) or currency_value".into())),
            (None, Some(_)) => return Err(at("currency is given but amount is not".into())),
            (None, None) => None,
        };
        let description = match (&t.description, &t.description_value) {
            (Some(_), Some(_)) => return Err(at("give description (a pointer) or description_value, not both".into())),
            (Some(p), None) => {
                check_pointer(p).map_err(|e| at(format!("description: {e}")))?;
                Some(Source::Pointer(p.clone()))
            }
            (None, Some(v)) => Some(Source::Value(v.clone())),
            (None, None) => None,
        };
        Ok(Mapping { name: t.name, action: t.action, counterparty: t.counterparty, amount, description })
    }

    /// `(key, pointer)` of every pointer of this mapping.
    pub fn pointers(&self) -> Vec<(&'static str, &str)> {
        let mut v = vec![("counterparty", self.counterparty.as_str())];
        if let Some((amount, currency)) = &self.amount {
            v.push(("amount", amount.as_str()));
            if let Source::Pointer(p) = currency {
                v.push(("currency", p.as_str()));
            }
        }
        if let Some(Source::Pointer(p)) = &self.description {
            v.push(("description", p.as_str()));
        }
        v
    }

    /// The argument (pointer) or tools-file key behind a member of the action request,
    /// for naming the culprit of a refusal (`field` of the API's problem).
    pub fn argument_for_field(&self, field: &str) -> Option<String> {
        let pointer = |s: &Source| match s {
            Source::Pointer(p) => format!("argument {p}"),
            Source::Value(v) => format!("the tools file's value {v:?}"),
        };
        match field {
            "counterparty" => Some(format!("argument {}", self.counterparty)),
            "amount" | "amount.value" => self.amount.as_ref().map(|(p, _)| format!("argument {p}")),
            "amount.currency" => self.amount.as_ref().map(|(_, c)| pointer(c)),
            "description" => self.description.as_ref().map(pointer),
            "action" => Some(format!("the tools file's action {:?}", self.action)),
            "audience" => Some("the tools file's audience".to_owned()),
            f if f == "context" || f.starts_with("context.") || f.starts_with("context/") => {
                Some("the arguments".to_owned())
            }
            _ => None,
        }
    }

    /// The `POST /v1/requests` body for a call with these arguments: `context` is the
    /// arguments themselves, the idempotency key is derived from the tool name and the
    /// canonical arguments (the same call retried maps to the same case).
    pub fn request(&self, audience: &str, args: &Map<String, Value>) -> Result<Value, ArgumentError> {
        let args_value = Value::Object(args.clone());
        let canonical = canonical_json(&args_value).map_err(|e| {
            arg_error(&e.pointer, format!("is {}; send amounts and other numbers as decimal strings", e.reason))
        })?;
        let counterparty = match args_value.pointer(&self.counterparty) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(arg_error(&self.counterparty, "must be the counterparty's id, a non-empty string")),
            None => return Err(arg_error(&self.counterparty, "is missing (it names the counterparty)")),
        };
        let mut body = json!({
            "action": self.action,
            "counterparty": counterparty,
            "audience": audience,
            "context": args_value,
            "idempotency_key": idempotency_key(&self.name, &canonical),
        });
        if let Some((amount_ptr, currency)) = &self.amount {
            let value = match args_value.pointer(amount_ptr) {
                Some(Value::String(s)) if is_decimal(s) => s.clone(),
                Some(Value::Number(n)) if n.is_u64() => n.to_string(),
                Some(Value::String(s)) => {
                    return Err(arg_error(amount_ptr, format!("{s:?} is not a decimal amount such as \"1250.00\"")))
                }
                Some(other) => {
                    return Err(arg_error(amount_ptr, format!("{other} is not a decimal string or a whole number")))
                }
                None => return Err(arg_error(amount_ptr, "is missing (it is the amount)")),
            };
            let currency = match currency {
                Source::Value(v) => v.clone(),
                Source::Pointer(p) => match args_value.pointer(p) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    Some(_) => return Err(arg_error(p, "must be an ISO 4217 currency code such as \"USD\"")),
                    None => return Err(arg_error(p, "is missing (it is the amount's currency)")),
                },
            };
            body["amount"] = json!({"value": value, "currency": currency});
        }
        match &self.description {
            Some(Source::Value(v)) => body["description"] = json!(v),
            Some(Source::Pointer(p)) => match args_value.pointer(p) {
                Some(Value::String(s)) => body["description"] = json!(s),
                Some(_) => return Err(arg_error(p, "must be a string (it is the description)")),
                None => return Err(arg_error(p, "is missing (it is the description)")),
            },
            None => body["description"] = json!(format!("MCP tool call {}", self.name)),
        }
        Ok(body)
    }
}

/// `^[0-9]+(\.[0-9]+)?$`, the API's decimal amount syntax.
fn is_decimal(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

/// `mcp:<tool>:<hex SHA-256 of tool name, NUL, canonical arguments>` (at most 200 characters).
pub fn idempotency_key(tool: &str, canonical_args: &str) -> String {
    let mut h = Sha256::new();
    h.update(tool.as_bytes());
    h.update([0u8]);
    h.update(canonical_args.as_bytes());
    let digest = hex::encode(h.finalize());
    let printable = tool.chars().all(|c| c.is_ascii_graphic());
    if printable && tool.len() <= 120 {
        format!("mcp:{tool}:{digest}")
    } else {
        format!("mcp:{digest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
audience = "erp"
unmapped = "deny"
allow = ["list_inventory"]
wait = "PT2M"

[[tool]]
name = "create_purchase_order"
action = "purchase_order.create"
counterparty = "/vendor"
amount = "/total"
currency = "/currency"
description = "/summary"

[[tool]]
name = "send_payment"
action = "payment.send"
counterparty = "/payee"
amount = "/amount/value"
currency_value = "USD"
description_value = "payment from the ERP"
"#;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_example_parses() {
        let f = ToolsFile::parse(EXAMPLE).unwrap();
        assert_eq!(f.audience, "erp");
        assert_eq!(f.wait, Duration::from_secs(120));
        assert_eq!(f.treatment("list_inventory"), Treatment::PassThrough);
        assert_eq!(f.treatment("delete_vendor"), Treatment::Denied);
        assert!(matches!(f.treatment("send_payment"), Treatment::Mapped(m) if m.action == "payment.send"));
    }

    #[test]
    fn bad_files_are_refused_naming_the_key() {
        let check = |text: &str, needle: &str| {
            let e = ToolsFile::parse(text).unwrap_err();
            assert!(e.contains(needle), "{e:?} does not mention {needle:?}");
        };
        let base = "audience = \"erp\"\n[[tool]]\nname = \"t\"\naction = \"a.b\"\n";
        check(&format!("{base}counterparty = \"vendor\"\n"), "counterparty: \"vendor\" is not an RFC 6901");
        check(&format!("{base}counterparty = \"/v~2\"\n"), "'~' must be followed by 0 or 1");
        check(&format!("{base}counterparty = \"/v\"\namount = \"/t\"\n"), "amount needs currency");
        check(&format!("{base}counterparty = \"/v\"\namount = \"/t\"\ncurrency_value = \"usd\"\n"), "ISO 4217");
        check(&format!("{base}counterparty = \"/v\"\nprice = \"/p\"\n"), "unknown field `price`");
        check("audience = \"erp\"\nwait = \"2 minutes\"\n", "wait \"2 minutes\" is not an ISO 8601 duration");
        check("audience = \"erp\"\nunmapped = \"maybe\"\n", "unknown variant `maybe`");
        check("unmapped = \"deny\"\n", "missing field `audience`");
        check(
            "audience = \"erp\"\nallow = [\"t\"]\n[[tool]]\nname = \"t\"\naction = \"a\"\ncounterparty = \"/v\"\n",
            "both",
        );
    }

    #[test]
    fn tools_are_checked_against_the_upstream() {
        let f = ToolsFile::parse(EXAMPLE).unwrap();
        let mut upstream = BTreeMap::new();
        upstream.insert(
            "create_purchase_order".to_owned(),
            json!({"type": "object", "properties": {"vendor": {}, "total": {}, "currency": {}, "summary": {}}}),
        );
        upstream.insert("list_inventory".to_owned(), json!({"type": "object"}));
        let e = f.check_against(&upstream).unwrap_err();
        assert!(e.contains("no tool named send_payment"), "{e}");
        upstream.insert("send_payment".to_owned(), json!({"type": "object", "properties": {"payee": {}}}));
        let e = f.check_against(&upstream).unwrap_err();
        assert!(e.contains("amount = \"/amount/value\" names no argument"), "{e}");
        upstream
            .insert("send_payment".to_owned(), json!({"type": "object", "properties": {"payee": {}, "amount": {}}}));
        f.check_against(&upstream).unwrap();
    }

    #[test]
    fn action_types_are_checked_against_the_server() {
        let f = ToolsFile::parse(EXAMPLE).unwrap();
        let mut declared: BTreeSet<String> = ["purchase_order.create".to_owned()].into();
        let e = f.check_actions(&declared).unwrap_err();
        assert!(
            e.contains("send_payment") && e.contains("payment.send") && e.contains("declared: purchase_order.create"),
            "{e}"
        );
        declared.insert("payment.send".to_owned());
        f.check_actions(&declared).unwrap();
    }

    #[test]
    fn a_call_becomes_a_request_with_its_arguments_as_context() {
        let f = ToolsFile::parse(EXAMPLE).unwrap();
        let m = &f.tools["create_purchase_order"];
        let a = args(json!({"vendor": "acme", "total": "120.00", "currency": "USD", "summary": "paper", "qty": 3}));
        let body = m.request("erp", &a).unwrap();
        assert_eq!(body["action"], "purchase_order.create");
        assert_eq!(body["counterparty"], "acme");
        assert_eq!(body["amount"], json!({"value": "120.00", "currency": "USD"}));
        assert_eq!(body["description"], "paper");
        assert_eq!(body["context"], Value::Object(a.clone()));
        // The same arguments in another order map to the same key; other arguments do not.
        let reordered =
            args(json!({"qty": 3, "summary": "paper", "currency": "USD", "total": "120.00", "vendor": "acme"}));
        assert_eq!(m.request("erp", &reordered).unwrap()["idempotency_key"], body["idempotency_key"]);
        let other = args(json!({"vendor": "acme", "total": "121.00", "currency": "USD", "summary": "paper", "qty": 3}));
        assert_ne!(m.request("erp", &other).unwrap()["idempotency_key"], body["idempotency_key"]);
        assert!(body["idempotency_key"].as_str().unwrap().starts_with("mcp:create_purchase_order:"));
        // An integer amount is accepted as a decimal.
        let p = &f.tools["send_payment"];
        let body = p.request("erp", &args(json!({"payee": "acme", "amount": {"value": 90}}))).unwrap();
        assert_eq!(body["amount"], json!({"value": "90", "currency": "USD"}));
        assert_eq!(body["description"], "payment from the ERP");
    }

    #[test]
    fn bad_arguments_name_the_argument() {
        let f = ToolsFile::parse(EXAMPLE).unwrap();
        let m = &f.tools["create_purchase_order"];
        let err = |v: Value| m.request("erp", &args(v)).unwrap_err();
        let e = err(json!({"total": "1.00", "currency": "USD", "summary": "x"}));
        assert_eq!(e.argument, "/vendor");
        let e = err(json!({"vendor": "acme", "total": "12,50", "currency": "USD", "summary": "x"}));
        assert_eq!((e.argument.as_str(), e.to_string().contains("not a decimal")), ("/total", true));
        let e = err(json!({"vendor": "acme", "total": 12.5, "currency": "USD", "summary": "x"}));
        assert_eq!((e.argument.as_str(), e.to_string().contains("floating-point")), ("/total", true));
        let e = err(json!({"vendor": "acme", "total": "1", "summary": "x"}));
        assert_eq!(e.argument, "/currency");
        assert_eq!(m.argument_for_field("amount.value").unwrap(), "argument /total");
        assert_eq!(m.argument_for_field("counterparty").unwrap(), "argument /vendor");
    }
}
