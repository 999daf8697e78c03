//! The writer thread the JSON-lines sinks share (the access log, the traffic recording): items
//! go through a bounded queue to a thread of its own that renders and writes them every 10 ms,
//! in batches, so that a slow disk or a full pipe never holds a call up. An item that finds
//! the queue full is dropped and counted, and the writer warns with the count when it catches
//! up. A write that fails stops the sink with a warning; calls go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the writer wakes to write what has queued up. Waking per line would cost every
/// call a thread wake-up and a write; at this tick a queue of 4,096 lines takes 400,000 lines
/// a second before any is dropped.
const TICK: Duration = Duration::from_millis(10);

/// Where rendered lines go.
pub(crate) trait Lines: Send + 'static {
    /// Writes one line (newline included).
    fn line(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Flushes what was written.
    fn flush(&mut self) -> std::io::Result<()>;
}

impl Lines for std::io::BufWriter<Box<dyn std::io::Write + Send>> {
    fn line(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(self, bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(self)
    }
}

/// What a sink is, for its warnings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sink {
    /// `access log`, `recording`.
    pub(crate) what: &'static str,
    /// The flag that sets the queue's length.
    pub(crate) queue_flag: &'static str,
}

/// The sending side.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    sender: mpsc::Sender<T>,
    dropped: Arc<AtomicU64>,
}

impl<T: Send + 'static> Queue<T> {
    /// Starts the writer of `sink` (named `name` in warnings): at most `capacity` items wait,
    /// each rendered by `render` (`None`: nothing to write) and written to `out`.
    pub(crate) fn start(
        sink: Sink,
        name: String,
        capacity: usize,
        out: impl Lines,
        render: impl FnMut(T) -> std::io::Result<Option<Vec<u8>>> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let (sender, receiver) = mpsc::channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name(sink.what.replace(' ', "-"))
            .spawn(move || write(receiver, out, render, sink, &name, &counted))
            .map_err(|e| anyhow::anyhow!("cannot start the {} writer thread: {e}", sink.what))?;
        Ok(Self { sender, dropped })
    }

    /// Counts an item dropped before it was queued (a cap of the sink's own); false.
    pub(crate) fn push_dropped(&self) -> bool {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Queues `item`; false when the queue was full and it was dropped.
    pub(crate) fn push(&self, item: T) -> bool {
        if self.sender.try_send(item).is_ok() {
            return true;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// The writer: every [`TICK`], whatever has queued up, then a flush; a warning with the count
/// of items dropped since the last one. Ends when the sending side is gone.
fn write<T>(
    mut receiver: mpsc::Receiver<T>,
    mut out: impl Lines,
    mut render: impl FnMut(T) -> std::io::Result<Option<Vec<u8>>>,
    sink: Sink,
    name: &str,
    dropped: &AtomicU64,
) {
    let mut warned = 0;
    loop {
        let mut closed = false;
        let mut written = Ok(());
        loop {
            match receiver.try_recv() {
                Ok(item) => {
                    written = written.and_then(|()| match render(item)? {
                        Some(bytes) => out.line(&bytes),
                        None => Ok(()),
                    });
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if let Err(err) = written.and_then(|()| out.flush()) {
            tracing::warn!(file = name, %err, "{}: cannot write; no more lines are written", sink.what);
            return;
        }
        let now = dropped.load(Ordering::Relaxed);
        if now > warned {
            tracing::warn!(
                file = name,
                dropped = now - warned,
                "{}: lines dropped, the writer's queue ({}) was full",
                sink.what,
                sink.queue_flag
            );
            warned = now;
        }
        if closed {
            return;
        }
        std::thread::sleep(TICK);
    }
}
