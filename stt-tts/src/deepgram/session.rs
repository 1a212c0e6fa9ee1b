//! The sans-IO core of one Deepgram stream: caller input, server frames and
//! timer expiries go in with `now`; frames to send, transcript events and
//! the end of the session come out of [`SessionCore::poll_output`]; the
//! next deadline comes from [`SessionCore::poll_timeout`].
//!
//! ```text
//!  Streaming --End--> Closing --close 1000--> Done
//!      |                 |
//!      +-- error, close, lost, deadline --> Done (Failed)
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::wire::{self, ServerMessage};
use super::DeepgramError;
use crate::stt::SttEvent;

/// Normal closure, the only close code that ends a stream cleanly.
pub const CLOSE_NORMAL: u16 = 1000;

/// What the caller did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerInput {
    Audio(Vec<i16>),
    End,
}

/// What arrived on the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerInput<'a> {
    Text(&'a str),
    /// Deepgram never sends binary; its length is kept for the error.
    Binary(usize),
    Close {
        code: Option<u16>,
        reason: &'a str,
    },
    /// The TCP connection or the websocket broke without a close frame.
    Lost {
        reason: String,
    },
}

/// A frame for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Audio(Vec<u8>),
    Control(&'static str),
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Output {
    Send(Frame),
    Event(SttEvent),
    /// The session failed; nothing more will come.
    Failed(DeepgramError),
    /// The stream ended normally; close the socket.
    Finished,
}

/// The timers of a session, kept as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Nothing sent for a while: send `KeepAlive`.
    KeepAlive,
    /// `CloseStream` sent and the server has not closed yet.
    CloseDeadline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming { last_sent: Instant },
    Closing { deadline: Instant },
    Done,
}

/// One Deepgram stream's protocol state.
#[derive(Debug)]
pub struct SessionCore {
    state: State,
    keep_alive: Duration,
    close_timeout: Duration,
    out: VecDeque<Output>,
    request_id: Option<String>,
    metadata_seen: bool,
}

impl SessionCore {
    /// A stream that has just been opened at `now`.
    pub fn new(now: Instant, keep_alive: Duration, close_timeout: Duration) -> Self {
        Self {
            state: State::Streaming { last_sent: now },
            keep_alive,
            close_timeout,
            out: VecDeque::new(),
            request_id: None,
            metadata_seen: false,
        }
    }

    /// The request id from the server's `Metadata`, once seen.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether caller input is still wanted.
    pub fn wants_input(&self) -> bool {
        matches!(self.state, State::Streaming { .. })
    }

    fn fail(&mut self, e: DeepgramError) {
        if self.state != State::Done {
            self.state = State::Done;
            self.out.push_back(Output::Failed(e));
        }
    }

    pub fn handle_caller(&mut self, now: Instant, input: CallerInput) {
        let State::Streaming { .. } = self.state else {
            return;
        };
        match input {
            CallerInput::Audio(pcm) if pcm.is_empty() => {}
            CallerInput::Audio(pcm) => {
                self.out
                    .push_back(Output::Send(Frame::Audio(crate::protocol::pcm_to_bytes(
                        &pcm,
                    ))));
                self.state = State::Streaming { last_sent: now };
            }
            CallerInput::End => {
                // Finalize flushes the audio into finals; CloseStream then
                // makes the server send its metadata and close with 1000.
                self.out
                    .push_back(Output::Send(Frame::Control(wire::FINALIZE)));
                self.out
                    .push_back(Output::Send(Frame::Control(wire::CLOSE_STREAM)));
                self.state = State::Closing {
                    deadline: now + self.close_timeout,
                };
            }
        }
    }

    pub fn handle_server(&mut self, _now: Instant, input: ServerInput<'_>) {
        if self.state == State::Done {
            return;
        }
        match input {
            ServerInput::Text(text) => match wire::parse_server(text) {
                Err(e) => self.fail(DeepgramError::Malformed {
                    reason: e.to_string(),
                }),
                Ok(ServerMessage::Results(r)) => {
                    if r.transcript.text.trim().is_empty() {
                        // Silence: Deepgram reports empty segments too.
                        return;
                    }
                    let event = if r.is_final {
                        SttEvent::Final(r.transcript)
                    } else {
                        SttEvent::Partial(r.transcript)
                    };
                    self.out.push_back(Output::Event(event));
                }
                Ok(ServerMessage::Metadata { request_id }) => {
                    self.metadata_seen = true;
                    if request_id.is_some() {
                        self.request_id = request_id;
                    }
                }
                Ok(ServerMessage::Error { code, message }) => {
                    self.fail(DeepgramError::ProviderError { code, message })
                }
                Ok(
                    ServerMessage::UtteranceEnd
                    | ServerMessage::SpeechStarted
                    | ServerMessage::Other,
                ) => {}
            },
            ServerInput::Binary(len) => self.fail(DeepgramError::Malformed {
                reason: format!("unexpected binary frame of {len} bytes"),
            }),
            ServerInput::Close { code, reason } => {
                let closing = matches!(self.state, State::Closing { .. });
                match code {
                    Some(CLOSE_NORMAL) | None if closing => {
                        self.state = State::Done;
                        self.out.push_back(Output::Finished);
                    }
                    _ => self.fail(DeepgramError::Closed {
                        code: code.unwrap_or(1005),
                        reason: reason.chars().take(200).collect(),
                    }),
                }
            }
            ServerInput::Lost { reason } => {
                if matches!(self.state, State::Closing { .. }) && self.metadata_seen {
                    // Everything was delivered; only the close handshake
                    // went missing.
                    self.state = State::Done;
                    self.out.push_back(Output::Finished);
                } else {
                    self.fail(DeepgramError::ConnectionLost { reason });
                }
            }
        }
    }

    /// The next deadline, if any.
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        match self.state {
            State::Streaming { last_sent } => Some((last_sent + self.keep_alive, Timer::KeepAlive)),
            State::Closing { deadline } => Some((deadline, Timer::CloseDeadline)),
            State::Done => None,
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Streaming { last_sent } if now >= last_sent + self.keep_alive => {
                self.out
                    .push_back(Output::Send(Frame::Control(wire::KEEP_ALIVE)));
                self.state = State::Streaming { last_sent: now };
            }
            State::Closing { deadline } if now >= deadline => self.fail(DeepgramError::Timeout {
                what: "the server to close the stream after CloseStream",
                after: self.close_timeout,
            }),
            _ => {}
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick an arbitrary start time
mod tests {
    use super::*;

    fn core(now: Instant) -> SessionCore {
        SessionCore::new(now, Duration::from_secs(4), Duration::from_secs(2))
    }

    fn drain(c: &mut SessionCore) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    const PARTIAL: &str = r#"{"type":"Results","start":0,"duration":1,"is_final":false,
        "channel":{"alternatives":[{"transcript":"pay my","confidence":0.7,"words":[]}]}}"#;
    const FINAL: &str = r#"{"type":"Results","start":0,"duration":2,"is_final":true,"speech_final":true,
        "channel":{"alternatives":[{"transcript":"pay my bill","confidence":0.9,"words":[]}]}}"#;
    const EMPTY: &str = r#"{"type":"Results","start":2,"duration":1,"is_final":true,
        "channel":{"alternatives":[{"transcript":"","confidence":0,"words":[]}]}}"#;

    #[test]
    fn a_clean_stream() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle_caller(t0, CallerInput::Audio(vec![1, -1]));
        assert!(matches!(
            drain(&mut c).as_slice(),
            [Output::Send(Frame::Audio(b))] if b == &[1, 0, 255, 255]
        ));
        c.handle_server(t0, ServerInput::Text(PARTIAL));
        c.handle_server(t0, ServerInput::Text(EMPTY));
        c.handle_caller(t0, CallerInput::End);
        c.handle_server(t0, ServerInput::Text(FINAL));
        c.handle_server(
            t0,
            ServerInput::Text(r#"{"type":"Metadata","request_id":"abc"}"#),
        );
        c.handle_server(
            t0,
            ServerInput::Close {
                code: Some(1000),
                reason: "",
            },
        );
        let out = drain(&mut c);
        assert!(matches!(&out[0], Output::Event(SttEvent::Partial(t)) if t.text == "pay my"));
        assert!(matches!(&out[1], Output::Send(Frame::Control(m)) if *m == wire::FINALIZE));
        assert!(matches!(&out[2], Output::Send(Frame::Control(m)) if *m == wire::CLOSE_STREAM));
        assert!(
            matches!(&out[3], Output::Event(SttEvent::Final(t)) if t.text == "pay my bill" && t.end_ms == 2000)
        );
        assert!(matches!(&out[4], Output::Finished));
        assert_eq!(out.len(), 5);
        assert_eq!(c.request_id(), Some("abc"));
        assert!(c.is_done());
    }

    #[test]
    fn keep_alive_only_when_idle() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let (at, timer) = c.poll_timeout().expect("timer");
        assert_eq!((at, timer), (t0 + Duration::from_secs(4), Timer::KeepAlive));
        c.handle_timeout(t0 + Duration::from_secs(3));
        assert!(drain(&mut c).is_empty());
        c.handle_caller(t0 + Duration::from_secs(3), CallerInput::Audio(vec![0; 10]));
        drain(&mut c);
        c.handle_timeout(t0 + Duration::from_secs(5));
        assert!(drain(&mut c).is_empty(), "audio was sent 2 s ago");
        c.handle_timeout(t0 + Duration::from_secs(7));
        assert!(matches!(
            drain(&mut c).as_slice(),
            [Output::Send(Frame::Control(m))] if *m == wire::KEEP_ALIVE
        ));
    }

    #[test]
    fn failures_are_typed() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle_server(t0, ServerInput::Text("{garbage"));
        assert!(matches!(
            drain(&mut c).as_slice(),
            [Output::Failed(DeepgramError::Malformed { .. })]
        ));
        // Nothing after the first failure.
        c.handle_server(t0, ServerInput::Text(FINAL));
        assert!(drain(&mut c).is_empty());

        let mut c = core(t0);
        c.handle_server(
            t0,
            ServerInput::Close {
                code: Some(1008),
                reason: "DATA-0000",
            },
        );
        let out = drain(&mut c);
        let [Output::Failed(e)] = out.as_slice() else {
            panic!("{out:?}");
        };
        assert!(matches!(e, DeepgramError::Closed { code: 1008, .. }));
        assert!(!e.retryable());

        let mut c = core(t0);
        c.handle_server(
            t0,
            ServerInput::Lost {
                reason: "reset".into(),
            },
        );
        let out = drain(&mut c);
        assert!(
            matches!(out.as_slice(), [Output::Failed(e @ DeepgramError::ConnectionLost { .. })] if e.retryable())
        );

        // A normal close before the caller ended is not a clean end.
        let mut c = core(t0);
        c.handle_server(
            t0,
            ServerInput::Close {
                code: Some(1000),
                reason: "",
            },
        );
        assert!(matches!(
            drain(&mut c).as_slice(),
            [Output::Failed(DeepgramError::Closed { code: 1000, .. })]
        ));
    }

    #[test]
    fn close_deadline() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle_caller(t0, CallerInput::End);
        drain(&mut c);
        let (at, timer) = c.poll_timeout().expect("timer");
        assert_eq!(timer, Timer::CloseDeadline);
        c.handle_timeout(at);
        assert!(matches!(
            drain(&mut c).as_slice(),
            [Output::Failed(DeepgramError::Timeout { .. })]
        ));
        assert_eq!(c.poll_timeout(), None);
    }
}
