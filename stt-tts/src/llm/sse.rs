//! A sans-IO parser of server-sent events (the `text/event-stream` that
//! OpenAI-compatible servers stream completions in). Bytes go in with
//! [`SseParser::push`]; whole events come out of [`SseParser::poll_event`].
//! An incomplete event is not an error: it waits for more bytes.

/// Longest event we buffer before calling the stream malformed.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// One event: its `event:` name if any, and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// The stream broke the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event grew past {MAX_EVENT_BYTES} bytes without ending")]
    TooLong,
    #[error("the event stream is not UTF-8")]
    NotUtf8,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > MAX_EVENT_BYTES && self.find_end().is_none() {
            return Err(SseError::TooLong);
        }
        Ok(())
    }

    /// Where the first complete event ends: (end of its text, start of the next).
    fn find_end(&self) -> Option<(usize, usize)> {
        let b = &self.buf;
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\n' {
                if b.get(i + 1) == Some(&b'\n') {
                    return Some((i, i + 2));
                }
                if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                    return Some((i, i + 3));
                }
            }
            i += 1;
        }
        None
    }

    /// The next complete event, skipping comment-only and empty blocks.
    pub fn poll_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        while let Some((end, next)) = self.find_end() {
            let block: Vec<u8> = self.buf.drain(..next).take(end).collect();
            let text = String::from_utf8(block).map_err(|_| SseError::NotUtf8)?;
            let mut event = None;
            let mut data: Vec<&str> = Vec::new();
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.starts_with(':') || line.is_empty() {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "data" => data.push(value),
                    "event" => event = Some(value.to_owned()),
                    _ => {}
                }
            }
            if !data.is_empty() {
                return Ok(Some(SseEvent {
                    event,
                    data: data.join("\n"),
                }));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser) -> Vec<String> {
        std::iter::from_fn(|| p.poll_event().expect("ok").map(|e| e.data)).collect()
    }

    #[test]
    fn events_split_anywhere() {
        let stream =
            b": keep-alive\n\ndata: {\"a\":1}\n\ndata: line1\ndata: line2\r\n\r\ndata: [DONE]\n\n";
        for split in 0..stream.len() {
            let mut p = SseParser::new();
            p.push(&stream[..split]).expect("push");
            let mut got = all(&mut p);
            p.push(&stream[split..]).expect("push");
            got.extend(all(&mut p));
            assert_eq!(
                got,
                vec!["{\"a\":1}", "line1\nline2", "[DONE]"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn incomplete_waits_and_huge_fails() {
        let mut p = SseParser::new();
        p.push(b"data: half").expect("push");
        assert_eq!(p.poll_event(), Ok(None));
        let mut p = SseParser::new();
        assert_eq!(
            p.push(&vec![b'x'; MAX_EVENT_BYTES + 1]),
            Err(SseError::TooLong)
        );
        let mut p = SseParser::new();
        p.push(b"data: \xff\xfe\n\n").expect("push");
        assert_eq!(p.poll_event(), Err(SseError::NotUtf8));
    }
}
