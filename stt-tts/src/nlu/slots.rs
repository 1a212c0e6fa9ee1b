//! Slot extraction from transcribed speech: digits, amounts, dates (simple
//! forms) and yes/no. Pure functions, English only for now.
//!
//! Transcripts spell numbers either way ("1234" or "one two three four"),
//! so every extractor accepts both.

use super::{DateValue, SlotKind, SlotValue};

/// Lower-case words of `text`: letters, digits, `'`, and `.`/`,` inside
/// numbers; currency symbols become words of their own.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next_digit = chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        let prev_digit = cur.chars().last().is_some_and(|p| p.is_ascii_digit());
        if c.is_alphanumeric() || c == '\'' {
            cur.extend(c.to_lowercase());
        } else if matches!(c, '.' | ',') && prev_digit && next_digit {
            cur.push(c);
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if matches!(c, '$' | '€' | '£') {
                out.push(c.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn digit_word(w: &str) -> Option<char> {
    Some(match w {
        "zero" | "oh" => '0',
        "one" => '1',
        "two" => '2',
        "three" => '3',
        "four" => '4',
        "five" => '5',
        "six" => '6',
        "seven" => '7',
        "eight" => '8',
        "nine" => '9',
        _ => return None,
    })
}

/// Every digit said, in order: "my pin is 12 three four" is `"1234"`.
pub fn extract_digits(text: &str) -> Option<String> {
    let mut out = String::new();
    for w in words(text) {
        if let Some(d) = digit_word(&w) {
            out.push(d);
        } else if w.chars().any(|c| c.is_ascii_digit()) && w.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&w);
        }
    }
    (!out.is_empty()).then_some(out)
}

fn small_number(w: &str) -> Option<u64> {
    if let Some(d) = digit_word(w).filter(|_| w != "oh") {
        return Some(u64::from(d as u8 - b'0'));
    }
    Some(match w {
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        _ => return None,
    })
}

/// Parses a run of number words at the start of `ws` ("two hundred and
/// five"); returns the value and how many words it used.
fn number_words(ws: &[String]) -> Option<(u64, usize)> {
    let (mut total, mut current, mut used, mut any) = (0u64, 0u64, 0usize, false);
    for (i, w) in ws.iter().enumerate() {
        if let Some(n) = small_number(w) {
            current = current.saturating_add(n);
            any = true;
        } else if w == "hundred" && any {
            current = current.max(1).saturating_mul(100);
        } else if w == "thousand" && any {
            total = total.saturating_add(current.max(1).saturating_mul(1000));
            current = 0;
        } else if w == "and" && any && ws.get(i + 1).is_some_and(|n| small_number(n).is_some()) {
        } else {
            break;
        }
        used = i + 1;
    }
    any.then_some((total + current, used))
}

fn currency_word(w: &str) -> Option<&'static str> {
    Some(match w {
        "$" | "dollar" | "dollars" | "usd" => "USD",
        "€" | "euro" | "euros" | "eur" => "EUR",
        "£" | "pound" | "pounds" | "gbp" => "GBP",
        _ => return None,
    })
}

/// A number at `ws[i..]`, numeric or spelled: (integer part, cents, words used).
fn number_at(ws: &[String], i: usize) -> Option<(u64, Option<u32>, usize)> {
    let w = ws.get(i)?;
    if w.starts_with(|c: char| c.is_ascii_digit()) {
        // "1,250.75" and "1,250" group thousands; "12,5" is a decimal comma.
        let thousands = w.contains('.')
            || w.split(',')
                .skip(1)
                .all(|g| g.len() == 3 && w.contains(','));
        let clean = w.replace(',', if thousands { "" } else { "." });
        let (int, frac) = match clean.split_once('.') {
            Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
            None => (clean, None),
        };
        let int: u64 = int.parse().ok()?;
        let cents = match frac {
            Some(f) if f.len() <= 2 && f.chars().all(|c| c.is_ascii_digit()) => {
                let v: u32 = f.parse().ok()?;
                Some(if f.len() == 1 { v * 10 } else { v })
            }
            Some(_) => return None,
            None => None,
        };
        return Some((int, cents, 1));
    }
    number_words(&ws[i..]).map(|(n, used)| (n, None, used))
}

/// An amount: "$12.50", "12,50 euros", "twenty five dollars and fifty
/// cents". Returns the decimal value as text and the currency if said.
pub fn extract_amount(text: &str) -> Option<(String, Option<String>)> {
    let ws = words(text);
    let mut i = 0;
    while i < ws.len() {
        let prefix = currency_word(&ws[i]).filter(|_| ws[i].len() == 1);
        let start = if prefix.is_some() { i + 1 } else { i };
        if let Some((int, mut cents, used)) = number_at(&ws, start) {
            let mut j = start + used;
            let mut currency = prefix.map(str::to_owned);
            if let Some(c) = ws.get(j).and_then(|w| currency_word(w)) {
                currency.get_or_insert_with(|| c.to_owned());
                j += 1;
            }
            // "... and fifty cents"
            let k = if ws.get(j).is_some_and(|w| w == "and") {
                j + 1
            } else {
                j
            };
            if let Some((c, None, used)) = number_at(&ws, k) {
                if ws
                    .get(k + used)
                    .is_some_and(|w| w == "cents" || w == "cent")
                    && c < 100
                {
                    cents = Some(c as u32);
                }
            }
            if currency.is_some() || cents.is_some() || prefix.is_some() || start == i {
                let value = match cents {
                    Some(c) => format!("{int}.{c:02}"),
                    None => int.to_string(),
                };
                return Some((value, currency));
            }
        }
        i += 1;
    }
    None
}

fn weekday(w: &str) -> Option<u8> {
    Some(match w {
        "monday" => 0,
        "tuesday" => 1,
        "wednesday" => 2,
        "thursday" => 3,
        "friday" => 4,
        "saturday" => 5,
        "sunday" => 6,
        _ => return None,
    })
}

fn month(w: &str) -> Option<u8> {
    const NAMES: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    NAMES
        .iter()
        .position(|m| *m == w || (w.len() == 3 && m.starts_with(w) && w != "may"))
        .map(|p| p as u8 + 1)
        .or((w == "may").then_some(5))
}

fn ordinal_day(w: &str) -> Option<u8> {
    let digits: String = w.chars().take_while(|c| c.is_ascii_digit()).collect();
    let rest = &w[digits.len()..];
    if !digits.is_empty() && matches!(rest, "" | "st" | "nd" | "rd" | "th") {
        return digits.parse().ok().filter(|d| (1..=31).contains(d));
    }
    const ORD: [&str; 31] = [
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "eleventh",
        "twelfth",
        "thirteenth",
        "fourteenth",
        "fifteenth",
        "sixteenth",
        "seventeenth",
        "eighteenth",
        "nineteenth",
        "twentieth",
        "twenty-first",
        "twenty-second",
        "twenty-third",
        "twenty-fourth",
        "twenty-fifth",
        "twenty-sixth",
        "twenty-seventh",
        "twenty-eighth",
        "twenty-ninth",
        "thirtieth",
        "thirty-first",
    ];
    ORD.iter().position(|o| *o == w).map(|p| p as u8 + 1)
}

fn valid(month: u8, day: u8) -> bool {
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

fn year(w: Option<&String>) -> Option<i32> {
    w.and_then(|w| w.parse::<i32>().ok())
        .filter(|y| (1900..=2200).contains(y))
}

/// A date in a simple form: today/tomorrow/yesterday, "in 3 days",
/// "(next) friday", `2024-05-03`, `3/5/2024` (day/month/year), "May 3rd",
/// "the 3rd of May 2025".
pub fn extract_date(text: &str) -> Option<DateValue> {
    let lower = text.to_lowercase();
    for token in lower.split_whitespace() {
        let t = token.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        let parts: Vec<&str> = t.split(['-', '/']).collect();
        if parts.len() == 3 && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())) {
            let n: Vec<i32> = parts.iter().filter_map(|p| p.parse().ok()).collect();
            if n.len() == 3 {
                let (y, m, d) = if parts[0].len() == 4 {
                    (n[0], n[1], n[2])
                } else {
                    (n[2], n[1], n[0])
                };
                if valid(m as u8, d as u8) && (1900..=2200).contains(&y) {
                    return Some(DateValue::Full {
                        year: y,
                        month: m as u8,
                        day: d as u8,
                    });
                }
            }
        }
    }
    // Rejoin "twenty third" so ordinals of two words parse.
    let raw = words(text);
    let mut ws: Vec<String> = Vec::with_capacity(raw.len());
    for w in raw {
        if let Some(last) = ws.last_mut() {
            if matches!(last.as_str(), "twenty" | "thirty")
                && ordinal_day(&format!("{last}-{w}")).is_some()
            {
                *last = format!("{last}-{w}");
                continue;
            }
        }
        ws.push(w);
    }
    for (i, w) in ws.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| ws.get(p)).map(String::as_str);
        match w.as_str() {
            "today" | "tonight" => return Some(DateValue::Relative { days: 0 }),
            "tomorrow" => {
                let after = prev == Some("after") && i >= 2 && ws[i - 2] == "day";
                return Some(DateValue::Relative {
                    days: if after { 2 } else { 1 },
                });
            }
            "yesterday" => return Some(DateValue::Relative { days: -1 }),
            "days" | "day" if prev.is_some() && i >= 2 && ws[i - 2] == "in" => {
                if let Some((n, _, _)) = number_at(&ws, i - 1) {
                    return Some(DateValue::Relative {
                        days: n.min(3660) as i32,
                    });
                }
            }
            _ => {}
        }
        if let Some(wd) = weekday(w) {
            return Some(DateValue::Weekday {
                weekday: wd,
                next: prev == Some("next"),
            });
        }
        if let Some(m) = month(w) {
            // "may 3rd [2025]"
            if let Some(d) = ws.get(i + 1).and_then(|n| ordinal_day(n)) {
                return Some(match year(ws.get(i + 2)) {
                    Some(y) => DateValue::Full {
                        year: y,
                        month: m,
                        day: d,
                    },
                    None => DateValue::MonthDay { month: m, day: d },
                });
            }
            // "[the] 3rd of may [2025]"
            if prev == Some("of") && i >= 2 {
                if let Some(d) = ordinal_day(&ws[i - 2]) {
                    return Some(match year(ws.get(i + 1)) {
                        Some(y) => DateValue::Full {
                            year: y,
                            month: m,
                            day: d,
                        },
                        None => DateValue::MonthDay { month: m, day: d },
                    });
                }
            }
        }
    }
    None
}

const YES: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "yea",
    "sure",
    "correct",
    "right",
    "ok",
    "okay",
    "affirmative",
    "absolutely",
    "definitely",
    "certainly",
    "indeed",
];
const NO: &[&str] = &[
    "no",
    "nope",
    "nah",
    "negative",
    "incorrect",
    "wrong",
    "never",
];
const NEGATORS: &[&str] = &["not", "don't", "isn't", "dont", "isnt", "ain't"];

/// Yes or no: the first answer word wins, and a negator before a yes word
/// ("not right") turns it into no.
pub fn extract_yes_no(text: &str) -> Option<bool> {
    let ws = words(text);
    for (i, w) in ws.iter().enumerate() {
        if YES.contains(&w.as_str()) {
            let negated = ws[i.saturating_sub(2)..i]
                .iter()
                .any(|p| NEGATORS.contains(&p.as_str()));
            return Some(!negated);
        }
        if NO.contains(&w.as_str()) {
            return Some(false);
        }
        if NEGATORS.contains(&w.as_str()) && i + 1 == ws.len() {
            return Some(false);
        }
    }
    None
}

/// Fills a slot of `kind` from `text`. `Text` takes the whole utterance.
pub fn extract(kind: SlotKind, text: &str) -> Option<SlotValue> {
    match kind {
        SlotKind::Digits => extract_digits(text).map(SlotValue::Digits),
        SlotKind::Amount => {
            extract_amount(text).map(|(value, currency)| SlotValue::Amount { value, currency })
        }
        SlotKind::Date => extract_date(text).map(SlotValue::Date),
        SlotKind::YesNo => extract_yes_no(text).map(SlotValue::YesNo),
        SlotKind::Text => {
            let t = text.trim();
            (!t.is_empty()).then(|| SlotValue::Text(t.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_numeric_and_spelled() {
        assert_eq!(
            extract_digits("my pin is 12 three four").as_deref(),
            Some("1234")
        );
        assert_eq!(extract_digits("oh seven seven").as_deref(), Some("077"));
        assert_eq!(
            extract_digits("account 5521-8890").as_deref(),
            Some("55218890")
        );
        assert_eq!(extract_digits("hello there"), None);
    }

    #[test]
    fn amounts() {
        let a = |t: &str| extract_amount(t);
        assert_eq!(
            a("pay $12.50 please"),
            Some(("12.50".into(), Some("USD".into())))
        );
        assert_eq!(a("send 40 euros"), Some(("40".into(), Some("EUR".into()))));
        assert_eq!(a("12,5 €"), Some(("12.50".into(), Some("EUR".into()))));
        assert_eq!(
            a("twenty five dollars and fifty cents"),
            Some(("25.50".into(), Some("USD".into())))
        );
        assert_eq!(
            a("two hundred and five pounds"),
            Some(("205".into(), Some("GBP".into())))
        );
        assert_eq!(a("1,250.75"), Some(("1250.75".into(), None)));
        assert_eq!(a("no money"), None);
    }

    #[test]
    fn dates() {
        use DateValue::*;
        let d = |t: &str| extract_date(t);
        assert_eq!(d("tomorrow please"), Some(Relative { days: 1 }));
        assert_eq!(d("the day after tomorrow"), Some(Relative { days: 2 }));
        assert_eq!(d("in 3 days"), Some(Relative { days: 3 }));
        assert_eq!(d("in three days"), Some(Relative { days: 3 }));
        assert_eq!(
            d("next friday"),
            Some(Weekday {
                weekday: 4,
                next: true
            })
        );
        assert_eq!(
            d("on 2024-05-03"),
            Some(Full {
                year: 2024,
                month: 5,
                day: 3
            })
        );
        assert_eq!(
            d("on 3/5/2024"),
            Some(Full {
                year: 2024,
                month: 5,
                day: 3
            })
        );
        assert_eq!(d("may 3rd"), Some(MonthDay { month: 5, day: 3 }));
        assert_eq!(
            d("the twenty third of june 2025"),
            Some(Full {
                year: 2025,
                month: 6,
                day: 23
            })
        );
        assert_eq!(d("the 1st of jan"), Some(MonthDay { month: 1, day: 1 }));
        assert_eq!(d("whenever"), None);
    }

    #[test]
    fn yes_and_no() {
        for y in ["yes", "Yeah, that's right", "sure", "okay then", "correct"] {
            assert_eq!(extract_yes_no(y), Some(true), "{y}");
        }
        for n in [
            "no",
            "nope",
            "that's not right",
            "no thanks",
            "wrong",
            "I'm not",
        ] {
            assert_eq!(extract_yes_no(n), Some(false), "{n}");
        }
        assert_eq!(extract_yes_no("what is the time"), None);
    }
}
