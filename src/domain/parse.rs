//! The assumed tilmeldingsliste CSV: bytes in, validated [`KeySet`] out.
//!
//! Format (README, "The assumed tilmeldingsliste CSV"): UTF-8 with an
//! optional BOM, LF or CRLF, delimiter `;` or `,` taken from the header line,
//! a required header row with a column `nummer` and an optional column `type`
//! (`CPR`/`CVR`), other columns ignored, blank lines ignored. Any invalid row
//! rejects the whole list with its line number and a reason that never
//! contains the key.
//!
//! The body is split into chunks at line boundaries and the chunks are
//! parsed in parallel. Lines of the common shapes (a bare key, a typed
//! `type;nummer` pair) are recognised whole; other lines are split in one
//! pass. Files with quotes are read record by record with the `csv` crate's
//! rules (its reader gives the header and checks the chunked reader in
//! tests); should a quoted field span a chunk boundary, the whole file is
//! read by the `csv` crate instead. Nothing here touches the disk:
//! `store::lists::read_list` reads a file and hands its bytes over.

use rayon::prelude::*;

use crate::domain::keys::{self, KeyError, KeyKind, KeySet};

/// A parsed list with what the summary reports about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedList {
    /// The sorted, unique keys.
    pub keys: KeySet,
    /// Data rows read (blank lines not counted).
    pub n_rows: u64,
    /// Rows whose key was already in the list.
    pub n_duplicates: u64,
}

/// Why a list was rejected: the 1-based line (the header is line 1) and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number in the file.
    pub line: u64,
    /// What is wrong with that line.
    pub reason: Reason,
}

/// What is wrong with a line. Never carries the key's digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("the list is empty: a header row is required")]
    NoHeader,
    #[error("the header has no column `nummer`")]
    MissingNummerColumn,
    #[error("the header names column `{0}` twice")]
    DuplicateColumn(String),
    #[error("the row has {found} fields, the header has {expected}")]
    FieldCount { found: usize, expected: usize },
    #[error("the row has no value in column `nummer`")]
    MissingNummer,
    #[error("column `type` must be CPR or CVR")]
    BadType,
    #[error("column `type` says {declared} but the number has {found} characters")]
    TypeMismatch { declared: KeyKind, found: usize },
    #[error("malformed CSV: {0}")]
    Csv(String),
}

/// Where the interesting columns are.
#[derive(Debug, Clone, Copy)]
struct Layout {
    delimiter: u8,
    n_columns: usize,
    nummer: usize,
    kind: Option<usize>,
}

impl Layout {
    fn from_header(header: &[u8]) -> Result<Layout, Reason> {
        let delimiter = if header.contains(&b';') {
            b';'
        } else if header.contains(&b',') {
            b','
        } else {
            b';'
        };
        let names: Vec<String> = header
            .split(|&b| b == delimiter)
            .map(|f| {
                let f = trim(f);
                let f = f
                    .strip_prefix(b"\"")
                    .and_then(|f| f.strip_suffix(b"\""))
                    .unwrap_or(f);
                String::from_utf8_lossy(f).to_ascii_lowercase()
            })
            .collect();
        let mut nummer = None;
        let mut kind = None;
        for (i, name) in names.iter().enumerate() {
            let slot = match name.as_str() {
                "nummer" => &mut nummer,
                "type" => &mut kind,
                _ => continue,
            };
            if slot.replace(i).is_some() {
                return Err(Reason::DuplicateColumn(name.clone()));
            }
        }
        Ok(Layout {
            delimiter,
            n_columns: names.len(),
            nummer: nummer.ok_or(Reason::MissingNummerColumn)?,
            kind,
        })
    }

    /// Validates one row given as its fields.
    #[inline]
    fn key<'a>(
        &self,
        n_fields: usize,
        mut field: impl FnMut(usize) -> Option<&'a [u8]>,
    ) -> Result<(KeyKind, u32), Reason> {
        if n_fields != self.n_columns {
            return Err(Reason::FieldCount {
                found: n_fields,
                expected: self.n_columns,
            });
        }
        let nummer = trim(field(self.nummer).ok_or(Reason::MissingNummer)?);
        if nummer.is_empty() {
            return Err(Reason::MissingNummer);
        }
        let Some(kind_col) = self.kind else {
            return Ok(keys::parse_any(nummer)?);
        };
        let declared = match trim(field(kind_col).unwrap_or_default()) {
            t if t.eq_ignore_ascii_case(b"cpr") => KeyKind::Cpr,
            t if t.eq_ignore_ascii_case(b"cvr") => KeyKind::Cvr,
            _ => return Err(Reason::BadType),
        };
        if nummer.len() != declared.digits() {
            return Err(Reason::TypeMismatch {
                declared,
                found: nummer.len(),
            });
        }
        Ok((declared, keys::parse_kind(declared, nummer)?))
    }
}

#[inline]
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

/// Keys found in one chunk, or the byte offset of the first bad line.
#[derive(Default)]
struct Chunk {
    cpr: Vec<u32>,
    cvr: Vec<u32>,
    rows: u64,
}

impl Chunk {
    #[inline]
    fn push(&mut self, (kind, value): (KeyKind, u32)) {
        self.rows += 1;
        match kind {
            KeyKind::Cpr => self.cpr.push(value),
            KeyKind::Cvr => self.cvr.push(value),
        }
    }
}

/// Parses a whole list held in memory.
pub fn parse_list(data: &[u8]) -> Result<ParsedList, ParseError> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    if trim(data).iter().all(|&b| b == b'\n') {
        return Err(ParseError {
            line: 1,
            reason: Reason::NoHeader,
        });
    }
    let quoted = memchr::memchr(b'"', data).is_some();
    let header_end = memchr::memchr(b'\n', data).unwrap_or(data.len());
    let (layout, body) = if quoted {
        quoted_header(data)?
    } else {
        let layout = Layout::from_header(trim(&data[..header_end]))
            .map_err(|reason| ParseError { line: 1, reason })?;
        (layout, (header_end + 1).min(data.len()))
    };
    let chunks = split_chunks(data, body);
    let n_chunks = chunks.len();
    let parsed: Vec<Result<Chunk, ChunkError>> = chunks
        .par_iter()
        .enumerate()
        .map(|(i, &(start, end))| {
            if quoted {
                parse_quoted_chunk(data, start, end, i + 1 == n_chunks, &layout)
            } else {
                parse_chunk(data, start, end, &layout).map_err(|(at, r)| ChunkError::Row(at, r))
            }
        })
        .collect();
    let mut cpr = Vec::new();
    let mut cvr = Vec::new();
    let mut n_rows = 0;
    for chunk in parsed {
        match chunk {
            Ok(c) => {
                n_rows += c.rows;
                if cpr.is_empty() {
                    cpr = c.cpr;
                } else {
                    cpr.extend_from_slice(&c.cpr);
                }
                cvr.extend_from_slice(&c.cvr);
            }
            // Every chunk before this one ended outside quotes, so this
            // one started at a record: its error is real.
            Err(ChunkError::Row(offset, reason)) => {
                let line = 1 + memchr::memchr_iter(b'\n', &data[..offset]).count() as u64;
                return Err(ParseError { line, reason });
            }
            // A quoted field spans the chunk's end: the next chunk did
            // not start at a record. Read the file in one piece instead.
            Err(ChunkError::InsideQuotes) => return parse_quoted(data),
        }
    }
    let (keys, n_duplicates) = KeySet::from_unsorted(cpr, cvr);
    Ok(ParsedList {
        keys,
        n_rows,
        n_duplicates,
    })
}

/// Splits `data[body..]` into line-aligned chunks for parallel parsing.
fn split_chunks(data: &[u8], body: usize) -> Vec<(usize, usize)> {
    const MIN_CHUNK: usize = 1 << 20;
    let len = data.len() - body;
    let pieces = (rayon::current_num_threads() * 4).max(1);
    let size = (len / pieces).max(MIN_CHUNK);
    let mut chunks = Vec::with_capacity(len / size + 1);
    let mut start = body;
    while start < data.len() {
        let guess = (start + size).min(data.len());
        let end = match memchr::memchr(b'\n', &data[guess..]) {
            Some(p) => guess + p + 1,
            None => data.len(),
        };
        chunks.push((start, end));
        start = end;
    }
    chunks
}

/// The length of the line terminator at `rest[i]` (LF or CRLF), if one is there.
#[inline]
fn eol(rest: &[u8], i: usize) -> Option<usize> {
    match rest.get(i)? {
        b'\n' => Some(1),
        b'\r' if rest.get(i + 1) == Some(&b'\n') => Some(2),
        _ => None,
    }
}

/// The common line shapes, recognised without splitting the line: a bare
/// key (`0101901234`) or a typed pair (`CPR;0101901234`, `0101901234;CPR`,
/// any delimiter), each ending in LF or CRLF. Returns the key and the bytes
/// taken; `None` sends the line to the general path (which also gives
/// every error).
#[inline]
fn fast_line(rest: &[u8], shape: Shape, d: u8) -> Option<((KeyKind, u32), usize)> {
    let cpr = |at: usize| keys::parse_cpr_fast(rest.get(at..at + 10)?.try_into().ok()?);
    let cvr = |at: usize| keys::parse_cvr_fast(rest.get(at..at + 8)?.try_into().ok()?);
    match shape {
        Shape::KeyOnly => {
            if let Some(n) = eol(rest, 10) {
                return Some(((KeyKind::Cpr, cpr(0)?), 10 + n));
            }
            let n = eol(rest, 8)?;
            Some(((KeyKind::Cvr, cvr(0)?), 8 + n))
        }
        Shape::TypeFirst => {
            if rest.get(3) != Some(&d) {
                return None;
            }
            match &rest[..3] {
                b"CPR" => Some(((KeyKind::Cpr, cpr(4)?), 14 + eol(rest, 14)?)),
                b"CVR" => Some(((KeyKind::Cvr, cvr(4)?), 12 + eol(rest, 12)?)),
                _ => None,
            }
        }
        Shape::NummerFirst => {
            if rest.get(10) == Some(&d) && rest.get(11..14) == Some(b"CPR") {
                return Some(((KeyKind::Cpr, cpr(0)?), 14 + eol(rest, 14)?));
            }
            if rest.get(8) == Some(&d) && rest.get(9..12) == Some(b"CVR") {
                return Some(((KeyKind::Cvr, cvr(0)?), 12 + eol(rest, 12)?));
            }
            None
        }
        Shape::Other => None,
    }
}

/// Which fast line shape a layout allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    KeyOnly,
    TypeFirst,
    NummerFirst,
    Other,
}

impl Layout {
    fn shape(&self) -> Shape {
        match (self.n_columns, self.nummer, self.kind) {
            (1, _, _) => Shape::KeyOnly,
            (2, 1, Some(0)) => Shape::TypeFirst,
            (2, 0, Some(1)) => Shape::NummerFirst,
            _ => Shape::Other,
        }
    }

    /// Validates one unquoted line, split in one pass over its delimiters.
    #[inline]
    fn key_of_line(&self, line: &[u8]) -> Result<(KeyKind, u32), Reason> {
        let d = self.delimiter;
        let (mut nummer, mut kind): (Option<&[u8]>, Option<&[u8]>) = (None, None);
        let mut n_fields = 0;
        let mut field_start = 0;
        let kind_col = self.kind.unwrap_or(usize::MAX);
        for end in memchr::memchr_iter(d, line).chain(std::iter::once(line.len())) {
            if n_fields == self.nummer {
                nummer = Some(&line[field_start..end]);
            } else if n_fields == kind_col {
                kind = Some(&line[field_start..end]);
            }
            n_fields += 1;
            field_start = end + 1;
        }
        self.key(n_fields, |i| {
            if i == self.nummer {
                nummer
            } else if i == kind_col {
                kind
            } else {
                None
            }
        })
    }
}

fn parse_chunk(
    data: &[u8],
    start: usize,
    end: usize,
    layout: &Layout,
) -> Result<Chunk, (usize, Reason)> {
    let mut out = Chunk::default();
    let estimate = (end - start) / 11 + 1;
    out.cpr.reserve(estimate);
    let mut pos = start;
    let shape = layout.shape();
    let d = layout.delimiter;
    while pos < end {
        if let Some((key, taken)) = fast_line(&data[pos..end], shape, d) {
            out.push(key);
            pos += taken;
            continue;
        }
        let line_end = memchr::memchr(b'\n', &data[pos..end]).map_or(end, |p| pos + p);
        let line = &data[pos..line_end];
        if !trim(line).is_empty() {
            let key = if shape == Shape::KeyOnly {
                // The line is the key, maybe with spaces or a CR.
                keys::parse_any(trim(line)).map_err(Reason::from)
            } else {
                layout.key_of_line(line)
            };
            match key {
                Ok(k) => out.push(k),
                Err(reason) => return Err((pos, reason)),
            }
        }
        pos = line_end + 1;
    }
    Ok(out)
}

/// Why a chunk stopped early.
enum ChunkError {
    /// A bad row at this byte offset.
    Row(usize, Reason),
    /// The chunk (not the file's last) ends inside a quoted field.
    InsideQuotes,
}

/// The layout and the body's start of a list with quotes: the header is
/// the first record as the `csv` crate reads it (so a quoted header may
/// even span lines).
fn quoted_header(data: &[u8]) -> Result<(Layout, usize), ParseError> {
    let header_end = memchr::memchr(b'\n', data).unwrap_or(data.len());
    let fail = |reason| ParseError { line: 1, reason };
    let delimiter = Layout::from_header(trim(&data[..header_end]))
        .map_err(fail)?
        .delimiter;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let mut record = csv::ByteRecord::new();
    reader
        .read_byte_record(&mut record)
        .map_err(|e| ParseError {
            line: 1,
            reason: Reason::Csv(csv_reason(&e)),
        })?;
    let joined = record.iter().collect::<Vec<_>>().join(&delimiter);
    let layout = Layout::from_header(&joined).map_err(fail)?;
    let body = usize::try_from(reader.position().byte()).unwrap_or(data.len());
    Ok((layout, body.min(data.len())))
}

/// A field's value: a range of the data, or (when quotes had to be undone)
/// the caller's buffer.
#[derive(Clone, Copy)]
enum Val {
    Range(usize, usize),
    Buf,
}

/// Reads one field starting at `i` with the `csv` crate's rules (a quote
/// opens a quoted field only as its first byte; `""` inside is a quote;
/// bytes after the closing quote are kept). Returns the value, where the
/// field stopped (a delimiter, a `\n` or `end`) and whether the record
/// ended there; `Err` when the field is still quoted at `end` and more
/// chunks follow.
#[inline]
fn quoted_field(
    data: &[u8],
    i: usize,
    end: usize,
    last: bool,
    d: u8,
    buf: Option<&mut Vec<u8>>,
) -> Result<(Val, usize, bool), ()> {
    // Fields are short: a plain loop beats memchr's setup.
    let stop_at = |from: usize| {
        data[from..end]
            .iter()
            .position(|&b| b == d || b == b'\n')
            .map_or(end, |p| from + p)
    };
    let ended = |stop: usize| stop == end || data[stop] == b'\n';
    if i >= end || data[i] != b'"' {
        let stop = stop_at(i);
        return Ok((Val::Range(i, stop), stop, ended(stop)));
    }
    let inner = i + 1;
    let mut j = inner;
    let mut escaped = false;
    let close = loop {
        match memchr::memchr(b'"', &data[j..end]) {
            Some(p) if j + p + 1 < end && data[j + p + 1] == b'"' => {
                escaped = true;
                j += p + 2;
            }
            Some(p) => break j + p,
            None if last => break end,
            None => return Err(()),
        }
    };
    let unescape = |from: &[u8], buf: &mut Vec<u8>| {
        buf.clear();
        let mut k = 0;
        while k < from.len() {
            buf.push(from[k]);
            k += if from[k] == b'"' { 2 } else { 1 };
        }
    };
    let Some(buf) = buf else {
        // A field nobody reads: only where it stops matters.
        let stop = if close == end {
            end
        } else {
            stop_at(close + 1)
        };
        return Ok((Val::Range(inner, inner), stop, ended(stop)));
    };
    if close == end {
        // The file ends inside the quotes: the field is what came.
        if !escaped {
            return Ok((Val::Range(inner, end), end, true));
        }
        unescape(&data[inner..end], buf);
        return Ok((Val::Buf, end, true));
    }
    let after = close + 1;
    let stop = stop_at(after);
    if !escaped && trim(&data[after..stop]).is_empty() {
        return Ok((Val::Range(inner, close), stop, ended(stop)));
    }
    unescape(&data[inner..close], buf);
    buf.extend_from_slice(&data[after..stop]);
    Ok((Val::Buf, stop, ended(stop)))
}

/// The bytes of a field's value.
#[inline]
fn value<'a>(data: &'a [u8], v: Option<Val>, buf: &'a [u8]) -> Option<&'a [u8]> {
    Some(match v? {
        Val::Range(a, b) => &data[a..b],
        Val::Buf => buf,
    })
}

/// Parses a chunk of a list with quotes. Lines without a quote take the
/// unquoted path; records with quotes are read field by field and may span
/// lines. The chunk must start at a record: if it ends inside a quoted
/// field (and is not the file's last), the split was wrong.
fn parse_quoted_chunk(
    data: &[u8],
    start: usize,
    end: usize,
    last: bool,
    layout: &Layout,
) -> Result<Chunk, ChunkError> {
    let mut out = Chunk::default();
    out.cpr.reserve((end - start) / 32 + 1);
    let d = layout.delimiter;
    let kind_col = layout.kind.unwrap_or(usize::MAX);
    let (mut buf_n, mut buf_k, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    let mut pos = start;
    while pos < end {
        let record = pos;
        let (mut nummer, mut kind, mut only) = (None, None, Val::Range(pos, pos));
        let mut n_fields = 0;
        let mut i = pos;
        loop {
            let buf = if n_fields == layout.nummer {
                Some(&mut buf_n)
            } else if n_fields == kind_col {
                Some(&mut buf_k)
            } else if n_fields == 0 {
                Some(&mut scratch)
            } else {
                None
            };
            let (val, stop, ended) =
                quoted_field(data, i, end, last, d, buf).map_err(|()| ChunkError::InsideQuotes)?;
            if n_fields == layout.nummer {
                nummer = Some(val);
            } else if n_fields == kind_col {
                kind = Some(val);
            }
            if n_fields == 0 {
                only = val;
            }
            n_fields += 1;
            i = stop + 1;
            if ended {
                break;
            }
        }
        pos = i;
        // A record of one empty field is a blank line.
        if n_fields == 1 {
            let v = match only {
                Val::Range(a, b) => &data[a..b],
                Val::Buf => {
                    if layout.nummer == 0 {
                        &buf_n[..]
                    } else if kind_col == 0 {
                        &buf_k[..]
                    } else {
                        &scratch[..]
                    }
                }
            };
            if trim(v).is_empty() {
                continue;
            }
        }
        let (nv, kv) = (value(data, nummer, &buf_n), value(data, kind, &buf_k));
        let k = layout
            .key(n_fields, |f| {
                if f == layout.nummer {
                    nv
                } else if f == kind_col {
                    kv
                } else {
                    None
                }
            })
            .map_err(|r| ChunkError::Row(record, r))?;
        out.push(k);
    }
    Ok(out)
}

/// The full CSV parser, for lists that use quoting.
fn parse_quoted(data: &[u8]) -> Result<ParsedList, ParseError> {
    let header_end = memchr::memchr(b'\n', data).unwrap_or(data.len());
    let header = trim(&data[..header_end]);
    let delimiter = Layout::from_header(header)
        .map_err(|reason| ParseError { line: 1, reason })?
        .delimiter;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let mut record = csv::ByteRecord::new();
    let mut layout: Option<Layout> = None;
    let mut cpr = Vec::new();
    let mut cvr = Vec::new();
    let mut n_rows = 0;
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| ParseError {
                line: e.position().map_or(0, |p| p.line()),
                reason: Reason::Csv(csv_reason(&e)),
            })?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let fail = |reason| ParseError { line, reason };
        let Some(layout) = &layout else {
            let joined = record.iter().collect::<Vec<_>>().join(&delimiter);
            layout = Some(Layout::from_header(&joined).map_err(fail)?);
            continue;
        };
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        let (kind, value) = layout.key(record.len(), |i| record.get(i)).map_err(fail)?;
        n_rows += 1;
        match kind {
            KeyKind::Cpr => cpr.push(value),
            KeyKind::Cvr => cvr.push(value),
        }
    }
    let (keys, n_duplicates) = KeySet::from_unsorted(cpr, cvr);
    Ok(ParsedList {
        keys,
        n_rows,
        n_duplicates,
    })
}

/// A CSV error's kind without any field content.
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("the row has {len} fields, expected {expected_len}")
        }
        _ => "unreadable record".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> ParsedList {
        parse_list(input.as_bytes()).unwrap_or_else(|e| panic!("{input:?}: {e}"))
    }

    fn check_err(input: &str, line: u64, reason: Reason) {
        let err = parse_list(input.as_bytes()).unwrap_err();
        assert_eq!(err, ParseError { line, reason }, "input {input:?}");
    }

    #[test]
    fn accepts_the_format_variants() {
        let expected = KeySet {
            cpr: vec![101901234, 2512851234],
            cvr: vec![13585628],
        };
        for input in [
            "nummer\n0101901234\n13585628\n2512851234\n",
            "nummer\r\n0101901234\r\n13585628\r\n2512851234",
            "\u{feff}NUMMER\n0101901234\n13585628\n2512851234\n\n\n",
            "type;nummer\nCPR;0101901234\ncvr;13585628\nCpr;2512851234\n",
            "navn,nummer,type\nA,0101901234,CPR\nB,13585628,CVR\nC,2512851234,CPR\n",
            "navn;nummer\n\"Jensen; A\";\"0101901234\"\n\"B\";13585628\n\"C\";2512851234\n",
            "nummer\n0101901234\n\n13585628\n  2512851234 \n",
        ] {
            assert_eq!(ok(input).keys, expected, "input {input:?}");
        }
    }

    #[test]
    fn header_only_is_an_empty_list() {
        assert_eq!(ok("nummer\n"), ParsedList::default());
        assert_eq!(ok("type;nummer"), ParsedList::default());
    }

    #[test]
    fn duplicates_collapse_and_are_counted() {
        let list = ok("nummer\n0101901234\n0101901234\n13585628\n13585628\n0101901234\n");
        assert_eq!(list.n_rows, 5);
        assert_eq!(list.n_duplicates, 3);
        assert_eq!(list.keys.len(), 2);
    }

    #[test]
    fn same_number_as_cpr_and_cvr_are_two_keys() {
        // 13585628 as CVR; no 10-digit collision possible, but the kinds are
        // kept apart by the explicit column too.
        let list = ok("type;nummer\nCVR;13585628\nCPR;0101901234\n");
        assert_eq!(list.keys.cpr, vec![101901234]);
        assert_eq!(list.keys.cvr, vec![13585628]);
    }

    #[test]
    fn rejects_bad_rows_with_line_numbers() {
        check_err(
            "nummer\n0101901234\n3002001234\n",
            3,
            Reason::Key(KeyError::ImpossibleDate),
        );
        check_err(
            "nummer\n0101901234\n13585627\n",
            3,
            Reason::Key(KeyError::BadCheckDigit),
        );
        check_err(
            "nummer\n012345678\n",
            2,
            Reason::Key(KeyError::UnknownLength { found: 9 }),
        );
        check_err(
            "nummer\n01019x1234\n",
            2,
            Reason::Key(KeyError::NotDigits { kind: KeyKind::Cpr }),
        );
        check_err(
            "type;nummer\nCVR;0101901234\n",
            2,
            Reason::TypeMismatch {
                declared: KeyKind::Cvr,
                found: 10,
            },
        );
        check_err("type;nummer\nXYZ;0101901234\n", 2, Reason::BadType);
        check_err(
            "type;nummer\nCPR\n",
            2,
            Reason::FieldCount {
                found: 1,
                expected: 2,
            },
        );
        check_err("type;nummer\nCPR;\n", 2, Reason::MissingNummer);
        check_err("navn;type\nA;CPR\n", 1, Reason::MissingNummerColumn);
        check_err(
            "nummer;Nummer\n1;2\n",
            1,
            Reason::DuplicateColumn("nummer".into()),
        );
        check_err("", 1, Reason::NoHeader);
        check_err("\u{feff}\n\n", 1, Reason::NoHeader);
        check_err(
            "navn;nummer\n\"A\";\"3002001234\"\n",
            2,
            Reason::Key(KeyError::ImpossibleDate),
        );
    }

    #[test]
    fn line_numbers_are_right_across_chunks() {
        let mut text = String::from("nummer\n");
        for _ in 0..300_000 {
            text.push_str("0101901234\n");
        }
        text.push_str("3002001234\n");
        let err = parse_list(text.as_bytes()).unwrap_err();
        assert_eq!(err.line, 300_002);
    }

    #[test]
    fn typed_and_wide_shapes_agree_with_key_only() {
        let keys = ["0101901234", "13585628", "2512851234", "24256790"];
        let kind = |k: &str| if k.len() == 10 { "CPR" } else { "CVR" };
        let key_only: String = std::iter::once("nummer".to_owned())
            .chain(keys.iter().map(|k| k.to_string()))
            .collect::<Vec<_>>()
            .join("\n");
        let expected = ok(&key_only).keys;
        let mut shapes: Vec<String> = Vec::new();
        for eol in ["\n", "\r\n"] {
            for d in [";", ","] {
                let rows = |f: &dyn Fn(&str) -> String| {
                    keys.iter().map(|k| f(k) + eol).collect::<String>()
                };
                shapes
                    .push(format!("type{d}nummer{eol}") + &rows(&|k| format!("{}{d}{k}", kind(k))));
                shapes
                    .push(format!("nummer{d}type{eol}") + &rows(&|k| format!("{k}{d}{}", kind(k))));
                shapes.push(
                    format!("type{d}nummer{eol}")
                        + &rows(&|k| format!("{}{d} {k} ", kind(k).to_lowercase())),
                );
                shapes.push(
                    format!("navn{d}type{d}nummer{d}oprettet{d}note{d}kanal{eol}")
                        + &rows(&|k| {
                            format!("Jens Hansen{d}{}{d}{k}{d}2024-01-31{d}ok{d}sms", kind(k))
                        }),
                );
            }
        }
        for input in &shapes {
            assert_eq!(ok(input).keys, expected, "input {input:?}");
            assert_eq!(ok(input).n_rows, 4, "input {input:?}");
        }
    }

    #[test]
    fn typed_rows_are_checked_like_any_row() {
        for (input, reason) in [
            (
                "type;nummer\nCPR;3002001234\n",
                Reason::Key(KeyError::ImpossibleDate),
            ),
            (
                "type;nummer\nCVR;13585627\n",
                Reason::Key(KeyError::BadCheckDigit),
            ),
            (
                "type;nummer\nCVR;0101901234\n",
                Reason::TypeMismatch {
                    declared: KeyKind::Cvr,
                    found: 10,
                },
            ),
            (
                "nummer;type\n13585628;CPR\n",
                Reason::TypeMismatch {
                    declared: KeyKind::Cpr,
                    found: 8,
                },
            ),
            ("type;nummer\nCPX;0101901234\n", Reason::BadType),
            (
                "type;nummer\nCPR;0101901234;x\n",
                Reason::FieldCount {
                    found: 3,
                    expected: 2,
                },
            ),
        ] {
            let mut text = String::from("type;nummer\n");
            for _ in 0..200_000 {
                text.push_str("CPR;0101901234\n");
            }
            text.push_str(input.strip_prefix("type;nummer\n").unwrap_or(input));
            let (line, body) = if input.starts_with("nummer;type") {
                (2, input.to_owned())
            } else {
                (200_002, text)
            };
            check_err(&body, line, reason);
        }
    }

    /// The chunked reader of quoted lists agrees with the `csv` crate read
    /// of the whole file (`parse_quoted`), whatever the chunks.
    fn agrees_with_csv(text: &str) -> Result<ParsedList, ParseError> {
        let whole = parse_quoted(text.as_bytes());
        assert_eq!(
            parse_list(text.as_bytes()),
            whole,
            "{}",
            &text[..text.len().min(200)]
        );
        whole
    }

    #[test]
    fn quoted_lists_are_read_in_parallel_like_the_csv_crate() {
        let row = |i: usize| {
            let key = if i.is_multiple_of(4) {
                "13585628".to_owned()
            } else {
                format!("{:02}01901234", i % 28 + 1)
            };
            let kind = if key.len() == 10 { "CPR" } else { "CVR" };
            match i % 5 {
                0 => format!(
                    "\"Hansen, Jens\";{kind};{key};2024-01-31;\"via \"\"borger.dk\"\"\";SMS\n"
                ),
                1 => format!("Jens;{kind};\"{key}\";2024-01-31;\"a;b\";SMS\r\n"),
                2 => format!("\"multi\nline\";\"{kind}\";{key} ;2024-01-31;;SMS\n"),
                3 => format!("\"\";{kind};\" {key}\";2024-01-31;\"x\" y;\"\"\n\n"),
                _ => format!("plain;{kind};{key};2024-01-31;note;SMS\n"),
            }
        };
        let header = "\"navn\";type;\"nummer\";oprettet;note;kanal\n";
        let body: String = (0..200_000).map(row).collect();
        let list = agrees_with_csv(&(header.to_owned() + &body)).unwrap();
        assert_eq!(list.n_rows, 200_000);
        assert_eq!(list.keys.len(), 22);
        // A quoted field with a line break lands on a chunk boundary somewhere
        // in a file of only such rows: the whole file is then read in one piece.
        let spanning: String = (0..100_000).map(|i| row(2 + 5 * i)).collect();
        assert_eq!(
            agrees_with_csv(&(header.to_owned() + &spanning))
                .unwrap()
                .n_rows,
            100_000
        );
        // Bad rows far into the file, in a quoted field or not.
        for bad in [
            "x;CPR;\"3002001234\";d;n;k\n",
            "\"x\";CVR;13585627;d;n;k\n",
            "\"x\";CPR;0101901234;d;n\n",
            "\"x\";\"C\"\"PR\";0101901234;d;n;k\n",
            "\"x\";CPR;\"0101\"\"901234\";d;n;k\n",
        ] {
            let text = format!("{header}{body}{bad}{}", row(4));
            let err = agrees_with_csv(&text).unwrap_err();
            let lines = 1 + text[..text.len() - row(4).len() - bad.len()]
                .matches('\n')
                .count() as u64;
            assert_eq!(err.line, lines, "{bad}");
        }
        // The file ends inside quotes: the field is what came.
        agrees_with_csv(&format!("{header}x;CPR;0101901234;d;n;\"open")).unwrap();
    }

    #[test]
    fn error_messages_never_contain_the_key() {
        let err = parse_list(b"nummer\n3002001234\n").unwrap_err().to_string();
        assert!(!err.contains("300200"), "{err}");
    }
}
