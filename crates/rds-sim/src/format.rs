//! Human CLI output: `print` tables, `print detail`, `print terse`,
//! settings menus, and the 80-column terminal wrap of an exec session.
//! Functions return lines without terminators; the SSH layer ends them
//! with CRLF.

use crate::records::{CliStyle, Flag, Record, format_id};

/// Width of the (non-PTY) terminal of an exec session.
pub const TERMINAL_WIDTH: usize = 80;

/// Options shared by the list formats.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Print `*1A` instead of the position index.
    pub show_ids: bool,
    /// Only these properties (empty = all).
    pub proplist: Vec<String>,
}

/// The `Flags:` legend for the flags set on any of `records`; `None` when
/// no flag is set.
pub fn flags_legend(records: &[Record]) -> Option<String> {
    let mut seen: Vec<Flag> = Vec::new();
    for record in records {
        for (flag, on) in &record.flags {
            if *on && !seen.contains(flag) {
                seen.push(*flag);
            }
        }
    }
    // Legend order follows the menu's flag order, not first appearance.
    let order: Vec<Flag> = records
        .first()
        .map(|r| r.flags.iter().map(|(f, _)| *f).collect())
        .unwrap_or_default();
    seen.sort_by_key(|f| order.iter().position(|o| o == f));
    if seen.is_empty() {
        return None;
    }
    let items: Vec<String> = seen
        .iter()
        .map(|f| format!("{} - {}", f.letter, f.name.to_uppercase()))
        .collect();
    Some(format!("Flags: {}", items.join("; ")))
}

/// The index column text (`0`, `1`, ... or `*1A`) of each record.
fn index_labels(records: &[Record], opts: &ListOptions) -> Vec<String> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| match (opts.show_ids, r.id) {
            (true, Some(id)) => format_id(id),
            _ => i.to_string(),
        })
        .collect()
}

fn selected<'a>(
    record: &'a Record,
    opts: &ListOptions,
) -> impl Iterator<Item = &'a (&'static str, crate::records::Val)> {
    record
        .props
        .iter()
        .filter(move |(k, _)| opts.proplist.is_empty() || opts.proplist.iter().any(|p| p == k))
}

/// `print detail`: legend, then per item `idx flags key=value ...` wrapped
/// at the terminal width with continuation lines indented under the first
/// property; a comment shows as `;;; text` on the item's first line; items
/// are separated by a line holding one space (as captured from devices).
pub fn detail(records: &[Record], opts: &ListOptions) -> Vec<String> {
    if records.is_empty() {
        return Vec::new();
    }
    let labels = index_labels(records, opts);
    let index_width = labels.iter().map(String::len).max().unwrap_or(1) + 1;
    let flag_width = records
        .iter()
        .map(|r| r.flag_letters().len())
        .max()
        .unwrap_or(0);
    let mut lines: Vec<String> = flags_legend(records).into_iter().collect();
    for (n, (record, label)) in records.iter().zip(&labels).enumerate() {
        if n > 0 {
            lines.push(" ".to_string());
        }
        let prefix = if flag_width > 0 {
            format!(
                "{label:>index_width$} {:<flag_width$} ",
                record.flag_letters()
            )
        } else {
            format!("{label:>index_width$} ")
        };
        let indent = " ".repeat(prefix.len());
        let tokens =
            selected(record, opts).map(|(k, v)| format!("{k}={}", v.cli(CliStyle::Detail)));
        let mut current = prefix;
        let mut fresh = true;
        if !record.comment.is_empty() {
            current.push_str(";;; ");
            current.push_str(&record.comment);
            lines.push(std::mem::replace(&mut current, indent.clone()));
        }
        for token in tokens {
            if !fresh && current.chars().count() + 1 + token.chars().count() > TERMINAL_WIDTH {
                lines.push(std::mem::replace(&mut current, indent.clone()));
                fresh = true;
            }
            if !fresh {
                current.push(' ');
            }
            current.push_str(&token);
            fresh = false;
        }
        lines.push(current);
    }
    lines
}

/// `print terse`: one line per item, `idx flags key=value ...`, plain numbers.
pub fn terse(records: &[Record], opts: &ListOptions) -> Vec<String> {
    let labels = index_labels(records, opts);
    records
        .iter()
        .zip(&labels)
        .map(|(record, label)| {
            let mut line = format!("{label} {}", record.flag_letters());
            if !record.comment.is_empty() {
                line.push_str(&format!(
                    " comment={}",
                    crate::records::quote_cli(&record.comment)
                ));
            }
            for (k, v) in selected(record, opts) {
                line.push(' ');
                line.push_str(k);
                line.push('=');
                line.push_str(&v.cli(CliStyle::Terse));
            }
            line
        })
        .collect()
}

/// Default table columns of a menu.
pub const DISK_COLUMNS: &[&str] = &[
    "slot",
    "model",
    "serial",
    "interface",
    "size",
    "free",
    "fs",
    "raid-master",
];
pub const FILE_COLUMNS: &[&str] = &["name", "type", "size", "last-modified"];

/// A table `print`: legend, `Columns:` line, header and rows. Columns that
/// do not fit the terminal width are dropped (as on the device); numbers
/// are right-aligned.
pub fn table(records: &[Record], default_columns: &[&str], opts: &ListOptions) -> Vec<String> {
    if records.is_empty() {
        return Vec::new();
    }
    let columns: Vec<String> = if opts.proplist.is_empty() {
        default_columns.iter().map(|c| c.to_string()).collect()
    } else {
        opts.proplist.clone()
    };
    let labels = index_labels(records, opts);
    let index_width = labels.iter().map(String::len).max().unwrap_or(1).max(1);
    let flag_width = records
        .iter()
        .map(|r| r.flag_letters().len())
        .max()
        .unwrap_or(0);
    let lead = index_width + 1 + if flag_width > 0 { flag_width + 1 } else { 0 };

    // Cells per column; a column nobody has a value for is left out.
    let mut kept: Vec<(String, Vec<String>, bool)> = Vec::new();
    let mut used = lead;
    for column in &columns {
        let values: Vec<Option<crate::records::Val>> =
            records.iter().map(|r| r.get(column)).collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        let numeric = values.iter().flatten().all(|v| {
            matches!(
                v,
                crate::records::Val::Num(_)
                    | crate::records::Val::Bytes(_)
                    | crate::records::Val::Size(_)
                    | crate::records::Val::Percent(_)
            )
        });
        let cells: Vec<String> = values
            .iter()
            .map(|v| {
                v.as_ref()
                    .map(|v| v.cli(CliStyle::Plain))
                    .unwrap_or_default()
            })
            .collect();
        let header = column.to_uppercase();
        let width = cells
            .iter()
            .map(|c| c.chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(0);
        let needed = if kept.is_empty() { width } else { width + 2 };
        if used + needed > TERMINAL_WIDTH {
            break;
        }
        used += needed;
        kept.push((header, cells, numeric));
    }

    let widths: Vec<usize> = kept
        .iter()
        .map(|(h, cells, _)| {
            cells
                .iter()
                .map(|c| c.chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let render = |lead_text: String, cells: Vec<&str>| -> String {
        let mut line = lead_text;
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let width = widths[i];
            if kept[i].2 {
                line.push_str(&format!("{cell:>width$}"));
            } else {
                line.push_str(&format!("{cell:<width$}"));
            }
        }
        line.trim_end().to_string()
    };
    let lead_text = |label: &str, flags: &str| -> String {
        if flag_width > 0 {
            format!("{label:>index_width$} {flags:<flag_width$} ")
        } else {
            format!("{label:>index_width$} ")
        }
    };

    let mut lines: Vec<String> = flags_legend(records).into_iter().collect();
    let names: Vec<&str> = kept.iter().map(|(h, _, _)| h.as_str()).collect();
    lines.push(format!("Columns: {}", names.join(", ")));
    lines.push(render(lead_text("#", ""), names.clone()));
    for (row, (record, label)) in records.iter().zip(&labels).enumerate() {
        let flags = record.flag_letters();
        let cells: Vec<&str> = kept
            .iter()
            .map(|(_, cells, _)| cells[row].as_str())
            .collect();
        if record.comment.is_empty() {
            lines.push(render(lead_text(label, &flags), cells));
        } else {
            lines.push(format!(
                "{};;; {}",
                lead_text(label, &flags),
                record.comment
            ));
            lines.push(render(" ".repeat(lead), cells));
        }
    }
    lines
}

/// A settings menu (`/system resource print`): right-aligned `key: value`
/// lines indented two spaces, then a blank line.
pub fn settings(record: &Record) -> Vec<String> {
    let width = record.props.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut lines: Vec<String> = record
        .props
        .iter()
        .map(|(k, v)| format!("  {k:>width$}: {}", v.cli(CliStyle::Plain)))
        .collect();
    lines.push(String::new());
    lines
}

/// What the exec "terminal" does to output: every line ends with CRLF and
/// lines longer than the width are split every `width` characters (even
/// mid-token) with a CRLF inserted.
pub fn terminal_wrap(lines: Vec<String>, width: usize) -> String {
    // Sized once, and each line freed once copied: a listing of every disk is megabytes.
    let wrapped_len = |line: &String| line.len() + 2 * (line.len() / width.max(1) + 1);
    let mut out = String::with_capacity(lines.iter().map(wrapped_len).sum());
    for line in lines {
        let mut count = 0;
        for c in line.chars() {
            if count == width {
                out.push_str("\r\n");
                count = 0;
            }
            out.push(c);
            count += 1;
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Record, Val, disk_record, file_record};
    use crate::state::tests::{GIB, env, file_args, fresh};

    fn sample_records() -> Vec<Record> {
        let mut state = fresh();
        state
            .add_disk(&file_args("pvc-1", 10 * GIB), &env())
            .unwrap();
        let mut plain = file_args("plain", GIB);
        plain.nvme_tcp_export = Some(false);
        plain.comment = Some("scratch".into());
        state.add_disk(&plain, &env()).unwrap();
        state
            .disks
            .iter()
            .map(|d| disk_record(&state, d, &env()))
            .collect()
    }

    #[test]
    fn legend_lists_only_present_flags_in_menu_order() {
        let records = sample_records();
        assert_eq!(
            flags_legend(&records).unwrap(),
            "Flags: B - BLOCK-DEVICE; M - MOUNTED; t - NVME-TCP-EXPORT"
        );
        assert_eq!(
            flags_legend(&records[2..]).unwrap(),
            "Flags: B - BLOCK-DEVICE"
        );
        let files = [file_record(fresh().files.iter().next().unwrap())];
        assert_eq!(flags_legend(&files), None);
        assert_eq!(flags_legend(&[]), None);
    }

    #[test]
    fn detail_wraps_at_80_with_indent_and_separates_items() {
        let records = sample_records();
        let lines = detail(&records[1..], &ListOptions::default());
        assert_eq!(lines[0], "Flags: B - BLOCK-DEVICE; t - NVME-TCP-EXPORT");
        assert_eq!(
            lines[1],
            " 0 Bt type=file slot=\"pvc-1\" slot-default=\"\" parent=\"\" fs=-"
        );
        assert!(
            lines[2].starts_with("      model=\"/storage-pool/pvc-1.img\" size="),
            "{}",
            lines[2]
        );
        for line in &lines {
            assert!(line.chars().count() <= TERMINAL_WIDTH, "{line:?}");
        }
        let continuation: Vec<_> = lines
            .iter()
            .filter(|l| l.starts_with("      ") && l.len() > 6)
            .collect();
        assert!(!continuation.is_empty());
        let text = lines.join("\n");
        assert!(text.contains("size=10 737 418 240"));
        assert!(text.contains("file-size=10.0GiB"));
        assert!(text.contains("file-path=/storage-pool/pvc-1.img"));
        assert!(text.contains("nvme-tcp-export=yes"));
        // The second item: separator line, then its comment on the first line.
        let sep = lines.iter().position(|l| l == " ").expect("separator");
        assert_eq!(lines[sep + 1], " 1 B  ;;; scratch");
        assert!(
            lines[sep + 2].starts_with("      type=file slot=\"plain\""),
            "{}",
            lines[sep + 2]
        );
    }

    #[test]
    fn detail_keeps_overlong_tokens_whole_for_the_terminal_to_split() {
        let mut state = fresh();
        let mut args = file_args("long", GIB);
        args.nvme_tcp_server_nqn = Some(format!("nqn.2000-02.com.mikrotik:{}", "x".repeat(90)));
        let (id, _) = state.add_disk(&args, &env()).unwrap();
        let record = disk_record(&state, state.disk(id).unwrap(), &env());
        let lines = detail(&[record], &ListOptions::default());
        let long = lines.iter().find(|l| l.contains("xxxxx")).unwrap();
        assert!(long.chars().count() > TERMINAL_WIDTH);
        let wrapped = terminal_wrap(lines.clone(), TERMINAL_WIDTH);
        assert!(
            wrapped
                .split("\r\n")
                .all(|l| l.chars().count() <= TERMINAL_WIDTH)
        );
        assert_eq!(wrapped.replace("\r\n", ""), lines.concat());
    }

    #[test]
    fn terse_is_one_line_per_item_with_plain_numbers() {
        let records = sample_records();
        let lines = terse(&records, &ListOptions::default());
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("1 Bt type=file slot=\"pvc-1\""));
        assert!(lines[1].contains(" size=10737418240 "));
        assert!(lines[2].starts_with("2 B comment=\"scratch\" type=file"));
        let ids = terse(
            &records,
            &ListOptions {
                show_ids: true,
                ..Default::default()
            },
        );
        assert!(ids[0].starts_with("*1 BM type=raid"));
    }

    #[test]
    fn table_drops_columns_that_do_not_fit() {
        let records = sample_records();
        let lines = table(&records, DISK_COLUMNS, &ListOptions::default());
        assert_eq!(
            lines[0],
            "Flags: B - BLOCK-DEVICE; M - MOUNTED; t - NVME-TCP-EXPORT"
        );
        assert!(lines[1].starts_with("Columns: SLOT, MODEL"), "{}", lines[1]);
        assert!(lines[2].starts_with("#    SLOT"), "{}", lines[2]);
        assert!(lines[3].starts_with("0 BM storage-pool"), "{}", lines[3]);
        assert!(lines.iter().all(|l| l.chars().count() <= TERMINAL_WIDTH));
        assert!(
            lines.iter().any(|l| l.contains("107 374 182 400")),
            "{lines:#?}"
        );
        assert!(lines.iter().any(|l| l.contains(";;; scratch")));

        let narrow = table(
            &records,
            DISK_COLUMNS,
            &ListOptions {
                proplist: vec!["slot".into(), "size".into()],
                ..Default::default()
            },
        );
        assert_eq!(narrow[1], "Columns: SLOT, SIZE");

        let wide = Record {
            id: Some(1),
            comment: String::new(),
            props: vec![
                ("a", Val::Str("x".repeat(50))),
                ("b", Val::Str("y".repeat(50))),
            ],
            flags: Vec::new(),
        };
        let lines = table(&[wide], &["a", "b"], &ListOptions::default());
        assert_eq!(lines[0], "Columns: A");
    }

    #[test]
    fn settings_are_right_aligned() {
        let record = crate::records::identity_record(&fresh());
        assert_eq!(
            settings(&record),
            vec!["  name: rds-sim".to_string(), String::new()]
        );
        let resource = crate::records::resource_record(&crate::records::ResourceInfo {
            version: "7.21.5".parse().unwrap(),
            uptime_seconds: 61,
        });
        let lines = settings(&resource);
        // Keys right-aligned to the longest one (`architecture-name`), two spaces in.
        assert!(
            lines.contains(&"  architecture-name: arm64".to_string()),
            "{lines:#?}"
        );
        assert!(lines.contains(&"            version: 7.21.5 (stable)".to_string()));
        assert!(lines.contains(&"             uptime: 1m1s".to_string()));
        assert!(lines.contains(&"         board-name: RDS2216".to_string()));
        assert!(
            lines[..lines.len() - 1]
                .iter()
                .all(|l| l.find(": ") == Some(19))
        );
    }

    #[test]
    fn terminal_wrap_inserts_crlf_every_80_chars() {
        let json = format!("[{{\"a\":\"{}\"}}]", "z".repeat(200));
        let out = terminal_wrap(vec![json.clone(), String::new()], 80);
        let parts: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(parts[0].len(), 80);
        assert_eq!(parts[1].len(), 80);
        assert_eq!(out.replace("\r\n", ""), json);
        assert!(out.ends_with("\r\n\r\n"));
        assert_eq!(
            terminal_wrap(vec!["x".repeat(80)], 80),
            format!("{}\r\n", "x".repeat(80))
        );
    }
}
