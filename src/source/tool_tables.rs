//! The tables online schema change tools create beside a table they change: gh-ost's shadow
//! `_t_gho`, changelog `_t_ghc` and cut-over sentry / old table `_t_del`;
//! pt-online-schema-change's shadow `_t_new` and old table `_t_old` (with more leading
//! underscores when the name is taken).
//!
//! Guarantees: a name is a tool's table only when its pattern matches and the table it names is
//! selected, so an unrelated `_x_new` beside no table `x` stays an ordinary table; a *shadow*
//! (the table the tool alters and swaps in) is told apart from a *helper* (every other table of
//! the tool), because only a shadow's ALTER is recorded for the swap.

/// What a tool's table is to ferry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Altered by the tool and renamed over the real table at its cut-over.
    Shadow,
    /// Changelog, sentry or the old table after the swap: never replicated, its statements ignored.
    Helper,
}

/// One `prefix{table}suffix` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    prefix: String,
    suffix: String,
}

/// The configured patterns (`tables.shadow_tables`, `tables.helper_tables`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns {
    shadows: Vec<Pattern>,
    helpers: Vec<Pattern>,
}

/// gh-ost's and pt-online-schema-change's shadow tables.
pub const DEFAULT_SHADOWS: [&str; 2] = ["_{table}_gho", "_{table}_new"];
/// gh-ost's changelog and sentry/old tables, pt-online-schema-change's old table.
pub const DEFAULT_HELPERS: [&str; 3] = ["_{table}_ghc", "_{table}_del", "_{table}_old"];

impl Default for Patterns {
    fn default() -> Self {
        let own = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Patterns::new(&own(&DEFAULT_SHADOWS), &own(&DEFAULT_HELPERS)).expect("valid defaults")
    }
}

fn parse(p: &str) -> Result<Pattern, String> {
    match p.split_once("{table}") {
        Some((prefix, suffix)) if !suffix.contains("{table}") => {
            if prefix.is_empty() && suffix.is_empty() {
                return Err(format!(
                    "{p:?} would match every table; give it a prefix or a suffix"
                ));
            }
            Ok(Pattern {
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
            })
        }
        _ => Err(format!(
            "{p:?} must contain `{{table}}` exactly once (e.g. \"_{{table}}_gho\")"
        )),
    }
}

impl Patterns {
    /// # Errors
    /// A pattern without exactly one `{table}`, or one that would match every name.
    pub fn new(shadows: &[String], helpers: &[String]) -> Result<Self, String> {
        Ok(Patterns {
            shadows: shadows.iter().map(|p| parse(p)).collect::<Result<_, _>>()?,
            helpers: helpers.iter().map(|p| parse(p)).collect::<Result<_, _>>()?,
        })
    }

    /// No patterns: every table is an ordinary table.
    pub fn none() -> Self {
        Patterns {
            shadows: Vec::new(),
            helpers: Vec::new(),
        }
    }

    /// Each table `name` could belong to, with its role (pt-online-schema-change adds leading
    /// underscores while a name is taken, so `__t_new` may be `t`'s).
    pub fn candidates(&self, name: &str) -> Vec<(String, Role)> {
        let mut out = Vec::new();
        let roles = self
            .shadows
            .iter()
            .map(|p| (p, Role::Shadow))
            .chain(self.helpers.iter().map(|p| (p, Role::Helper)));
        for (p, role) in roles {
            let Some(rest) = name.strip_prefix(p.prefix.as_str()) else {
                continue;
            };
            let Some(base) = rest.strip_suffix(p.suffix.as_str()) else {
                continue;
            };
            let mut base = base;
            loop {
                if !base.is_empty() {
                    out.push((base.to_string(), role));
                }
                match base.strip_prefix('_') {
                    Some(b) if p.prefix.ends_with('_') => base = b,
                    _ => break,
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_name_their_table_and_role() {
        let p = Patterns::default();
        assert_eq!(
            p.candidates("_items_gho"),
            vec![("items".into(), Role::Shadow)]
        );
        assert_eq!(
            p.candidates("_items_ghc"),
            vec![("items".into(), Role::Helper)]
        );
        assert_eq!(
            p.candidates("__items_new"),
            vec![
                ("_items".into(), Role::Shadow),
                ("items".into(), Role::Shadow)
            ]
        );
        assert_eq!(p.candidates("_a_b_old"), vec![("a_b".into(), Role::Helper)]);
        assert!(p.candidates("items").is_empty());
        assert!(p.candidates("__new").is_empty());
        assert!(Patterns::none().candidates("_items_gho").is_empty());
        assert!(Patterns::new(&["{table}".into()], &[]).is_err());
        assert!(Patterns::new(&["_t_x".into()], &[]).is_err());
        let custom = Patterns::new(&["{table}__shadow".into()], &[]).expect("valid");
        assert_eq!(
            custom.candidates("orders__shadow"),
            vec![("orders".into(), Role::Shadow)]
        );
    }
}
