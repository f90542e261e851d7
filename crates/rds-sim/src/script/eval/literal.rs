//! Anchored literal patterns (`^/?storage-pool/pvc-1\.img$`, what clients send to find one
//! item by name) recognised so that a look-up compares strings instead of running a regular
//! expression over every item: the same answers, a fraction of the time with many items.

/// A pattern that matches exactly one text (or that text after a `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredLiteral {
    slash_optional: bool,
    text: String,
}

/// Characters a POSIX extended regular expression treats specially.
const META: &str = "\\.^$|?*+()[]{}";

impl AnchoredLiteral {
    /// `^` [`/?`] literal `$`, where the literal escapes every metacharacter with `\`;
    /// `None` for any other pattern.
    pub fn parse(pattern: &str) -> Option<Self> {
        let body = pattern.strip_prefix('^')?.strip_suffix('$')?;
        let (slash_optional, body) = match body.strip_prefix("/?") {
            Some(rest) => (true, rest),
            None => (false, body),
        };
        let mut text = String::with_capacity(body.len());
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped) if META.contains(escaped) => text.push(escaped),
                    // `\` at the end (the `$` was escaped) or before a class like `\d`.
                    _ => return None,
                },
                c if META.contains(c) => return None,
                c => text.push(c),
            }
        }
        Some(Self {
            slash_optional,
            text,
        })
    }

    /// Every text the pattern matches.
    pub fn subjects(&self) -> Vec<String> {
        let mut subjects = vec![self.text.clone()];
        if self.slash_optional {
            subjects.push(format!("/{}", self.text));
        }
        subjects
    }

    pub fn is_match(&self, subject: &str) -> bool {
        subject == self.text
            || (self.slash_optional
                && subject
                    .strip_prefix('/')
                    .is_some_and(|rest| rest == self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    #[test]
    fn literal_patterns_answer_as_the_regular_expression_does() {
        let subjects = [
            "storage-pool/pvc-1.img",
            "/storage-pool/pvc-1.img",
            "//storage-pool/pvc-1.img",
            "storage-pool/pvc-1ximg",
            "storage-pool/pvc-1.img.tmp",
            "xstorage-pool/pvc-1.img",
            "",
            "a$b",
            "a(b)",
        ];
        for pattern in [
            r"^/?storage-pool/pvc-1\.img$",
            r"^storage-pool/pvc-1\.img$",
            r"^a\$b$",
            r"^a\(b\)$",
            r"^$",
        ] {
            let literal = AnchoredLiteral::parse(pattern).unwrap_or_else(|| panic!("{pattern}"));
            let regex = Regex::new(pattern).unwrap();
            for subject in subjects {
                assert_eq!(
                    literal.is_match(subject),
                    regex.is_match(subject),
                    "{pattern} on {subject:?}"
                );
                // The texts it names are exactly those it matches.
                assert_eq!(
                    literal.subjects().iter().any(|s| s == subject),
                    regex.is_match(subject),
                    "subjects of {pattern} and {subject:?}"
                );
            }
        }
    }

    #[test]
    fn anything_but_an_anchored_literal_is_left_to_the_regular_expression() {
        for pattern in [
            r"storage-pool/pvc-1\.img",
            r"^storage-pool/pvc-1.img$",
            r"^pvc-",
            r"^a\$",
            r"^(a|b)$",
            r"^a\d$",
            r"^a*$",
            r"^/?a/?b$",
        ] {
            assert_eq!(AnchoredLiteral::parse(pattern), None, "{pattern}");
        }
    }
}
