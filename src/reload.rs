//! What SIGHUP may change: the config file is read again and compared key by key with the
//! configuration the daemon runs with. Keys that are safe to change at a transaction boundary
//! are applied; every other changed key is named as needing a restart.
//!
//! Reloadable: `log.level` and the apply tuning `apply.batch_rows`, `apply.batch_bytes`,
//! `apply.group_max_rows`, `apply.group_max_wait_ms` (they shape how transactions are grouped, never what is written).
//! Everything else — connections, stream name, state directory, table selection, value
//! policies, channel capacity, metrics address, log format — needs a restart, because changing
//! it under a running pipeline would change what is replicated or where.
//!
//! Guarantees: comparison is by key path on the TOML itself, so a key added by a later feature is
//! reported as needing a restart until it is listed here; secret values are compared but never
//! shown; an unreadable or invalid file changes nothing. Keys that needed a restart keep being
//! reported on later reloads until the daemon restarts.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{Config, ConfigError};

/// Keys applied by a reload.
pub const RELOADABLE: &[&str] = &[
    "log.level",
    "apply.batch_rows",
    "apply.batch_bytes",
    "apply.group_max_rows",
    "apply.group_max_wait_ms",
];

/// Flattened `key.path` → value of a config file.
pub type Keys = BTreeMap<String, toml::Value>;

/// The outcome of comparing a new config file with the running one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Changed keys applied now.
    pub applied: Vec<String>,
    /// Changed keys that take effect only after a restart.
    pub need_restart: Vec<String>,
}

impl Plan {
    pub fn applies(&self, key: &str) -> bool {
        self.applied.iter().any(|k| k == key)
    }

    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.need_restart.is_empty()
    }
}

/// The running configuration as far as reloads are concerned.
#[derive(Debug, Clone)]
pub struct Running {
    /// What the daemon runs with (reloaded keys updated).
    pub config: Config,
    /// The file's keys as they are in effect.
    keys: Keys,
}

/// Flattens a TOML document into key paths (`apply.batch_rows`); arrays are leaves.
///
/// # Errors
/// The text is not TOML.
pub fn flatten(text: &str) -> Result<Keys, toml::de::Error> {
    let table: toml::Table = toml::from_str(text)?;
    let mut out = Keys::new();
    walk("", &table, &mut out);
    Ok(out)
}

fn walk(prefix: &str, table: &toml::Table, out: &mut Keys) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => walk(&key, t, out),
            other => {
                out.insert(key, other.clone());
            }
        }
    }
}

/// Which keys differ between two flattened files, split into reloadable and restart-only.
pub fn compare(old: &Keys, new: &Keys) -> Plan {
    let mut plan = Plan::default();
    let all: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in all {
        if old.get(key) != new.get(key) {
            if RELOADABLE.contains(&key.as_str()) {
                plan.applied.push(key.clone());
            } else {
                plan.need_restart.push(key.clone());
            }
        }
    }
    plan
}

impl Running {
    /// The configuration loaded at start and the text it came from.
    pub fn new(config: Config, text: &str) -> Running {
        Running {
            config,
            keys: flatten(text).unwrap_or_default(),
        }
    }

    /// Reads `path` again and works out what changes; the running state is updated only for the
    /// reloadable keys.
    ///
    /// # Errors
    /// The file cannot be read or is not a valid configuration; nothing changes then.
    pub fn reload(&mut self, path: &Path) -> Result<Plan, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let new_config = Config::from_toml(&text, path)?;
        let new_keys = flatten(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let plan = compare(&self.keys, &new_keys);
        for key in &plan.applied {
            match new_keys.get(key) {
                Some(v) => self.keys.insert(key.clone(), v.clone()),
                None => self.keys.remove(key),
            };
        }
        if plan.applies("log.level") {
            self.config.log_level = new_config.log_level.clone();
        }
        let apply = &mut self.config.apply;
        if plan.applies("apply.batch_rows") {
            apply.batch_rows = new_config.apply.batch_rows;
        }
        if plan.applies("apply.batch_bytes") {
            apply.batch_bytes = new_config.apply.batch_bytes;
        }
        if plan.applies("apply.group_max_rows") {
            apply.group_max_rows = new_config.apply.group_max_rows;
        }
        if plan.applies("apply.group_max_wait_ms") {
            apply.group_max_wait = new_config.apply.group_max_wait;
        }
        Ok(plan)
    }
}

/// SIGHUP: re-reads the config file and applies what can change safely: the log filter, and the
/// apply tuning through `apply_tx` (taken by the applier at its next group).
pub fn apply(
    running: &mut Running,
    path: Option<&std::path::Path>,
    log: Option<&crate::logging::LogControl>,
    apply_tx: &tokio::sync::watch::Sender<crate::config::ApplyConfig>,
) {
    let Some(path) = path else {
        tracing::warn!("reload requested, but ferry was started without a config file to re-read");
        return;
    };
    let plan = match running.reload(path) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!(error = %e, "reload: the config file is not valid; nothing changed");
            return;
        }
    };
    let mut applied = Vec::new();
    for key in &plan.applied {
        if key == "log.level" {
            let level = &running.config.log_level;
            match log.map(|l| l.set_level(level)) {
                Some(Ok(())) => applied.push(format!("log.level = {level:?}")),
                Some(Err(e)) => tracing::warn!(error = %e, "reload: log.level not applied"),
                None => {
                    tracing::warn!("reload: log.level not applied (logging is not reloadable here)")
                }
            }
        }
    }
    let apply = &running.config.apply;
    for key in &plan.applied {
        match key.as_str() {
            "apply.batch_rows" => applied.push(format!("{key} = {}", apply.batch_rows)),
            "apply.batch_bytes" => applied.push(format!("{key} = {}", apply.batch_bytes)),
            "apply.group_max_rows" => applied.push(format!("{key} = {}", apply.group_max_rows)),
            "apply.group_max_wait_ms" => {
                applied.push(format!("{key} = {}", apply.group_max_wait.as_millis()))
            }
            _ => {}
        }
    }
    if plan.applied.iter().any(|k| k.starts_with("apply.")) {
        apply_tx.send_replace(apply.clone());
    }
    if applied.is_empty() {
        tracing::info!("reload: no reloadable key changed");
    } else {
        tracing::info!(changed = %applied.join(", "), "reloaded configuration");
    }
    if !plan.need_restart.is_empty() {
        tracing::warn!(
            keys = %plan.need_restart.join(", "),
            reloadable = %RELOADABLE.join(", "),
            "reload: these changed keys take effect only after a restart; running with their old values"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
stream = "s"
[source]
user = "ferry"
password = "one"
[target]
user = "postgres"
database = "d"
[tables]
include = ["shop.*"]
[apply]
batch_rows = 100
[log]
level = "info"
"#;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("ferry.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    #[test]
    fn compare_splits_reloadable_from_restart_keys() {
        let old = flatten(BASE).expect("toml");
        let new = flatten(
            &BASE
                .replace("level = \"info\"", "level = \"debug\"")
                .replace("password = \"one\"", "password = \"two\"")
                .replace(
                    "batch_rows = 100",
                    "batch_rows = 100\ngroup_max_wait_ms = 5",
                ),
        )
        .expect("toml");
        let plan = compare(&old, &new);
        assert_eq!(plan.applied, vec!["apply.group_max_wait_ms", "log.level"]);
        assert_eq!(plan.need_restart, vec!["source.password"]);
        assert!(compare(&old, &old).is_empty());
    }

    #[test]
    fn reload_applies_only_reloadable_keys_and_keeps_reporting_the_rest() {
        let dir = std::env::temp_dir().join(format!("ferry-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = write(&dir, BASE);
        let config = Config::load(&path).expect("base config loads");
        let mut running = Running::new(config, BASE);

        let edited = BASE
            .replace("level = \"info\"", "level = \"ferry=debug\"")
            .replace("batch_rows = 100", "batch_rows = 7")
            .replace("stream = \"s\"", "stream = \"t\"");
        write(&dir, &edited);
        let plan = running.reload(&path).expect("valid edit");
        assert_eq!(plan.applied, vec!["apply.batch_rows", "log.level"]);
        assert_eq!(plan.need_restart, vec!["stream"]);
        assert_eq!(running.config.log_level, "ferry=debug");
        assert_eq!(running.config.apply.batch_rows, 7);
        assert_eq!(
            running.config.stream, "s",
            "the stream name needs a restart"
        );

        // Nothing new: the stream change is still pending, nothing is re-applied.
        let plan = running.reload(&path).expect("same file");
        assert!(plan.applied.is_empty());
        assert_eq!(plan.need_restart, vec!["stream"]);

        // Removing a reloadable key brings its default back.
        write(&dir, &edited.replace("batch_rows = 7", ""));
        let plan = running.reload(&path).expect("valid edit");
        assert_eq!(plan.applied, vec!["apply.batch_rows"]);
        assert_eq!(running.config.apply.batch_rows, 5000);

        // An invalid file changes nothing.
        write(&dir, &edited.replace("batch_rows = 7", "batch_rows = 0"));
        assert!(running.reload(&path).is_err());
        assert_eq!(running.config.apply.batch_rows, 5000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
