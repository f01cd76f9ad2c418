//! libyaml's parser as a safe iterator of events. The parser is unsafe-libyaml: libyaml itself
//! (the C parser under PyYAML, which docker-compose 1.x uses, and the origin of go-yaml, Docker
//! Compose v2's), translated to Rust, with libyaml's own tests and its fuzzing behind it; a file
//! parses here exactly when libyaml parses it. This module is the only unsafe code of the
//! importer: the parser lives in a box that never moves (it points at itself), every event is
//! copied out and freed before the next is asked for, and the input outlives the parser.

use std::ffi::CStr;
use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_sys;

/// One parser event, its strings copied out.
#[derive(Debug)]
pub(crate) enum Event {
    StreamEnd,
    Scalar {
        anchor: Option<String>,
        tag: Option<String>,
        value: String,
        plain: bool,
    },
    Alias {
        anchor: String,
    },
    SequenceStart {
        anchor: Option<String>,
        tag: Option<String>,
    },
    SequenceEnd,
    MappingStart {
        anchor: Option<String>,
        tag: Option<String>,
    },
    MappingEnd,
    /// Stream and document starts and ends.
    Other,
}

/// A parse error: the line (1-based) and what libyaml says.
#[derive(Debug)]
pub(crate) struct ParseError {
    pub line: usize,
    pub message: String,
}

/// A libyaml parser over `input`.
pub(crate) struct Parser<'input> {
    raw: Box<MaybeUninit<unsafe_sys::yaml_parser_t>>,
    _input: &'input [u8],
    finished: bool,
}

impl<'input> Parser<'input> {
    /// A parser of `input`, or `None` if libyaml cannot allocate one.
    pub(crate) fn new(input: &'input [u8]) -> Option<Parser<'input>> {
        let mut raw: Box<MaybeUninit<unsafe_sys::yaml_parser_t>> = Box::new(MaybeUninit::uninit());
        // SAFETY: `raw` is a valid, boxed (so never moving) place for a parser, which
        // `yaml_parser_initialize` fills; the input slice outlives the parser (`'input`).
        unsafe {
            if unsafe_sys::yaml_parser_initialize(raw.as_mut_ptr()).fail {
                return None;
            }
            unsafe_sys::yaml_parser_set_input_string(raw.as_mut_ptr(), input.as_ptr(), input.len() as u64);
        }
        Some(Parser { raw, _input: input, finished: false })
    }

    /// The next event and the line it starts on (1-based).
    pub(crate) fn next_event(&mut self) -> Result<(Event, usize), ParseError> {
        if self.finished {
            return Ok((Event::StreamEnd, 0));
        }
        let mut event = MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
        // SAFETY: the parser was initialized in `new`; `event` is a valid place that
        // `yaml_parser_parse` fills on success, and it is deleted before returning.
        unsafe {
            if unsafe_sys::yaml_parser_parse(self.raw.as_mut_ptr(), event.as_mut_ptr()).fail {
                return Err(self.error());
            }
            let ev = event.as_mut_ptr();
            let line = usize::try_from((*ev).start_mark.line).unwrap_or(usize::MAX).saturating_add(1);
            let out = match (*ev).type_ {
                unsafe_sys::YAML_STREAM_END_EVENT => {
                    self.finished = true;
                    Event::StreamEnd
                }
                unsafe_sys::YAML_SCALAR_EVENT => {
                    let s = (*ev).data.scalar;
                    let bytes = std::slice::from_raw_parts(s.value, usize::try_from(s.length).unwrap_or(0));
                    Event::Scalar {
                        anchor: text(s.anchor),
                        tag: text(s.tag),
                        value: String::from_utf8_lossy(bytes).into_owned(),
                        plain: s.style == unsafe_sys::YAML_PLAIN_SCALAR_STYLE,
                    }
                }
                unsafe_sys::YAML_ALIAS_EVENT => {
                    Event::Alias { anchor: text((*ev).data.alias.anchor).unwrap_or_default() }
                }
                unsafe_sys::YAML_SEQUENCE_START_EVENT => {
                    let s = (*ev).data.sequence_start;
                    Event::SequenceStart { anchor: text(s.anchor), tag: text(s.tag) }
                }
                unsafe_sys::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
                unsafe_sys::YAML_MAPPING_START_EVENT => {
                    let m = (*ev).data.mapping_start;
                    Event::MappingStart { anchor: text(m.anchor), tag: text(m.tag) }
                }
                unsafe_sys::YAML_MAPPING_END_EVENT => Event::MappingEnd,
                _ => Event::Other,
            };
            unsafe_sys::yaml_event_delete(ev);
            Ok((out, line))
        }
    }

    /// The parser's error.
    fn error(&self) -> ParseError {
        // SAFETY: the parser was initialized in `new`; its error fields are read through the
        // prefix unsafe-libyaml exposes for that; the strings are static or null.
        unsafe {
            let p: &unsafe_sys::yaml_parser_t = &*self.raw.as_ptr();
            let mut message = text(p.problem as *const u8).unwrap_or_else(|| "the parser failed".into());
            if let Some(context) = text(p.context as *const u8) {
                message.push_str(&format!(" ({context})"));
            }
            let line = usize::try_from(p.problem_mark.line).unwrap_or(0).saturating_add(1);
            ParseError { line, message }
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialized in `new` (a parser that failed to initialize is never built).
        unsafe { unsafe_sys::yaml_parser_delete(self.raw.as_mut_ptr()) }
    }
}

/// A NUL-terminated string of libyaml's, or `None` for a null pointer.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that lives while this runs.
unsafe fn text(p: *const u8) -> Option<String> {
    if p.is_null() {
        return None;
    }
    Some(CStr::from_ptr(p.cast()).to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Result<Vec<Event>, ParseError> {
        let mut p = Parser::new(text.as_bytes()).unwrap();
        let mut out = Vec::new();
        loop {
            match p.next_event()? {
                (Event::StreamEnd, _) => return Ok(out),
                (e, _) => out.push(e),
            }
        }
    }

    #[test]
    fn what_broke_libyaml_safer_parses_or_fails_cleanly() {
        // libyaml-safer panicked on both (a TODO, and a look past the end).
        assert!(events("[!tag, a]\n").is_ok());
        assert!(events("\"\\").is_err());
        assert!(events("a: 1\n").is_ok());
        let e = events("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 2 && !e.message.is_empty(), "{e:?}");
    }

    #[test]
    fn random_yaml_shaped_text_never_panics() {
        let alphabet: Vec<char> = "\"'\\:-[]{}#&*!|>%@,? \n\t\rab01.~<=$é".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200_000 {
            let len = (next() % 32) as usize;
            let t: String = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            let _ = events(&t);
        }
    }
}
