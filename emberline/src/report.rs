//! How the binary reports a failure: one `error:` line with the cause chain (each cause
//! once), a `hint:` line when the mistake has a known remedy, and the backtrace only when
//! `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) asks for it.

use emberline_log::LogError;
use emberline_projections::ProjectionError;

/// The text printed on standard error for `e`, without a trailing newline.
pub(crate) fn render(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    let mut out = format!("error: {line}");
    if let Some(hint) = hint(e) {
        out.push_str("\nhint: ");
        out.push_str(hint);
    }
    if backtrace_wanted() {
        out.push_str(&format!("\n\nbacktrace:\n{}", e.backtrace()));
    }
    out
}

fn hint(e: &anyhow::Error) -> Option<&'static str> {
    let in_use = e.chain().any(|c| {
        matches!(c.downcast_ref::<LogError>(), Some(LogError::InUse { .. }))
            || matches!(
                c.downcast_ref::<ProjectionError>(),
                Some(ProjectionError::InUse { .. })
            )
    });
    in_use.then_some(
        "stop the other process first, or give this one its own directory with --data-dir \
         (on one machine, `emberline up` runs every role in one process)",
    )
}

fn backtrace_wanted() -> bool {
    ["RUST_LIB_BACKTRACE", "RUST_BACKTRACE"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .is_some_and(|v| v != "0")
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn a_directory_in_use_is_one_error_line_and_one_hint() {
        let e = Err::<(), _>(LogError::InUse {
            path: "/srv/emberline/log.redb".into(),
        })
        .context("opening the embedded log at /srv/emberline/log.redb")
        .expect_err("an error");
        let text = render(&e);
        let lines: Vec<&str> = text.lines().collect();
        if !backtrace_wanted() {
            assert_eq!(lines.len(), 2, "{text}");
        }
        assert!(lines[0].starts_with("error: "), "{text}");
        assert!(lines[0].contains("/srv/emberline is in use by another Emberline process"));
        assert!(lines[1].starts_with("hint: ") && lines[1].contains("--data-dir"));
    }

    #[test]
    fn each_cause_is_printed_once_and_no_hint_without_a_remedy() {
        let e = Err::<(), _>(LogError::Storage {
            action: "appending",
            source: Box::new(std::io::Error::other("No space left on device")),
        })
        .context("ingest")
        .expect_err("an error");
        let text = render(&e);
        assert_eq!(text.matches("No space left on device").count(), 1, "{text}");
        if !backtrace_wanted() {
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }
}
