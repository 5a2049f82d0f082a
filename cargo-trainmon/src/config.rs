//! The crate's `.cargo/config.toml`, merged: what plain `cargo build`, `run`, `test` and `bench`
//! need to build against libtorch and to start the binaries they make.
//!
//! - `[env] LIBTORCH` (with `force = false`, so a `LIBTORCH` in the environment still wins): where
//!   torch-sys finds libtorch's headers and libraries;
//! - an rpath to libtorch's `lib/` in `rustflags` and `rustdocflags`: every binary, test, example,
//!   bench and doctest finds libtorch when it starts, from any directory, with no
//!   `LD_LIBRARY_PATH`. (`libtorch_cuda` needs nothing here: trainmon itself keeps it linked.)
//! - `[env] TRAINMON_GLOO_INCLUDE` (also `force = false`), where gloo's headers are found: the
//!   headers trainmon's c10d shim (distributed training) compiles against.
//!
//! Everything else in the file is left as it was, comments and order included; a value the setup
//! wrote before for another libtorch is replaced, and running it again changes nothing.

use crate::libtorch::Libtorch;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

/// What the setup wants in the file.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// `LIBTORCH` for torch-sys.
    pub libtorch: PathBuf,
    /// libtorch's `lib/`, for the rpath.
    pub lib: PathBuf,
    /// gloo's headers ([`crate::tools::gloo_headers`]), if found.
    pub gloo: Option<PathBuf>,
}

impl From<&Libtorch> for Wanted {
    fn from(torch: &Libtorch) -> Self {
        Wanted {
            libtorch: torch.dir.clone(),
            lib: torch.lib.clone(),
            gloo: None,
        }
    }
}

/// The rustc flag that gives binaries an rpath to `lib`.
pub fn rpath_flag(lib: &Path) -> String {
    format!("-Clink-arg=-Wl,-rpath,{}", lib.display())
}

const MARK: &str = "# libtorch for tch, set by `cargo trainmon setup` (a LIBTORCH in the environment wins)\n";

/// Merges what `wanted` needs into the config text `existing` (empty: no file). Returns the new
/// text and one line per change; no lines when the file already had it all.
pub fn merge(existing: &str, wanted: &Wanted) -> Result<(String, Vec<String>)> {
    let mut doc: DocumentMut = existing.parse().context("it is not valid TOML")?;
    let mut changes = Vec::new();
    let value = wanted.libtorch.display().to_string();

    // [env] LIBTORCH
    let env = table(&mut doc, "env")?;
    let previous = match env.get("LIBTORCH") {
        Some(Item::Value(Value::String(s))) => Some(s.value().clone()),
        Some(Item::Value(Value::InlineTable(t))) => t.get("value").and_then(|v| v.as_str()).map(str::to_owned),
        Some(Item::Table(t)) => t.get("value").and_then(|v| v.as_str()).map(str::to_owned),
        _ => None,
    };
    let forced = match env.get("LIBTORCH") {
        Some(Item::Value(Value::InlineTable(t))) => t.get("force").and_then(|v| v.as_bool()) != Some(false),
        _ => true,
    };
    if previous.as_deref() != Some(value.as_str()) || forced {
        let mut entry = InlineTable::new();
        entry.insert("value", value.clone().into());
        entry.insert("force", false.into());
        env.insert("LIBTORCH", Item::Value(Value::InlineTable(entry)));
        if let Some(mut key) = env.key_mut("LIBTORCH") {
            key.leaf_decor_mut().set_prefix(MARK);
        }
        changes.push(match &previous {
            Some(old) if *old != value => format!("[env] LIBTORCH: {old} → {value}"),
            _ => format!("[env] LIBTORCH = {value}"),
        });
    }

    // [env] TRAINMON_GLOO_INCLUDE
    if let Some(gloo) = &wanted.gloo {
        let value = gloo.display().to_string();
        let now = match env.get("TRAINMON_GLOO_INCLUDE") {
            Some(Item::Value(Value::InlineTable(t))) => t.get("value").and_then(|v| v.as_str()).map(str::to_owned),
            Some(item) => item.as_str().map(str::to_owned),
            None => None,
        };
        if now.as_deref() != Some(value.as_str()) {
            let mut entry = InlineTable::new();
            entry.insert("value", value.clone().into());
            entry.insert("force", false.into());
            env.insert("TRAINMON_GLOO_INCLUDE", Item::Value(Value::InlineTable(entry)));
            changes.push(format!("[env] TRAINMON_GLOO_INCLUDE = {value}"));
        }
    }

    // The rpath, in rustflags and rustdocflags.
    let flag = rpath_flag(&wanted.lib);
    // A flag written for a libtorch the file named before goes.
    let stale = previous
        .filter(|old| *old != value)
        .map(|old| rpath_flag(&Path::new(&old).join("lib")));
    let rustflags = rustflags_place(&doc);
    for (path, key) in [(rustflags, "rustflags"), (vec!["build".to_owned()], "rustdocflags")] {
        let mut at = &mut doc as &mut Table;
        for name in &path {
            at = sub_table(at, name)?;
        }
        let label = format!("[{}] {key}", path.join("."));
        if add_flag(at, key, &flag, stale.as_deref())? {
            changes.push(format!("{label} += \"{flag}\""));
        }
    }
    Ok((doc.to_string(), changes))
}

/// Whether `existing` can be merged (checked before anything slow is done).
pub fn check(existing: &str) -> Result<()> {
    merge(
        existing,
        &Wanted {
            libtorch: "/".into(),
            lib: "/lib".into(),
            gloo: None,
        },
    )
    .map(drop)
}

/// Where rustflags go so that cargo reads them: cargo ignores `build.rustflags` when a
/// `[target.…]` table sets rustflags (it joins those of every matching table instead). So: into
/// `build.rustflags` unless the file has target rustflags; then into `[target.'cfg(unix)']`,
/// which cargo joins with them.
fn rustflags_place(doc: &DocumentMut) -> Vec<String> {
    let target_flags = doc
        .get("target")
        .and_then(Item::as_table_like)
        .is_some_and(|targets| targets.iter().any(|(_, t)| t.get("rustflags").is_some()));
    if target_flags {
        vec!["target".to_owned(), "cfg(unix)".to_owned()]
    } else {
        vec!["build".to_owned()]
    }
}

/// Adds `flag` to the flags at `key` (an array or a space-separated string) unless it is there,
/// removing `stale`; whether anything changed.
fn add_flag(table: &mut Table, key: &str, flag: &str, stale: Option<&str>) -> Result<bool> {
    match table.get_mut(key) {
        None => {
            let mut flags = Array::new();
            flags.push(flag);
            table.insert(key, toml_edit::value(flags));
            Ok(true)
        }
        Some(Item::Value(Value::Array(flags))) => {
            let before = flags.len();
            flags.retain(|v| v.as_str().is_none_or(|s| Some(s) != stale));
            let removed = flags.len() != before;
            if flags.iter().any(|v| v.as_str() == Some(flag)) {
                return Ok(removed);
            }
            flags.push(flag);
            Ok(true)
        }
        Some(Item::Value(Value::String(flags))) => {
            let words: Vec<&str> = flags.value().split_whitespace().filter(|w| Some(*w) != stale).collect();
            if words.contains(&flag) && words.len() == flags.value().split_whitespace().count() {
                return Ok(false);
            }
            let mut words: Vec<String> = words.into_iter().map(str::to_owned).collect();
            if !words.iter().any(|w| w == flag) {
                words.push(flag.to_owned());
            }
            table.insert(key, toml_edit::value(words.join(" ")));
            Ok(true)
        }
        Some(_) => anyhow::bail!("`{key}` is neither an array nor a string of flags"),
    }
}

fn table<'d>(doc: &'d mut DocumentMut, name: &str) -> Result<&'d mut Table> {
    sub_table(doc.as_table_mut(), name)
}

fn sub_table<'t>(parent: &'t mut Table, name: &str) -> Result<&'t mut Table> {
    let item = parent.entry(name).or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    if let Item::Value(Value::InlineTable(inline)) = item {
        // `build = { … }` written inline: made a table, its entries kept.
        *item = Item::Table(std::mem::take(inline).into_table());
    }
    item.as_table_mut().with_context(|| format!("`{name}` is not a table"))
}

/// The config file of the workspace whose root is `root`: `.cargo/config.toml`, or the older
/// `.cargo/config` where only that exists.
pub fn path(root: &Path) -> PathBuf {
    let dir = root.join(".cargo");
    let legacy = dir.join("config");
    if legacy.is_file() && !dir.join("config.toml").exists() {
        legacy
    } else {
        dir.join("config.toml")
    }
}

/// Makes sure the file can be written (its directory created, a file made in it) before
/// anything slow or anything else is done.
pub fn check_writable(file: &Path) -> Result<()> {
    let dir = file.parent().context("a config file has a directory")?;
    let created = !dir.exists();
    let probe = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let probe = dir.join(".trainmon-setup-probe");
        std::fs::write(&probe, b"")?;
        std::fs::remove_file(&probe)?;
        if file.exists() {
            std::fs::OpenOptions::new().append(true).open(file)?;
        }
        if created {
            // Made again when the file is written: a setup that fails later leaves nothing.
            std::fs::remove_dir(dir)?;
        }
        Ok(())
    };
    probe().with_context(|| {
        format!(
            "cannot write {}: nothing was changed (make {} writable, or run the setup as a user who can write it)",
            file.display(),
            dir.display()
        )
    })
}

/// Writes `text` to `file` atomically: a temporary file in the same directory, then a rename.
pub fn write(file: &Path, text: &str) -> Result<()> {
    let tmp = file.with_extension("toml.trainmon-tmp");
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    }
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, file))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("could not write {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(dir: &str) -> Wanted {
        Wanted {
            libtorch: dir.into(),
            lib: Path::new(dir).join("lib"),
            gloo: None,
        }
    }

    #[test]
    fn a_new_file_gets_everything() {
        let (text, changes) = merge("", &wanted("/opt/torch")).unwrap();
        assert_eq!(changes.len(), 3, "{changes:?}");
        let doc: DocumentMut = text.parse().unwrap();
        assert_eq!(doc["env"]["LIBTORCH"]["value"].as_str(), Some("/opt/torch"));
        assert_eq!(doc["env"]["LIBTORCH"]["force"].as_bool(), Some(false));
        let flag = "-Clink-arg=-Wl,-rpath,/opt/torch/lib";
        assert_eq!(doc["build"]["rustflags"][0].as_str(), Some(flag));
        assert_eq!(doc["build"]["rustdocflags"][0].as_str(), Some(flag));
        assert!(text.contains("cargo trainmon setup"), "{text}");
    }

    #[test]
    fn gloos_headers_go_into_env_once() {
        let with_gloo = Wanted {
            gloo: Some("/cache/gloo/usr/include".into()),
            ..wanted("/opt/torch")
        };
        let (text, changes) = merge("", &with_gloo).unwrap();
        assert!(
            changes.contains(&"[env] TRAINMON_GLOO_INCLUDE = /cache/gloo/usr/include".to_owned()),
            "{changes:?}"
        );
        let doc: DocumentMut = text.parse().unwrap();
        assert_eq!(
            doc["env"]["TRAINMON_GLOO_INCLUDE"]["value"].as_str(),
            Some("/cache/gloo/usr/include")
        );
        assert_eq!(doc["env"]["TRAINMON_GLOO_INCLUDE"]["force"].as_bool(), Some(false));
        let (again, changes) = merge(&text, &with_gloo).unwrap();
        assert_eq!((again, changes), (text.clone(), Vec::<String>::new()));
        // Without headers found, an entry there stays as it is.
        let (without, changes) = merge(&text, &wanted("/opt/torch")).unwrap();
        assert_eq!((without, changes), (text, Vec::<String>::new()));
    }

    #[test]
    fn a_second_run_changes_nothing() {
        let (once, _) = merge("", &wanted("/opt/torch")).unwrap();
        let (twice, changes) = merge(&once, &wanted("/opt/torch")).unwrap();
        assert_eq!(changes, Vec::<String>::new());
        assert_eq!(once, twice);
    }

    #[test]
    fn the_users_settings_and_comments_stay() {
        let existing = "\
# my settings
[alias]
xt = \"run --package xtask --\"

[build]
# native code, please
rustflags = [\"-Ctarget-cpu=native\"]
jobs = 2

[env]
MY_VAR = \"1\"
";
        let (text, changes) = merge(existing, &wanted("/opt/torch")).unwrap();
        assert_eq!(changes.len(), 3, "{changes:?}");
        for kept in [
            "# my settings",
            "xt = \"run --package xtask --\"",
            "# native code, please",
            "jobs = 2",
            "MY_VAR = \"1\"",
        ] {
            assert!(text.contains(kept), "{kept:?} kept in:\n{text}");
        }
        let doc: DocumentMut = text.parse().unwrap();
        let flags: Vec<_> = doc["build"]["rustflags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(flags, ["-Ctarget-cpu=native", "-Clink-arg=-Wl,-rpath,/opt/torch/lib"]);
    }

    #[test]
    fn string_flags_are_appended_to() {
        let (text, _) = merge("[build]\nrustflags = \"-Ctarget-cpu=native\"\n", &wanted("/t")).unwrap();
        let doc: DocumentMut = text.parse().unwrap();
        assert_eq!(
            doc["build"]["rustflags"].as_str(),
            Some("-Ctarget-cpu=native -Clink-arg=-Wl,-rpath,/t/lib")
        );
        let (_, changes) = merge(&text, &wanted("/t")).unwrap();
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn target_rustflags_get_a_table_cargo_joins_with_them() {
        let existing = "[target.x86_64-unknown-linux-gnu]\nrustflags = [\"-Ctarget-cpu=native\"]\n";
        let (text, _) = merge(existing, &wanted("/t")).unwrap();
        let doc: DocumentMut = text.parse().unwrap();
        assert_eq!(
            doc["target"]["cfg(unix)"]["rustflags"][0].as_str(),
            Some("-Clink-arg=-Wl,-rpath,/t/lib")
        );
        assert!(doc.get("build").and_then(|b| b.get("rustflags")).is_none());
        assert_eq!(
            doc["target"]["x86_64-unknown-linux-gnu"]["rustflags"][0].as_str(),
            Some("-Ctarget-cpu=native")
        );
    }

    #[test]
    fn another_libtorch_replaces_what_the_setup_wrote() {
        let (old, _) = merge("[build]\nrustflags = [\"-Dwarnings\"]\n", &wanted("/old/torch")).unwrap();
        let (text, changes) = merge(&old, &wanted("/new/torch")).unwrap();
        assert!(changes[0].contains("/old/torch → /new/torch"), "{changes:?}");
        assert!(!text.contains("/old/torch"), "{text}");
        let doc: DocumentMut = text.parse().unwrap();
        assert_eq!(doc["build"]["rustflags"].as_array().unwrap().len(), 2, "{text}");
    }

    #[test]
    fn a_forced_or_plain_libtorch_becomes_unforced() {
        for existing in [
            "[env]\nLIBTORCH = \"/opt/torch\"\n",
            "[env]\nLIBTORCH = { value = \"/opt/torch\", force = true }\n",
        ] {
            let (text, changes) = merge(existing, &wanted("/opt/torch")).unwrap();
            assert!(changes[0].starts_with("[env] LIBTORCH = /opt/torch"), "{changes:?}");
            let doc: DocumentMut = text.parse().unwrap();
            assert_eq!(doc["env"]["LIBTORCH"]["force"].as_bool(), Some(false), "{text}");
        }
    }

    #[test]
    fn broken_toml_is_refused() {
        let err = merge("[build\nrustflags = 1", &wanted("/t")).unwrap_err();
        assert!(format!("{err:#}").contains("not valid TOML"), "{err:#}");
    }
}
