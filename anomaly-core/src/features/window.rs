use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::codec::{self, Compact, DecodeError, KIND_WINDOW, Reader};
use super::is_valid_value;
use super::moments::Moments;
use super::summary::Summary;
use crate::InputError;
use crate::cache_hint::{prefetch, prefetch_at, prefetch_whole};
use crate::error::{ParameterError, check, check_input};

/// How much history a [`SlidingWindow`] retains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSpan {
    /// The last `millis` milliseconds of event time: events with
    /// `newest - millis < timestamp <= newest`, where `newest` is the largest timestamp
    /// accepted so far.
    Time {
        /// Length of the window in milliseconds, at least 1.
        millis: u64,
    },
    /// The `count` newest events by event time (ties broken by arrival order).
    Events {
        /// Number of events retained, at least 1.
        count: u32,
    },
}

/// [`SlidingWindow`]'s parameters. Unknown fields are rejected; missing ones take their
/// defaults.
///
/// ```
/// use anomaly_core::features::{WindowParams, WindowSpan};
///
/// let params: WindowParams = serde_json::from_str(
///     r#"{"span": {"events": {"count": 50}}, "allowed_lateness_ms": 5000}"#,
/// )?;
/// assert_eq!(params.span, WindowSpan::Events { count: 50 });
/// let hour: WindowParams = serde_json::from_str("{}")?;
/// assert_eq!(hour.span, WindowSpan::Time { millis: 3_600_000 });
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowParams {
    /// What the window retains. Default: the last hour (`Time { millis: 3_600_000 }`).
    pub span: WindowSpan,
    /// How far behind the newest timestamp an event may arrive and still be folded in, in
    /// milliseconds. Older events are dropped and counted. Default 0: only events at or after
    /// the newest timestamp are accepted.
    pub allowed_lateness_ms: u64,
}

impl Default for WindowParams {
    fn default() -> Self {
        Self {
            span: WindowSpan::Time { millis: 3_600_000 },
            allowed_lateness_ms: 0,
        }
    }
}

impl WindowParams {
    fn validate(&self) -> Result<(), ParameterError> {
        match self.span {
            WindowSpan::Time { millis } => check(
                millis >= 1,
                "SlidingWindow",
                "span.time.millis",
                "at least 1",
                millis,
            ),
            WindowSpan::Events { count } => check(
                count >= 1,
                "SlidingWindow",
                "span.events.count",
                "at least 1",
                count,
            ),
        }
    }
}

/// What [`SlidingWindow::push`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ingest {
    /// The event was folded in at its time position (it may have been evicted at once if it
    /// is older than the span).
    Accepted,
    /// The event was older than the newest timestamp minus the allowed lateness: dropped and
    /// counted in [`SlidingWindow::late_dropped`].
    DroppedLate,
}

/// An event-time sliding window over one stream (one key), with exact count, sum, mean,
/// variance, min and max of the events it retains.
///
/// **Event time.** Time only moves with the timestamps passed to [`push`](Self::push) (any
/// unit, typically Unix milliseconds); the wall clock is never read, so replaying a stream
/// reproduces its features exactly.
///
/// **Out-of-order events.** Let `newest` be the largest timestamp accepted so far. An event
/// with `timestamp >= newest - allowed_lateness_ms` is inserted at its time position (after
/// events with an equal timestamp); an older one is dropped, counted in
/// [`late_dropped`](Self::late_dropped) and reported as [`Ingest::DroppedLate`]. Equal
/// timestamps are always accepted. A late insertion costs O(retained events); in-order events
/// cost O(1) amortised.
///
/// **Numerics.** The window is a "two-stacks" queue: the older part keeps, for each event, the
/// summary of it and every older-part event after it; the newer part keeps one running summary.
/// Summaries merge with Chan et al.'s pairwise formula and values are summarised relative to a
/// shift that is always one of the retained values (re-chosen, as the newest value, whenever
/// the older part is rebuilt). Nothing is ever subtracted on eviction, so there is no
/// cancellation to accumulate: for values around 1e9 with a spread of 1 the variance keeps a
/// relative error around 1e-14 (property-tested against a two-pass recomputation). Min and max
/// are exact. The summaries are a deterministic function of (events, split point, shift),
/// which is all that is stored: decoding rebuilds them bit for bit.
///
/// ```
/// use anomaly_core::features::{Ingest, SlidingWindow, WindowParams, WindowSpan};
///
/// let mut window = SlidingWindow::new(WindowParams {
///     span: WindowSpan::Time { millis: 10_000 },
///     allowed_lateness_ms: 2_000,
/// })?;
/// window.push(1_000, 4.0)?;
/// window.push(5_000, 8.0)?;
/// assert_eq!(window.push(4_000, 6.0)?, Ingest::Accepted); // 1 s late: folded in
/// assert_eq!(window.push(2_000, 9.0)?, Ingest::DroppedLate); // 3 s late: dropped
/// window.push(11_500, 2.0)?; // the event at 1_000 leaves the window (11_500 - 10_000)
///
/// let s = window.summary();
/// assert_eq!((s.count(), s.sum()), (3, 16.0));
/// assert!((s.mean() - 16.0 / 3.0).abs() < 1e-12);
/// assert_eq!((s.min(), s.max()), (Some(2.0), Some(8.0)));
/// assert_eq!(window.late_dropped(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SlidingWindow {
    params: WindowParams,
    /// Retained events in time order (equal timestamps in arrival order); the first
    /// `older.len()` of them are the older part, the rest the newer part.
    events: VecDeque<Event>,
    /// Summaries of the older part, newest first: `older[k]` summarises its `k + 1` newest
    /// events, so the last one summarises the whole older part and leaves with its oldest
    /// event. Kept apart from the events because most windows never evict (a day's window over
    /// a few hours of data) and then the older part is empty: a card's events stay 16 bytes.
    older: Vec<Moments>,
    /// Summary of the newer part.
    back: Moments,
    /// Values are summarised as `value - shift`; see the type's notes on numerics.
    shift: f64,
    late_dropped: u64,
}

/// One retained event.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Event {
    t: i64,
    x: f64,
}

impl Default for SlidingWindow {
    fn default() -> Self {
        Self::fresh(WindowParams::default())
    }
}

impl SlidingWindow {
    /// Builds an empty window; the span must be at least 1 ms or 1 event.
    pub fn new(params: WindowParams) -> Result<Self, ParameterError> {
        params.validate()?;
        Ok(Self::fresh(params))
    }

    fn fresh(params: WindowParams) -> Self {
        Self {
            params,
            events: VecDeque::new(),
            older: Vec::new(),
            back: Moments::EMPTY,
            shift: 0.0,
            late_dropped: 0,
        }
    }

    /// The parameters this window was built with.
    pub fn params(&self) -> &WindowParams {
        &self.params
    }

    /// Adds the event `(timestamp, value)` and evicts what falls out of the span.
    ///
    /// A value that is NaN, infinite or larger in magnitude than
    /// [`MAX_INPUT_MAGNITUDE`](crate::MAX_INPUT_MAGNITUDE) is rejected with an error and
    /// leaves the window untouched; a late event is not an error (see the type's notes).
    pub fn push(&mut self, timestamp: i64, value: f64) -> Result<Ingest, InputError> {
        let value = check_input("SlidingWindow", value)?;
        let event = Event {
            t: timestamp,
            x: value,
        };
        match self.events.back() {
            None => {
                self.shift = value;
                self.events.push_back(event);
                self.back = Moments::single(value, self.shift);
            }
            Some(newest) if timestamp >= newest.t => {
                self.events.push_back(event);
                self.back = self.back.merge(&Moments::single(value, self.shift));
            }
            Some(newest) => {
                // i128: `newest - lateness` must not wrap for extreme timestamps.
                let oldest_allowed =
                    i128::from(newest.t) - i128::from(self.params.allowed_lateness_ms);
                if i128::from(timestamp) < oldest_allowed {
                    self.late_dropped = self.late_dropped.saturating_add(1);
                    return Ok(Ingest::DroppedLate);
                }
                let pos = self.events.partition_point(|e| e.t <= timestamp);
                self.events.insert(pos, event);
                let split = self.older.len() + usize::from(pos < self.older.len());
                // Rare path: recomputing both parts keeps the summaries the canonical function
                // of (events, split, shift) that decoding relies on.
                self.rebuild(split);
            }
        }
        self.evict();
        Ok(Ingest::Accepted)
    }

    fn evict(&mut self) {
        match self.params.span {
            WindowSpan::Events { count } => {
                while self.events.len() > count as usize {
                    self.pop_oldest();
                }
            }
            WindowSpan::Time { millis } => {
                let Some(newest) = self.events.back() else {
                    return;
                };
                let cutoff = i128::from(newest.t) - i128::from(millis);
                while self
                    .events
                    .front()
                    .is_some_and(|e| i128::from(e.t) <= cutoff)
                {
                    self.pop_oldest();
                }
            }
        }
    }

    fn pop_oldest(&mut self) {
        if self.older.is_empty() {
            self.flip();
        }
        if self.events.pop_front().is_some() {
            self.older.pop();
        }
        // Flipping as soon as the older part empties keeps the shift a retained value (the
        // shift is the older part's newest event, the last of it to leave).
        if self.older.is_empty() && !self.events.is_empty() {
            self.flip();
        }
    }

    /// Moves every event to the older part, re-centring on the newest value.
    fn flip(&mut self) {
        if let Some(newest) = self.events.back() {
            self.shift = newest.x;
        }
        self.back = Moments::EMPTY;
        self.rebuild_older(self.events.len());
    }

    /// Recomputes every summary with the first `split` events as the older part.
    fn rebuild(&mut self, split: usize) {
        self.rebuild_older(split);
        let mut back = Moments::EMPTY;
        for e in self.events.range(split..) {
            back = back.merge(&Moments::single(e.x, self.shift));
        }
        self.back = back;
    }

    fn rebuild_older(&mut self, split: usize) {
        self.older.clear();
        // Exact: an older part is rebuilt at the window's length, which barely varies, and
        // doubling would leave a third of these summaries' memory unused on every card.
        self.older.reserve_exact(split);
        let mut acc = Moments::EMPTY;
        for e in self.events.range(..split).rev() {
            acc = Moments::single(e.x, self.shift).merge(&acc);
            self.older.push(acc);
        }
    }

    /// Count, sum, mean, variance, min and max of the retained events, in O(1).
    pub fn summary(&self) -> Summary {
        let older = self.older.last().copied().unwrap_or(Moments::EMPTY);
        Summary::new(self.shift, older.merge(&self.back))
    }

    /// Starts loading what the next [`push`](Self::push) and [`summary`](Self::summary) read:
    /// the newest and oldest events and the older part's last two summaries. A caller that
    /// keeps many windows (one per card) calls it as soon as it has the window, so that these
    /// loads overlap instead of following one another.
    #[inline]
    pub(crate) fn prefetch(&self) {
        if let Some(newest) = self.events.back() {
            prefetch(newest);
        }
        if let Some(oldest) = self.events.front() {
            prefetch(oldest);
        }
        if let Some(top) = self.older.last() {
            prefetch_whole(top);
        }
        // The next summary up, once the top leaves with the oldest event: it ends where the
        // top starts, so its first line is the only one the top's may not cover.
        if let Some(next) = self.older.len().checked_sub(2) {
            prefetch_at(&self.older, next);
        }
    }

    /// Number of retained events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is retained.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The largest timestamp accepted so far; `None` before the first event.
    pub fn newest_timestamp(&self) -> Option<i64> {
        self.events.back().map(|e| e.t)
    }

    /// Events dropped for arriving later than the allowed lateness.
    pub fn late_dropped(&self) -> u64 {
        self.late_dropped
    }

    /// The retained `(timestamp, value)` events, oldest first.
    pub fn events(
        &self,
    ) -> impl ExactSizeIterator<Item = (i64, f64)> + DoubleEndedIterator + Clone + '_ {
        self.events.iter().map(|e| (e.t, e.x))
    }

    /// Rebuilds a window from its stored parts, checking every invariant.
    fn from_parts(
        params: WindowParams,
        late_dropped: u64,
        shift: f64,
        split: usize,
        events: impl ExactSizeIterator<Item = (i64, f64)>,
    ) -> Result<Self, InvalidState> {
        let invalid = |reason| InvalidState {
            what: "sliding window",
            reason,
        };
        params
            .validate()
            .map_err(|_| invalid("span must be at least 1 ms or 1 event"))?;
        let entries: VecDeque<Event> = events.map(|(t, x)| Event { t, x }).collect();
        if !entries.iter().all(|e| is_valid_value(e.x)) {
            return Err(invalid(
                "values must be finite with magnitude at most 1e100",
            ));
        }
        if !entries
            .iter()
            .zip(entries.iter().skip(1))
            .all(|(a, b)| a.t <= b.t)
        {
            return Err(invalid("events must be in time order"));
        }
        if split > entries.len() {
            return Err(invalid("split point beyond the events"));
        }
        if !is_valid_value(shift)
            || (!entries.is_empty() && !entries.iter().any(|e| e.x.to_bits() == shift.to_bits()))
        {
            return Err(invalid("shift must be one of the retained values"));
        }
        match (params.span, entries.front(), entries.back()) {
            (WindowSpan::Events { count }, _, _) if entries.len() > count as usize => {
                return Err(invalid("more events than the window's count"));
            }
            (WindowSpan::Time { millis }, Some(oldest), Some(newest))
                if i128::from(oldest.t) <= i128::from(newest.t) - i128::from(millis) =>
            {
                return Err(invalid("events older than the window's span"));
            }
            _ => {}
        }
        let mut window = Self {
            params,
            events: entries,
            older: Vec::new(),
            back: Moments::EMPTY,
            shift,
            late_dropped,
        };
        window.rebuild(split);
        Ok(window)
    }

    pub(crate) fn encode_params(params: &WindowParams, out: &mut Vec<u8>) {
        match params.span {
            WindowSpan::Time { millis } => {
                out.push(0);
                codec::put_varint(out, millis);
            }
            WindowSpan::Events { count } => {
                out.push(1);
                codec::put_varint(out, u64::from(count));
            }
        }
        codec::put_varint(out, params.allowed_lateness_ms);
    }

    pub(crate) fn decode_params(r: &mut Reader<'_>) -> Result<WindowParams, DecodeError> {
        let span = match r.u8("window span kind")? {
            0 => WindowSpan::Time {
                millis: r.varint("window span")?,
            },
            1 => WindowSpan::Events {
                count: r.u32("window span")?,
            },
            _ => return Err(r.invalid("window span kind", "must be 0 (time) or 1 (events)")),
        };
        let allowed_lateness_ms = r.varint("allowed lateness")?;
        Ok(WindowParams {
            span,
            allowed_lateness_ms,
        })
    }

    /// The window's own state, for windows whose events are the last `len` of an event list
    /// encoded once by [`codec::put_events`] (a card's windows all share one).
    pub(crate) fn encode_layout(&self, out: &mut Vec<u8>) {
        codec::put_varint(out, self.late_dropped);
        codec::put_varint(out, self.events.len() as u64);
        if self.events.is_empty() {
            return;
        }
        codec::put_varint(out, self.older.len() as u64);
        // The shift is a retained value, so its position replaces 8 bytes.
        let at = self
            .events
            .iter()
            .position(|e| e.x.to_bits() == self.shift.to_bits())
            .unwrap_or(0);
        codec::put_varint(out, at as u64);
    }

    /// Reads what [`encode_layout`](Self::encode_layout) wrote; the window's events are the
    /// last `len` of `events`.
    pub(crate) fn decode_layout(
        r: &mut Reader<'_>,
        params: WindowParams,
        events: &[(i64, f64)],
    ) -> Result<Self, DecodeError> {
        let late_dropped = r.varint("late-dropped count")?;
        let len = r.varint("window length")?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= events.len())
            .ok_or_else(|| r.invalid("window length", "longer than the stored events"))?;
        let own = events.get(events.len() - len..).unwrap_or_default();
        let (split, shift) = if len == 0 {
            (0, 0.0)
        } else {
            let split = usize::try_from(r.varint("split point")?).unwrap_or(usize::MAX);
            let at = usize::try_from(r.varint("shift position")?).unwrap_or(usize::MAX);
            let shift = own
                .get(at)
                .map(|e| e.1)
                .ok_or_else(|| r.invalid("shift position", "beyond the window's events"))?;
            (split, shift)
        };
        Self::from_parts(params, late_dropped, shift, split, own.iter().copied())
            .map_err(|e| e.at(r))
    }
}

impl Compact for SlidingWindow {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_header(out, KIND_WINDOW);
        Self::encode_params(&self.params, out);
        codec::put_events(out, self.events());
        self.encode_layout(out);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(KIND_WINDOW, "sliding window")?;
        let params = Self::decode_params(&mut r)?;
        let events = r.events()?;
        let window = Self::decode_layout(&mut r, params, &events)?;
        if window.len() != events.len() {
            return Err(r.invalid("window length", "must cover every stored event"));
        }
        r.finish()?;
        Ok(window)
    }
}

/// A stored state that breaks an invariant (shared by the serde and compact decoders).
#[derive(Debug)]
pub(crate) struct InvalidState {
    pub(crate) what: &'static str,
    pub(crate) reason: &'static str,
}

impl InvalidState {
    pub(crate) fn at(self, r: &Reader<'_>) -> DecodeError {
        r.invalid(self.what, self.reason)
    }
}

impl fmt::Display for InvalidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.what, self.reason)
    }
}

/// Serde form: the stored parts only; summaries are rebuilt on deserialization.
#[derive(Serialize)]
struct WindowReprRef<'a> {
    params: &'a WindowParams,
    late_dropped: u64,
    shift: f64,
    split: usize,
    events: EventsRef<'a>,
}

/// Serializes the events as `[timestamp, value]` pairs.
struct EventsRef<'a>(&'a VecDeque<Event>);

impl Serialize for EventsRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|e| (e.t, e.x)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowRepr {
    params: WindowParams,
    late_dropped: u64,
    shift: f64,
    split: usize,
    events: Vec<(i64, f64)>,
}

impl Serialize for SlidingWindow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WindowReprRef {
            params: &self.params,
            late_dropped: self.late_dropped,
            shift: self.shift,
            split: self.older.len(),
            events: EventsRef(&self.events),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SlidingWindow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = WindowRepr::deserialize(deserializer)?;
        Self::from_parts(
            r.params,
            r.late_dropped,
            r.shift,
            r.split,
            r.events.into_iter(),
        )
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(span: WindowSpan, lateness: u64) -> SlidingWindow {
        SlidingWindow::new(WindowParams {
            span,
            allowed_lateness_ms: lateness,
        })
        .unwrap()
    }

    #[test]
    fn spans_are_validated() {
        for span in [
            WindowSpan::Time { millis: 0 },
            WindowSpan::Events { count: 0 },
        ] {
            let err = SlidingWindow::new(WindowParams {
                span,
                allowed_lateness_ms: 0,
            })
            .unwrap_err();
            assert!(err.to_string().contains("at least 1"), "{err}");
        }
    }

    #[test]
    fn count_window_keeps_the_newest_events() {
        let mut w = window(WindowSpan::Events { count: 3 }, 0);
        for (t, v) in [(1, 5.0), (2, 1.0), (3, 9.0), (4, 2.0), (5, 3.0)] {
            assert_eq!(w.push(t, v).unwrap(), Ingest::Accepted);
        }
        assert_eq!(
            w.events().collect::<Vec<_>>(),
            [(3, 9.0), (4, 2.0), (5, 3.0)]
        );
        let s = w.summary();
        assert_eq!(
            (s.count(), s.sum(), s.min(), s.max()),
            (3, 14.0, Some(2.0), Some(9.0))
        );
    }

    #[test]
    fn time_window_is_half_open() {
        let mut w = window(WindowSpan::Time { millis: 10 }, 0);
        w.push(0, 1.0).unwrap();
        w.push(9, 2.0).unwrap();
        assert_eq!(w.len(), 2);
        w.push(10, 3.0).unwrap(); // 10 - 10 = 0: the event at 0 leaves
        assert_eq!(w.events().map(|e| e.0).collect::<Vec<_>>(), [9, 10]);
    }

    #[test]
    fn late_events_follow_the_lateness_policy() {
        let mut w = window(WindowSpan::Time { millis: 100 }, 5);
        w.push(50, 1.0).unwrap();
        assert_eq!(w.push(50, 2.0).unwrap(), Ingest::Accepted); // equal timestamp
        assert_eq!(w.push(45, 3.0).unwrap(), Ingest::Accepted); // exactly 5 late
        assert_eq!(w.push(44, 4.0).unwrap(), Ingest::DroppedLate);
        assert_eq!(
            w.events().collect::<Vec<_>>(),
            [(45, 3.0), (50, 1.0), (50, 2.0)]
        );
        assert_eq!(w.late_dropped(), 1);
        assert_eq!(w.summary().max(), Some(3.0));
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let mut w = window(WindowSpan::Time { millis: u64::MAX }, u64::MAX);
        w.push(i64::MAX, 1.0).unwrap();
        w.push(i64::MIN + 1, 2.0).unwrap();
        assert_eq!(w.len(), 2);
        let bytes = w.to_bytes();
        assert_eq!(SlidingWindow::decode(&bytes).unwrap(), w);
        // i64::MAX - i64::MIN is exactly the span: the half-open window drops it.
        w.push(i64::MIN, 3.0).unwrap();
        assert_eq!(w.len(), 2);
        let bytes = w.to_bytes();
        assert_eq!(SlidingWindow::decode(&bytes).unwrap(), w);
        let mut w = window(WindowSpan::Time { millis: 1 }, 0);
        w.push(i64::MIN, 1.0).unwrap();
        w.push(i64::MAX, 2.0).unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn invalid_values_leave_the_window_untouched() {
        let mut w = SlidingWindow::default();
        w.push(1, 1.0).unwrap();
        let before = w.clone();
        assert!(w.push(2, f64::NAN).is_err());
        assert!(w.push(2, 1e101).is_err());
        assert_eq!(w, before);
    }

    #[test]
    fn shift_stays_a_retained_value() {
        let mut w = window(WindowSpan::Events { count: 4 }, 100);
        for i in 0..200i64 {
            let t = if i % 7 == 3 { i - 3 } else { i };
            w.push(t, 1e9 + (i as f64) * 0.5).unwrap();
            assert!(w.events().any(|(_, v)| v == w.shift));
            assert!(w.older.len() <= w.len());
        }
    }

    #[test]
    fn compact_and_serde_round_trips() {
        let mut w = window(WindowSpan::Time { millis: 1_000 }, 50);
        for i in 0..300i64 {
            w.push(i * 7 - (i % 3) * 20, (i as f64).sqrt()).unwrap();
        }
        let bytes = w.to_bytes();
        assert_eq!(SlidingWindow::decode(&bytes).unwrap(), w);
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<SlidingWindow>(&json).unwrap(), w);
        let empty = SlidingWindow::default();
        assert_eq!(SlidingWindow::decode(&empty.to_bytes()).unwrap(), empty);
        assert!(empty.to_bytes().len() <= 12);
        // Two-decimal amounts take a few bytes each, not 8.
        let mut w = window(WindowSpan::Events { count: 100 }, 0);
        for i in 0..100i64 {
            w.push(
                1_700_000_000_000 + i * 1_000,
                (i * 37 % 1000 + 100) as f64 / 100.0, // as parsed from "1.37"...
            )
            .unwrap();
        }
        let bytes = w.to_bytes();
        assert!(bytes.len() < 100 * 5, "{} bytes", bytes.len());
        assert_eq!(SlidingWindow::decode(&bytes).unwrap(), w);
    }

    #[test]
    fn corrupt_states_are_rejected() {
        let json = r#"{"params":{"span":{"events":{"count":1}}},"late_dropped":0,"shift":1.0,"split":0,"events":[[1,1.0],[2,1.0]]}"#;
        let err = serde_json::from_str::<SlidingWindow>(json).unwrap_err();
        assert!(err.to_string().contains("more events"), "{err}");
        let json =
            r#"{"params":{},"late_dropped":0,"shift":1.0,"split":0,"events":[[2,1.0],[1,1.0]]}"#;
        assert!(serde_json::from_str::<SlidingWindow>(json).is_err());
        let mut bytes = SlidingWindow::default().to_bytes();
        bytes[0] = 9;
        assert_eq!(
            SlidingWindow::decode(&bytes),
            Err(DecodeError::UnsupportedVersion {
                found: 9,
                supported: 1
            })
        );
    }
}
