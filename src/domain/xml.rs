//! The one XML reader for bytes from outside (the Register's answers,
//! envelopes and replies from Beskedfordeler, STS answers, stamdata given
//! to `user update`): quick-xml with a DOCTYPE refused (no entity tricks),
//! the nesting depth capped, end names checked, the root element checked,
//! and no run of text (or tag) longer than a limit held in memory.
//!
//! A document is walked: the callback sees each element's start (with the
//! path of local names to it) and its end with its text (character data
//! and references, trimmed), and the byte positions, for callers that need
//! an element's raw bytes.

use std::io::BufRead;

use quick_xml::Reader;
use quick_xml::events::Event;

/// How much a document may nest and hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most elements open at once.
    pub max_depth: usize,
    /// Most bytes between two `<`.
    pub max_run: usize,
}

/// A document that is not acceptable XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    #[error("a DOCTYPE is not allowed")]
    Doctype,
    #[error("elements nested deeper than {0}")]
    TooDeep(usize),
    #[error("expected root element {expected}, found {found}")]
    WrongRoot { expected: String, found: String },
}

/// What [`walk`] reports. `path` holds the local names of the open
/// elements, the current one last.
pub enum Node<'a> {
    /// An element starts at byte `at`.
    Start { path: &'a [Vec<u8>], at: u64 },
    /// An element ends just before byte `at`; `text` is its own text
    /// (not its children's), trimmed, references resolved.
    End {
        path: &'a [Vec<u8>],
        text: &'a str,
        at: u64,
    },
}

/// The local part of a qualified name.
pub fn local(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// Walks `input`, whose root must be one of `roots` (any if empty).
pub fn walk<R: BufRead, E: From<XmlError>>(
    input: R,
    roots: &[&str],
    limits: Limits,
    mut on: impl FnMut(Node<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut reader = Reader::from_reader(Bounded {
        inner: input,
        run: 0,
        max: limits.max_run,
    });
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::with_capacity(256);
    // The names of the open elements are `names[..depth]`; the buffers
    // are reused (no allocation per element).
    let mut names: Vec<Vec<u8>> = Vec::with_capacity(limits.max_depth);
    let mut depth = 0usize;
    // The text of every open element, by depth; the buffers are reused.
    let mut texts: Vec<String> = Vec::with_capacity(limits.max_depth);
    let mut open = 0usize;
    let malformed = |position: u64, message: String| XmlError::Malformed { position, message };
    loop {
        let before = reader.buffer_position();
        buf.clear();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| malformed(reader.buffer_position(), e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype.into()),
            Event::Start(_) | Event::Empty(_) => {
                let (e, empty) = match &event {
                    Event::Start(e) => (e, false),
                    Event::Empty(e) => (e, true),
                    _ => unreachable!("matched above"),
                };
                let qname = e.name();
                let name = local(qname.as_ref().as_bytes());
                if depth == 0 && !roots.is_empty() && !roots.iter().any(|r| r.as_bytes() == name) {
                    return Err(XmlError::WrongRoot {
                        expected: roots.join(" or "),
                        found: String::from_utf8_lossy(name).into_owned(),
                    }
                    .into());
                }
                if depth == limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth).into());
                }
                if names.len() == depth {
                    names.push(Vec::new());
                }
                names[depth].clear();
                names[depth].extend_from_slice(name);
                depth += 1;
                on(Node::Start {
                    path: &names[..depth],
                    at: before,
                })?;
                if empty {
                    on(Node::End {
                        path: &names[..depth],
                        text: "",
                        at: reader.buffer_position(),
                    })?;
                    depth -= 1;
                } else {
                    if texts.len() == open {
                        texts.push(String::new());
                    }
                    texts[open].clear();
                    open += 1;
                }
            }
            Event::Text(t) => {
                if let Some(text) = open.checked_sub(1).map(|i| &mut texts[i]) {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(text) = open.checked_sub(1).map(|i| &mut texts[i]) {
                    text.push_str(t.as_ref());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(text) = open.checked_sub(1).map(|i| &mut texts[i]) {
                    let name: &str = &r;
                    match resolve_ref(name) {
                        Some(c) => text.push(c),
                        None => {
                            return Err(malformed(
                                reader.buffer_position(),
                                format!("unknown reference &{name};"),
                            )
                            .into());
                        }
                    }
                }
            }
            Event::End(_) => {
                open = open.saturating_sub(1);
                on(Node::End {
                    path: &names[..depth],
                    text: texts.get(open).map_or("", |t| t.trim()),
                    at: reader.buffer_position(),
                })?;
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if depth == 0 {
        Ok(())
    } else {
        Err(malformed(
            reader.buffer_position(),
            "document ends inside an element".into(),
        )
        .into())
    }
}

/// The character an entity or character reference stands for.
pub fn resolve_ref(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let n = name.strip_prefix('#')?;
            let code = match n.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// A reader that fails once more than `max` bytes have passed without a
/// `<` (checked at each refill, so within one buffer of it).
struct Bounded<R> {
    inner: R,
    run: usize,
    max: usize,
}

impl<R: BufRead> std::io::Read for Bounded<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let buf = self.fill_buf()?;
            let n = buf.len().min(out.len());
            out[..n].copy_from_slice(&buf[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Bounded<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.run > self.max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a text node or tag longer than {} bytes", self.max),
            ));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // The bytes consumed are still in the inner buffer: no I/O here.
        if let Ok(buf) = self.inner.fill_buf() {
            let done = &buf[..amt.min(buf.len())];
            self.run = match memchr::memrchr(b'<', done) {
                Some(i) => done.len() - i - 1,
                None => self.run + done.len(),
            };
        }
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_depth: 4,
        max_run: 64,
    };

    fn texts(xml: &str, roots: &[&str]) -> Result<Vec<(String, String)>, XmlError> {
        let mut out = Vec::new();
        let input = std::io::BufReader::with_capacity(16, xml.as_bytes());
        walk(input, roots, LIMITS, |n| {
            if let Node::End { path, text, .. } = n {
                out.push((
                    String::from_utf8_lossy(path.last().unwrap()).into_owned(),
                    text.to_owned(),
                ));
            }
            Ok::<_, XmlError>(())
        })?;
        Ok(out)
    }

    #[test]
    fn texts_with_references_and_the_limits() {
        let got = texts("<a:r xmlns:a=\"x\"><b> 1 &amp; 2 </b><c/></a:r>", &["r"]).unwrap();
        assert_eq!(
            got,
            [
                ("b".into(), "1 & 2".into()),
                ("c".into(), String::new()),
                ("r".into(), String::new())
            ]
        );
        for (xml, err) in [
            ("<!DOCTYPE r [<!ENTITY e \"x\">]><r/>", "DOCTYPE"),
            (
                "<r><r><r><r><r></r></r></r></r></r>",
                "nested deeper than 4",
            ),
            ("<x/>", "expected root element r, found x"),
            ("<r><b></c></r>", "malformed"),
            ("<r><b>", "ends inside"),
            ("<r>&bogus;</r>", "unknown reference"),
        ] {
            let e = texts(xml, &["r"]).unwrap_err().to_string();
            assert!(e.contains(err), "{xml}: {e}");
        }
        let long = format!("<r>{}</r>", "a".repeat(200));
        assert!(
            texts(&long, &[])
                .unwrap_err()
                .to_string()
                .contains("longer than 64")
        );
    }
}
