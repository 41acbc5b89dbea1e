//! Configuration in two phases: [`RawConfig`] is exactly what `config.toml` says (serde, unknown
//! keys rejected), [`Config`] is what ferry runs with (validated, defaults applied, secrets
//! resolved from the environment or a file).
//!
//! Guarantees: a config that loads is internally consistent (ports, patterns, positions parse);
//! secrets never appear in `Debug` or `Display` output; every key has a documented default.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::position::{BinlogPosition, GtidSet};
use crate::select::{TableSelector, TableSelectorError};
use crate::transform::{CaseInsensitive, Spatial, TypeOptions, ValuePolicy};

/// What went wrong loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("config key `{key}`: environment variable {var} is not set")]
    MissingEnv { key: &'static str, var: String },
    #[error("config key `{key}`: cannot read secret file {path}: {source}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config key `{key}`: cannot read {path}: {source}")]
    File {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tables(#[from] TableSelectorError),
}

/// A secret string: never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for handing to a driver; never log this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `config.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Name of this replication stream; keys the checkpoint row in PostgreSQL so several ferry
    /// instances can feed one target. Default: "default".
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Directory of ferry's local state (checkpoint copy, run state). Default: "./ferry-state".
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    pub source: RawSource,
    pub target: RawTarget,
    pub tables: RawTables,
    #[serde(default)]
    pub apply: RawApply,
    #[serde(default)]
    pub backfill: RawBackfill,
    #[serde(default)]
    pub types: RawTypes,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub verify: RawVerify,
    #[serde(default)]
    pub ddl: RawDdl,
}

/// Schema changes on the source while streaming.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDdl {
    /// Carry a change of a table's primary key (or the unique key ferry keys it by) by
    /// re-keying the PostgreSQL table in the same transaction. Default false: refused.
    #[serde(default)]
    pub allow_key_change: bool,
}

fn default_stream() -> String {
    "default".into()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("./ferry-state")
}

/// Password given inline, by environment variable or by file (exactly one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassword {
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// MySQL/MariaDB host. Default: "127.0.0.1".
    #[serde(default = "default_host")]
    pub host: String,
    /// Default: 3306.
    #[serde(default = "default_mysql_port")]
    pub port: u16,
    pub user: String,
    #[serde(flatten)]
    pub password: RawPassword,
    /// Replica server id ferry registers with; must be unique among the source's replicas.
    #[serde(default = "default_server_id")]
    pub server_id: u32,
    /// Where to start when no checkpoint exists: "current" (the source's binlog end),
    /// "FILE:OFFSET", or "gtid:SET". Default: "current".
    #[serde(default = "default_start")]
    pub start: String,
    /// Replication heartbeat period; a read silent for 3 periods reconnects. Default 1.0.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_seconds: f64,
    /// Default: 10.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: f64,
    /// Encryption of every source connection; MySQL's `ssl-mode` names. Default: PREFERRED.
    #[serde(default)]
    pub tls: RawTls,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_mysql_port() -> u16 {
    3306
}
fn default_server_id() -> u32 {
    4_242_000
}
fn default_start() -> String {
    "current".into()
}
fn default_heartbeat() -> f64 {
    1.0
}
fn default_connect_timeout() -> f64 {
    10.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Default: "127.0.0.1".
    #[serde(default = "default_host")]
    pub host: String,
    /// Default: 5432.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    pub user: String,
    pub database: String,
    #[serde(flatten)]
    pub password: RawPassword,
    /// Schema holding ferry's own tables (checkpoint). Default: "ferry".
    #[serde(default = "default_ferry_schema")]
    pub ferry_schema: String,
    /// Encryption of every target connection; libpq's `sslmode` names. Default: prefer.
    #[serde(default)]
    pub tls: RawTls,
}

/// `source.tls` / `target.tls` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Source: DISABLED, PREFERRED (default), REQUIRED, VERIFY_CA, VERIFY_IDENTITY (any case).
    /// Target: disable, prefer (default), require, verify-ca, verify-full.
    pub mode: Option<String>,
    /// PEM file of the CA certificates that verify the server; without it the verifying modes
    /// trust the Mozilla root set (webpki-roots). Default: none.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`. Default: none.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`. Default: none.
    pub key_file: Option<PathBuf>,
}

fn default_pg_port() -> u16 {
    5432
}
fn default_ferry_schema() -> String {
    "ferry".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTables {
    /// Patterns `db.table` with `*`, `?` and `[...]` globs; at least one.
    pub include: Vec<String>,
    /// Patterns removed from `include`. Default: none.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// MySQL database → PostgreSQL schema. Unmapped databases keep their name.
    #[serde(default)]
    pub schema_map: BTreeMap<String, String>,
    /// Names of online schema change tools' shadow tables (`{table}` is the table they change):
    /// never replicated; their ALTER is recorded and applied at the cut-over RENAME.
    /// Default gh-ost's and pt-online-schema-change's: ["_{table}_gho", "_{table}_new"].
    #[serde(default = "default_shadow_tables")]
    pub shadow_tables: Vec<String>,
    /// Names of the tools' other tables (changelog, sentry, the old table after the swap):
    /// never replicated, their statements ignored.
    /// Default ["_{table}_ghc", "_{table}_del", "_{table}_old"].
    #[serde(default = "default_helper_tables")]
    pub helper_tables: Vec<String>,
}

fn default_shadow_tables() -> Vec<String> {
    crate::source::tool_tables::DEFAULT_SHADOWS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_helper_tables() -> Vec<String> {
    crate::source::tool_tables::DEFAULT_HELPERS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApply {
    /// Row changes buffered per table before they are written as one statement. Default 5000.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Bytes of row values (text form) buffered before they are written as one statement,
    /// whatever the row count; a row larger than this goes alone. Default 16 MiB.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Source transactions are grouped into one PostgreSQL transaction until this many rows.
    /// Default 20000.
    #[serde(default = "default_group_rows")]
    pub group_max_rows: usize,
    /// Longest a group waits for more source transactions before committing. Default 20 ms.
    #[serde(default = "default_group_wait")]
    pub group_max_wait_ms: u64,
    /// Capacity (messages) of the reader → applier channel. Default 4096.
    #[serde(default = "default_channel")]
    pub channel_capacity: usize,
    /// Rows read but not yet batched by the applier; bounds memory. Default 20000.
    #[serde(default = "default_rows_in_flight")]
    pub max_rows_in_flight: usize,
    /// Bytes of row values read but not yet batched by the applier; bounds memory whatever
    /// the row sizes (a message larger than this travels alone). Default 64 MiB.
    #[serde(default = "default_bytes_in_flight")]
    pub max_bytes_in_flight: usize,
}

impl Default for RawApply {
    fn default() -> Self {
        Self {
            batch_rows: default_batch_rows(),
            batch_bytes: default_batch_bytes(),
            group_max_rows: default_group_rows(),
            group_max_wait_ms: default_group_wait(),
            channel_capacity: default_channel(),
            max_rows_in_flight: default_rows_in_flight(),
            max_bytes_in_flight: default_bytes_in_flight(),
        }
    }
}

fn default_batch_rows() -> usize {
    5000
}
fn default_group_rows() -> usize {
    20_000
}
fn default_group_wait() -> u64 {
    20
}
fn default_rows_in_flight() -> usize {
    20_000
}
fn default_batch_bytes() -> usize {
    16 << 20
}
fn default_bytes_in_flight() -> usize {
    64 << 20
}
fn default_chunk_bytes() -> usize {
    16 << 20
}

fn default_channel() -> usize {
    4096
}

/// Copying the rows that exist before streaming starts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackfill {
    /// Copy existing rows when a stream starts without a checkpoint. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Tables copied at once; each uses one source and one target connection. Default 2.
    #[serde(default = "default_parallel_tables")]
    pub parallel_tables: usize,
    /// Rows per chunk (one source statement, one target transaction). Default 25000.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: usize,
    /// Bytes of values per chunk: a chunk ends at `chunk_rows` or here, whichever comes first;
    /// a row larger than this is copied alone. Default 16 MiB.
    #[serde(default = "default_chunk_bytes")]
    pub chunk_bytes: usize,
    /// Upper bound on rows copied per second over all tables; 0 = unlimited. Default 0.
    #[serde(default)]
    pub rows_per_second: u64,
    /// Tables (`db.table`) new to a stream that has a checkpoint whose every row is still in the
    /// binlog (created on the source after that checkpoint, while ferry was stopped): not
    /// copied, streamed only. Default none.
    #[serde(default)]
    pub stream_only_tables: Vec<String>,
}

impl Default for RawBackfill {
    fn default() -> Self {
        Self {
            enabled: true,
            parallel_tables: default_parallel_tables(),
            chunk_rows: default_chunk_rows(),
            chunk_bytes: default_chunk_bytes(),
            rows_per_second: 0,
            stream_only_tables: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_parallel_tables() -> usize {
    2
}
fn default_chunk_rows() -> usize {
    25_000
}

/// Type mapping options and policies for values PostgreSQL cannot hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTypes {
    /// Map TINYINT(1)/BOOL to boolean instead of smallint. Default false.
    #[serde(default)]
    pub tinyint1_as_boolean: bool,
    /// Zero or partial-zero dates (`0000-00-00`, `2022-11-00`): "refuse" (default), "null",
    /// "dead_letter", or "value:<literal>".
    #[serde(default)]
    pub zero_date: Option<String>,
    /// NUL characters in text: "refuse" (default), "null", "dead_letter", or "value:<literal>".
    #[serde(default)]
    pub nul_in_text: Option<String>,
    /// Bytes invalid in the column's character set: "refuse" (default), "null", "dead_letter".
    #[serde(default)]
    pub invalid_text: Option<String>,
    /// Spatial columns: "auto" (default: PostGIS geometry when the extension is installed in the
    /// target database, else bytea), "bytea", or "postgis".
    #[serde(default)]
    pub spatial: Option<String>,
    /// Text columns with a case-insensitive (`_ci`) collation: "text" (default: plain
    /// varchar/text, case-sensitive on PostgreSQL), "citext" (the extension's type), or "icu"
    /// (a nondeterministic ICU collation that ignores case).
    #[serde(default)]
    pub case_insensitive: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// HTTP listen address for /metrics and /status; "" disables. Default "127.0.0.1:9187".
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
    /// File holding a bearer token: when set, /metrics and /status answer only requests with
    /// `Authorization: Bearer <token>` (for a listen address off loopback). Default: none.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
            token_file: None,
        }
    }
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9187".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// tracing filter, e.g. "info" or "ferry=debug". Default "info".
    #[serde(default = "default_log_level")]
    pub level: String,
    /// "text" or "json". Default "text".
    #[serde(default = "default_log_format")]
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: default_log_format(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}
fn default_log_format() -> String {
    "text".into()
}

/// Drift verification: `ferry verify` and the continuous verifier inside `ferry run`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    /// Run the continuous verifier inside `ferry run` (read-only, within `rows_per_second`).
    /// Default true.
    #[serde(default = "default_verify_continuous")]
    pub continuous: bool,
    /// Source rows the continuous verifier checks per second: its load budget. Default 5000.
    #[serde(default = "default_verify_rate")]
    pub rows_per_second: u64,
    /// Rows per checksum chunk. Default 10000.
    #[serde(default = "default_verify_chunk")]
    pub chunk_rows: u64,
    /// Differing chunks are bisected until a range holds at most this many rows per side, then
    /// compared row by row. Default 64.
    #[serde(default = "default_verify_leaf")]
    pub leaf_rows: u64,
    /// Pause between two full passes of the continuous verifier. Default 600.
    #[serde(default = "default_verify_interval")]
    pub pass_interval_seconds: f64,
    /// Longest wait for the stream to apply past the source position before candidate rows are
    /// re-compared. Default 30.
    #[serde(default = "default_verify_settle")]
    pub settle_timeout_seconds: f64,
    /// Differing rows listed per table; more are counted, not listed. Default 1000.
    #[serde(default = "default_verify_max_rows")]
    pub max_reported_rows: usize,
    /// Chunk workers of `ferry verify`, each with one source and one target session. Default 2.
    #[serde(default = "default_verify_parallel")]
    pub parallel: usize,
}

impl Default for RawVerify {
    fn default() -> Self {
        Self {
            continuous: default_verify_continuous(),
            rows_per_second: default_verify_rate(),
            chunk_rows: default_verify_chunk(),
            leaf_rows: default_verify_leaf(),
            pass_interval_seconds: default_verify_interval(),
            settle_timeout_seconds: default_verify_settle(),
            max_reported_rows: default_verify_max_rows(),
            parallel: default_verify_parallel(),
        }
    }
}

fn default_verify_continuous() -> bool {
    true
}
fn default_verify_rate() -> u64 {
    5000
}
fn default_verify_chunk() -> u64 {
    10_000
}
fn default_verify_leaf() -> u64 {
    64
}
fn default_verify_interval() -> f64 {
    600.0
}
fn default_verify_settle() -> f64 {
    30.0
}
fn default_verify_max_rows() -> usize {
    1000
}
fn default_verify_parallel() -> usize {
    2
}

/// Where a stream without a checkpoint begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The source's current binlog end at first start.
    Current,
    Position(BinlogPosition),
    Gtid(GtidSet),
}

/// How much of TLS a connection demands, in libpq's and MySQL's meanings (one enum for both
/// sides: the names differ, the meanings are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsMode {
    /// Plaintext only (`disable` / `DISABLED`).
    Disable,
    /// TLS when the server offers it, else plaintext; the certificate is not checked
    /// (`prefer` / `PREFERRED`).
    Prefer,
    /// TLS or no connection; the certificate is not checked (`require` / `REQUIRED`).
    Require,
    /// TLS with the server's chain checked against the CA; the host name is not checked
    /// (`verify-ca` / `VERIFY_CA`).
    VerifyCa,
    /// TLS with the chain checked and the host name matched against the certificate
    /// (`verify-full` / `VERIFY_IDENTITY`).
    VerifyFull,
}

/// Which database a TLS setting belongs to: decides the spelling of the modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSide {
    Source,
    Target,
}

impl TlsMode {
    const NAMES: [(TlsMode, &'static str, &'static str); 5] = [
        (TlsMode::Disable, "DISABLED", "disable"),
        (TlsMode::Prefer, "PREFERRED", "prefer"),
        (TlsMode::Require, "REQUIRED", "require"),
        (TlsMode::VerifyCa, "VERIFY_CA", "verify-ca"),
        (TlsMode::VerifyFull, "VERIFY_IDENTITY", "verify-full"),
    ];

    /// The mode as the side's configuration spells it.
    pub fn name(self, side: TlsSide) -> &'static str {
        let (_, source, target) = Self::NAMES
            .iter()
            .find(|(m, _, _)| *m == self)
            .expect("every mode is named");
        match side {
            TlsSide::Source => source,
            TlsSide::Target => target,
        }
    }

    /// Parses a source mode (MySQL's names, any case) or a target mode (libpq's names).
    fn parse(side: TlsSide, s: &str) -> Option<TlsMode> {
        Self::NAMES
            .iter()
            .find(|(_, source, target)| match side {
                TlsSide::Source => source.eq_ignore_ascii_case(s),
                TlsSide::Target => *target == s,
            })
            .map(|(m, _, _)| *m)
    }

    /// True when the server's certificate chain must be checked.
    pub fn verifies_chain(self) -> bool {
        self >= TlsMode::VerifyCa
    }
}

/// Validated TLS settings of one side.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub side: TlsSide,
    pub mode: TlsMode,
    /// CA certificates (PEM) the verifying modes trust; `None`: the Mozilla root set.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsConfig {
    /// The mode as this side's configuration spells it.
    pub fn mode_name(&self) -> &'static str {
        self.mode.name(self.side)
    }
}

/// Validated source connection settings.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub server_id: u32,
    pub start: StartPosition,
    pub heartbeat: Duration,
    pub connect_timeout: Duration,
    pub tls: TlsConfig,
}

/// Validated target connection settings.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password: Secret,
    pub ferry_schema: String,
    pub tls: TlsConfig,
}

/// Validated backfill settings.
#[derive(Debug, Clone)]
pub struct BackfillConfig {
    pub enabled: bool,
    pub parallel_tables: usize,
    pub chunk_rows: usize,
    /// Byte budget of one chunk (values as read from the source).
    pub chunk_bytes: usize,
    /// 0 = unlimited.
    pub rows_per_second: u64,
    /// `backfill.stream_only_tables`, as `db.table`.
    pub stream_only_tables: Vec<String>,
}

/// Validated apply tuning.
#[derive(Debug, Clone)]
pub struct ApplyConfig {
    pub batch_rows: usize,
    /// Byte budget of one statement (row values in text form).
    pub batch_bytes: usize,
    pub group_max_rows: usize,
    pub group_max_wait: Duration,
    pub channel_capacity: usize,
    pub max_rows_in_flight: usize,
    /// Byte budget of the reader → applier queue (row values in text form).
    pub max_bytes_in_flight: usize,
}

/// Validated verification settings.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub continuous: bool,
    pub rows_per_second: u64,
    pub chunk_rows: u64,
    pub leaf_rows: u64,
    pub pass_interval: Duration,
    pub settle_timeout: Duration,
    pub max_reported_rows: usize,
    pub parallel: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The configuration ferry runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub stream: String,
    pub state_dir: PathBuf,
    pub source: SourceConfig,
    pub target: TargetConfig,
    pub tables: TableSelector,
    pub apply: ApplyConfig,
    pub backfill: BackfillConfig,
    pub types: TypeOptions,
    pub metrics_listen: Option<SocketAddr>,
    /// The bearer token /metrics and /status demand (`metrics.token_file`).
    pub metrics_token: Option<Secret>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub verify: VerifyConfig,
    /// `ddl.allow_key_change`.
    pub allow_key_change: bool,
}

impl Config {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// Unreadable file, TOML errors (unknown keys included), invalid values, missing secrets.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Like [`load`](Self::load) without reading the passwords (they stay empty): for the
    /// commands that only talk to the running daemon (`status`, `pause`, `resume`), so an
    /// operator's shell needs no database secrets.
    ///
    /// # Errors
    /// As [`load`](Self::load), except for missing secrets.
    pub fn load_for_control(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)?.validate_with(path.parent().unwrap_or(Path::new(".")), false)
    }

    /// Parses and validates config text; `path` names it in messages and anchors relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::parse(text, path)?.validate(path.parent().unwrap_or(Path::new(".")))
    }

    fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

impl RawConfig {
    /// Applies defaults and checks every value; `base` resolves relative paths.
    pub fn validate(self, base: &Path) -> Result<Config, ConfigError> {
        self.validate_with(base, true)
    }

    /// [`validate`](Self::validate); `read_secrets = false` leaves passwords empty.
    fn validate_with(self, base: &Path, read_secrets: bool) -> Result<Config, ConfigError> {
        if self.stream.is_empty() || self.stream.len() > 200 {
            return Err(ConfigError::Invalid {
                key: "stream",
                message: "must be 1 to 200 characters".into(),
            });
        }
        let state_dir = if self.state_dir.is_absolute() {
            self.state_dir
        } else {
            base.join(self.state_dir)
        };
        let start = parse_start(&self.source.start)?;
        if !(0.1..=60.0).contains(&self.source.heartbeat_seconds) {
            return Err(ConfigError::Invalid {
                key: "source.heartbeat_seconds",
                message: "must be between 0.1 and 60".into(),
            });
        }
        if self.source.server_id == 0 {
            return Err(ConfigError::Invalid {
                key: "source.server_id",
                message: "must not be 0 (the source would refuse the replica)".into(),
            });
        }
        let source = SourceConfig {
            password: resolve_password(
                "source.password",
                &self.source.password,
                base,
                read_secrets,
            )?,
            host: self.source.host,
            port: self.source.port,
            user: self.source.user,
            server_id: self.source.server_id,
            start,
            heartbeat: Duration::from_secs_f64(self.source.heartbeat_seconds),
            connect_timeout: Duration::from_secs_f64(self.source.connect_timeout_seconds.max(0.1)),
            tls: validate_tls(TlsSide::Source, &self.source.tls, base, read_secrets)?,
        };
        let target = TargetConfig {
            password: resolve_password(
                "target.password",
                &self.target.password,
                base,
                read_secrets,
            )?,
            host: self.target.host,
            port: self.target.port,
            user: self.target.user,
            database: self.target.database,
            ferry_schema: self.target.ferry_schema,
            tls: validate_tls(TlsSide::Target, &self.target.tls, base, read_secrets)?,
        };
        let tools = crate::source::tool_tables::Patterns::new(
            &self.tables.shadow_tables,
            &self.tables.helper_tables,
        )
        .map_err(|message| ConfigError::Invalid {
            key: "tables.shadow_tables",
            message,
        })?;
        let tables = TableSelector::new(
            &self.tables.include,
            &self.tables.exclude,
            self.tables.schema_map,
        )?
        .with_tool_patterns(tools);
        if self.apply.batch_rows == 0 || self.apply.group_max_rows == 0 {
            return Err(ConfigError::Invalid {
                key: "apply.batch_rows",
                message: "batch_rows and group_max_rows must be at least 1".into(),
            });
        }
        if self.apply.batch_bytes == 0 || self.apply.max_bytes_in_flight == 0 {
            return Err(ConfigError::Invalid {
                key: "apply.batch_bytes",
                message: "batch_bytes and max_bytes_in_flight must be at least 1".into(),
            });
        }
        let apply = ApplyConfig {
            batch_rows: self.apply.batch_rows,
            batch_bytes: self.apply.batch_bytes,
            group_max_rows: self.apply.group_max_rows,
            group_max_wait: Duration::from_millis(self.apply.group_max_wait_ms),
            channel_capacity: self.apply.channel_capacity.max(16),
            max_rows_in_flight: self.apply.max_rows_in_flight.max(1),
            max_bytes_in_flight: self.apply.max_bytes_in_flight,
        };
        if self.backfill.parallel_tables == 0
            || self.backfill.chunk_rows == 0
            || self.backfill.chunk_bytes == 0
        {
            return Err(ConfigError::Invalid {
                key: "backfill.parallel_tables",
                message: "parallel_tables, chunk_rows and chunk_bytes must be at least 1".into(),
            });
        }
        let backfill = BackfillConfig {
            enabled: self.backfill.enabled,
            parallel_tables: self.backfill.parallel_tables,
            chunk_rows: self.backfill.chunk_rows,
            chunk_bytes: self.backfill.chunk_bytes,
            rows_per_second: self.backfill.rows_per_second,
            stream_only_tables: self.backfill.stream_only_tables.clone(),
        };
        let types = TypeOptions {
            tinyint1_as_boolean: self.types.tinyint1_as_boolean,
            zero_date: parse_policy("types.zero_date", self.types.zero_date.as_deref())?,
            nul_in_text: parse_policy("types.nul_in_text", self.types.nul_in_text.as_deref())?,
            invalid_text: parse_policy("types.invalid_text", self.types.invalid_text.as_deref())?,
            spatial: match self.types.spatial.as_deref() {
                None => Spatial::Auto,
                Some(s) => s.parse().map_err(|message| ConfigError::Invalid {
                    key: "types.spatial",
                    message,
                })?,
            },
            postgis_schema: None,
            case_insensitive: match self.types.case_insensitive.as_deref() {
                None => CaseInsensitive::Text,
                Some(s) => s.parse().map_err(|message| ConfigError::Invalid {
                    key: "types.case_insensitive",
                    message,
                })?,
            },
            citext_schema: None,
        };
        let metrics_listen = if self.metrics.listen.is_empty() {
            None
        } else {
            Some(
                self.metrics
                    .listen
                    .parse()
                    .map_err(|e| ConfigError::Invalid {
                        key: "metrics.listen",
                        message: format!("{:?} is not an address:port ({e})", self.metrics.listen),
                    })?,
            )
        };
        let metrics_token = read_token(self.metrics.token_file.as_deref(), base, read_secrets)?;
        let log_format = match self.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    key: "log.format",
                    message: format!("{other:?} is not \"text\" or \"json\""),
                })
            }
        };
        let verify = validate_verify(&self.verify)?;
        Ok(Config {
            verify,
            stream: self.stream,
            state_dir,
            source,
            target,
            tables,
            apply,
            backfill,
            types,
            metrics_listen,
            metrics_token,
            log_level: self.log.level,
            log_format,
            allow_key_change: self.ddl.allow_key_change,
        })
    }
}

fn validate_verify(v: &RawVerify) -> Result<VerifyConfig, ConfigError> {
    let invalid = |key: &'static str, message: &str| ConfigError::Invalid {
        key,
        message: message.into(),
    };
    if v.rows_per_second == 0 {
        return Err(invalid(
            "verify.rows_per_second",
            "must be at least 1 (turn the verifier off with verify.continuous = false)",
        ));
    }
    if v.chunk_rows < 2 {
        return Err(invalid("verify.chunk_rows", "must be at least 2"));
    }
    if v.leaf_rows == 0 || v.leaf_rows > v.chunk_rows {
        return Err(invalid(
            "verify.leaf_rows",
            "must be between 1 and verify.chunk_rows",
        ));
    }
    if !(1..=16).contains(&v.parallel) {
        return Err(invalid("verify.parallel", "must be between 1 and 16"));
    }
    if !(v.pass_interval_seconds >= 0.0 && v.pass_interval_seconds.is_finite()) {
        return Err(invalid(
            "verify.pass_interval_seconds",
            "must be a number of seconds, 0 or more",
        ));
    }
    if !(v.settle_timeout_seconds > 0.0 && v.settle_timeout_seconds.is_finite()) {
        return Err(invalid(
            "verify.settle_timeout_seconds",
            "must be a positive number of seconds",
        ));
    }
    Ok(VerifyConfig {
        continuous: v.continuous,
        rows_per_second: v.rows_per_second,
        chunk_rows: v.chunk_rows,
        leaf_rows: v.leaf_rows,
        pass_interval: Duration::from_secs_f64(v.pass_interval_seconds),
        settle_timeout: Duration::from_secs_f64(v.settle_timeout_seconds),
        max_reported_rows: v.max_reported_rows.max(1),
        parallel: v.parallel,
    })
}

/// Checks a `tls` section; `check_files` also makes sure the named files can be read (the
/// control commands, which never connect, skip that).
fn validate_tls(
    side: TlsSide,
    raw: &RawTls,
    base: &Path,
    check_files: bool,
) -> Result<TlsConfig, ConfigError> {
    let (mode_key, ca_key, cert_key) = match side {
        TlsSide::Source => (
            "source.tls.mode",
            "source.tls.ca_file",
            "source.tls.cert_file",
        ),
        TlsSide::Target => (
            "target.tls.mode",
            "target.tls.ca_file",
            "target.tls.cert_file",
        ),
    };
    let mode = match raw.mode.as_deref() {
        None => TlsMode::Prefer,
        Some(s) => TlsMode::parse(side, s).ok_or_else(|| ConfigError::Invalid {
            key: mode_key,
            message: format!(
                "{s:?} is not one of {}",
                TlsMode::NAMES
                    .iter()
                    .map(|(m, _, _)| m.name(side))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?,
    };
    let resolve = |key: &'static str, p: &Option<PathBuf>| -> Result<_, ConfigError> {
        let Some(p) = p else { return Ok(None) };
        let path = if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        };
        if check_files {
            if let Err(source) = std::fs::metadata(&path) {
                return Err(ConfigError::File { key, path, source });
            }
        }
        Ok(Some(path))
    };
    let ca_file = resolve(ca_key, &raw.ca_file)?;
    let cert = resolve(cert_key, &raw.cert_file)?;
    let key = resolve(cert_key, &raw.key_file)?;
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(ConfigError::Invalid {
                key: cert_key,
                message: "cert_file and key_file go together (mutual TLS needs both)".into(),
            })
        }
    };
    Ok(TlsConfig {
        side,
        mode,
        ca_file,
        client_cert,
    })
}

/// The token of `metrics.token_file`. The daemon (`strict`) fails on an unreadable or empty
/// file; the control commands read it when they can (`ferry status` sends it) and go without it
/// otherwise (`pause` and `resume` signal the daemon and need none).
fn read_token(
    file: Option<&Path>,
    base: &Path,
    strict: bool,
) -> Result<Option<Secret>, ConfigError> {
    let Some(file) = file else { return Ok(None) };
    let path = secret_path(file, base);
    let token = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_string(),
        Err(_) if !strict => return Ok(None),
        Err(source) => {
            return Err(ConfigError::SecretFile {
                key: "metrics.token_file",
                path,
                source,
            })
        }
    };
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::Invalid {
            key: "metrics.token_file",
            message: format!(
                "{} must hold one token (no spaces), not be empty",
                path.display()
            ),
        });
    }
    Ok(Some(Secret::new(token)))
}

fn parse_start(s: &str) -> Result<StartPosition, ConfigError> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("current") {
        return Ok(StartPosition::Current);
    }
    if let Some(gtid) = s.strip_prefix("gtid:") {
        return gtid
            .parse()
            .map(StartPosition::Gtid)
            .map_err(|e| ConfigError::Invalid {
                key: "source.start",
                message: e.to_string(),
            });
    }
    s.parse()
        .map(StartPosition::Position)
        .map_err(|e| ConfigError::Invalid {
            key: "source.start",
            message: format!("{e}; or use \"current\" or \"gtid:<set>\""),
        })
}

fn parse_policy(key: &'static str, s: Option<&str>) -> Result<ValuePolicy, ConfigError> {
    match s {
        None => Ok(ValuePolicy::Refuse),
        Some(s) => s
            .parse()
            .map_err(|message| ConfigError::Invalid { key, message }),
    }
}

/// Where a secret file is: absolute as given; relative, in `$CREDENTIALS_DIRECTORY` when
/// systemd set it (a unit with `LoadCredential=`: the file name is the credential's name),
/// otherwise beside the config file.
fn secret_path(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join(path),
        _ => base.join(path),
    }
}

fn resolve_password(
    key: &'static str,
    raw: &RawPassword,
    base: &Path,
    read: bool,
) -> Result<Secret, ConfigError> {
    let given = [
        raw.password.is_some(),
        raw.password_env.is_some(),
        raw.password_file.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given > 1 {
        return Err(ConfigError::Invalid {
            key,
            message: "give only one of password, password_env, password_file".into(),
        });
    }
    if !read {
        return Ok(Secret::default());
    }
    if let Some(p) = &raw.password {
        return Ok(Secret::new(p.clone()));
    }
    if let Some(var) = &raw.password_env {
        return std::env::var(var)
            .map(Secret::new)
            .map_err(|_| ConfigError::MissingEnv {
                key,
                var: var.clone(),
            });
    }
    if let Some(path) = &raw.password_file {
        let path = secret_path(path, base);
        return std::fs::read_to_string(&path)
            .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
            .map_err(|source| ConfigError::SecretFile { key, path, source });
    }
    Ok(Secret::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [source]
        user = "ferry"
        password = "pw"
        [target]
        user = "postgres"
        database = "app"
        [tables]
        include = ["shop.*"]
    "#;

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        std::env::set_var("FERRY_SOURCE_PASSWORD", "x");
        let cfg = Config::load(&path).expect("the example config.toml must load");
        assert!(cfg.tables.matches("shop", "users"));
    }

    #[test]
    fn defaults_apply() {
        let cfg = Config::from_toml(MINIMAL, Path::new("/etc/ferry/config.toml")).expect("valid");
        assert_eq!(cfg.stream, "default");
        assert_eq!(cfg.source.port, 3306);
        assert_eq!(cfg.source.start, StartPosition::Current);
        assert_eq!(cfg.state_dir, PathBuf::from("/etc/ferry/./ferry-state"));
        assert_eq!(cfg.apply.batch_rows, 5000);
        assert_eq!(cfg.apply.batch_bytes, 16 << 20);
        assert_eq!(cfg.apply.max_bytes_in_flight, 64 << 20);
        assert_eq!(cfg.backfill.chunk_bytes, 16 << 20);
        assert!(cfg.verify.continuous);
        assert_eq!(cfg.verify.rows_per_second, 5000);
        assert_eq!(cfg.verify.chunk_rows, 10_000);
        assert_eq!(cfg.verify.settle_timeout, Duration::from_secs(30));
    }

    #[test]
    fn verify_section_is_validated() {
        let text = format!("{MINIMAL}\n[verify]\ncontinuous = false\nrows_per_second = 100\n");
        let cfg = Config::from_toml(&text, Path::new("c.toml")).expect("valid");
        assert!(!cfg.verify.continuous);
        assert_eq!(cfg.verify.rows_per_second, 100);
        let text = format!("{MINIMAL}\n[verify]\nleaf_rows = 0\n");
        let err = Config::from_toml(&text, Path::new("c.toml")).expect_err("invalid");
        assert!(err.to_string().contains("verify.leaf_rows"), "{err}");
        let text = format!("{MINIMAL}\n[verify]\nchunk_row = 5\n");
        let err = Config::from_toml(&text, Path::new("c.toml")).expect_err("unknown key");
        assert!(err.to_string().contains("chunk_row"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = format!("{MINIMAL}\n[apply]\nbatch_rowz = 5\n");
        let err = Config::from_toml(&text, Path::new("c.toml")).expect_err("must reject");
        assert!(err.to_string().contains("batch_rowz"), "{err}");
    }

    #[test]
    fn secrets_are_never_printed() {
        let cfg = Config::from_toml(MINIMAL, Path::new("c.toml")).expect("valid");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("pw\""), "password leaked: {shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn tls_modes_use_each_side_spelling() {
        let cfg = Config::from_toml(MINIMAL, Path::new("c.toml")).expect("valid");
        assert_eq!(cfg.source.tls.mode, TlsMode::Prefer);
        assert_eq!(cfg.target.tls.mode, TlsMode::Prefer);
        assert_eq!(cfg.source.tls.mode_name(), "PREFERRED");
        assert_eq!(cfg.target.tls.mode_name(), "prefer");
        let text = MINIMAL
            .replace(
                "[target]",
                "[source.tls]\nmode = \"verify_identity\"\n[target]",
            )
            .replace("[tables]", "[target.tls]\nmode = \"verify-ca\"\n[tables]");
        let cfg = Config::from_toml(&text, Path::new("c.toml")).expect("valid");
        assert_eq!(cfg.source.tls.mode, TlsMode::VerifyFull);
        assert_eq!(cfg.target.tls.mode, TlsMode::VerifyCa);
        // A libpq name on the MySQL side (and the reverse) is refused, naming the choices.
        let text = MINIMAL.replace("[target]", "[source.tls]\nmode = \"require\"\n[target]");
        let err = Config::from_toml(&text, Path::new("c.toml")).expect_err("libpq name");
        assert!(err.to_string().contains("source.tls.mode"), "{err}");
        assert!(err.to_string().contains("VERIFY_IDENTITY"), "{err}");
        let text = MINIMAL.replace("[tables]", "[target.tls]\nmode = \"REQUIRED\"\n[tables]");
        let err = Config::from_toml(&text, Path::new("c.toml")).expect_err("MySQL name");
        assert!(err.to_string().contains("verify-full"), "{err}");
    }

    #[test]
    fn tls_files_are_resolved_and_checked() {
        let dir = std::env::temp_dir().join(format!("ferry-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("ca.pem"), "x").expect("write");
        let path = dir.join("c.toml");
        let with =
            |tls: &str| MINIMAL.replace("[tables]", &format!("[target.tls]\n{tls}\n[tables]"));
        let cfg = Config::from_toml(&with("ca_file = \"ca.pem\""), &path).expect("valid");
        assert_eq!(cfg.target.tls.ca_file, Some(dir.join("ca.pem")));
        let err = Config::from_toml(&with("ca_file = \"nope.pem\""), &path).expect_err("missing");
        assert!(err.to_string().contains("target.tls.ca_file"), "{err}");
        let err =
            Config::from_toml(&with("cert_file = \"ca.pem\""), &path).expect_err("no key_file");
        assert!(err.to_string().contains("key_file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_metrics_token_is_read_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("ferry-config-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("token"), "s3cret-token\n").expect("write");
        let path = dir.join("c.toml");
        let text = format!("{MINIMAL}\n[metrics]\ntoken_file = \"token\"\n");
        let cfg = Config::from_toml(&text, &path).expect("valid");
        let token = cfg.metrics_token.as_ref().expect("token");
        assert_eq!(token.expose(), "s3cret-token");
        assert!(!format!("{cfg:?}").contains("s3cret"), "token printed");
        std::fs::write(dir.join("token"), "\n").expect("write");
        let err = Config::from_toml(&text, &path).expect_err("empty token");
        assert!(err.to_string().contains("metrics.token_file"), "{err}");
        let text = format!("{MINIMAL}\n[metrics]\ntoken_file = \"missing\"\n");
        assert!(
            Config::from_toml(&text, &path).is_err(),
            "the daemon needs the file"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn start_positions_parse() {
        assert_eq!(
            parse_start("mysql-bin.000003:120").expect("ok"),
            StartPosition::Position(BinlogPosition::new("mysql-bin.000003", 120))
        );
        assert!(matches!(
            parse_start("gtid:0-1-5").expect("ok"),
            StartPosition::Gtid(_)
        ));
        assert!(parse_start("yesterday").is_err());
    }

    #[test]
    fn password_from_missing_env_is_an_error() {
        let text = MINIMAL.replace(
            "password = \"pw\"",
            "password_env = \"FERRY_TEST_SURELY_UNSET_VAR\"",
        );
        let err = Config::from_toml(&text, Path::new("c.toml")).expect_err("must fail");
        assert!(err.to_string().contains("FERRY_TEST_SURELY_UNSET_VAR"));

        // `status`, `pause` and `resume` read the file without the secrets.
        let dir = std::env::temp_dir().join(format!("ferry-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.toml");
        std::fs::write(&path, &text).expect("write");
        assert!(Config::load(&path).is_err());
        let cfg = Config::load_for_control(&path).expect("no secret needed");
        assert_eq!(cfg.source.password.expose(), "");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
