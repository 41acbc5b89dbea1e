//! Target checks: reachable, writable (probed in a rolled-back transaction), where spatial
//! columns go (PostGIS or bytea) and what case-insensitive text becomes (text, citext, ICU),
//! which every later stage plans with.

use super::Check;
use crate::config::Config;
use crate::error::ErrorClass;
use crate::sink::connect as pg;
use crate::sink::{case_fold, postgis};
use crate::transform::TypeOptions;

/// Checks the target; returns the type options resolved against it (as configured when the
/// target cannot be asked).
pub(super) async fn check_target(config: &Config, checks: &mut Vec<Check>) -> TypeOptions {
    let client = match pg::connect(&config.target).await {
        Ok(c) => c,
        Err(e) if pg::is_tls_refusal(&e) => {
            let detail = pg::tls_refusal(&e, &config.target).unwrap_or_else(|| pg::describe(&e));
            checks.push(Check::fail("target TLS", detail, super::TLS_FIX));
            return config.types.clone();
        }
        Err(e) => {
            checks.push(
                Check::fail(
                    "target reachable",
                    e.to_string(),
                    "check target.host/port/user/database and the password; the database must exist",
                )
                .class(ErrorClass::of_postgres(&e)),
            );
            return config.types.clone();
        }
    };
    checks.push(match pg::negotiated(&client, &config.target.tls).await {
        Ok(n) => super::tls_check("target TLS", &n, &config.target.tls),
        Err(e) => Check::fail(
            "target TLS",
            pg::describe(&e),
            "grant the ferry user SELECT on pg_stat_ssl",
        ),
    });
    let version = client
        .query_one("SELECT current_setting('server_version')", &[])
        .await
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_default();
    checks.push(Check::pass(
        "target reachable",
        format!("PostgreSQL {version}"),
    ));
    // Writable: create ferry's schema and a table inside a transaction that is rolled back.
    let probe = format!(
        "BEGIN; CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE {s}.ferry_preflight_probe (x int); \
         INSERT INTO {s}.ferry_preflight_probe VALUES (1); ROLLBACK;",
        s = crate::select::quote_ident(&config.target.ferry_schema)
    );
    checks.push(match client.batch_execute(&probe).await {
        Ok(()) => Check::pass("target writable", "can create schemas and tables"),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Check::fail(
                "target writable",
                pg::describe(&e),
                format!(
                    "GRANT CREATE ON DATABASE {} TO {} (ferry creates schema {:?} and the target tables)",
                    config.target.database, config.target.user, config.target.ferry_schema
                ),
            )
        }
    });
    let spatial = postgis::resolve(&client, &config.types).await;
    let types = decided(
        checks,
        "spatial types",
        spatial,
        "install PostGIS in the target database (CREATE EXTENSION postgis) or set types.spatial = \"bytea\"",
        &config.types,
    );
    let case = case_fold::resolve(&client, &types).await;
    decided(
        checks,
        "case-insensitive text",
        case,
        "CREATE EXTENSION citext in the target database, or choose another types.case_insensitive",
        &types,
    )
}

/// Records a type-mapping decision as a check; the options it decided, or `before` when it
/// failed.
fn decided(
    checks: &mut Vec<Check>,
    name: &'static str,
    decision: Result<postgis::Decision, String>,
    fix: &str,
    before: &TypeOptions,
) -> TypeOptions {
    match decision {
        Ok(d) => {
            checks.push(Check::pass(name, d.detail));
            d.options
        }
        Err(e) => {
            checks.push(Check::fail(name, e, fix));
            before.clone()
        }
    }
}
