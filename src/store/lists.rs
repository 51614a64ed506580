//! Reading list files from disk (the `file://` source, `diff`, `snapshot
//! build`, downloaded lists): the bytes go to the pure `domain::parse`.

use std::path::{Path, PathBuf};

use crate::domain::parse::{ParseError, ParsedList, parse_list};

/// A list file that could not be read or parsed; names the file.
#[derive(Debug, thiserror::Error)]
pub enum ListFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: ParseError },
}

/// The largest list file read (a national list is about 100 MB).
pub const MAX_LIST_BYTES: u64 = 4 << 30;

/// Reads and parses one list file.
pub fn read_list(path: &Path) -> Result<ParsedList, ListFileError> {
    let io = |source| ListFileError::Io {
        path: path.to_owned(),
        source,
    };
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len > MAX_LIST_BYTES {
        return Err(io(std::io::Error::other(format!(
            "the list is larger than the limit of {MAX_LIST_BYTES} bytes"
        ))));
    }
    // Read, not memory-mapped: a file truncated by someone else while it
    // is parsed must be an error, not a SIGBUS. Reading from the page cache
    // costs a copy, a few milliseconds for a national list.
    let mut bytes = Vec::with_capacity(len as usize + 1);
    file.take(MAX_LIST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_LIST_BYTES {
        return Err(io(std::io::Error::other(format!(
            "the list grew past the limit of {MAX_LIST_BYTES} bytes while it was read"
        ))));
    }
    let result = parse_list(&bytes);
    result.map_err(|source| ListFileError::Parse {
        path: path.to_owned(),
        source,
    })
}
