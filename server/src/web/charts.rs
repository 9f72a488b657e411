//! Charts as plain data for an SVG template: pure functions from counts
//! to pixel coordinates, no database and no drawing library. The template
//! (`templates/chart.html`) only places what is computed here, and every
//! chart carries a text summary for screen readers.

use super::when;

pub const WIDTH: i32 = 480;
pub const HEIGHT: i32 = 220;
const LEFT: i32 = 40;
const RIGHT: i32 = WIDTH - 16;
const TOP: i32 = 14;
const BOTTOM: i32 = HEIGHT - 28;
/// The widest bar: a few hours of data should not look like a wall.
const MAX_BAR_SLOT: i64 = 48;
const HOUR_MS: i64 = 3_600_000;
/// Most hourly bars drawn: the last two days of activity.
pub const MAX_BARS: i64 = 48;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    pub pos: i32,
    pub label: String,
    /// SVG `text-anchor`: the first and last x labels hug the plot's ends
    /// so they are not cut off.
    pub anchor: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bar {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    pub id: &'static str,
    pub title: String,
    /// What the chart shows, in words (its accessible description).
    pub summary: String,
    /// `points` of an SVG polyline; empty for bar charts.
    pub line: String,
    pub bars: Vec<Bar>,
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    pub empty: bool,
    pub width: i32,
    pub height: i32,
    pub left: i32,
    pub right: i32,
    pub top: i32,
    pub bottom: i32,
}

impl Chart {
    fn new(id: &'static str, title: &str) -> Chart {
        Chart {
            id,
            title: title.to_owned(),
            summary: String::new(),
            line: String::new(),
            bars: Vec::new(),
            x_ticks: Vec::new(),
            y_ticks: Vec::new(),
            empty: true,
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            right: RIGHT,
            top: TOP,
            bottom: BOTTOM,
        }
    }
}

fn scale(v: i64, lo: i64, hi: i64, out_lo: i32, out_hi: i32) -> i32 {
    if hi <= lo {
        return out_lo;
    }
    let f = (v - lo) as f64 / (hi - lo) as f64;
    (out_lo as f64 + f * (out_hi - out_lo) as f64).round() as i32
}

/// Labels for an instant, short enough for an axis.
fn time_label(ms: i64, span_ms: i64) -> String {
    if span_ms <= 2 * HOUR_MS {
        // 2026-11-24T17:05:09.123Z
        let full = sahel_protocol::Timestamp(ms).to_string();
        return full.get(11..19).unwrap_or(&full).to_owned();
    }
    let full = when(ms); // 2026-11-24 17:05 UTC
    if span_ms <= 36 * HOUR_MS {
        full.get(11..16).unwrap_or(&full).to_owned()
    } else {
        full.get(5..10).unwrap_or(&full).to_owned()
    }
}

fn y_ticks(max: i64) -> Vec<Tick> {
    let mut vals = vec![0, max / 2, max];
    vals.dedup();
    vals.into_iter()
        .map(|v| Tick {
            pos: scale(v, 0, max.max(1), BOTTOM, TOP),
            label: v.to_string(),
            anchor: "end",
        })
        .collect()
}

/// Items done over time: a step line of the cumulative count from `start`
/// to `end`, out of `total`. `done` holds (instant, items finished then),
/// in any order.
pub fn items_done(start: i64, end: i64, done: &[(i64, i64)], total: i64) -> Chart {
    let mut c = Chart::new("chart-items-done", "Items done over time");
    let mut done: Vec<(i64, i64)> = done.to_vec();
    done.sort_unstable();
    let finished: i64 = done.iter().map(|d| d.1).sum();
    let last = done.last().map_or(start, |d| d.0);
    let end = end.max(last).max(start + 1);
    let ymax = total.max(finished).max(1);
    let pt = |t: i64, n: i64| {
        format!(
            "{},{}",
            scale(t, start, end, LEFT, RIGHT),
            scale(n, 0, ymax, BOTTOM, TOP)
        )
    };
    let mut points = vec![pt(start, 0)];
    let mut cum = 0;
    for (t, n) in &done {
        let t = (*t).clamp(start, end);
        points.push(pt(t, cum));
        cum += n;
        points.push(pt(t, cum));
    }
    points.push(pt(end, cum));
    c.line = points.join(" ");
    c.empty = total == 0;
    c.y_ticks = y_ticks(ymax);
    let span = end - start;
    c.x_ticks = (0..=3)
        .map(|i| {
            let t = start + span * i / 3;
            Tick {
                pos: scale(t, start, end, LEFT, RIGHT),
                label: time_label(t, span),
                anchor: match i {
                    0 => "start",
                    3 => "end",
                    _ => "middle",
                },
            }
        })
        .collect();
    c.summary = if finished == 0 {
        format!("No items done yet out of {total}.")
    } else {
        format!(
            "{finished} of {total} items done between {} and {}.",
            when(start),
            when(last)
        )
    };
    c
}

/// Answers per hour: one bar per clock hour, from the first hour with an
/// answer to the last (at most the last [`MAX_BARS`] hours). `hours`
/// holds (hours since the epoch, answers in that hour).
pub fn answers_per_hour(hours: &[(i64, i64)]) -> Chart {
    let mut c = Chart::new("chart-answers-per-hour", "Answers per hour");
    let Some(last) = hours.iter().map(|h| h.0).max() else {
        c.summary = "No answers yet.".into();
        c.y_ticks = y_ticks(1);
        return c;
    };
    let first = hours
        .iter()
        .map(|h| h.0)
        .min()
        .unwrap_or(last)
        .max(last - MAX_BARS + 1);
    let n = last - first + 1;
    let count = |h: i64| hours.iter().filter(|x| x.0 == h).map(|x| x.1).sum::<i64>();
    let counts: Vec<(i64, i64)> = (first..=last).map(|h| (h, count(h))).collect();
    let max = counts.iter().map(|c| c.1).max().unwrap_or(0).max(1);
    let slot = ((RIGHT - LEFT) as i64 / n).min(MAX_BAR_SLOT);
    let gap = (slot / 5).max(1);
    // Fewer bars than fit: center them.
    let offset = ((RIGHT - LEFT) as i64 - slot * n) / 2;
    for (i, (h, k)) in counts.iter().enumerate() {
        let x = LEFT + (offset + slot * i as i64) as i32 + (gap / 2) as i32;
        let y = scale(*k, 0, max, BOTTOM, TOP);
        c.bars.push(Bar {
            x,
            y,
            w: (slot - gap).max(1) as i32,
            h: BOTTOM - y,
            label: format!("{k} answers in the hour from {}", when(h * HOUR_MS)),
        });
    }
    let every = (n / 6).max(1);
    c.x_ticks = (0..n)
        .step_by(every as usize)
        .map(|i| Tick {
            pos: LEFT + (offset + slot * i + slot / 2) as i32,
            // Hours are labeled by the clock, whatever the span.
            label: time_label((first + i) * HOUR_MS, 3 * HOUR_MS),
            anchor: "middle",
        })
        .collect();
    c.y_ticks = y_ticks(max);
    c.empty = false;
    let total: i64 = counts.iter().map(|c| c.1).sum();
    let (peak_h, peak) = counts
        .iter()
        .max_by_key(|c| (c.1, -c.0))
        .copied()
        .unwrap_or((first, 0));
    c.summary = format!(
        "{total} answers over {n} hour{}; the busiest hour, from {}, had {peak}.",
        if n == 1 { "" } else { "s" },
        when(peak_h * HOUR_MS)
    );
    c
}

/// Most contributors drawn in the accuracy chart (the table lists all).
pub const MAX_CONTRIBUTOR_BARS: usize = 24;

/// Accuracy per contributor: one bar each, 0 to 100 percent, in the order
/// given (at most [`MAX_CONTRIBUTOR_BARS`]). `rows` holds (name, accuracy
/// as a fraction).
pub fn contributor_accuracy(rows: &[(String, f64)]) -> Chart {
    let mut c = Chart::new("chart-contributor-accuracy", "Accuracy per contributor");
    c.y_ticks = [0i64, 50, 100]
        .into_iter()
        .map(|v| Tick {
            pos: scale(v, 0, 100, BOTTOM, TOP),
            label: format!("{v}%"),
            anchor: "end",
        })
        .collect();
    if rows.is_empty() {
        c.summary = "No contributor has an accuracy estimate yet.".into();
        return c;
    }
    let rows = &rows[..rows.len().min(MAX_CONTRIBUTOR_BARS)];
    let n = rows.len() as i64;
    let slot = ((RIGHT - LEFT) as i64 / n).min(MAX_BAR_SLOT);
    let gap = (slot / 5).max(1);
    let offset = ((RIGHT - LEFT) as i64 - slot * n) / 2;
    let pct = |a: f64| (a.clamp(0.0, 1.0) * 100.0).round() as i64;
    for (i, (name, acc)) in rows.iter().enumerate() {
        let x = LEFT + (offset + slot * i as i64) as i32 + (gap / 2) as i32;
        let y = scale(pct(*acc), 0, 100, BOTTOM, TOP);
        c.bars.push(Bar {
            x,
            y,
            w: (slot - gap).max(1) as i32,
            h: BOTTOM - y,
            label: format!("{name}: {}% accurate", pct(*acc)),
        });
    }
    // Names only when they fit under their bars.
    if n <= 8 {
        c.x_ticks = rows
            .iter()
            .enumerate()
            .map(|(i, (name, _))| Tick {
                pos: LEFT + (offset + slot * i as i64 + slot / 2) as i32,
                label: name.chars().take(8).collect(),
                anchor: "middle",
            })
            .collect();
    }
    c.empty = false;
    let (lo, hi) = rows.iter().fold((100, 0), |(lo, hi), (_, a)| {
        (lo.min(pct(*a)), hi.max(pct(*a)))
    });
    c.summary = format!(
        "{n} contributor{}, accuracy from {lo}% to {hi}%.",
        if n == 1 { "" } else { "s" }
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords(line: &str) -> Vec<(i32, i32)> {
        line.split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn the_items_line_climbs_from_zero_to_the_items_done() {
        let start = 1_700_000_000_000;
        let c = items_done(
            start,
            start + 4 * HOUR_MS,
            &[(start + 3 * HOUR_MS, 2), (start + HOUR_MS, 3)],
            10,
        );
        let pts = coords(&c.line);
        assert_eq!(pts.first(), Some(&(LEFT, BOTTOM)));
        assert_eq!(pts.last().unwrap().0, RIGHT);
        // 5 of 10 done: the line ends halfway up.
        assert_eq!(pts.last().unwrap().1, (BOTTOM + TOP) / 2);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 >= w[1].1));
        assert!(
            pts.iter()
                .all(|(x, y)| (LEFT..=RIGHT).contains(x) && (TOP..=BOTTOM).contains(y))
        );
        assert!(c.summary.starts_with("5 of 10 items done"), "{}", c.summary);
    }

    #[test]
    fn a_complete_bounty_reaches_the_top() {
        let c = items_done(0, 10, &[(5, 4)], 4);
        assert_eq!(coords(&c.line).last(), Some(&(RIGHT, TOP)));
    }

    #[test]
    fn hourly_bars_fill_gaps_with_zero_and_scale_to_the_busiest_hour() {
        let c = answers_per_hour(&[(100, 4), (103, 8)]);
        assert_eq!(c.bars.len(), 4);
        assert_eq!(c.bars[1].h, 0);
        assert_eq!(c.bars[2].h, 0);
        assert_eq!(c.bars[3].y, TOP);
        assert_eq!(c.bars[0].h, (BOTTOM - TOP) / 2);
        assert!(c.bars.iter().all(|b| b.x >= LEFT && b.x + b.w <= RIGHT));
        assert!(
            c.summary.starts_with("12 answers over 4 hours"),
            "{}",
            c.summary
        );
    }

    #[test]
    fn only_the_last_two_days_of_hours_are_drawn() {
        let c = answers_per_hour(&[(0, 1), (1000, 1)]);
        assert_eq!(c.bars.len() as i64, MAX_BARS);
    }

    #[test]
    fn no_answers_is_an_empty_chart_that_says_so() {
        let c = answers_per_hour(&[]);
        assert!(c.empty && c.bars.is_empty());
        assert_eq!(c.summary, "No answers yet.");
    }

    #[test]
    fn accuracy_bars_are_percentages_of_the_plot_height() {
        let c = contributor_accuracy(&[
            ("ann".into(), 1.0),
            ("bob".into(), 0.5),
            ("cy".into(), -1.0),
        ]);
        assert_eq!(c.bars.len(), 3);
        assert_eq!(c.bars[0].y, TOP);
        assert_eq!(c.bars[1].h, (BOTTOM - TOP) / 2);
        assert_eq!(c.bars[2].h, 0);
        assert_eq!(c.x_ticks[1].label, "bob");
        assert!(c.bars.iter().all(|b| b.x >= LEFT && b.x + b.w <= RIGHT));
        assert_eq!(c.summary, "3 contributors, accuracy from 0% to 100%.");
        assert!(contributor_accuracy(&[]).empty);
    }
}
