//! Where log lines go: appended to an in-memory buffer under a short lock and written out by a
//! background thread every 50 ms, or at once when the buffer passes 64 KiB. A request never
//! waits on a terminal or pipe (unless the reader stalls long enough to fill the buffer, when
//! writing blocks rather than dropping lines), and a busy second costs a few large writes
//! instead of a system call and a thread wake-up per line.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const FLUSH_AT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub enum Target {
    Stdout,
    Stderr,
}

struct Shared {
    buffer: Mutex<Vec<u8>>,
    target: Target,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        match self.buffer.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Writes the buffer out while holding its lock, so lines keep their order.
    fn flush(&self) {
        let mut buffer = self.lock();
        if buffer.is_empty() {
            return;
        }
        let result = match self.target {
            Target::Stdout => io::stdout().lock().write_all(&buffer),
            Target::Stderr => io::stderr().lock().write_all(&buffer),
        };
        // Nowhere left to report a failure to write logs; the lines are dropped.
        let _ = result;
        buffer.clear();
    }
}

/// The `MakeWriter` for the subscriber.
#[derive(Clone)]
pub struct BufferedSink {
    shared: Arc<Shared>,
}

/// Flushes what is left when dropped; keep it alive until the process exits.
pub struct FlushGuard {
    shared: Arc<Shared>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.flush();
    }
}

impl BufferedSink {
    pub fn start(target: Target) -> (BufferedSink, FlushGuard) {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(FLUSH_AT)),
            target,
        });
        let weak = Arc::downgrade(&shared);
        let _ = std::thread::Builder::new()
            .name("pv-log-flush".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    shared.flush();
                    drop(shared);
                    std::thread::sleep(FLUSH_EVERY);
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
        let full = {
            let mut buffer = self.shared.lock();
            buffer.extend_from_slice(buf);
            buffer.len() >= FLUSH_AT
        };
        if full {
            self.shared.flush();
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
