//! The deployment kit against the code it deploys: every `PORTVAKT_*` name and every
//! `portvakt` command in the Dockerfile, compose file, systemd unit and operations docs must
//! exist, and the supervisors must wait longer than the shutdown drain. These files are not
//! compiled, so without these checks a renamed setting or command would only surface in
//! someone's production.

use std::path::Path;
use std::time::Duration;

use portvakt::config::{Config, SETTINGS, Span};

use crate::binary::portvakt;

/// The files operators copy or follow.
const DEPLOYMENT_FILES: &[&str] = &[
    "Dockerfile",
    "docker-compose.yml",
    "deploy/portvakt.service",
    "deploy/portvakt.env",
    "docs/deployment.md",
    "docs/operations.md",
    "CHANGELOG.md",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `PORTVAKT_[A-Z0-9_]+` in `text`, in order.
fn variable_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("PORTVAKT_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..len].to_string());
        rest = &tail[len..];
    }
    names
}

/// Whether the configuration loader takes `name`: as a setting, a `_FILE` variant of one, or
/// a variable it reads on purpose (`PORTVAKT_CONFIG`). An unknown name is the one thing it
/// warns about and otherwise ignores, which is exactly how a typo in a deployment goes unseen.
fn loader_knows(name: &str) -> bool {
    let nowhere = Path::new("/nonexistent/portvakt-deploy-check");
    match Config::load_from(
        None,
        &nowhere.join(".env"),
        [(name.to_string(), nowhere.display().to_string())],
    ) {
        Ok(config) => !config.warnings.iter().any(|w| w.contains(name)),
        // Refused: it was read (a file that cannot be read, a value that does not parse).
        Err(e) => e.problems.iter().any(|p| p.contains(name)),
    }
}

#[test]
fn every_variable_the_deployment_files_name_is_one_portvakt_reads() {
    let mut unknown = Vec::new();
    for file in DEPLOYMENT_FILES {
        for name in variable_names(&read(file)) {
            let known = if name.ends_with('_') {
                // A family written as `PORTVAKT_RATE_LIMIT_*`.
                SETTINGS.iter().any(|s| s.env_name().starts_with(&name))
            } else {
                loader_knows(&name)
            };
            if !known && !unknown.contains(&format!("{name} ({file})")) {
                unknown.push(format!("{name} ({file})"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "not settings of this binary (renamed, mistyped, or from a branch not merged yet): {}",
        unknown.join(", ")
    );
}

#[test]
fn the_loader_check_tells_a_real_setting_from_a_typo() {
    assert!(loader_knows("PORTVAKT_SHUTDOWN_TIMEOUT"));
    assert!(loader_knows("PORTVAKT_SECRET_KEY_FILE"));
    assert!(!loader_knows("PORTVAKT_SHUTDOWN_TIMEOUTS"));
    assert!(!loader_knows("PORTVAKT_ISSUER_FILE"));
    assert_eq!(
        variable_names("a `PORTVAKT_ADDR=0.0.0.0:8080` and PORTVAKT_RATE_LIMIT_*"),
        ["PORTVAKT_ADDR", "PORTVAKT_RATE_LIMIT_"]
    );
}

/// The code in a file: fenced blocks and inline spans of Markdown; for the others, the lines
/// that run something (`ExecStart=`, `CMD [...]`), turned into plain command lines.
fn code_lines(file: &str, text: &str) -> Vec<String> {
    if file.ends_with(".md") {
        let mut lines = Vec::new();
        let mut fenced = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
            } else if fenced {
                lines.push(line.to_string());
            } else {
                lines.extend(line.split('`').skip(1).step_by(2).map(str::to_string));
            }
        }
        return lines;
    }
    let mut lines = Vec::new();
    let mut entrypoint_is_portvakt = false;
    for line in text.lines().map(str::trim) {
        if let Some(exec) = line.strip_prefix("ExecStart=") {
            lines.push(exec.to_string());
        }
        if let (Some(open), Some(close)) = (line.find('['), line.rfind(']'))
            && let Ok(argv) = serde_json::from_str::<Vec<String>>(&line[open..=close])
        {
            let runs_portvakt = argv.first().is_some_and(|a| a.ends_with("/portvakt"));
            if line.starts_with("ENTRYPOINT") {
                entrypoint_is_portvakt = runs_portvakt;
            } else if runs_portvakt {
                lines.push(argv.join(" "));
            } else if line.starts_with("CMD") && entrypoint_is_portvakt {
                // The default arguments of the ENTRYPOINT above.
                lines.push(format!("portvakt {}", argv.join(" ")));
            }
        }
    }
    lines
}

/// The subcommand words after each `portvakt` in a command line: `portvakt audit verify
/// --json` gives `["audit", "verify"]`; arguments, flags and placeholders end it.
fn subcommands(line: &str) -> Vec<Vec<String>> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let mut found = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if *token != "portvakt" && !token.ends_with("/portvakt") {
            continue;
        }
        let words: Vec<String> = tokens[i + 1..]
            .iter()
            .take_while(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase()))
            .take(2)
            .map(|t| t.to_string())
            .collect();
        // `docker compose exec portvakt portvakt ...`: the service, then the binary.
        if !words.is_empty() && words[0] != "portvakt" {
            found.push(words);
        }
    }
    found
}

#[test]
fn every_command_the_deployment_files_run_exists() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked: Vec<Vec<String>> = Vec::new();
    let mut missing = Vec::new();
    for file in DEPLOYMENT_FILES {
        for line in code_lines(file, &read(file)) {
            for words in subcommands(&line) {
                if checked.contains(&words) {
                    continue;
                }
                let help = portvakt(dir.path())
                    .args(&words)
                    .arg("--help")
                    .output()
                    .unwrap();
                if !help.status.success() {
                    missing.push(format!("portvakt {} ({file})", words.join(" ")));
                }
                checked.push(words);
            }
        }
    }
    assert!(
        checked.iter().any(|w| w[0] == "serve"),
        "the scan found the commands at all"
    );
    assert!(
        missing.is_empty(),
        "commands this binary does not have: {}",
        missing.join(", ")
    );
}

#[test]
fn the_command_scan_reads_markdown_units_and_dockerfiles() {
    assert_eq!(
        subcommands("docker compose exec portvakt portvakt user create --email E"),
        [["user", "create"]]
    );
    assert_eq!(
        subcommands("systemctl reload portvakt; portvakt backup --out x.gz"),
        [["backup"]]
    );
    assert_eq!(
        code_lines(
            "x.md",
            "run `portvakt check` first\n```sh\nportvakt audit verify\n```\n"
        ),
        ["portvakt check", "portvakt audit verify"]
    );
    assert_eq!(
        code_lines(
            "Dockerfile",
            "ENTRYPOINT [\"/usr/local/bin/portvakt\"]\nCMD [\"serve\"]\n    CMD [\"/usr/local/bin/portvakt\", \"healthcheck\"]\n"
        ),
        ["portvakt serve", "/usr/local/bin/portvakt healthcheck"]
    );
}

fn shutdown_timeout() -> Duration {
    let setting = SETTINGS
        .iter()
        .find(|s| s.key == "shutdown_timeout")
        .unwrap();
    // A deployment file that sets its own drain wins over the default.
    let mut value = setting.default.to_string();
    for file in [
        "docker-compose.yml",
        "deploy/portvakt.service",
        "deploy/portvakt.env",
    ] {
        for line in read(file).lines() {
            let line = line.trim().trim_start_matches("Environment=");
            if let Some(v) = line.strip_prefix("PORTVAKT_SHUTDOWN_TIMEOUT") {
                value = v
                    .trim_start_matches([':', '='])
                    .trim()
                    .trim_matches('"')
                    .to_string();
            }
        }
    }
    value.parse::<Span>().unwrap().0
}

/// How long the systemd unit and the compose service wait after SIGTERM before killing.
fn supervisor_stop_timeouts() -> Vec<(String, Duration)> {
    let mut found = Vec::new();
    for line in read("deploy/portvakt.service").lines() {
        if let Some(v) = line.strip_prefix("TimeoutStopSec=") {
            found.push(("TimeoutStopSec".into(), v.parse::<Span>().unwrap().0));
        }
    }
    let compose = read("docker-compose.yml");
    let mut in_portvakt = false;
    for line in compose.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") {
            in_portvakt = line.trim_end() == "  portvakt:";
        }
        if let Some(v) = line.trim().strip_prefix("stop_grace_period:")
            && in_portvakt
        {
            found.push((
                "stop_grace_period".into(),
                v.trim().parse::<Span>().unwrap().0,
            ));
        }
    }
    found
}

#[test]
fn supervisors_wait_longer_than_the_shutdown_drain() {
    let drain = shutdown_timeout();
    let timeouts = supervisor_stop_timeouts();
    assert_eq!(
        timeouts.len(),
        2,
        "the unit and the compose service both say how long they wait: {timeouts:?}"
    );
    for (name, timeout) in timeouts {
        assert!(
            timeout > drain,
            "{name} ({timeout:?}) must exceed PORTVAKT_SHUTDOWN_TIMEOUT ({drain:?}), or in-flight requests are killed"
        );
    }
}
