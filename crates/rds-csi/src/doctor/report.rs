//! Verdicts and how they are shown: an aligned table for people (coloured only on a terminal),
//! JSON for programs, and the exit code.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;

use super::node::namespaces::Comparison;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but something deserves attention.
    Warn,
    /// Will not work, or is unsafe: the run exits non-zero.
    Fail,
    /// Not checked (a prerequisite failed or was not given).
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }

    /// ANSI colour of the label.
    fn colour(self) -> &'static str {
        match self {
            Self::Ok => "\x1b[32m",
            Self::Warn => "\x1b[33m",
            Self::Fail => "\x1b[1;31m",
            Self::Skip => "\x1b[2m",
        }
    }
}

/// One check: what was looked at, what was found, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier for scripts (`node.host-nqn`, `rds.login`).
    pub id: String,
    /// What was checked, for people.
    pub name: String,
    pub status: Status,
    /// What was found; may span several lines.
    pub detail: String,
    /// What to do about it, when there is something to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn ok(id: impl Into<String>, name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(id, name, Status::Ok, detail)
    }

    pub fn warn(id: impl Into<String>, name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(id, name, Status::Warn, detail)
    }

    pub fn fail(id: impl Into<String>, name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(id, name, Status::Fail, detail)
    }

    pub fn skip(id: impl Into<String>, name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(id, name, Status::Skip, detail)
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// How many checks ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

/// Everything one run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Version of this program.
    pub version: &'static str,
    /// Whether RDS checks ran (they need `--rds-address`).
    pub rds_checked: bool,
    /// `fail` when any check failed, `warn` when any warned, else `ok`.
    pub result: Status,
    pub counts: Counts,
    pub checks: Vec<Check>,
    /// With `--compare`: what became of each saved namespace's identifiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_ids: Option<Comparison>,
}

impl Report {
    pub fn new(checks: Vec<Check>, rds_checked: bool) -> Self {
        let mut counts = Counts::default();
        for check in &checks {
            match check.status {
                Status::Ok => counts.ok += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
                Status::Skip => counts.skip += 1,
            }
        }
        let result = if counts.fail > 0 {
            Status::Fail
        } else if counts.warn > 0 {
            Status::Warn
        } else {
            Status::Ok
        };
        Self {
            version: env!("CARGO_PKG_VERSION"),
            rds_checked,
            result,
            counts,
            checks,
            namespace_ids: None,
        }
    }

    pub fn with_namespace_ids(mut self, comparison: Option<Comparison>) -> Self {
        self.namespace_ids = comparison;
        self
    }

    /// 0 when nothing failed (warnings allowed), 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        if self.result == Status::Fail {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The table: one row per check (CHECK, RESULT, DETAIL), continuation lines and the fix
    /// indented under DETAIL, a blank line between the node and RDS groups, a summary last.
    pub fn render(&self, colour: bool) -> String {
        let paint = |status: Status, text: &str| {
            if colour {
                format!("{}{text}\x1b[0m", status.colour())
            } else {
                text.to_owned()
            }
        };
        let name_width = self
            .checks
            .iter()
            .map(|c| c.name.chars().count())
            .chain([5])
            .max()
            .unwrap_or(5);
        const RESULT_WIDTH: usize = 6;
        let indent = " ".repeat(name_width + 2 + RESULT_WIDTH + 2);
        let mut out = String::new();
        let _ = writeln!(out, "rds-csi doctor {}", self.version);
        if !self.rds_checked {
            let _ = writeln!(
                out,
                "Node checks only: give --rds-address (and the controller's connection flags) \
                 to check the RDS too."
            );
        }
        let _ = writeln!(
            out,
            "\n{:<name_width$}  {:<RESULT_WIDTH$}  DETAIL",
            "CHECK", "RESULT"
        );
        let mut group = None;
        for check in &self.checks {
            let this_group = check.id.split('.').next();
            if group.is_some() && group != this_group {
                out.push('\n');
            }
            group = this_group;
            let label = format!("{:<RESULT_WIDTH$}", check.status.label());
            let mut lines = check.detail.lines();
            let _ = writeln!(
                out,
                "{:<name_width$}  {}  {}",
                check.name,
                paint(check.status, &label),
                lines.next().unwrap_or("")
            );
            for line in lines {
                let _ = writeln!(out, "{indent}{line}");
            }
            if let Some(fix) = &check.fix {
                for (index, line) in fix.lines().enumerate() {
                    let lead = if index == 0 { "fix: " } else { "     " };
                    let _ = writeln!(out, "{indent}{lead}{line}");
                }
            }
        }
        let Counts {
            ok,
            warn,
            fail,
            skip,
        } = self.counts;
        let subject = if self.rds_checked {
            "this node and the RDS are"
        } else {
            "this node is"
        };
        let verdict = match self.result {
            Status::Fail => format!("{subject} not ready"),
            Status::Warn => format!("{subject} usable, with warnings"),
            _ => format!("{subject} ready"),
        };
        let _ = writeln!(
            out,
            "\n{} ok, {} warning{}, {} failed, {} skipped: {}",
            ok,
            warn,
            if warn == 1 { "" } else { "s" },
            fail,
            skip,
            paint(self.result, &verdict)
        );
        out
    }
}

/// Whether to colour the table: only on a terminal, and never when `NO_COLOR` is set to
/// anything non-empty (<https://no-color.org>).
pub fn use_colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Bytes in binary units with one decimal (`1.5 GiB`).
pub fn bytes(size: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration in milliseconds with a precision that suits it.
pub fn millis(duration: std::time::Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report::new(
            vec![
                Check::ok("node.a", "first", "fine"),
                Check::warn("node.b", "second check", "line one\nline two").fix("do this"),
                Check::fail("rds.c", "third", "broken").fix("step 1\nstep 2"),
                Check::skip("rds.d", "fourth", "not checked"),
            ],
            true,
        )
    }

    #[test]
    fn the_result_is_the_worst_status_and_sets_the_exit_code() {
        let report = sample();
        assert_eq!(report.result, Status::Fail);
        assert_eq!(
            report.counts,
            Counts {
                ok: 1,
                warn: 1,
                fail: 1,
                skip: 1
            }
        );
        assert_eq!(report.exit_code(), ExitCode::FAILURE);
        let warned = Report::new(vec![Check::warn("a.b", "x", "y")], false);
        assert_eq!(warned.result, Status::Warn);
        assert_eq!(warned.exit_code(), ExitCode::SUCCESS, "warnings pass");
        let skipped = Report::new(vec![Check::skip("a.b", "x", "y")], false);
        assert_eq!(skipped.result, Status::Ok);
    }

    #[test]
    fn the_table_aligns_columns_and_puts_fixes_under_the_detail() {
        let text = sample().render(false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"CHECK         RESULT  DETAIL"), "{text}");
        assert!(lines.contains(&"second check  warn    line one"), "{text}");
        assert!(lines.contains(&"                      line two"), "{text}");
        assert!(
            lines.contains(&"                      fix: do this"),
            "{text}"
        );
        assert!(lines.contains(&"third         FAIL    broken"), "{text}");
        assert!(
            lines.contains(&"                      fix: step 1"),
            "{text}"
        );
        assert!(
            lines.contains(&"                           step 2"),
            "{text}"
        );
        // A blank line separates the node group from the RDS group.
        let second = lines.iter().position(|l| l.starts_with("second")).unwrap();
        assert_eq!(lines[second + 3], "", "{text}");
        assert!(text.ends_with(
            "1 ok, 1 warning, 1 failed, 1 skipped: this node and the RDS are not ready\n"
        ));
        assert!(!text.contains('\x1b'), "no colour codes when not asked");
        assert!(!text.contains("Node checks only"));
        assert!(sample().render(true).contains("\x1b[1;31mFAIL  \x1b[0m"));
        let node_only = Report::new(vec![Check::ok("node.a", "a", "b")], false).render(false);
        assert!(node_only.contains("Node checks only"), "{node_only}");
        assert!(node_only.ends_with(": this node is ready\n"), "{node_only}");
    }

    #[test]
    fn json_carries_every_check_and_the_summary() {
        let value: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(value["result"], "fail");
        assert_eq!(value["rds_checked"], true);
        assert_eq!(value["counts"]["warn"], 1);
        let checks = value["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 4);
        assert_eq!(checks[1]["id"], "node.b");
        assert_eq!(checks[1]["status"], "warn");
        assert_eq!(checks[1]["fix"], "do this");
        assert!(checks[0].get("fix").is_none(), "no fix, no field");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536 << 20), "1.5 GiB");
        assert_eq!(bytes(1 << 40), "1.0 TiB");
        assert_eq!(millis(std::time::Duration::from_micros(1234)), "1.23 ms");
        assert_eq!(millis(std::time::Duration::from_millis(250)), "250 ms");
    }
}
