//! `queuectl config`: settings stored with the queue, so every worker agrees.

use serde_json::{Map, Value, json};

use super::{Context, printed};
use crate::config::{self as settings, Config};
use crate::error::Failure;

/// `defer`: see [`super::Command`]; clap builds every nested subcommand enum for
/// every command line, so only deferring the arguments keeps short commands short.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Change a setting (validated; nothing changes on a bad value)
    Set {
        /// The setting's name (`queuectl config list` shows them all)
        key: String,
        /// The new value: a number, a duration such as 30s, a size such as 1MiB, or
        /// none where the setting allows it
        value: String,
    },
    /// Print one setting's value
    Get {
        /// The setting's name (`queuectl config list` shows them all)
        key: String,
    },
    /// Print every setting with its default
    List,
}

pub fn run(ctx: &Context, command: Command) -> Result<(), Failure> {
    match command {
        Command::Set { key, value } => set(ctx, &key, &value),
        Command::Get { key } => get(ctx, &key),
        Command::List => list(ctx),
    }
}

fn set(ctx: &Context, key: &str, value: &str) -> Result<(), Failure> {
    settings::key(key)?.parse(value)?;
    let mut store = ctx.open()?;
    let canonical = settings::validate_change(&store.settings()?, key, value)?;
    store.set_setting(key, &canonical)?;
    if ctx.printer.json {
        return printed(ctx.printer.json(&json!({ key: typed(&canonical) })));
    }
    printed(ctx.printer.line(&format!("{key} = {canonical}")))
}

fn get(ctx: &Context, key: &str) -> Result<(), Failure> {
    let key = settings::key(key)?;
    let mut store = ctx.open_to_read()?;
    let stored = store.settings()?;
    let value = Config::effective(&stored)
        .into_iter()
        .find(|(k, _)| k.name == key.name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| key.default.to_owned());
    if ctx.printer.json {
        return printed(ctx.printer.json(&json!({ key.name: typed(&value) })));
    }
    printed(ctx.printer.line(&value))
}

fn list(ctx: &Context) -> Result<(), Failure> {
    let mut store = ctx.open_to_read()?;
    let effective = Config::effective(&store.settings()?);
    let p = &ctx.printer;
    if p.json {
        let object: Map<String, Value> = effective
            .iter()
            .map(|(k, v)| (k.name.to_owned(), typed(v)))
            .collect();
        return printed(p.json(&Value::Object(object)));
    }
    let rows: Vec<Vec<String>> = effective
        .iter()
        .map(|(k, v)| {
            vec![
                k.name.to_owned(),
                v.clone(),
                k.default.to_owned(),
                k.help.to_owned(),
            ]
        })
        .collect();
    printed(p.table(&["KEY", "VALUE", "DEFAULT", "MEANING"], &rows))
}

/// Settings are numbers, or `none` for "no limit"; JSON shows numbers and null.
fn typed(value: &str) -> Value {
    if value == "none" {
        return Value::Null;
    }
    serde_json::from_str::<serde_json::Number>(value)
        .map(Value::Number)
        .unwrap_or_else(|_| json!(value))
}
