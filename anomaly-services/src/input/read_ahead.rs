//! A file's records parsed on a thread of their own, ahead of the thread that computes the
//! features: parsing a CSV or JSON line costs about as much as a transaction's features, and
//! with both on one thread the stages' thread waited on them (docs/BENCHMARKS.md, "Your
//! transactions"). Records keep their order, so results do not change.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use crate::pipeline::{InputRecord, UnreadableRecord};

/// Records handed over per batch: a hand-over costs a few hundred nanoseconds.
const BATCH: usize = 512;
/// Batches parsed ahead of the reader.
const BATCHES_AHEAD: usize = 8;

type Batch = Vec<(i64, InputRecord)>;

/// An iterator over the records another thread reads from `records`, in their order.
pub(super) struct ReadAhead {
    batches: Option<Receiver<Batch>>,
    /// Emptied batches go back to the parser, which refills them instead of allocating.
    emptied: Sender<Batch>,
    current: VecDeque<(i64, InputRecord)>,
    parser: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts the parsing thread.
    pub(super) fn spawn(
        records: impl Iterator<Item = (i64, InputRecord)> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (full, batches) = std::sync::mpsc::sync_channel(BATCHES_AHEAD);
        let (emptied, reuse) = std::sync::mpsc::channel();
        let parser = std::thread::Builder::new()
            .name("input-parser".into())
            .spawn(move || parse(records, &full, &reuse))?;
        Ok(Self {
            batches: Some(batches),
            emptied,
            current: VecDeque::new(),
            parser: Some(parser),
        })
    }

    /// The parser's end: nothing, or a fatal record if it could not join (it catches its
    /// own panics, so this is for a panic outside the parsing itself).
    fn finish(&mut self) -> Option<(i64, InputRecord)> {
        let parser = self.parser.take()?;
        let panic = parser.join().err()?;
        Some(parser_stopped(panic.as_ref()))
    }
}

/// A fatal record for a panic of the parser: the run stops with an error rather than going
/// on with a silently shorter input.
fn parser_stopped(panic: &(dyn std::any::Any + Send)) -> (i64, InputRecord) {
    let reason = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let failed = UnreadableRecord {
        error: format!("the input's parser stopped: {reason}"),
        raw: String::new(),
        fatal: true,
    };
    (0, Err(failed))
}

fn parse(
    records: impl Iterator<Item = (i64, InputRecord)>,
    full: &SyncSender<Batch>,
    reuse: &Receiver<Batch>,
) {
    // Not asked again once it has ended: a file that grows meanwhile is not read further.
    let mut records = records.fuse();
    loop {
        let mut batch = reuse
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let mut ended = false;
        while batch.len() < BATCH {
            // Caught here, a panic still delivers the records parsed before it, in order.
            match std::panic::catch_unwind(AssertUnwindSafe(|| records.next())) {
                Ok(Some(record)) => batch.push(record),
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(panic) => {
                    batch.push(parser_stopped(panic.as_ref()));
                    ended = true;
                    break;
                }
            }
        }
        // A failed send: the reader is gone.
        if !batch.is_empty() && full.send(batch).is_err() {
            return;
        }
        if ended {
            return;
        }
    }
}

impl Iterator for ReadAhead {
    type Item = (i64, InputRecord);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.current.pop_front() {
                return Some(record);
            }
            let next = self.batches.as_ref()?.recv();
            match next {
                Ok(batch) => {
                    // Both conversions keep the allocation (the deque is empty).
                    let emptied = std::mem::replace(&mut self.current, VecDeque::from(batch));
                    // The parser may have ended: then the batch is simply dropped.
                    let _ = self.emptied.send(Vec::from(emptied));
                }
                Err(_) => {
                    self.batches = None;
                    return self.finish();
                }
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Without a reader, the parser's next hand-over fails and it returns.
        self.batches = None;
        if let Some(parser) = self.parser.take() {
            let _ = parser.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(i: i64) -> (i64, InputRecord) {
        let error = format!("row {i}");
        (i, Err(UnreadableRecord::bad(error, String::new())))
    }

    #[test]
    fn every_record_arrives_in_order() {
        for count in [0, 1, BATCH - 1, BATCH, 3 * BATCH + 7] {
            let read: Vec<i64> = ReadAhead::spawn((0..count as i64).map(record))
                .unwrap()
                .map(|(line, _)| line)
                .collect();
            assert_eq!(
                read,
                (0..count as i64).collect::<Vec<_>>(),
                "{count} records"
            );
        }
    }

    #[test]
    fn a_slow_reader_gets_every_record_in_order_from_a_blocked_parser() {
        let count = (BATCHES_AHEAD + 12) * BATCH + 3;
        let mut records = ReadAhead::spawn((0..count as i64).map(record)).unwrap();
        let mut read = Vec::with_capacity(count);
        for (i, (line, _)) in records.by_ref().enumerate() {
            read.push(line);
            // The parser fills every batch it may hold ahead and waits on the reader.
            if i % (4 * BATCH) == 0 {
                std::thread::sleep(Duration::from_millis(30));
            }
        }
        assert_eq!(read, (0..count as i64).collect::<Vec<_>>());
        assert!(records.next().is_none());
    }

    #[test]
    fn a_parser_that_panics_delivers_what_it_read_then_a_fatal_record() {
        let records = (0..1_000).map(|i| {
            assert!(i < 700, "bad state at record {i}");
            record(i)
        });
        let read: Vec<(i64, InputRecord)> = ReadAhead::spawn(records).unwrap().collect();
        assert_eq!(read.len(), 701);
        let lines: Vec<i64> = read[..700].iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, (0..700).collect::<Vec<_>>());
        let failed = read[700].1.as_ref().err().unwrap();
        assert!(failed.fatal);
        assert!(
            failed.error.contains("bad state at record 700"),
            "{}",
            failed.error
        );
    }

    #[test]
    fn dropping_it_early_stops_the_parser() {
        let (done, dropped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut records = ReadAhead::spawn((0..).map(record)).unwrap();
            let first = records.next().map(|(line, _)| line);
            drop(records); // Joins the parser, which must see its reader go.
            let _ = done.send(first);
        });
        let first = dropped.recv_timeout(Duration::from_secs(30));
        assert_eq!(first, Ok(Some(0)), "the drop did not return");
    }
}
