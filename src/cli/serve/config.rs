//! `treecast serve`'s configuration (issue 28): flags, then `TREECAST_*` environment variables,
//! then a TOML file (`--config`), then the defaults, each taking precedence over the next.
//!
//! The file's keys are the flags' long names (`listen = "0.0.0.0:8443"`, `offer = ["…"]`,
//! `insecure-http = true`); a key that names no flag is an error, so that a typo is not
//! silently ignored. The file is read before the arguments are parsed for good: each of its
//! keys that neither a flag nor a variable set becomes that flag, so that one parser checks
//! every value whatever its source. `--check-config` prints the outcome, each value with its
//! source and a PostgreSQL URL's password redacted, and exits.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// The longest configuration file read.
const MAX_FILE: u64 = 1 << 20;

/// Arguments that come from the configuration file, as flags; and the names of the keys it
/// set (for `--check-config`).
#[derive(Debug, Default)]
pub(crate) struct FromFile {
    pub(crate) args: Vec<OsString>,
    pub(crate) keys: BTreeSet<String>,
}

/// The flags that the file at `path` adds to `serve`'s arguments: those its keys set and that
/// neither a flag nor an environment variable set (`matches`).
///
/// # Errors
/// When the file cannot be read, is not TOML, or has a key that names no flag or a value of
/// the wrong shape.
pub(crate) fn from_file(
    path: &Path,
    serve: &Command,
    matches: &ArgMatches,
) -> anyhow::Result<FromFile> {
    use std::io::Read;
    let shown = path.display();
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE).read_to_string(&mut text))
        .with_context(|| format!("--config {shown}"))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("--config {shown}: not a TOML file"))?;
    let mut out = FromFile::default();
    for (key, value) in &table {
        let arg = serve
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(key.as_str())
                    && !matches!(a.get_id().as_str(), "config" | "check_config")
            })
            .ok_or_else(|| {
                anyhow::anyhow!("--config {shown}: `{key}` is not a setting of serve")
            })?;
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = OsString::from(format!("--{key}"));
        let is_switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for value in values {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) if is_switch => {
                    if *b {
                        out.args.push(flag.clone());
                    }
                    continue;
                }
                toml::Value::Boolean(b) => b.to_string(),
                _ => anyhow::bail!("--config {shown}: `{key}` must be a string, number or list"),
            };
            if is_switch {
                anyhow::bail!("--config {shown}: `{key}` is a switch: true or false");
            }
            out.args.push(flag.clone());
            out.args.push(text.into());
        }
        out.keys.insert(key.clone());
    }
    Ok(out)
}

/// The arguments of the whole command line with the file's flags added to `serve`'s (the last
/// subcommand given, which takes no positional argument).
pub(crate) fn with_file_args(file: &FromFile) -> Vec<OsString> {
    std::env::args_os()
        .chain(file.args.iter().cloned())
        .collect()
}

/// `--check-config`: the effective configuration, a line a setting, with its source; a
/// PostgreSQL URL's password and nothing else is a secret here (the admin token and TLS key
/// are given as files).
pub(crate) fn print_effective(
    serve: &Command,
    matches: &ArgMatches,
    file: Option<(&PathBuf, &FromFile)>,
) {
    println!("# treecast serve: the effective configuration");
    println!("# precedence: flags, then TREECAST_* variables, then --config, then defaults");
    if let Some((path, _)) = file {
        println!("# --config {}", path.display());
    }
    for arg in serve.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if matches!(id, "config" | "check_config" | "help") {
            continue;
        }
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) if file.is_some_and(|(_, f)| f.keys.contains(long)) => {
                "config file"
            }
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|raw| {
                raw.map(|v| redact(long, &v.to_string_lossy()))
                    .map(|v| format!("{v:?}"))
                    .collect()
            })
            .unwrap_or_default();
        let shown = match values.as_slice() {
            [] => "# (none)".to_owned(),
            [one] if !matches!(arg.get_action(), ArgAction::Append) => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        println!("{long} = {shown}  # {source}");
    }
}

/// A value as `--check-config` shows it: a store's URL with its password replaced by `***`.
fn redact(long: &str, value: &str) -> String {
    if long == "store" {
        value
            .parse::<treecast::license::registry::StoreSpec>()
            .map_or_else(|_| "<not a store>".to_owned(), |s| s.name())
    } else {
        value.to_owned()
    }
}
