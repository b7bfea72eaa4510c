//! Password rules: a length window and a zxcvbn strength estimate that knows the user's own
//! email and name, so `alice2024` is weak for alice@example.com.

use zxcvbn::matching::patterns::MatchPattern;

/// The longest password accepted, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;

#[derive(Debug, Clone, Copy)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub min_score: u8,
}

impl PasswordPolicy {
    /// Why `password` is refused, if it is. `context` holds the user's email and name.
    pub fn check(&self, password: &str, context: &[&str]) -> Result<(), String> {
        let chars = password.chars().count();
        if chars < self.min_length {
            return Err(format!("must be at least {} characters", self.min_length));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(format!("must be at most {MAX_PASSWORD_CHARS} characters"));
        }
        let mut inputs: Vec<&str> = Vec::new();
        for c in context {
            inputs.push(c);
            inputs.extend(
                c.split(|ch: char| !ch.is_alphanumeric())
                    .filter(|w| w.chars().count() >= 3),
            );
        }
        let estimate = zxcvbn::zxcvbn(password, &inputs);
        // zxcvbn discounts the user's own words but may still rate `alicesmith1990` a 3
        // for alice.smith@example.com; a password mostly made of them is refused outright.
        let lowered: Vec<String> = inputs.iter().map(|i| i.to_lowercase()).collect();
        let personal: usize = estimate
            .sequence()
            .iter()
            .filter(|m| matches!(&m.pattern, MatchPattern::Dictionary(d) if d.matched_word.chars().count() >= 3 && lowered.contains(&d.matched_word)))
            .map(|m| m.token.chars().count())
            .sum();
        if personal * 2 >= chars.min(100) {
            return Err("must not be built from your email address or name".into());
        }
        let score = u8::from(estimate.score());
        if score < self.min_score {
            let mut message = format!(
                "is too easy to guess (strength {score} of 4, at least {} required)",
                self.min_score
            );
            if let Some(feedback) = estimate.feedback() {
                if let Some(warning) = feedback.warning() {
                    message.push_str(&format!(": {warning}"));
                }
                if let Some(suggestion) = feedback.suggestions().first() {
                    message.push_str(&format!(". {suggestion}"));
                }
            }
            return Err(message);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: PasswordPolicy = PasswordPolicy {
        min_length: 8,
        min_score: 3,
    };

    #[test]
    fn length_is_counted_in_characters() {
        assert!(
            POLICY
                .check("short", &[])
                .unwrap_err()
                .contains("at least 8")
        );
        assert!(
            POLICY
                .check(&"x".repeat(129), &[])
                .unwrap_err()
                .contains("at most 128")
        );
        // Eight multi-byte characters are eight characters, not 24 bytes.
        let eight = "日本語のパスワ";
        assert_eq!(eight.chars().count(), 7);
        assert!(POLICY.check(eight, &[]).unwrap_err().contains("at least 8"));
    }

    #[test]
    fn common_and_personal_passwords_are_weak() {
        assert!(
            POLICY
                .check("password123", &[])
                .unwrap_err()
                .contains("too easy")
        );
        let personal = POLICY
            .check(
                "alicesmith1990",
                &["alice.smith@example.com", "Alice Smith"],
            )
            .unwrap_err();
        assert!(personal.contains("email address or name"), "{personal}");
        assert!(
            POLICY
                .check("Margaret!Hamilton?1936", &["margaret.hamilton@example.com"])
                .is_err()
        );
        // The same words are fine for someone else.
        assert!(
            POLICY
                .check("alicesmith1990 tundra", &["bob@example.com"])
                .is_ok()
        );
        assert!(
            POLICY
                .check("correct horse battery staple 42", &["alice@example.com"])
                .is_ok()
        );
    }
}
