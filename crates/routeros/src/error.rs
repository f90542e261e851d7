//! Typed errors and the mapping from RouterOS reply text (SSH stdout, REST `detail`) to them.

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the client reports. Each variant keeps the device's own text (or, for local
/// failures, a sentence saying what went wrong) so operators see what RouterOS said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The named item (disk, file, pool) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// An item with that slot or backing file already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The pool has not enough free space.
    #[error("no space: {0}")]
    NoSpace(String),
    /// The request was rejected as malformed: by our validation or by RouterOS (syntax, value).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The device could not be reached or did not answer in time; retrying may help.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Credentials were refused, the user lacks rights, or the device's identity (host key,
    /// certificate) did not match the pin.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The device answered something we cannot interpret, or read-back disagreed with the request.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The device's RouterOS version lacks a feature we need.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    /// True for failures where the same request may succeed later (transport faults, timeouts,
    /// session limits). Everything else needs a changed request or changed device state.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// True when the device understood the command and declined it (something exists, no
    /// space, a value or state it will not accept), as opposed to a fault on the way.
    pub fn is_device_refusal(&self) -> bool {
        matches!(
            self,
            Error::AlreadyExists(_) | Error::NoSpace(_) | Error::Invalid(_)
        )
    }

    /// The kind's name as reports and tests spell it (`NotFound`, `AlreadyExists`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "NotFound",
            Error::AlreadyExists(_) => "AlreadyExists",
            Error::NoSpace(_) => "NoSpace",
            Error::Invalid(_) => "Invalid",
            Error::Unavailable(_) => "Unavailable",
            Error::Unauthenticated(_) => "Unauthenticated",
            Error::Protocol(_) => "Protocol",
            Error::Unsupported(_) => "Unsupported",
        }
    }

    /// The text carried by the error (device text where there is one).
    pub fn message(&self) -> &str {
        match self {
            Error::NotFound(m)
            | Error::AlreadyExists(m)
            | Error::NoSpace(m)
            | Error::Invalid(m)
            | Error::Unavailable(m)
            | Error::Unauthenticated(m)
            | Error::Protocol(m)
            | Error::Unsupported(m) => m,
        }
    }

    /// The same kind of error with `suffix` appended to its text.
    pub(crate) fn with_suffix(mut self, suffix: &str) -> Error {
        self.text_mut().push_str(suffix);
        self
    }

    fn text_mut(&mut self) -> &mut String {
        match self {
            Error::NotFound(m)
            | Error::AlreadyExists(m)
            | Error::NoSpace(m)
            | Error::Invalid(m)
            | Error::Unavailable(m)
            | Error::Unauthenticated(m)
            | Error::Protocol(m)
            | Error::Unsupported(m) => m,
        }
    }
}

/// Texts RouterOS prints for commands it could not parse or arguments it would not accept.
const SYNTAX_PATTERNS: &[&str] = &[
    "bad command name",
    "expected end of command",
    "expected command name",
    "expected closing",
    "syntax error",
    "input does not match any value of",
    "invalid value",
    "max line length",
    "no such command",
    "missing value",
    "ambiguous value",
];

/// Maps one RouterOS error text to a typed error, or `None` when the text is not a recognised
/// RouterOS error (the caller decides whether that is a protocol failure).
///
/// Order matters: the specific meanings (`no such item`, `already exists`, space) are checked
/// before the generic `failure:` prefix, because RouterOS prefixes most runtime errors with it.
pub fn classify_device_text(text: &str) -> Option<Error> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    let lower = trimmed.to_ascii_lowercase();
    let owned = trimmed.to_owned();
    let error = if lower.contains("no such item") {
        Error::NotFound(owned)
    } else if lower.contains("already exists") || lower.contains("already have") {
        Error::AlreadyExists(owned)
    } else if lower.contains("not enough free space") || lower.contains("not enough space") {
        Error::NoSpace(owned)
    } else if lower.contains("not enough permissions") {
        Error::Unauthenticated(owned)
    } else if lower.contains("session closed") {
        // REST ends commands that run past its 60 s limit this way.
        Error::Unavailable(owned)
    } else if lower.starts_with("failure:") || SYNTAX_PATTERNS.iter().any(|p| lower.contains(p)) {
        Error::Invalid(owned)
    } else {
        return None;
    };
    Some(error)
}

/// Like [`classify_device_text`], but unknown text becomes a `Protocol` error that keeps it.
pub fn device_text_error(text: &str) -> Error {
    classify_device_text(text)
        .unwrap_or_else(|| Error::Protocol(format!("unrecognised reply: {}", text.trim())))
}

/// Maps a REST error reply (HTTP status and body) to a typed error.
///
/// RouterOS answers `{"error":CODE,"message":"Reason","detail":"<CLI error text>"}`; the
/// `detail` carries the same text as the CLI and is classified first. Without a recognisable
/// detail the HTTP status decides.
pub fn rest_error(status: u16, body: &str) -> Error {
    #[derive(serde::Deserialize, Default)]
    struct Body {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        detail: Option<String>,
    }
    let parsed: Body = serde_json::from_str(body).unwrap_or_default();
    let text = match (&parsed.message, &parsed.detail) {
        (Some(m), Some(d)) if !d.is_empty() => format!("{m}: {d}"),
        (Some(m), _) => m.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            let raw = body.trim();
            if raw.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {}", truncate(raw, 512))
            }
        }
    };
    match status {
        401 | 403 => return Error::Unauthenticated(text),
        404 => return Error::NotFound(text),
        _ => {}
    }
    if let Some(detail) = parsed.detail.as_deref()
        && let Some(mut error) = classify_device_text(detail)
    {
        // Keep the reason phrase with the device text.
        *error.text_mut() = text;
        return error;
    }
    match status {
        400 | 406 | 409 | 413 | 415 | 422 => Error::Invalid(text),
        408 | 429 | 500..=599 => Error::Unavailable(text),
        _ => Error::Protocol(format!("unexpected HTTP status {status}: {text}")),
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary (for error texts of unknown size).
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(e: &Error) -> &'static str {
        e.kind_name()
    }

    #[test]
    fn every_contract_error_text_maps_to_its_kind() {
        let cases = [
            ("bad command name foo (line 1 column 7)", "Invalid"),
            ("expected end of command (line 1 column 40)", "Invalid"),
            ("syntax error (line 1 column 3)", "Invalid"),
            (
                "input does not match any value of mount-filesystem",
                "Invalid",
            ),
            ("invalid value for argument file-size", "Invalid"),
            ("no such item", "NotFound"),
            (
                "failure: disk with slot pvc-1 already exists",
                "AlreadyExists",
            ),
            ("failure: file already exists", "AlreadyExists"),
            ("failure: not enough free space on storage-pool", "NoSpace"),
            ("failure: not enough space", "NoSpace"),
            ("failure: invalid file path", "Invalid"),
            ("failure: file-size can not be reduced", "Invalid"),
            ("failure: already have such address", "AlreadyExists"),
            ("not enough permissions (9)", "Unauthenticated"),
            ("Session closed", "Unavailable"),
            ("max line length 65535 exceeded!", "Invalid"),
            ("expected closing brace (line 1 column 9)", "Invalid"),
        ];
        for (text, expected) in cases {
            let e = classify_device_text(&format!("{text}\r\n")).expect(text);
            assert_eq!(kind(&e), expected, "{text}");
            assert_eq!(e.message(), text, "device text is kept verbatim");
        }
    }

    #[test]
    fn unknown_text_is_a_protocol_error_and_empty_text_is_nothing() {
        assert_eq!(classify_device_text("  \r\n"), None);
        assert_eq!(classify_device_text("hello world"), None);
        let e = device_text_error("hello world\r\n");
        assert_eq!(kind(&e), "Protocol");
        assert!(e.message().contains("hello world"));
    }

    #[test]
    fn refusals_are_the_device_declining_not_faults_on_the_way() {
        let refusal = |e: Error| e.is_device_refusal();
        assert!(refusal(Error::AlreadyExists("x".into())));
        assert!(refusal(Error::NoSpace("x".into())));
        assert!(refusal(Error::Invalid("x".into())));
        assert!(!refusal(Error::Unavailable("x".into())));
        assert!(!refusal(Error::Protocol("x".into())));
        assert!(!refusal(Error::Unauthenticated("x".into())));
        assert!(!refusal(Error::NotFound("x".into())));
        assert!(!refusal(Error::Unsupported("x".into())));
    }

    #[test]
    fn only_unavailable_is_retryable() {
        assert!(Error::Unavailable("x".into()).is_retryable());
        for e in [
            Error::NotFound("x".into()),
            Error::AlreadyExists("x".into()),
            Error::NoSpace("x".into()),
            Error::Invalid("x".into()),
            Error::Unauthenticated("x".into()),
            Error::Protocol("x".into()),
            Error::Unsupported("x".into()),
        ] {
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn rest_bodies_map_by_detail_then_status() {
        let body = |code: u16, msg: &str, detail: &str| {
            serde_json::json!({"error": code, "message": msg, "detail": detail}).to_string()
        };
        let cases = [
            (
                400,
                body(
                    400,
                    "Bad Request",
                    "failure: disk with slot a already exists",
                ),
                "AlreadyExists",
            ),
            (
                400,
                body(400, "Bad Request", "failure: not enough free space on pool"),
                "NoSpace",
            ),
            (
                400,
                body(400, "Bad Request", "input does not match any value of type"),
                "Invalid",
            ),
            (
                400,
                body(400, "Bad Request", "failure: invalid file path"),
                "Invalid",
            ),
            (400, body(400, "Bad Request", "no such item"), "NotFound"),
            (
                406,
                body(
                    406,
                    "Not Acceptable",
                    "no such command or directory (remove)",
                ),
                "Invalid",
            ),
            (
                500,
                body(500, "Internal Server Error", "something odd"),
                "Unavailable",
            ),
            (
                400,
                body(400, "Bad Request", "Session closed"),
                "Unavailable",
            ),
            (
                400,
                body(400, "Bad Request", "weird unknown words"),
                "Invalid",
            ),
            (
                503,
                body(503, "Service Unavailable", "too many sessions"),
                "Unavailable",
            ),
            (
                404,
                r#"{"error":404,"message":"Not Found"}"#.to_owned(),
                "NotFound",
            ),
            (
                401,
                r#"{"error":401,"message":"Unauthorized"}"#.to_owned(),
                "Unauthenticated",
            ),
            (403, String::new(), "Unauthenticated"),
            (502, "<html>bad gateway</html>".to_owned(), "Unavailable"),
            (302, String::new(), "Protocol"),
        ];
        for (status, body, expected) in cases {
            let e = rest_error(status, &body);
            assert_eq!(kind(&e), expected, "{status} {body}");
        }
        let e = rest_error(
            400,
            &body(400, "Bad Request", "failure: file already exists"),
        );
        assert_eq!(e.message(), "Bad Request: failure: file already exists");
        let e = rest_error(502, "<html>bad gateway</html>");
        assert!(e.message().contains("bad gateway"), "{e}");
    }

    #[test]
    fn a_suffix_keeps_the_kind() {
        let e = Error::Unavailable("refused".into()).with_suffix(" (retry in 5 ms)");
        assert_eq!(e, Error::Unavailable("refused (retry in 5 ms)".into()));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
