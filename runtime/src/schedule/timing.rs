//! When a scheduled item is due: `every <duration>` or a 5-field cron expression.

use chrono::{DateTime, Local, TimeZone, Utc};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Timing {
    /// Every so many seconds, at multiples of the interval since the Unix
    /// epoch, so every node reckons the same slots.
    Every(i64),
    /// A cron expression, read in the server's local time zone (`0 9 * * 1-5`
    /// is nine in the morning where the server runs).
    Cron(Box<croner::Cron>),
}

impl Timing {
    /// The schedule of a checked model (the checker has refused bad ones).
    pub fn parse(text: &str) -> Option<Timing> {
        if let Some(every) = text.strip_prefix("every ") {
            let seconds = trellis_engine::check::duration_seconds(every.trim())?;
            return (seconds > 0).then_some(Timing::Every(seconds));
        }
        text.parse::<croner::Cron>()
            .ok()
            .map(|c| Timing::Cron(Box::new(c)))
    }

    /// The first due time strictly after `t`; none for a cron expression that
    /// never matches again.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timing::Every(seconds) => {
                let slot = t.timestamp().div_euclid(*seconds) + 1;
                Utc.timestamp_opt(slot * seconds, 0).single()
            }
            Timing::Cron(cron) => cron
                .find_next_occurrence(&t.with_timezone(&Local), false)
                .ok()
                .map(|next| next.with_timezone(&Utc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn intervals_fall_on_the_same_slots_for_every_node() {
        let every = Timing::parse("every 15m").expect("parses");
        assert_eq!(
            every.next_after(at("2026-12-06T10:07:13Z")),
            Some(at("2026-12-06T10:15:00Z"))
        );
        // A due time itself is not due again.
        assert_eq!(
            every.next_after(at("2026-12-06T10:15:00Z")),
            Some(at("2026-12-06T10:30:00Z"))
        );
        let seconds = Timing::parse("every 5s").expect("parses");
        assert_eq!(
            seconds.next_after(at("2026-12-06T10:00:04.900Z")),
            Some(at("2026-12-06T10:00:05Z"))
        );
    }

    #[test]
    fn cron_expressions_give_the_next_matching_minute() {
        let hourly = Timing::parse("0 * * * *").expect("parses");
        let next = hourly
            .next_after(at("2026-12-06T10:07:13Z"))
            .expect("a next time");
        assert!(next > at("2026-12-06T10:07:13Z"));
        assert_eq!(next.timestamp() % 3600 % 60, 0, "{next}");
        assert!(Timing::parse("every 0m").is_none());
        assert!(Timing::parse("sometimes").is_none());
    }
}
