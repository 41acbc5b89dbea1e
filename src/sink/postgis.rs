//! Decides where spatial columns go: PostGIS `geometry` or bytea (`types.spatial`).
//!
//! Guarantees: the decision is made once per process from the target database, before any table
//! is planned, so every stage (stream, backfill, verification) maps spatial columns the same way;
//! `postgis` on a target without the extension is a clear error, never a silent fallback to bytea.
//! An existing target column of the other kind is caught by `ddl` before a row is written.

use tokio_postgres::Client;

use crate::transform::{Spatial, TypeOptions};

/// The outcome, for preflight to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub options: TypeOptions,
    /// One line on what spatial columns map to and why.
    pub detail: String,
}

/// Resolves `options.spatial` against the target: sets `postgis_schema` when spatial columns map
/// to PostGIS.
///
/// # Errors
/// A query failure, or `postgis` required while the extension is missing (the message names the
/// fix).
pub async fn resolve(client: &Client, options: &TypeOptions) -> Result<Decision, String> {
    let mut options = options.clone();
    if options.spatial == Spatial::Bytea {
        options.postgis_schema = None;
        return Ok(Decision {
            options,
            detail: "spatial columns map to bytea (types.spatial = \"bytea\")".into(),
        });
    }
    let row = client
        .query_opt(
            "SELECT n.nspname, e.extversion FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'postgis'",
            &[],
        )
        .await
        .map_err(|e| format!("reading pg_extension: {e}"))?;
    match (row, options.spatial) {
        (Some(row), _) => {
            let schema: String = row.get(0);
            let version: String = row.get(1);
            let detail =
                format!("spatial columns map to PostGIS {version} geometry (schema {schema})");
            options.postgis_schema = Some(schema);
            Ok(Decision { options, detail })
        }
        (None, Spatial::PostGis) => Err(
            "types.spatial = \"postgis\" but the PostGIS extension is not installed in the target \
             database; run CREATE EXTENSION postgis there, or set types.spatial = \"bytea\""
                .into(),
        ),
        (None, _) => {
            options.postgis_schema = None;
            Ok(Decision {
                options,
                detail: "spatial columns map to bytea (PostGIS is not installed in the target \
                         database)"
                    .into(),
            })
        }
    }
}
