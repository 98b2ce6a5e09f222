//! Strict `HH:MM:SS` times of day, as the product's scheduled time and
//! exception window are written.

use chrono::NaiveTime;

use super::limits::quote;

/// Parses `HH:MM:SS` with two digits each, hours 00–23, minutes and seconds
/// 00–59. Returns why the text is refused otherwise.
pub fn parse(text: &str) -> Result<NaiveTime, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let well_formed = parts.len() == 3
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return Err(format!(
            "{} is not a time of day in HH:MM:SS format",
            quote(text)
        ));
    }
    let [h, m, s] = [parts[0], parts[1], parts[2]].map(|p| p.parse::<u32>().unwrap_or(99));
    if h > 23 {
        return Err(format!("{}: hour must be 00 to 23", quote(text)));
    }
    if m > 59 {
        return Err(format!("{}: minute must be 00 to 59", quote(text)));
    }
    if s > 59 {
        return Err(format!("{}: second must be 00 to 59", quote(text)));
    }
    NaiveTime::from_hms_opt(h, m, s).ok_or_else(|| format!("{} is not a valid time", quote(text)))
}

/// Formats a time of day as `HH:MM:SS`.
pub fn format(time: NaiveTime) -> String {
    time.format("%H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_midnight_and_last_second() {
        assert_eq!(parse("00:00:00").unwrap(), NaiveTime::MIN);
        assert_eq!(
            parse("23:59:59").unwrap(),
            NaiveTime::from_hms_opt(23, 59, 59).unwrap()
        );
    }

    #[test]
    fn refuses_out_of_range_and_malformed() {
        assert!(parse("25:00:00").unwrap_err().contains("hour"));
        assert!(parse("10:60:00").unwrap_err().contains("minute"));
        assert!(parse("10:00:60").unwrap_err().contains("second"));
        for bad in [
            "",
            "1:00:00",
            "10:00",
            "10:00:00:00",
            "aa:bb:cc",
            "10-00-00",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format(parse("07:05:09").unwrap()), "07:05:09");
    }
}
