//! `emberline sql` without a query: an interactive prompt over the log's tables.
//!
//! Statements end with `;` and may span lines; each result prints as a table with its row
//! count and time. Line editing and history (kept in `<data_dir>/sql_history`) when standard
//! input is a terminal; otherwise the statements are read from it, so a file of queries can
//! be piped in. `\q`, `exit` or end of input leaves; a statement that fails prints its
//! one-line error and the prompt goes on.

use std::io::{BufWriter, IsTerminal as _, Write as _};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use emberline_analytics::{Analytics, AnalyticsError, Format, TABLES, VIEWS, write_stream};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

/// Lines of history kept.
const HISTORY: usize = 1_000;

/// Runs the prompt until `\q`, `exit` or the end of input.
pub(crate) async fn run(analytics: &Analytics, data_dir: &Path) -> Result<()> {
    let terminal = std::io::stdin().is_terminal();
    let settings = rustyline::Config::builder()
        .max_history_size(HISTORY)
        .context("setting the history size")?
        .build();
    let mut editor = DefaultEditor::with_config(settings).context("starting the prompt")?;
    let history = data_dir.join("sql_history");
    if terminal {
        // A first run has none yet.
        let _ = editor.load_history(&history);
        let tables: Vec<&str> = TABLES
            .iter()
            .map(|t| t.name)
            .chain(VIEWS.map(|v| v.0))
            .collect();
        eprintln_info(&format!(
            "SQL over the log; statements end with `;`, \\q leaves.\ntables: {}",
            tables.join(", ")
        ));
    }
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            "emberline> "
        } else {
            "       ...> "
        };
        let line = tokio::task::block_in_place(|| editor.readline(prompt));
        let line = match line {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading the prompt"),
        };
        let trimmed = line.trim();
        if statement.is_empty() && matches!(trimmed, "\\q" | "exit" | "quit") {
            break;
        }
        if trimmed.is_empty() && statement.is_empty() {
            continue;
        }
        statement.push_str(&line);
        statement.push('\n');
        // Every complete statement on the line runs; the rest waits for more lines.
        while let Some(end) = statement.find(';') {
            let query: String = statement[..end].trim().to_owned();
            statement = statement[end + 1..].trim_start().to_owned();
            if query.is_empty() {
                continue;
            }
            if terminal {
                let _ = editor.add_history_entry(format!("{query};"));
            }
            run_one(analytics, &query).await;
        }
    }
    let rest = statement.trim();
    if !rest.is_empty() {
        // Input that ended without a `;` still runs.
        run_one(analytics, rest).await;
    }
    if terminal {
        editor
            .save_history(&history)
            .with_context(|| format!("saving the history to {}", history.display()))?;
    }
    Ok(())
}

/// Runs one statement, printing its result or its error.
async fn run_one(analytics: &Analytics, query: &str) {
    let started = Instant::now();
    let result = async {
        let df = analytics.query(query).await?;
        let stream = df.execute_stream().await.map_err(AnalyticsError::from)?;
        write_stream(stream, Format::Table, BufWriter::new(std::io::stdout())).await
    }
    .await;
    match result {
        Ok(rows) => eprintln_info(&format!(
            "({rows} row{}, {:.3} s)",
            if rows == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64()
        )),
        Err(e) => eprintln_info(&format!("error: {}", crate::analytics::one_line_text(&e))),
    }
}

/// A line for the person at the prompt (not a log record: the prompt is the interface).
fn eprintln_info(text: &str) {
    let _ = std::io::stdout().flush();
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{text}");
    }
}
