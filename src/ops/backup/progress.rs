//! The progress bar of `portvakt backup` and `portvakt restore`: rows per table, on a terminal
//! only, so that logs and pipes stay clean.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar, or nothing.
#[derive(Debug, Clone, Default)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// No output at all (scheduled backups, tests, pipes).
    pub fn hidden() -> Progress {
        Progress(None)
    }

    /// A bar on stderr when stderr is a terminal; hidden otherwise.
    pub fn on_terminal() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} rows ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress(Some(bar))
    }

    pub fn start(&self, total_rows: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total_rows);
        }
    }

    pub fn table(&self, name: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(name.to_string());
        }
    }

    pub fn rows(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    pub fn done(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
