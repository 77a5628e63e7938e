//! A transaction file's records, one at a time, in bounded memory: lines are read with a
//! length cap (a longer one is reported and skipped, not loaded), blank lines are skipped,
//! and each record keeps the number of the line it starts on.

use std::io::{BufRead, ErrorKind};

/// The longest record read; a longer one is a bad row and the rest of it is skipped.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// One record of the file.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record {
    /// The record's bytes (without its line terminator), from line `line`.
    Text { line: u64 },
    /// A record longer than [`MAX_RECORD_BYTES`], starting at line `line`.
    TooLong { line: u64 },
}

/// Reads records from a file; CSV records may span lines inside a quoted field.
pub(super) struct RecordReader<R> {
    inner: R,
    /// Lines read so far.
    lines: u64,
    /// Whether a quoted field can hold line breaks (CSV).
    quoted_lines: bool,
}

impl<R: BufRead> RecordReader<R> {
    pub(super) fn new(inner: R, quoted_lines: bool) -> Self {
        Self {
            inner,
            lines: 0,
            quoted_lines,
        }
    }

    /// The next non-blank record into `text`; `None` at the end of the file.
    pub(super) fn next_record(&mut self, text: &mut Vec<u8>) -> std::io::Result<Option<Record>> {
        loop {
            text.clear();
            let first = self.lines + 1;
            let mut too_long = false;
            let mut open_quotes = false;
            loop {
                let line = read_line_capped(&mut self.inner, text, MAX_RECORD_BYTES)?;
                if line.bytes == 0 {
                    break;
                }
                self.lines += 1;
                too_long |= line.too_long;
                if self.quoted_lines && !too_long {
                    open_quotes ^= line.quotes % 2 == 1;
                }
                // A record goes on while a quoted field is open (CSV only).
                if !open_quotes || too_long || !line.ended {
                    break;
                }
            }
            if too_long {
                return Ok(Some(Record::TooLong { line: first }));
            }
            if self.lines < first {
                return Ok(None); // Nothing read: the end of the file.
            }
            while text.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                text.pop();
            }
            if first == 1 && text.starts_with(b"\xEF\xBB\xBF") {
                text.drain(..3);
            }
            if !text.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(Record::Text { line: first }));
            }
        }
    }
}

struct Line {
    /// Bytes consumed from the reader (0 at the end of the file).
    bytes: usize,
    /// Longer than the cap: what did not fit was skipped.
    too_long: bool,
    /// Ended with a line feed.
    ended: bool,
    /// Quote characters in the part kept.
    quotes: usize,
}

/// Appends one line (with its `\n`) to `out` while `out` stays within `cap` bytes; the rest of
/// a longer line is consumed and dropped.
fn read_line_capped(
    input: &mut impl BufRead,
    out: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Line> {
    let mut line = Line {
        bytes: 0,
        too_long: false,
        ended: false,
        quotes: 0,
    };
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(line);
        }
        let (take, ended) = match memchr::memchr(b'\n', available) {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        let chunk = &available[..take];
        if !line.too_long && out.len() + take <= cap {
            line.quotes += memchr::memchr_iter(b'"', chunk).count();
            out.extend_from_slice(chunk);
        } else {
            line.too_long = true;
        }
        input.consume(take);
        line.bytes += take;
        if ended {
            line.ended = true;
            return Ok(line);
        }
    }
}

/// The fields of one CSV record, unquoted (RFC 4180: `""` inside quotes is a quote).
pub(super) struct CsvSplitter {
    reader: csv_core::Reader,
    unquoted: Vec<u8>,
    ends: Vec<usize>,
    /// The fields of the last record split, as byte ranges of its text.
    spans: Vec<(usize, usize)>,
}

/// The fields of one record, borrowed from the record or from the splitter.
pub(super) struct Fields<'a> {
    text: &'a str,
    spans: &'a [(usize, usize)],
}

impl<'a> Fields<'a> {
    pub(super) fn len(&self) -> usize {
        self.spans.len()
    }

    pub(super) fn get(&self, index: usize) -> Option<&'a str> {
        let &(start, end) = self.spans.get(index)?;
        self.text.get(start..end)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

impl CsvSplitter {
    pub(super) fn new() -> Self {
        Self {
            reader: csv_core::Reader::new(),
            unquoted: Vec::new(),
            ends: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// The fields of `record` (a whole record, without its terminator); an error names the
    /// first field that is not UTF-8.
    pub(super) fn split<'a>(&'a mut self, record: &'a [u8]) -> Result<Fields<'a>, String> {
        // Most records quote nothing (and hold no line break, which csv_core takes for a
        // record's end): their fields are the text between commas, and the record is checked
        // for UTF-8 once (a comma is never part of a multi-byte character, so every field of a
        // valid record is valid).
        if memchr::memchr3(b'"', b'\r', b'\n', record).is_none()
            && let Ok(text) = std::str::from_utf8(record)
        {
            self.spans.clear();
            let mut start = 0;
            for comma in memchr::memchr_iter(b',', record) {
                self.spans.push((start, comma));
                start = comma + 1;
            }
            if !record.is_empty() {
                self.spans.push((start, record.len()));
            }
            return Ok(Fields {
                text,
                spans: &self.spans,
            });
        }
        self.split_quoted(record)
    }

    /// Any record, through csv_core.
    fn split_quoted(&mut self, record: &[u8]) -> Result<Fields<'_>, String> {
        self.spans.clear();
        // Unquoting only shrinks a record, and it has at most one field per byte, plus one.
        self.unquoted.resize(record.len() + 1, 0);
        self.ends.resize(record.len() + 2, 0);
        self.reader.reset();
        let (_, _, written, fields) =
            self.reader
                .read_record(record, &mut self.unquoted, &mut self.ends);
        // An empty input marks the end of the record.
        let (_, _, more_written, more_fields) =
            self.reader
                .read_record(&[], &mut self.unquoted[written..], &mut self.ends[fields..]);
        // Field ends count from the record's start, across both calls.
        let count = fields + more_fields;
        let bytes = &self.unquoted[..written + more_written];
        let ends = &self.ends[..count];
        let mut start = 0;
        for &end in ends {
            self.spans.push((start, end));
            start = end;
        }
        // Quotes are gone, so a multi-byte character could straddle two fields that are each
        // invalid: the fields are valid when the text is and every field ends on a character.
        match std::str::from_utf8(bytes) {
            Ok(text) if ends.iter().all(|&end| text.is_char_boundary(end)) => Ok(Fields {
                text,
                spans: &self.spans,
            }),
            _ => {
                let valid = |&(start, end): &(usize, usize)| {
                    std::str::from_utf8(&bytes[start..end]).is_ok()
                };
                let field = self.spans.iter().position(|span| !valid(span)).unwrap_or(0);
                Err(format!("field {} is not UTF-8", field + 1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &[u8], quoted: bool) -> Vec<(Record, String)> {
        let mut reader = RecordReader::new(std::io::Cursor::new(text.to_vec()), quoted);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(r) = reader.next_record(&mut buf).unwrap() {
            out.push((r, String::from_utf8_lossy(&buf).into_owned()));
        }
        out
    }

    #[test]
    fn line_numbers_survive_crlf_blank_lines_bom_and_quoted_line_breaks() {
        let text = b"\xEF\xBB\xBFa,b\r\n\r\n1,2\r\n\n\"x\ny\",3\n4,\"5\"\"\"\n6,7";
        let got = records(text, true);
        let lines: Vec<u64> = got
            .iter()
            .map(|(r, _)| match r {
                Record::Text { line } | Record::TooLong { line } => *line,
            })
            .collect();
        assert_eq!(lines, [1, 3, 5, 7, 8]);
        let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["a,b", "1,2", "\"x\ny\",3", "4,\"5\"\"\"", "6,7"]);
        let mut splitter = CsvSplitter::new();
        let mut fields = |record: &[u8]| -> Result<Vec<String>, String> {
            let fields = splitter.split(record)?;
            Ok(fields.iter().map(str::to_owned).collect())
        };
        assert_eq!(fields(b"\"x\ny\",3").unwrap(), ["x\ny", "3"]);
        assert_eq!(fields(b"4,\"5\"\"\",,").unwrap(), ["4", "5\"", "", ""]);
        assert_eq!(fields(b",a,,b,").unwrap(), ["", "a", "", "b", ""]);
        assert_eq!(fields(b"caf\xc3\xa9,1").unwrap(), ["caf\u{e9}", "1"]);
        assert!(fields(b"").unwrap().is_empty());
        assert_eq!(fields(b"ok,\xff\xfe").unwrap_err(), "field 2 is not UTF-8");
        assert_eq!(fields(b"\"ok\",\xff").unwrap_err(), "field 2 is not UTF-8");
        // A character split by a quoted comma is two invalid fields, not one valid one.
        assert_eq!(
            fields(b"\"\xc3\",\xa9").unwrap_err(),
            "field 1 is not UTF-8"
        );
    }

    #[test]
    fn a_record_longer_than_the_cap_is_reported_and_skipped() {
        let mut text = b"a,b\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 10));
        text.extend(b"\n1,2\n");
        let got = records(&text, true);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].0, Record::TooLong { line: 2 });
        assert_eq!(got[2], (Record::Text { line: 3 }, "1,2".to_owned()));
        // An unclosed quote cannot swallow the rest of the file past the cap.
        let mut open = b"\"".to_vec();
        open.extend(std::iter::repeat_n(b"y\n", MAX_RECORD_BYTES / 2 + 10).flatten());
        let got = records(&open, true);
        assert_eq!(got[0].0, Record::TooLong { line: 1 });
    }

    proptest::proptest! {
        /// The comma split gives what csv_core gives, on any record it takes.
        #[test]
        fn the_comma_split_agrees_with_csv_core(
            record in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'7', b',', b' ', b'\t', b'\n', b'.', b'-', 0xC3, 0xA9, 0xFF]),
                0..40,
            )
        ) {
            let mut splitter = CsvSplitter::new();
            let fast = splitter
                .split(&record)
                .map(|fields| fields.iter().map(str::to_owned).collect::<Vec<_>>());
            let reference = splitter
                .split_quoted(&record)
                .map(|fields| fields.iter().map(str::to_owned).collect::<Vec<_>>());
            proptest::prop_assert_eq!(fast, reference);
        }
    }
}
