//! Markdown documents (the report, the plan) as one self-contained HTML page: the Markdown is
//! rendered with its tables, wrapped in a page whose only style is inline — no script, no
//! external asset, so it opens from a file, a mail attachment or a wiki upload as it is.
//!
//! Guarantees: text from the databases (table names, error messages, statements) comes out as
//! text — raw HTML in the Markdown source is escaped, never passed through — and the page
//! forbids scripts and remote loads with its content security policy.

use pulldown_cmark::{html, Event, Options, Parser};

/// What `--format` accepts for a document ferry writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Markdown,
    Html,
}

impl Format {
    /// The explicit choice, else HTML when the output file is named `*.html`/`*.htm`, else
    /// Markdown.
    #[must_use]
    pub fn resolve(explicit: Option<Self>, output: Option<&std::path::Path>) -> Self {
        explicit.unwrap_or_else(|| {
            let html = output
                .and_then(|p| p.extension())
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
            if html {
                Self::Html
            } else {
                Self::Markdown
            }
        })
    }

    /// `markdown` in this format; a page is titled with the document's first heading.
    #[must_use]
    pub fn render(self, markdown: String) -> String {
        match self {
            Self::Markdown => markdown,
            Self::Html => {
                let title = markdown
                    .lines()
                    .find_map(|l| l.strip_prefix("# "))
                    .unwrap_or("ferry")
                    .replace('`', "");
                page(&title, &markdown)
            }
        }
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;\
padding:0 1em;color:#1b1f24}h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #d0d7de;\
padding-bottom:.2em;margin-top:1.8em}table{border-collapse:collapse;margin:.6em 0;display:block;overflow-x:auto}\
th,td{border:1px solid #d0d7de;padding:.3em .6em;vertical-align:top}th{background:#f6f8fa}\
tr:nth-child(even) td{background:#fbfcfd}code{font:13px ui-monospace,monospace;\
background:#f3f4f6;padding:.1em .3em;border-radius:3px}pre code{display:block;padding:.6em;\
overflow-x:auto}";

/// The whole page for `markdown`.
#[must_use]
pub fn page(title: &str, markdown: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        // Raw HTML in the source is data (a name, a message), never markup.
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut body = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut body, events);
    let title_escaped = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title_escaped}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn tables_render_and_raw_html_stays_text() {
        let md =
            "# Report <b>x</b>\n\n| table | rows |\n|---|---:|\n| db.<script>t</script> | 3 |\n\n\
                  <img src=x onerror=alert(1)>\n";
        let out = page("a <title>", md);
        assert!(out.starts_with("<!DOCTYPE html>"));
        assert!(out.contains("<title>a &lt;title&gt;</title>"));
        assert!(out.contains("<table>"), "{out}");
        assert!(
            out.contains("<td style=\"text-align: right\">3</td>"),
            "{out}"
        );
        assert!(out.contains("db.&lt;script&gt;t&lt;/script&gt;"), "{out}");
        assert!(out.contains("&lt;img src=x onerror=alert(1)&gt;"), "{out}");
        assert!(out.contains("Report &lt;b&gt;x&lt;/b&gt;"), "{out}");
        assert!(!out.contains("<script>") && !out.contains("<img"), "{out}");
        assert!(out.contains("default-src 'none'"));
    }

    #[test]
    fn format_follows_the_output_name_unless_chosen() {
        let html = Some(Path::new("r.HTML"));
        assert_eq!(Format::resolve(None, html), Format::Html);
        assert_eq!(
            Format::resolve(None, Some(Path::new("r.htm"))),
            Format::Html
        );
        assert_eq!(
            Format::resolve(None, Some(Path::new("r.md"))),
            Format::Markdown
        );
        assert_eq!(Format::resolve(None, None), Format::Markdown);
        assert_eq!(
            Format::resolve(Some(Format::Markdown), html),
            Format::Markdown
        );
        assert_eq!(Format::resolve(Some(Format::Html), None), Format::Html);
        let page = Format::Html.render("# Migration plan: stream `s`\n\ntext\n".into());
        assert!(
            page.contains("<title>Migration plan: stream s</title>"),
            "{page}"
        );
        assert_eq!(Format::Markdown.render("# a\n".into()), "# a\n");
    }
}
