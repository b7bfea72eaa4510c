//! Where log lines go: appended to an in-memory buffer under a short lock and written out by a
//! background thread every 50 ms, or as soon as 64 KiB are waiting. The buffer is swapped
//! out under its lock and written without it, so a slow log reader never holds up a request;
//! only when 4 MiB are waiting (the reader has stalled for a long time) does a logging thread
//! write itself, blocking rather than dropping lines. A busy second costs a few large writes
//! instead of a system call and a thread wake-up per line.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const WAKE_AT: usize = 64 * 1024;
const BLOCK_AT: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub enum Target {
    Stdout,
    Stderr,
}

struct Shared {
    buffer: Mutex<Vec<u8>>,
    wake: Condvar,
    /// Held while writing a batch, so batches reach the output in the order they were taken.
    output: Mutex<Target>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Shared {
    /// Takes what is buffered and writes it out.
    fn flush(&self) {
        let target = lock(&self.output);
        let batch = std::mem::take(&mut *lock(&self.buffer));
        if batch.is_empty() {
            return;
        }
        let result = match *target {
            Target::Stdout => io::stdout().lock().write_all(&batch),
            Target::Stderr => io::stderr().lock().write_all(&batch),
        };
        if result.is_err() {
            // Part of a line may have gone out: end it so the next batch starts on a line of
            // its own. There is nowhere left to report the failure itself.
            let _ = match *target {
                Target::Stdout => io::stdout().lock().write_all(b"\n"),
                Target::Stderr => io::stderr().lock().write_all(b"\n"),
            };
        }
    }
}

/// The `MakeWriter` for the subscriber.
#[derive(Clone)]
pub struct BufferedSink {
    shared: Arc<Shared>,
}

/// Writes out what is left when dropped; keep it alive until the process exits.
pub struct FlushGuard {
    shared: Arc<Shared>,
}

impl FlushGuard {
    /// Writes out everything logged so far (before printing directly or prompting).
    pub fn flush(&self) {
        self.shared.flush();
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.flush();
    }
}

impl BufferedSink {
    pub fn start(target: Target) -> (BufferedSink, FlushGuard) {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(WAKE_AT)),
            wake: Condvar::new(),
            output: Mutex::new(target),
        });
        let weak = Arc::downgrade(&shared);
        let _ = std::thread::Builder::new()
            .name("pv-log-flush".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    {
                        let buffer = lock(&shared.buffer);
                        if buffer.len() < WAKE_AT {
                            let _ = shared.wake.wait_timeout(buffer, FLUSH_EVERY);
                        }
                    }
                    shared.flush();
                }
            });
        (
            BufferedSink {
                shared: shared.clone(),
            },
            FlushGuard { shared },
        )
    }
}

pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let waiting = {
            let mut buffer = lock(&self.shared.buffer);
            buffer.extend_from_slice(buf);
            buffer.len()
        };
        if waiting >= BLOCK_AT {
            self.shared.flush();
        } else if waiting >= WAKE_AT {
            self.shared.wake.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
        }
    }
}
