//! The documentation's examples, checked: every TOML block of the README files and every
//! `deploy/*.toml` loads through the real configuration loader, and every `emberline`
//! command line in their shell blocks parses with the real command-line parser (the ones
//! that can run offline also run). A documented example can never break unnoticed.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::config::Config;
use crate::{Cli, Command};

/// The documents whose examples are checked, relative to the repository root.
const DOCUMENTS: [&str; 5] = [
    "README.md",
    "deploy/README.md",
    "emberline/README.md",
    "ingest/README.md",
    "ARCHITECTURE.md",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fenced block: its language, its first line number, its text.
struct Block {
    lang: String,
    line: usize,
    text: String,
}

fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, String, usize)> = None;
    for (n, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    open = Some((lang.trim().to_owned(), n + 1, String::new(), indent));
                }
            }
            Some((lang, start, text, indent)) => {
                if trimmed.starts_with("```") {
                    blocks.push(Block {
                        lang: std::mem::take(lang),
                        line: *start,
                        text: std::mem::take(text),
                    });
                    open = None;
                } else {
                    // Blocks inside list items are indented; take the indent off.
                    let cut = line.len() - line.trim_start().len();
                    text.push_str(&line[cut.min(*indent)..]);
                    text.push('\n');
                }
            }
        }
    }
    blocks
}

/// Shell words of one command line: quotes group, backslashes escape; no expansion.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '#') if !in_word => break,
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// A shell block's commands (continuation lines joined), and its here-documents as
/// (file name, text).
fn commands(script: &str) -> (Vec<Vec<String>>, Vec<(String, String)>) {
    let mut out = Vec::new();
    let mut heredocs = Vec::new();
    let mut lines = script.lines();
    let mut current = String::new();
    while let Some(line) = lines.next() {
        if let Some(stripped) = line.strip_suffix('\\') {
            current.push_str(stripped);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let command = std::mem::take(&mut current);
        if let Some((head, marker)) = command.split_once("<<") {
            let marker = marker
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_owned();
            let mut body = String::new();
            for line in lines.by_ref() {
                if line.trim() == marker {
                    break;
                }
                body.push_str(line);
                body.push('\n');
            }
            if let Some(file) = head.trim().strip_prefix("cat >") {
                heredocs.push((file.trim().to_owned(), body));
            }
            continue;
        }
        for part in command.split("&&") {
            let mut words = shell_words(part.trim());
            if words.last().is_some_and(|w| w == "&") {
                words.pop();
            }
            if !words.is_empty() {
                out.push(words);
            }
        }
    }
    (out, heredocs)
}

/// The arguments after the program name when `words` runs the `emberline` binary.
fn emberline_args(words: &[String]) -> Option<Vec<String>> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["emberline", rest @ ..] => Some(rest.iter().map(|s| (*s).to_owned()).collect()),
        ["cargo", "run", rest @ ..] => {
            let dash = rest.iter().position(|w| *w == "--")?;
            let package = rest.windows(2).find(|w| w[0] == "-p").map(|w| w[1]);
            (package == Some("emberline"))
                .then(|| rest[dash + 1..].iter().map(|s| (*s).to_owned()).collect())
        }
        _ => None,
    }
}

/// Loads `text` as a configuration file through the real loader.
fn load(text: &str, what: &str) -> Config {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("emberline.toml");
    std::fs::write(&path, text).expect("write");
    Config::load(Some(&path)).unwrap_or_else(|e| panic!("{what} does not load: {e:#}\n{text}"))
}

#[test]
fn every_documented_toml_block_and_deploy_file_loads() {
    let mut checked = 0;
    for doc in DOCUMENTS {
        let Ok(markdown) = std::fs::read_to_string(root().join(doc)) else {
            continue;
        };
        for block in fenced_blocks(&markdown) {
            if block.lang == "toml" {
                load(&block.text, &format!("{doc}:{} (toml)", block.line));
                checked += 1;
            }
            if block.lang == "sh" {
                for (file, body) in commands(&block.text).1 {
                    if file.ends_with(".toml") {
                        load(&body, &format!("{doc}:{} ({file})", block.line));
                        checked += 1;
                    }
                }
            }
        }
    }
    for entry in std::fs::read_dir(root().join("deploy")).expect("deploy/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(Some(&path))
                .unwrap_or_else(|e| panic!("{} does not load: {e:#}", path.display()));
            checked += 1;
        }
    }
    // The README alone has eight; a reader that finds fewer is broken.
    assert!(checked >= 8, "only {checked} TOML examples found");
}

#[test]
fn every_documented_emberline_command_parses_and_the_offline_ones_run() {
    let mut parsed = 0;
    for doc in DOCUMENTS {
        let Ok(markdown) = std::fs::read_to_string(root().join(doc)) else {
            continue;
        };
        for block in fenced_blocks(&markdown).iter().filter(|b| b.lang == "sh") {
            let (lines, heredocs) = commands(&block.text);
            for words in lines {
                let at = format!("{doc}:{}: {}", block.line, words.join(" "));
                if let ["cargo", "run", rest @ ..] = words
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .as_slice()
                    && let Some(example) = rest.windows(2).find(|w| w[0] == "--example")
                {
                    let package = rest.windows(2).find(|w| w[0] == "-p").map(|w| w[1]);
                    let dir = package.and_then(|p| p.strip_prefix("emberline-"));
                    let file = root()
                        .join(dir.unwrap_or("?"))
                        .join(format!("examples/{}.rs", example[1]));
                    assert!(file.exists(), "{at}: no example at {}", file.display());
                    continue;
                }
                let Some(args) = emberline_args(&words) else {
                    continue;
                };
                let cli = Cli::try_parse_from(std::iter::once("emberline".to_owned()).chain(args))
                    .unwrap_or_else(|e| panic!("{at}: {e}"));
                parsed += 1;
                if let Some(file) = &cli.config {
                    let name = file.display().to_string();
                    let here = heredocs.iter().find(|(f, _)| *f == name);
                    match here {
                        Some((_, body)) => drop(load(body, &at)),
                        None => {
                            let path = root().join(file);
                            Config::load(Some(&path)).unwrap_or_else(|e| panic!("{at}: {e:#}"));
                        }
                    }
                }
                // What runs offline runs: printing the defaults, which must load back.
                if let Command::Config {
                    print_default: true,
                } = cli.command
                {
                    let text = toml::to_string_pretty(&Config::default()).expect("print");
                    assert_eq!(load(&text, &at), Config::default(), "{at}");
                }
            }
        }
    }
    assert!(parsed >= 8, "only {parsed} emberline commands found");
}

#[test]
fn the_block_reader_takes_indented_blocks_heredocs_and_continuations() {
    let md = "x\n1. item\n\n   ```toml\n   a = 1\n   ```\n```sh\ncat > f.toml <<'T'\nb = 2\nT\nemberline \\\n  --config f.toml up & # note\n```\n";
    let blocks = fenced_blocks(md);
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        (blocks[0].lang.as_str(), blocks[0].text.as_str()),
        ("toml", "a = 1\n")
    );
    let (lines, docs) = commands(&blocks[1].text);
    assert_eq!(docs, vec![("f.toml".to_owned(), "b = 2\n".to_owned())]);
    assert_eq!(
        lines,
        vec![
            ["emberline", "--config", "f.toml", "up"]
                .map(String::from)
                .to_vec()
        ]
    );
    assert_eq!(
        shell_words(r#"curl -H "A: b" -d '{"x":1}' u"#),
        ["curl", "-H", "A: b", "-d", r#"{"x":1}"#, "u"]
            .map(String::from)
            .to_vec()
    );
}

#[test]
fn every_subcommand_has_a_row_in_the_binary_readme() {
    use clap::CommandFactory;
    let readme =
        std::fs::read_to_string(root().join("emberline/README.md")).expect("emberline/README.md");
    let missing: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .filter(|name| name != "help")
        .filter(|name| !readme.contains(&format!("| `emberline {name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "emberline/README.md has no row for: {}",
        missing.join(", ")
    );
}
