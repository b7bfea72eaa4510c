//! Email templates: built-in text and HTML, each file replaceable from `mail_templates_dir`.
//!
//! A template is three files named after it: `<name>.subject`, `<name>.txt` and `<name>.html`
//! (names: [`VERIFY_EMAIL`], [`PASSWORD_RESET`], [`PASSWORD_CHANGED`], [`NEW_LOGIN`]). A file missing from
//! the directory falls back to the built-in one. `{{key}}` is replaced by the value of `key`;
//! in the HTML part the value is HTML-escaped first. Unknown placeholders are left as they are.

use std::path::Path;

pub const VERIFY_EMAIL: &str = "verify_email";
pub const PASSWORD_RESET: &str = "password_reset";
pub const PASSWORD_CHANGED: &str = "password_changed";
pub const NEW_LOGIN: &str = "new_login";

/// A rendered email.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn builtin(name: &str, part: &str) -> &'static str {
    match (name, part) {
        (VERIFY_EMAIL, "subject") => "Verify your email address",
        (VERIFY_EMAIL, "txt") => include_str!("templates/verify_email.txt"),
        (VERIFY_EMAIL, "html") => include_str!("templates/verify_email.html"),
        (PASSWORD_RESET, "subject") => "Reset your password",
        (PASSWORD_RESET, "txt") => include_str!("templates/password_reset.txt"),
        (PASSWORD_RESET, "html") => include_str!("templates/password_reset.html"),
        (PASSWORD_CHANGED, "subject") => "Your password was changed",
        (PASSWORD_CHANGED, "txt") => include_str!("templates/password_changed.txt"),
        (PASSWORD_CHANGED, "html") => include_str!("templates/password_changed.html"),
        (NEW_LOGIN, "subject") => "New sign-in to your account",
        (NEW_LOGIN, "txt") => include_str!("templates/new_login.txt"),
        (NEW_LOGIN, "html") => include_str!("templates/new_login.html"),
        _ => "",
    }
}

fn part(dir: Option<&Path>, name: &str, part: &str) -> String {
    if let Some(dir) = dir {
        let file = dir.join(format!("{name}.{part}"));
        match std::fs::read_to_string(&file) {
            Ok(text) => return text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "email template unreadable; using the built-in one")
            }
        }
    }
    builtin(name, part).to_string()
}

/// Replaces each `{{key}}` in `template`, passing each value through `escape`.
fn substitute(template: &str, values: &[(&str, &str)], escape: fn(&str) -> String) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), &escape(value));
    }
    out
}

pub fn html_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders template `name` with `values`, reading overrides from `dir`.
pub fn render(dir: Option<&Path>, name: &str, values: &[(&str, &str)]) -> Rendered {
    let plain = |v: &str| v.to_string();
    let subject = substitute(part(dir, name, "subject").trim(), values, plain);
    Rendered {
        // A header must be one line.
        subject: subject.replace(['\r', '\n'], " "),
        text: substitute(&part(dir, name, "txt"), values, plain),
        html: substitute(&part(dir, name, "html"), values, html_escape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_substituted_and_escaped_in_html_only() {
        let r = render(
            None,
            VERIFY_EMAIL,
            &[("link", "https://x/?a=1&b=<2>"), ("token", "t")],
        );
        assert!(r.text.contains("https://x/?a=1&b=<2>"), "{}", r.text);
        assert!(
            r.html.contains("https://x/?a=1&amp;b=&lt;2&gt;"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("<2>"));
    }

    #[test]
    fn a_file_in_the_directory_replaces_only_its_part() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password_reset.subject"), "Hi {{email}}\n").unwrap();
        let r = render(Some(dir.path()), PASSWORD_RESET, &[("email", "a@b")]);
        assert_eq!(r.subject, "Hi a@b");
        assert_eq!(
            r.text,
            render(None, PASSWORD_RESET, &[("email", "a@b")]).text
        );
    }
}
