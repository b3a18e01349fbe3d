//! The time record logic runs at: the real time, or the real time moved by a
//! fixed offset, so that an app test can run "on" the date its scenario names
//! while the time of day keeps running. Each [`Store`](crate::Store) carries
//! its own clock; there is no process-wide setting, so stores with different
//! clocks live side by side (tests run in parallel).

use chrono::{DateTime, NaiveDate, Utc};

/// A clock: the real time plus a fixed offset (zero by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset: chrono::Duration,
}

impl Clock {
    /// The real time.
    pub fn real() -> Clock {
        Clock::default()
    }

    /// A clock whose `today` is `date`; the time of day is the real one.
    pub fn on(date: NaiveDate) -> Clock {
        Clock {
            offset: date - Utc::now().date_naive(),
        }
    }

    /// The current time on this clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// The current date (UTC) on this clock.
    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_on_a_date_says_that_date_and_keeps_the_time_of_day() {
        let date = NaiveDate::from_ymd_opt(2026, 3, 2).expect("a date");
        let clock = Clock::on(date);
        let real = Utc::now();
        // Around midnight the two reads may straddle a day; one of them matches.
        let today = clock.today();
        assert!(
            today == date || today == date + chrono::Duration::days(1),
            "{today}"
        );
        let drift = (clock.now() - real) - (date - real.date_naive());
        assert!(drift.num_seconds().abs() <= 1, "{drift}");
        assert_eq!(Clock::real().today(), Utc::now().date_naive());
    }
}
