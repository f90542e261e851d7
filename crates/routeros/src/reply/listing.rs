//! A listing of file disks read as its text arrives, item by item.
//!
//! A listing of every volume is about 1 KB of text per disk (10 MB with 10,000 volumes).
//! Kept whole until the command ends, that text is the controller's largest allocation; read
//! as it arrives, only the disks it describes stay. serde_json reads a complete text (or a
//! blocking reader), not chunks pushed by an async channel, so the split into items is done
//! here: the top-level array's elements are found by their brackets and quotes, and each is
//! parsed by serde_json as [`super::file_disks_listing`] parses it.
//!
//! A reply short enough to keep whole is read by [`super::file_disks_listing`] itself, so
//! that every unusual answer (one object, `null`, error text, several values) reads exactly
//! as it always has; only a long reply is read from the items.

use serde_json::Value;

use super::{ExecOutput, FileDisk, Listing, check_exit_status, lenient_disk};
use crate::error::{Error, device_text_error};

/// Replies up to this size are kept whole and read by the batch reader.
const KEEP_BYTES: usize = 64 << 10;

/// Where the reader is in the reply (CR and LF are dropped before this sees a byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Before the first value.
    Start,
    /// Inside the top-level array, between elements.
    Between,
    /// Inside an element that is an object or an array, `depth` brackets deep.
    Nested { depth: u32 },
    /// Inside an element that is a string.
    Text,
    /// Inside an element that is a number or a literal.
    Bare,
    /// After the array's closing bracket.
    After,
    /// Not a listing the items can be read from (not an array, or an element that is not
    /// JSON): only a reply kept whole can still be read.
    Unreadable,
}

/// Reads a listing pushed in chunks; see the module documentation.
#[derive(Debug)]
pub struct ListingReader {
    /// The reply so far while it is at most [`KEEP_BYTES`] long.
    kept: Vec<u8>,
    /// Bytes seen, CR and LF not counted.
    seen: usize,
    place: Place,
    in_escape: bool,
    /// Whether a string inside a nested element is open.
    in_string: bool,
    /// The element being read.
    item: Vec<u8>,
    disks: Vec<FileDisk>,
    /// The first element that is not an object (the batch reader's error).
    not_object: Option<Error>,
    /// What follows the array.
    rest: Vec<u8>,
    /// Replies beyond this are refused (as the transport refuses longer output).
    limit: usize,
}

impl ListingReader {
    /// A reader refusing replies longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            kept: Vec::new(),
            seen: 0,
            place: Place::Start,
            in_escape: false,
            in_string: false,
            item: Vec::new(),
            disks: Vec::new(),
            not_object: None,
            rest: Vec::new(),
            limit,
        }
    }

    /// Reads the next chunk of standard output.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        for &byte in chunk {
            if matches!(byte, b'\r' | b'\n') {
                continue;
            }
            self.seen += 1;
            if self.seen > self.limit {
                return Err(Error::Protocol(format!(
                    "reply larger than {} bytes",
                    self.limit
                )));
            }
            if self.seen <= KEEP_BYTES {
                self.kept.push(byte);
            } else if !self.kept.is_empty() {
                self.kept = Vec::new();
            }
            self.step(byte);
        }
        Ok(())
    }

    fn step(&mut self, byte: u8) {
        match self.place {
            Place::Start if byte.is_ascii_whitespace() => {}
            Place::Start if byte == b'[' => self.place = Place::Between,
            Place::Start | Place::Unreadable => self.place = Place::Unreadable,
            Place::Between => match byte {
                b',' => {}
                b']' => self.place = Place::After,
                b if b.is_ascii_whitespace() => {}
                b => {
                    self.item.clear();
                    self.item.push(b);
                    self.in_string = false;
                    self.in_escape = false;
                    self.place = match b {
                        b'{' | b'[' => Place::Nested { depth: 1 },
                        b'"' => Place::Text,
                        _ => Place::Bare,
                    };
                }
            },
            Place::Nested { depth } => {
                self.item.push(byte);
                if self.in_string {
                    self.string_byte(byte);
                    return;
                }
                let depth = match byte {
                    b'"' => {
                        self.in_string = true;
                        depth
                    }
                    b'{' | b'[' => depth + 1,
                    b'}' | b']' => depth - 1,
                    _ => depth,
                };
                if depth == 0 {
                    self.element_done();
                } else {
                    self.place = Place::Nested { depth };
                }
            }
            Place::Text => {
                self.item.push(byte);
                self.in_string = true;
                self.string_byte(byte);
                if !self.in_string {
                    self.element_done();
                }
            }
            Place::Bare => match byte {
                b',' | b']' => {
                    self.element_done();
                    self.step(byte);
                }
                b if b.is_ascii_whitespace() => self.element_done(),
                b => self.item.push(b),
            },
            Place::After => self.rest.push(byte),
        }
    }

    /// A byte inside a string: a quote not escaped ends it.
    fn string_byte(&mut self, byte: u8) {
        if self.in_escape {
            self.in_escape = false;
        } else if byte == b'\\' {
            self.in_escape = true;
        } else if byte == b'"' {
            self.in_string = false;
        }
    }

    fn element_done(&mut self) {
        self.place = Place::Between;
        match serde_json::from_slice::<Value>(&self.item) {
            Ok(Value::Object(object)) => self.disks.extend(lenient_disk(&object)),
            Ok(other) => {
                self.not_object.get_or_insert_with(|| {
                    Error::Protocol(format!("expected an object in the list, got {other}"))
                });
            }
            Err(_) => self.place = Place::Unreadable,
        }
    }

    /// The file disks of the whole reply, or why there are none: what
    /// [`super::file_disks_listing`] makes of the same output.
    pub fn finish(self, output: ExecOutput) -> Result<Vec<FileDisk>, Error> {
        let ExecOutput {
            stderr,
            exit_status,
            ..
        } = output;
        if self.seen <= KEEP_BYTES {
            return super::file_disks_listing(ExecOutput {
                stdout: self.kept,
                stderr,
                exit_status,
            });
        }
        if self.place != Place::After {
            return Err(Error::Protocol(format!(
                "unrecognised reply: {} bytes that are not one JSON listing",
                self.seen
            )));
        }
        let rest = String::from_utf8(self.rest)
            .map_err(|_| Error::Protocol("reply is not UTF-8".into()))?;
        let mut stream = serde_json::Deserializer::from_str(&rest).into_iter::<Listing>();
        let mut more = 0;
        let mut consumed = 0;
        while let Some(Ok(_)) = stream.next() {
            more += 1;
            consumed = stream.byte_offset();
        }
        let text = rest[consumed..].trim();
        if !text.is_empty() {
            return Err(device_text_error(text));
        }
        check_exit_status(exit_status, &stderr)?;
        if more > 0 {
            return Err(Error::Protocol(format!(
                "expected 1 JSON value(s) in the reply, got {}",
                more + 1
            )));
        }
        match self.not_object {
            Some(error) => Err(error),
            None => Ok(self.disks),
        }
    }
}
