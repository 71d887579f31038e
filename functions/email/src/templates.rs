//! Rendering a campaign for one person.
//!
//! The templates are files under `templates/` (HTML, plain text and a one-line subject per
//! campaign, sharing `layout.html` and `numbers.txt`), compiled into the binary so a Lambda
//! needs no file system. HTML templates escape what they insert (minijinja escapes by file
//! extension), so a user who calls themselves `<script>` gets their name, not a script, and
//! the subject is forced onto one printable line, so a name cannot add a header.
//! [`Personalisation`] is everything a template may use; the sender fills it from the
//! database, tests and previews build it directly.

use minijinja::Environment;
use serde::Serialize;

use crate::campaigns::Campaign;

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    ("numbers.txt", include_str!("../templates/numbers.txt")),
    (
        "suggestions.txt",
        include_str!("../templates/suggestions.txt"),
    ),
    ("d1.html", include_str!("../templates/d1.html")),
    ("d1.txt", include_str!("../templates/d1.txt")),
    (
        "d1.subject.txt",
        include_str!("../templates/d1.subject.txt"),
    ),
    ("d7.html", include_str!("../templates/d7.html")),
    ("d7.txt", include_str!("../templates/d7.txt")),
    (
        "d7.subject.txt",
        include_str!("../templates/d7.subject.txt"),
    ),
    ("d30.html", include_str!("../templates/d30.html")),
    ("d30.txt", include_str!("../templates/d30.txt")),
    (
        "d30.subject.txt",
        include_str!("../templates/d30.subject.txt"),
    ),
];

/// What a template sees.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Personalisation {
    pub product: String,
    pub user: Person,
    pub workspace: WorkspaceView,
    /// The workspace's numbers over the campaign's period; `None` before it has any.
    pub numbers: Option<Numbers>,
    /// The workspace's best open suggestions, best first (at most [`TOP_SUGGESTIONS`]).
    pub suggestions: Vec<SuggestionView>,
    /// Where the call to action leads: the app (`APP_URL`).
    pub app_url: String,
    pub unsubscribe_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Person {
    pub first_name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceView {
    pub name: String,
}

/// How many open suggestions an email lists.
pub const TOP_SUGGESTIONS: i64 = 3;

/// An open suggestion as an email lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuggestionView {
    pub explanation: String,
}

/// Figures already formatted for reading (money with its currency, ROAS as a multiple).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Numbers {
    /// "last 7 days", "since you signed up"…
    pub period: String,
    pub spend: String,
    pub revenue: String,
    pub roas: String,
    pub orders: String,
    pub events: String,
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
#[error("render {template}: {reason}")]
pub struct RenderError {
    template: String,
    reason: String,
}

/// The compiled templates; build once and share.
pub struct Templates {
    environment: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// Compiles the embedded templates. They are part of the binary, so a template that does
    /// not compile is a build defect (the snapshot tests catch it), not a runtime condition.
    pub fn new() -> Self {
        let mut environment = Environment::new();
        environment.set_keep_trailing_newline(true);
        for (name, source) in TEMPLATES {
            if let Err(error) = environment.add_template(name, source) {
                panic!("embedded template {name} does not compile: {error:#}");
            }
        }
        Self { environment }
    }

    pub fn render(
        &self,
        campaign: Campaign,
        context: &Personalisation,
    ) -> Result<Rendered, RenderError> {
        let render = |suffix: &str| {
            let name = format!("{campaign}.{suffix}");
            self.environment
                .get_template(&name)
                .and_then(|template| template.render(context))
                .map_err(|error| RenderError {
                    template: name,
                    reason: format!("{error:#}"),
                })
        };
        // A subject is a header: one line of printable text, whatever a name contains (line
        // feeds, tabs, Unicode's own line and paragraph separators).
        let subject = render("subject.txt")?
            .split(|c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Rendered {
            subject,
            html: render("html")?,
            text: render("txt")?,
        })
    }
}

/// The first word of a full name, or a friendly default when there is none.
pub fn first_name(name: Option<&str>) -> String {
    name.and_then(|name| name.split_whitespace().next())
        .map(str::to_string)
        .unwrap_or_else(|| "there".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(numbers: bool) -> Personalisation {
        Personalisation {
            product: "Growth Agents".into(),
            user: Person {
                first_name: "Ada".into(),
                email: "ada@example.com".into(),
            },
            workspace: WorkspaceView {
                name: "Lovelace Labs".into(),
            },
            numbers: numbers.then(|| Numbers {
                period: "last 7 days".into(),
                spend: "USD 1,234.50".into(),
                revenue: "USD 4,938.00".into(),
                roas: "4.00×".into(),
                orders: "57".into(),
                events: "12,408".into(),
            }),
            suggestions: if numbers {
                vec![
                    SuggestionView {
                        explanation: "Move budget from Retargeting to Prospecting".into(),
                    },
                    SuggestionView {
                        explanation: "Pause ad 42: <no sales> in 14 days".into(),
                    },
                ]
            } else {
                Vec::new()
            },
            app_url: "https://app.example.com/".into(),
            unsubscribe_url: "https://api.example.com/email/unsubscribe?token=opaque".into(),
        }
    }

    #[test]
    fn every_campaign_renders_with_and_without_numbers() {
        let templates = Templates::new();
        for campaign in Campaign::ALL {
            for numbers in [true, false] {
                let rendered = templates.render(campaign, &context(numbers)).unwrap();
                let name = format!("{campaign}_{}", if numbers { "numbers" } else { "empty" });
                insta::assert_snapshot!(format!("{name}_subject"), rendered.subject);
                insta::assert_snapshot!(format!("{name}_text"), rendered.text);
                insta::assert_snapshot!(format!("{name}_html"), rendered.html);
            }
        }
    }

    #[test]
    fn html_escapes_what_users_typed_and_subjects_stay_one_line() {
        let templates = Templates::new();
        let mut context = context(true);
        context.user.first_name = "<script>alert(1)</script>\r\nBcc: x@evil.test".into();
        context.workspace.name = "Tom & Jerry's".into();
        let rendered = templates.render(Campaign::D1, &context).unwrap();
        assert!(!rendered.html.contains("<script>"), "{}", rendered.html);
        assert!(rendered.html.contains("&lt;script&gt;"));
        assert!(rendered.html.contains("Tom &amp; Jerry&#x27;s"));
        // A suggestion's text comes from data (ad names): escaped too.
        assert!(
            rendered.html.contains("&lt;no sales&gt;"),
            "{}",
            rendered.html
        );
        assert!(!rendered.subject.contains('\n') && !rendered.subject.contains('\r'));
        // Plain text is not HTML: it keeps the name as typed.
        assert!(rendered.text.contains("Tom & Jerry's"));
    }

    #[test]
    fn first_names_come_from_full_names() {
        assert_eq!(first_name(Some("Ada King Lovelace")), "Ada");
        assert_eq!(first_name(Some("   ")), "there");
        assert_eq!(first_name(None), "there");
    }
}
