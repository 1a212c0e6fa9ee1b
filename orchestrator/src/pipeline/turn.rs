//! Turn-taking: who has the floor, and when the caller's speech while the
//! bot talks is a barge-in.
//!
//! A barge-in happens when, while a bot turn plays, the caller
//! - keeps speaking for `min_speech_ms` after the VAD heard speech start,
//! - or says `min_words` words that are not backchannel,
//! - or ends an utterance whose final transcript has any word that is not
//!   backchannel,
//! - or presses a key (when `dtmf_interrupts`).
//!
//! Speech whose transcript so far is only backchannel ("uh-huh", "okay")
//! never interrupts. When the speech timer fires before any transcript has
//! arrived the caller is interrupting by length alone, so `min_speech_ms`
//! should be longer than a typical backchannel (the default is 600 ms).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::frame::{TurnCounter, TurnId};

/// Barge-in settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BargeInConfig {
    /// Whether the caller can interrupt the bot at all.
    pub enabled: bool,
    /// Speech time, counted from the VAD's speech start, that interrupts.
    pub min_speech_ms: u32,
    /// Words (not backchannel) in a partial transcript that interrupt.
    pub min_words: u32,
    /// Words and phrases that acknowledge without taking the floor,
    /// compared lower-case, without punctuation.
    pub backchannel: Vec<String>,
    /// Whether a key press interrupts.
    pub dtmf_interrupts: bool,
}

impl Default for BargeInConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_speech_ms: 600,
            min_words: 2,
            backchannel: [
                "uh-huh", "uh huh", "mm-hmm", "mhm", "mm", "hmm", "okay", "ok", "yeah", "yep",
                "right", "sure", "alright",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            dtmf_interrupts: true,
        }
    }
}

/// What made the caller's interruption count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BargeInCause {
    /// Speech lasted `ms` past its start.
    Speech { ms: u64 },
    /// A partial transcript reached `words` words that are not backchannel.
    Words { words: u32 },
    /// A final transcript with words that are not backchannel.
    Utterance { text: String },
    /// A key press.
    Dtmf(char),
}

/// What turn-taking reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// Stop the bot now: frames of turns before `to` must go.
    Interrupt {
        from: TurnId,
        to: TurnId,
        cause: BargeInCause,
    },
    /// The caller only acknowledged; the bot keeps talking.
    BackchannelIgnored { text: String },
}

/// The caller talking over the bot.
#[derive(Debug, Clone, PartialEq)]
struct Overlap {
    /// When the speech timer fires; `None` once the speech ended.
    deadline: Option<Instant>,
    started: Instant,
    /// Whether the speech timer fired (on backchannel only).
    fired: bool,
    /// The latest transcript text heard during the overlap.
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Floor {
    /// The bot is silent; the caller may talk.
    Caller,
    /// A bot turn is playing.
    Bot {
        turn: TurnId,
        overlap: Option<Overlap>,
    },
}

/// The turn-taking stage of one call.
#[derive(Debug)]
pub struct TurnTaking {
    config: BargeInConfig,
    backchannel: Vec<Vec<String>>,
    turns: TurnCounter,
    floor: Floor,
    events: VecDeque<TurnEvent>,
}

/// Lower-case words without punctuation (apostrophes and hyphens kept).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\'' && c != '-'))
        .map(|w| {
            w.trim_matches(|c: char| c == '-' || c == '\'')
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

impl TurnTaking {
    pub fn new(config: BargeInConfig) -> Self {
        let backchannel = config
            .backchannel
            .iter()
            .map(|p| words(p))
            .filter(|p| !p.is_empty())
            .collect();
        Self {
            config,
            backchannel,
            turns: TurnCounter::default(),
            floor: Floor::Caller,
            events: VecDeque::new(),
        }
    }

    /// The current turn: generated frames of older turns are stale.
    pub fn current_turn(&self) -> TurnId {
        self.turns.current()
    }

    /// The bot turn playing now, if any.
    pub fn bot_turn(&self) -> Option<TurnId> {
        match self.floor {
            Floor::Bot { turn, .. } => Some(turn),
            Floor::Caller => None,
        }
    }

    /// Starts a new bot turn (a reply, a reprompt, a filler) and returns
    /// its id, which every frame of the turn must carry.
    pub fn begin_bot_turn(&mut self, _now: Instant) -> TurnId {
        let turn = self.turns.bump();
        self.floor = Floor::Bot {
            turn,
            overlap: None,
        };
        turn
    }

    /// The bot turn `turn` finished playing.
    pub fn handle_bot_finished(&mut self, _now: Instant, turn: TurnId) {
        if self.bot_turn() == Some(turn) {
            self.floor = Floor::Caller;
        }
    }

    /// The VAD heard the caller start speaking.
    pub fn handle_speech_started(&mut self, now: Instant) {
        if !self.config.enabled {
            return;
        }
        let deadline = now + Duration::from_millis(u64::from(self.config.min_speech_ms));
        if let Floor::Bot { overlap, .. } = &mut self.floor {
            *overlap = Some(Overlap {
                deadline: Some(deadline),
                started: now,
                fired: false,
                text: String::new(),
            });
        }
        self.handle_timeout(now);
    }

    /// The VAD heard the caller's utterance end.
    pub fn handle_speech_ended(&mut self, _now: Instant) {
        if let Floor::Bot {
            overlap: Some(o), ..
        } = &mut self.floor
        {
            o.deadline = None;
        }
    }

    /// How many words of `text` are not backchannel.
    fn content_words(&self, text: &str) -> u32 {
        let w = words(text);
        let mut i = 0;
        let mut content = 0;
        'outer: while i < w.len() {
            for phrase in &self.backchannel {
                if w[i..].starts_with(phrase) {
                    i += phrase.len();
                    continue 'outer;
                }
            }
            content += 1;
            i += 1;
        }
        content
    }

    /// A transcript of the caller's speech.
    pub fn handle_transcript(&mut self, now: Instant, text: &str, is_final: bool) {
        if !self.config.enabled {
            return;
        }
        let content = self.content_words(text);
        let any_words = !words(text).is_empty();
        let Floor::Bot { overlap, .. } = &mut self.floor else {
            return;
        };
        let o = overlap.get_or_insert_with(|| Overlap {
            deadline: None,
            started: now,
            fired: false,
            text: String::new(),
        });
        o.text = text.to_string();
        let (fired, started) = (o.fired, o.started);
        if is_final {
            if content > 0 {
                self.interrupt(BargeInCause::Utterance {
                    text: text.to_string(),
                });
            } else {
                *overlap = None;
                if any_words {
                    self.events.push_back(TurnEvent::BackchannelIgnored {
                        text: text.to_string(),
                    });
                }
            }
        } else if content >= self.config.min_words.max(1) {
            self.interrupt(BargeInCause::Words { words: content });
        } else if content > 0 && fired {
            // The speech timer already fired on backchannel; content now
            // makes that speech count.
            let ms = now.duration_since(started).as_millis() as u64;
            self.interrupt(BargeInCause::Speech { ms });
        }
    }

    /// A key press.
    pub fn handle_dtmf(&mut self, _now: Instant, digit: char) {
        if self.config.enabled && self.config.dtmf_interrupts && self.bot_turn().is_some() {
            self.interrupt(BargeInCause::Dtmf(digit));
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.floor {
            Floor::Bot {
                overlap: Some(o), ..
            } => o.deadline,
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Floor::Bot {
            overlap: Some(o), ..
        } = &mut self.floor
        else {
            return;
        };
        let Some(deadline) = o.deadline else { return };
        if now < deadline {
            return;
        }
        // Fired: later partials with content still interrupt at once.
        o.deadline = None;
        o.fired = true;
        let (text, started) = (o.text.clone(), o.started);
        let heard_only_backchannel = !words(&text).is_empty() && self.content_words(&text) == 0;
        if !heard_only_backchannel {
            let ms = now.duration_since(started).as_millis() as u64;
            self.interrupt(BargeInCause::Speech { ms });
        }
    }

    fn interrupt(&mut self, cause: BargeInCause) {
        let Floor::Bot { turn, .. } = self.floor else {
            return;
        };
        let to = self.turns.bump();
        self.floor = Floor::Caller;
        self.events.push_back(TurnEvent::Interrupt {
            from: turn,
            to,
            cause,
        });
    }

    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn tt() -> TurnTaking {
        TurnTaking::new(BargeInConfig::default())
    }

    fn drain(t: &mut TurnTaking) -> Vec<TurnEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    #[test]
    fn long_speech_over_the_bot_interrupts_at_min_speech() {
        let t0 = Instant::now();
        let mut t = tt();
        let turn = t.begin_bot_turn(t0);
        assert_eq!(turn, TurnId(1));
        t.handle_speech_started(t0 + ms(100));
        assert_eq!(t.poll_timeout(), Some(t0 + ms(700)));
        t.handle_timeout(t0 + ms(699));
        assert!(drain(&mut t).is_empty());
        t.handle_timeout(t0 + ms(700));
        assert_eq!(
            drain(&mut t),
            vec![TurnEvent::Interrupt {
                from: TurnId(1),
                to: TurnId(2),
                cause: BargeInCause::Speech { ms: 600 }
            }]
        );
        assert_eq!(t.current_turn(), TurnId(2));
        assert_eq!(t.bot_turn(), None);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn words_interrupt_before_the_timer() {
        let t0 = Instant::now();
        let mut t = tt();
        t.begin_bot_turn(t0);
        t.handle_speech_started(t0);
        t.handle_transcript(t0 + ms(200), "okay", false);
        t.handle_transcript(t0 + ms(300), "okay wait", false);
        assert!(drain(&mut t).is_empty(), "one content word is not enough");
        t.handle_transcript(t0 + ms(400), "okay wait stop", false);
        assert_eq!(
            drain(&mut t),
            vec![TurnEvent::Interrupt {
                from: TurnId(1),
                to: TurnId(2),
                cause: BargeInCause::Words { words: 2 }
            }]
        );
    }

    #[test]
    fn backchannel_never_interrupts() {
        let t0 = Instant::now();
        let mut t = tt();
        let turn = t.begin_bot_turn(t0);
        t.handle_speech_started(t0);
        t.handle_transcript(t0 + ms(300), "uh-huh", false);
        t.handle_timeout(t0 + ms(600));
        t.handle_transcript(t0 + ms(700), "Uh huh, okay.", false);
        t.handle_speech_ended(t0 + ms(800));
        t.handle_transcript(t0 + ms(900), "Uh huh, okay.", true);
        assert_eq!(
            drain(&mut t),
            vec![TurnEvent::BackchannelIgnored {
                text: "Uh huh, okay.".into()
            }]
        );
        assert_eq!(t.bot_turn(), Some(turn));
        assert_eq!(t.current_turn(), turn);
    }

    #[test]
    fn content_after_a_backchannel_timer_interrupts_at_once() {
        let t0 = Instant::now();
        let mut t = tt();
        t.begin_bot_turn(t0);
        t.handle_speech_started(t0);
        t.handle_transcript(t0 + ms(300), "yeah", false);
        t.handle_timeout(t0 + ms(600));
        assert!(drain(&mut t).is_empty());
        t.handle_transcript(t0 + ms(650), "yeah no", false);
        assert!(matches!(
            drain(&mut t).as_slice(),
            [TurnEvent::Interrupt {
                cause: BargeInCause::Speech { ms: 650 },
                ..
            }]
        ));
    }

    #[test]
    fn a_short_final_with_content_interrupts() {
        let t0 = Instant::now();
        let mut t = tt();
        t.begin_bot_turn(t0);
        t.handle_speech_started(t0);
        t.handle_speech_ended(t0 + ms(300));
        t.handle_transcript(t0 + ms(400), "no", true);
        assert!(matches!(
            drain(&mut t).as_slice(),
            [TurnEvent::Interrupt {
                cause: BargeInCause::Utterance { .. },
                ..
            }]
        ));
    }

    #[test]
    fn speech_that_ends_before_the_timer_does_not_interrupt() {
        let t0 = Instant::now();
        let mut t = tt();
        t.begin_bot_turn(t0);
        t.handle_speech_started(t0);
        t.handle_speech_ended(t0 + ms(300));
        assert_eq!(t.poll_timeout(), None);
        t.handle_timeout(t0 + ms(1000));
        assert!(drain(&mut t).is_empty());
    }

    #[test]
    fn speech_while_the_bot_is_silent_is_not_a_barge_in() {
        let t0 = Instant::now();
        let mut t = tt();
        let turn = t.begin_bot_turn(t0);
        t.handle_bot_finished(t0 + ms(10), turn);
        t.handle_speech_started(t0 + ms(20));
        t.handle_transcript(t0 + ms(30), "I want to pay my bill", false);
        t.handle_dtmf(t0 + ms(40), '1');
        assert!(drain(&mut t).is_empty());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn dtmf_and_disabled_barge_in() {
        let t0 = Instant::now();
        let mut t = tt();
        t.begin_bot_turn(t0);
        t.handle_dtmf(t0, '0');
        assert!(matches!(
            drain(&mut t).as_slice(),
            [TurnEvent::Interrupt {
                cause: BargeInCause::Dtmf('0'),
                ..
            }]
        ));

        let mut off = TurnTaking::new(BargeInConfig {
            enabled: false,
            ..BargeInConfig::default()
        });
        off.begin_bot_turn(t0);
        off.handle_speech_started(t0);
        off.handle_transcript(t0 + ms(100), "stop talking now", false);
        off.handle_timeout(t0 + ms(5000));
        assert!(drain(&mut off).is_empty());
    }

    #[test]
    fn min_speech_zero_interrupts_on_speech_start() {
        let t0 = Instant::now();
        let mut t = TurnTaking::new(BargeInConfig {
            min_speech_ms: 0,
            ..BargeInConfig::default()
        });
        t.begin_bot_turn(t0);
        t.handle_speech_started(t0);
        assert!(matches!(
            drain(&mut t).as_slice(),
            [TurnEvent::Interrupt {
                cause: BargeInCause::Speech { ms: 0 },
                ..
            }]
        ));
    }
}
