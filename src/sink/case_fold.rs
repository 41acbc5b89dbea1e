//! Decides what case-insensitive text columns become on the target (`types.case_insensitive`):
//! plain text, the `citext` extension's type, or text with ferry's ICU collation.
//!
//! Guarantees: the decision is made once per process from the target database, before any
//! table is planned, so the stream, the backfill, verification and `ferry schema` map such
//! columns alike; `citext` without the extension, or `icu` on a server built without ICU, is a
//! clear error naming the fix — never a silent fallback to case-sensitive text.

use tokio_postgres::Client;

use crate::transform::{CaseInsensitive, TypeOptions};

/// The outcome, for preflight to show (the same shape as the spatial decision).
pub use super::postgis::Decision;

/// Resolves `options.case_insensitive` against the target: sets `citext_schema` under
/// `citext`, checks ICU support under `icu`.
///
/// # Errors
/// A query failure, the citext extension missing, or a server without ICU (the message names
/// the fix).
pub async fn resolve(client: &Client, options: &TypeOptions) -> Result<Decision, String> {
    let mut options = options.clone();
    options.citext_schema = None;
    match options.case_insensitive {
        CaseInsensitive::Text => Ok(Decision {
            options,
            detail: "columns with a _ci collation map to varchar/text (case-sensitive on \
                     PostgreSQL; types.case_insensitive = \"text\")"
                .into(),
        }),
        CaseInsensitive::Citext => {
            let row = client
                .query_opt(
                    "SELECT n.nspname, e.extversion FROM pg_extension e \
                     JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'citext'",
                    &[],
                )
                .await
                .map_err(|e| format!("reading pg_extension: {e}"))?;
            let Some(row) = row else {
                return Err(
                    "types.case_insensitive = \"citext\" but the citext extension is not \
                     installed in the target database; run CREATE EXTENSION citext there, or \
                     set types.case_insensitive = \"icu\" or \"text\""
                        .into(),
                );
            };
            let schema: String = row.get(0);
            let version: String = row.get(1);
            let detail = format!(
                "columns with a _ci collation map to citext {version} (schema {schema}; a \
                 length limit becomes a CHECK)"
            );
            options.citext_schema = Some(schema);
            Ok(Decision { options, detail })
        }
        CaseInsensitive::Icu => {
            let icu: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_collation WHERE collprovider = 'i')",
                    &[],
                )
                .await
                .map_err(|e| format!("reading pg_collation: {e}"))?
                .get(0);
            if !icu {
                return Err(
                    "types.case_insensitive = \"icu\" but the target server was built without \
                     ICU; use a build with ICU, or set types.case_insensitive = \"citext\" or \
                     \"text\""
                        .into(),
                );
            }
            Ok(Decision {
                options,
                detail: format!(
                    "columns with a _ci collation get the nondeterministic ICU collation {} \
                     (und-u-ks-level2: case ignored, accents kept), created in each target schema",
                    crate::transform::mapping::ICU_CI_COLLATION
                ),
            })
        }
    }
}

/// [`super::postgis::resolve`] then [`resolve`]: every decision the type mapping takes from
/// the target, in the order preflight shows them.
///
/// # Errors
/// The first decision that fails, with its message.
pub async fn resolve_target_types(
    client: &Client,
    options: &TypeOptions,
) -> Result<TypeOptions, String> {
    let spatial = super::postgis::resolve(client, options).await?;
    Ok(resolve(client, &spatial.options).await?.options)
}
