//! Where the flags of `serve` and `gate` come from: the command line, `AGENTSIGNA_*`
//! environment variables, a TOML file (`--config FILE`), then the defaults, in that order
//! of precedence.
//!
//! - Every flag `--some-flag` of `serve` can be set by `AGENTSIGNA_SOME_FLAG`; of `gate`,
//!   by `AGENTSIGNA_GATE_SOME_FLAG` (the two often run side by side). A repeatable flag
//!   (`--webhook`) takes a comma-separated list from its variable (and from the flag).
//! - The file holds `some-flag = value` (or `some_flag`): strings, integers, booleans, and
//!   arrays for repeatable flags. An unknown key is refused naming it; so is a bad value,
//!   naming the key and where it came from (file key or environment variable).
//! - `--print-config` prints the effective configuration, each value with its source,
//!   secrets redacted, and exits.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory as _, FromArgMatches as _};

use super::Cli;

/// The subcommands whose flags can come from a file and the environment, with the
/// prefix of their variables.
const CONFIGURABLE: [(&str, &str); 2] = [("serve", "AGENTSIGNA_"), ("gate", "AGENTSIGNA_GATE_")];

/// Flags that are not configuration: never from the file, nor (`print-config`) the
/// environment.
const NOT_IN_FILE: [&str; 3] = ["config", "print-config", "help"];

/// Flags whose value is a secret: redacted by `--print-config`, hidden from `--help`.
const SECRETS: [&str; 2] = ["webhook-secret", "report-token"];

/// Flags whose value is a database URL: `--print-config` shows them with the password
/// redacted (`postgres://user:<redacted>@host/db`), `--help` hides their values.
const URLS: [&str; 2] = ["database", "replay-store"];

/// Parses the process's arguments with the environment and the config file; exits with
/// clap's usage status (2) on any error, and with 0 after `--print-config`.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    match parse_from(args, &|k| std::env::var(k).ok()) {
        Ok(Parsed::Run(cli)) => *cli,
        Ok(Parsed::Printed(text)) => {
            print!("{text}");
            std::process::exit(0)
        }
        Err(Refusal::Clap(e)) => e.exit(),
        Err(Refusal::Config(msg)) => {
            eprintln!("error: {msg}");
            std::process::exit(2)
        }
    }
}

/// What the command line asks for.
pub enum Parsed {
    Run(Box<Cli>),
    /// `--print-config`: the text to print.
    Printed(String),
}

/// Why the configuration was refused.
pub enum Refusal {
    Clap(clap::Error),
    Config(String),
}

/// One configurable flag.
struct Flag {
    id: String,
    long: String,
    env: String,
    repeatable: bool,
    switch: bool,
}

fn flags_of(cmd: &clap::Command, prefix: &str) -> Vec<Flag> {
    cmd.get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_owned();
            if matches!(a.get_action(), ArgAction::Help | ArgAction::Version) {
                return None;
            }
            Some(Flag {
                id: a.get_id().to_string(),
                env: format!("{prefix}{}", long.replace('-', "_").to_uppercase()),
                repeatable: matches!(a.get_action(), ArgAction::Append),
                switch: matches!(a.get_action(), ArgAction::SetTrue),
                long,
            })
        })
        .collect()
}

/// The command with an environment variable on every configurable flag.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for (name, prefix) in CONFIGURABLE {
        let Some(sub) = cmd.find_subcommand(name) else { continue };
        let flags = flags_of(sub, prefix);
        cmd = cmd.mut_subcommand(name, |mut sub| {
            for f in &flags {
                if f.long == "print-config" {
                    continue;
                }
                let (env, repeatable) = (f.env.clone(), f.repeatable);
                let secret = SECRETS.contains(&f.long.as_str()) || URLS.contains(&f.long.as_str());
                sub = sub.mut_arg(&f.id, move |a| {
                    let a = a.env(env);
                    let a = if repeatable { a.value_delimiter(',') } else { a };
                    if secret {
                        a.hide_env_values(true)
                    } else {
                        a
                    }
                });
            }
            sub
        });
    }
    cmd
}

/// Whether `--long` (or `--long=…`) is on the command line.
fn on_command_line(args: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    args.iter()
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .any(|a| a == flag || a.strip_prefix(flag.as_str()).is_some_and(|rest| rest.starts_with('=')))
}

/// The value of `--config` on the command line.
fn config_arg(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// The values of a config file, by flag name, as command-line values.
fn read_file(path: &Path, flags: &[Flag]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--config: cannot read {}: {e}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("config file {}: not TOML: {}", path.display(), e.message()))?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let at = |what: String| format!("config file {}: key `{key}`: {what}", path.display());
        let Some(flag) = flags.iter().find(|f| f.long == long && !NOT_IN_FILE.contains(&f.long.as_str())) else {
            let known: Vec<&str> = flags.iter().map(|f| f.long.as_str()).filter(|l| !NOT_IN_FILE.contains(l)).collect();
            return Err(at(format!("unknown key (known keys: {})", known.join(", "))));
        };
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            _ => Err(at("expected a string, a number or a boolean".to_owned())),
        };
        let values = match (&value, flag.repeatable, flag.switch) {
            (toml::Value::Array(items), true, _) => items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
            (toml::Value::Array(_), false, _) => return Err(at("takes one value, not an array".to_owned())),
            (toml::Value::Boolean(_), _, true) => vec![scalar(&value)?],
            (_, _, true) => return Err(at("expected true or false".to_owned())),
            _ => vec![scalar(&value)?],
        };
        out.insert(flag.long.clone(), values);
    }
    Ok(out)
}

/// [`parse`] over given arguments and environment.
pub fn parse_from(mut args: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, Refusal> {
    let cmd = command();
    // The subcommand: the first argument that is not an option.
    let sub = args.iter().skip(1).filter_map(|a| a.to_str()).find(|a| !a.starts_with('-')).map(str::to_owned);
    let configurable = CONFIGURABLE.iter().find(|(n, _)| Some(*n) == sub.as_deref()).copied();
    let mut from_file = BTreeSet::new();
    let mut config_path = None;
    if let Some((name, prefix)) = configurable {
        let flags = cmd.find_subcommand(name).map(|c| flags_of(c, prefix)).unwrap_or_default();
        config_path = config_arg(&args).or_else(|| env(&format!("{prefix}CONFIG")).map(PathBuf::from));
        if let Some(path) = &config_path {
            for (long, values) in read_file(path, &flags).map_err(Refusal::Config)? {
                let Some(flag) = flags.iter().find(|f| f.long == long) else { continue };
                // Flag > env > file: the file fills only what neither set.
                if on_command_line(&args, &long) || env(&flag.env).is_some() {
                    continue;
                }
                from_file.insert(long.clone());
                for v in values {
                    if flag.switch {
                        if v == "true" {
                            args.push(format!("--{long}").into());
                        }
                    } else {
                        args.push(format!("--{long}={v}").into());
                    }
                }
            }
        }
    }
    let matches = match cmd.clone().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => return Err(explain(e, configurable, &from_file, config_path.as_deref(), &args)),
    };
    if let Some((name, prefix)) = configurable {
        if let Some(sub_matches) = matches.subcommand_matches(name) {
            if sub_matches.get_flag("print_config") {
                let flags = cmd.find_subcommand(name).map(|c| flags_of(c, prefix)).unwrap_or_default();
                return Ok(Parsed::Printed(print_config(name, &flags, sub_matches, &from_file)));
            }
        }
    }
    Cli::from_arg_matches(&matches).map(|c| Parsed::Run(Box::new(c))).map_err(Refusal::Clap)
}

/// Names where a refused value came from: the file's key or the environment variable.
fn explain(
    e: clap::Error,
    configurable: Option<(&str, &str)>,
    from_file: &BTreeSet<String>,
    config: Option<&Path>,
    args: &[OsString],
) -> Refusal {
    let Some((_, prefix)) = configurable else { return Refusal::Clap(e) };
    if !matches!(e.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return Refusal::Clap(e);
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return Refusal::Clap(e) };
    let Some(long) = arg.strip_prefix("--").map(|a| a.split([' ', '=']).next().unwrap_or(a).to_owned()) else {
        return Refusal::Clap(e);
    };
    let detail = e.render().to_string();
    let detail = detail.lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned();
    if from_file.contains(&long) {
        let file = config.map_or_else(String::new, |p| p.display().to_string());
        return Refusal::Config(format!("config file {file}: key `{long}`: {detail}"));
    }
    if !on_command_line(args, &long) {
        let var = format!("{prefix}{}", long.replace('-', "_").to_uppercase());
        return Refusal::Config(format!("environment variable {var}: {detail}"));
    }
    Refusal::Clap(e)
}

/// A URL with the password of its user part (`scheme://user:password@host…`) replaced by
/// `<redacted>`; a URL without one is returned as it is. Everything after `://` up to the
/// last `@` before the query is taken as the user part, so a password containing `@` or
/// `/` (which a URL should percent-encode) is still redacted whole.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let query = rest.find('?').unwrap_or(rest.len());
    let Some(at) = rest[..query].rfind('@') else { return url.to_owned() };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// The effective configuration as TOML, each value with its source; secrets redacted.
fn print_config(name: &str, flags: &[Flag], m: &ArgMatches, from_file: &BTreeSet<String>) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut out = format!("# agentsigna {name}: the effective configuration (flag > env > file > default)\n");
    for f in flags.iter().filter(|f| !NOT_IN_FILE.contains(&f.long.as_str())) {
        let source = match m.value_source(&f.id) {
            Some(ValueSource::CommandLine) if from_file.contains(&f.long) => "file".to_owned(),
            Some(ValueSource::CommandLine) => "flag".to_owned(),
            Some(ValueSource::EnvVariable) => format!("env {}", f.env),
            Some(ValueSource::DefaultValue) => "default".to_owned(),
            _ => {
                out.push_str(&format!("# {} is not set ({})\n", f.long, f.env));
                continue;
            }
        };
        let (secret, url) = (SECRETS.contains(&f.long.as_str()), URLS.contains(&f.long.as_str()));
        let values: Vec<String> = m
            .get_raw(&f.id)
            .map(|v| {
                v.map(|x| match x.to_string_lossy() {
                    _ if secret => "<redacted>".to_owned(),
                    v if url => redact_password(&v),
                    v => v.into_owned(),
                })
                .collect()
            })
            .unwrap_or_default();
        let value = if f.repeatable {
            format!("[{}]", values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", "))
        } else if f.switch {
            m.get_flag(&f.id).to_string()
        } else {
            let v = values.first().map(String::as_str).unwrap_or_default();
            if v.parse::<i64>().is_ok() {
                v.to_owned()
            } else {
                quote(v)
            }
        };
        out.push_str(&format!("{} = {value}  # {source}\n", f.long));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn only_the_password_of_a_url_is_redacted() {
        let r = |u: &str| redact_password(u);
        assert_eq!(
            r("postgres://u:secret@h:5432/db?sslmode=require"),
            "postgres://u:<redacted>@h:5432/db?sslmode=require"
        );
        assert_eq!(r("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(r("postgres://h/db"), "postgres://h/db");
        // Unencoded `@` and `/` in the password: still redacted whole.
        assert_eq!(r("postgres://u:p@ss/w@h/db"), "postgres://u:<redacted>@h/db");
        assert_eq!(r("postgres://u:p@ss@h/db"), "postgres://u:<redacted>@h/db");
        assert_eq!(r("not a url"), "not a url");
    }
}
