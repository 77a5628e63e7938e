//! A file's records parsed on a thread of their own, ahead of the thread that computes the
//! features: parsing a CSV or JSON line costs about as much as a transaction's features, and
//! with both on one thread the stages' thread waited on them (docs/BENCHMARKS.md, "Your
//! transactions"). Records keep their order, so results do not change.

use std::collections::VecDeque;
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

    /// The parser's end: nothing, or a fatal record saying that it stopped on a panic (so
    /// that a bug ends the run with an error instead of a silently shorter input).
    fn finish(&mut self) -> Option<(i64, InputRecord)> {
        let parser = self.parser.take()?;
        let panic = parser.join().err()?;
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
        Some((0, Err(failed)))
    }
}

fn parse(
    mut records: impl Iterator<Item = (i64, InputRecord)>,
    full: &SyncSender<Batch>,
    reuse: &Receiver<Batch>,
) {
    loop {
        let mut batch = reuse
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        batch.extend(records.by_ref().take(BATCH));
        // An empty batch: the end. A failed send: the reader is gone.
        if batch.is_empty() || full.send(batch).is_err() {
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
    use super::*;

    fn record(i: i64) -> (i64, InputRecord) {
        let error = format!("row {i}");
        (i, Err(UnreadableRecord::bad(error, String::new())))
    }

    fn line_of(record: &(i64, InputRecord)) -> i64 {
        record.0
    }

    #[test]
    fn every_record_arrives_in_order() {
        for count in [0, 1, BATCH - 1, BATCH, 3 * BATCH + 7] {
            let read: Vec<i64> = ReadAhead::spawn((0..count as i64).map(record))
                .unwrap()
                .map(|r| line_of(&r))
                .collect();
            assert_eq!(
                read,
                (0..count as i64).collect::<Vec<_>>(),
                "{count} records"
            );
        }
    }

    #[test]
    fn a_parser_that_panics_ends_the_input_with_a_fatal_record() {
        let records = (0..1_000).map(|i| {
            assert!(i < 700, "bad state at record {i}");
            record(i)
        });
        let read: Vec<(i64, InputRecord)> = ReadAhead::spawn(records).unwrap().collect();
        // The last full batch before the panic arrives, then the failure.
        assert_eq!(read.len(), BATCH + 1);
        let (_, last) = &read[BATCH];
        let failed = last.as_ref().err().unwrap();
        assert!(failed.fatal);
        assert!(
            failed.error.contains("bad state at record 700"),
            "{}",
            failed.error
        );
    }

    #[test]
    fn dropping_it_early_stops_the_parser() {
        let mut records = ReadAhead::spawn((0..).map(record)).unwrap();
        assert_eq!(records.next().map(|r| r.0), Some(0));
        drop(records); // Returns: the parser saw its reader go and stopped.
    }
}
