//! The picture of a run: messages per second over time for the publisher (acknowledged) and
//! the subscribers (received), each fault as a light vertical band (node down or paused), each
//! write outage as a darker band labelled with its duration.
//!
//! The chart is laid out once as a list of shapes in pixels ([`Chart`]), then written as SVG
//! (text, so any viewer renders it, no font needed here) or as PNG through plotters' bitmap
//! backend. PNG text needs a TrueType font file: `--plot-font FILE`, or a common system font
//! (DejaVu Sans, Liberation Sans, FreeSans, Noto Sans). Without one the PNG is written without
//! its labels and the caller is told so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::report::Report;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// One shape, in pixels from the top-left corner.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        fill: Rgb,
        opacity: f64,
    },
    Path {
        points: Vec<(f64, f64)>,
        color: Rgb,
        width: f64,
    },
    Text(Label),
}

/// A line of text: `y` is the baseline; `vertical` text reads bottom to top, rotated about
/// (x, y).
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub x: f64,
    pub y: f64,
    pub text: String,
    pub size: f64,
    pub color: Rgb,
    pub anchor: Anchor,
    pub bold: bool,
    pub vertical: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub items: Vec<Item>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{0}: the plot file must end in .svg or .png")]
    Format(String),
}

const WHITE: Rgb = Rgb(255, 255, 255);
const INK: Rgb = Rgb(40, 40, 40);
const GRID: Rgb = Rgb(228, 228, 228);
const PUBLISHER: Rgb = Rgb(31, 119, 180);
const ALL_SUBSCRIBERS: Rgb = Rgb(44, 160, 44);
const FAULT: Rgb = Rgb(214, 39, 40);
const OUTAGE: Rgb = Rgb(255, 127, 14);
const SUBSCRIBER_COLORS: [Rgb; 6] = [
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(127, 127, 127),
    Rgb(188, 189, 34),
    Rgb(23, 190, 207),
];

const WIDTH: f64 = 1280.0;
const HEIGHT: f64 = 620.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = WIDTH - 260.0;
const TOP: f64 = 92.0;
const BOTTOM: f64 = HEIGHT - 64.0;
/// Height of the fault strips along the top of the plot.
const FAULT_STRIP: f64 = 7.0;

/// How a legend entry is drawn.
enum Key {
    Line(f64),
    Band,
    Strip,
}

/// A round step (1, 2 or 5 times a power of ten) giving about `n` intervals up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_num(v: f64) -> String {
    if v >= 1000.0 && v % 1000.0 == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A band from `x0` to `x1` (at least `min_w` wide so a short one stays visible), `h` high
/// from the top of the plot area.
fn band((x0, x1): (f64, f64), min_w: f64, h: f64, fill: Rgb, opacity: f64) -> Item {
    Item::Rect {
        x: x0,
        y: TOP,
        w: (x1 - x0).max(min_w),
        h,
        fill,
        opacity,
    }
}

fn text(x: f64, y: f64, s: impl Into<String>, size: f64, anchor: Anchor) -> Item {
    Item::Text(Label {
        x,
        y,
        text: s.into(),
        size,
        color: INK,
        anchor,
        bold: false,
        vertical: false,
    })
}

/// Lays out the chart of `r`.
pub fn chart(r: &Report) -> Chart {
    let mut items = Vec::new();
    let dur_s = (r.duration_ms as f64 / 1000.0).max(1.0);
    let t = &r.throughput;
    let bucket_s = t.bucket_ms as f64 / 1000.0;
    let ymax_data = t
        .publisher_acknowledged
        .iter()
        .chain(t.delivered_total.iter())
        .copied()
        .fold(0.0, f64::max)
        .max(10.0);
    let ystep = nice_step(ymax_data * 1.1, 6.0);
    let ymax = (ymax_data * 1.1 / ystep).ceil() * ystep;
    let xstep = nice_step(dur_s, 10.0);
    let sx = |s: f64| LEFT + s.clamp(0.0, dur_s) / dur_s * (RIGHT - LEFT);
    let sy = |v: f64| BOTTOM - v.clamp(0.0, ymax) / ymax * (BOTTOM - TOP);

    items.push(Item::Rect {
        x: 0.0,
        y: 0.0,
        w: WIDTH,
        h: HEIGHT,
        fill: WHITE,
        opacity: 1.0,
    });

    // Title and the counts that matter.
    let s = &r.settings;
    let chaos = if r.faults.is_empty() {
        "no faults".to_owned()
    } else {
        format!(
            "{} x {} of the master, {:.0} s of calm before each, down {:.0} s",
            r.faults.len(),
            s.fault.as_str(),
            s.interval_ms as f64 / 1000.0,
            s.down_for_ms as f64 / 1000.0
        )
    };
    items.push(Item::Text(Label {
        x: LEFT,
        y: 30.0,
        text: format!(
            "redis-ha simulate: {} mode, {} subscribers, {chaos}",
            s.mode.as_str(),
            s.subscribers
        ),
        size: 18.0,
        color: INK,
        anchor: Anchor::Start,
        bold: true,
        vertical: false,
    }));
    let c = &r.counts;
    items.push(text(
        LEFT,
        54.0,
        format!(
            "published {}, acknowledged {}, delivered {}, acknowledged but lost {}, \
             duplicates {}, out of order {}",
            c.published,
            c.acknowledged,
            c.delivered,
            c.acknowledged_lost,
            c.duplicates,
            c.out_of_order
        ),
        13.0,
        Anchor::Start,
    ));
    items.push(text(
        LEFT,
        74.0,
        r.verdict.text.clone(),
        12.0,
        Anchor::Start,
    ));

    // Horizontal grid and y labels.
    let mut v = 0.0;
    while v <= ymax + ystep / 2.0 {
        let y = sy(v);
        items.push(Item::Path {
            points: vec![(LEFT, y), (RIGHT, y)],
            color: GRID,
            width: 1.0,
        });
        items.push(text(LEFT - 8.0, y + 4.0, fmt_num(v), 11.0, Anchor::End));
        v += ystep;
    }

    let mut last_label_x = f64::NEG_INFINITY;
    let mut row = 0;
    for o in &r.outages {
        let x0 = sx(o.start_ms as f64 / 1000.0);
        let x1 = sx(o.end_ms.unwrap_or(r.duration_ms) as f64 / 1000.0);
        items.push(band((x0, x1), 1.5, BOTTOM - TOP, OUTAGE, 0.30));
        let cx = (x0 + x1) / 2.0;
        // Labels closer than their width alternate between two rows.
        row = if cx - last_label_x < 48.0 {
            (row + 1) % 2
        } else {
            0
        };
        last_label_x = cx;
        items.push(Item::Text(Label {
            x: cx,
            y: TOP + FAULT_STRIP + 26.0 + 13.0 * f64::from(row),
            text: format!("{:.2} s", o.duration_ms as f64 / 1000.0),
            size: 11.0,
            color: Rgb(166, 54, 3),
            anchor: Anchor::Middle,
            bold: true,
            vertical: false,
        }));
    }

    // Outage bands, full height; each fault as a strip along the top (node down or paused),
    // labelled.
    for f in &r.faults {
        let x0 = sx(f.injected_at_ms as f64 / 1000.0);
        let x1 = sx(f.restored_at_ms.unwrap_or(r.duration_ms) as f64 / 1000.0);
        items.push(band((x0, x1), 1.0, FAULT_STRIP, FAULT, 0.75));
        items.push(Item::Text(Label {
            x: x0 + 2.0,
            y: TOP + FAULT_STRIP + 11.0,
            text: format!("{} {}", f.fault.as_str(), f.node),
            size: 10.0,
            color: FAULT,
            anchor: Anchor::Start,
            bold: false,
            vertical: false,
        }));
    }
    // X ticks and labels.
    let mut x = 0.0;
    while x <= dur_s + 1e-9 {
        let px = sx(x);
        items.push(Item::Path {
            points: vec![(px, BOTTOM), (px, BOTTOM + 5.0)],
            color: INK,
            width: 1.0,
        });
        items.push(text(px, BOTTOM + 19.0, fmt_num(x), 11.0, Anchor::Middle));
        x += xstep;
    }

    // Series: one point per bucket, at its middle (the last one at the middle of its part).
    let points = |vals: &[f64]| -> Vec<(f64, f64)> {
        vals.iter()
            .enumerate()
            .map(|(i, &v)| {
                let start = i as f64 * bucket_s;
                let end = ((i + 1) as f64 * bucket_s).min(dur_s);
                (sx((start + end) / 2.0), sy(v))
            })
            .collect()
    };
    let mut legend: Vec<(String, Rgb, Key)> = Vec::new();
    for (i, sub) in t.subscribers.iter().enumerate() {
        let color = SUBSCRIBER_COLORS[i % SUBSCRIBER_COLORS.len()];
        items.push(Item::Path {
            points: points(sub),
            color,
            width: 1.0,
        });
        let name = r
            .subscribers
            .get(i)
            .map_or_else(|| format!("subscriber-{}", i + 1), |s| s.name.clone());
        legend.push((format!("{name} (received/s)"), color, Key::Line(1.0)));
    }
    // Wide under the publisher's line: the two coincide in steady state.
    items.push(Item::Path {
        points: points(&t.delivered_total),
        color: ALL_SUBSCRIBERS,
        width: 5.0,
    });
    items.push(Item::Path {
        points: points(&t.publisher_acknowledged),
        color: PUBLISHER,
        width: 2.0,
    });
    legend.insert(
        0,
        (
            "all subscribers (received/s)".into(),
            ALL_SUBSCRIBERS,
            Key::Line(5.0),
        ),
    );
    legend.insert(
        0,
        (
            "publisher (acknowledged/s)".into(),
            PUBLISHER,
            Key::Line(2.0),
        ),
    );
    legend.push(("fault: the master down / paused".into(), FAULT, Key::Strip));
    legend.push(("write outage (duration)".into(), OUTAGE, Key::Band));

    // Axes.
    items.push(Item::Path {
        points: vec![(LEFT, TOP), (LEFT, BOTTOM), (RIGHT, BOTTOM)],
        color: INK,
        width: 1.0,
    });
    items.push(text(
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 42.0,
        "seconds since the start of the run",
        13.0,
        Anchor::Middle,
    ));
    items.push(Item::Text(Label {
        x: 24.0,
        y: (TOP + BOTTOM) / 2.0,
        text: "messages per second".into(),
        size: 13.0,
        color: INK,
        anchor: Anchor::Middle,
        bold: false,
        vertical: true,
    }));

    // Legend, right of the plot.
    let lx = RIGHT + 22.0;
    for (i, (label, color, key)) in legend.iter().enumerate() {
        let y = TOP + 8.0 + 20.0 * i as f64;
        items.push(match key {
            Key::Band => Item::Rect {
                x: lx,
                y: y - 6.0,
                w: 22.0,
                h: 12.0,
                fill: *color,
                opacity: 0.45,
            },
            Key::Strip => Item::Rect {
                x: lx,
                y: y - 6.0,
                w: 22.0,
                h: FAULT_STRIP,
                fill: *color,
                opacity: 0.75,
            },
            Key::Line(width) => Item::Path {
                points: vec![(lx, y), (lx + 22.0, y)],
                color: *color,
                width: *width,
            },
        });
        items.push(text(lx + 30.0, y + 4.0, label.clone(), 12.0, Anchor::Start));
    }

    Chart {
        width: WIDTH as u32,
        height: HEIGHT as u32,
        items,
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart as an SVG document.
pub fn to_svg(c: &Chart) -> String {
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
        w = c.width,
        h = c.height
    );
    let rgb = |c: Rgb| format!("rgb({},{},{})", c.0, c.1, c.2);
    for item in &c.items {
        match item {
            Item::Rect {
                x,
                y,
                w,
                h,
                fill,
                opacity,
            } => out.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" \
                 fill=\"{}\" fill-opacity=\"{opacity}\"/>\n",
                rgb(*fill)
            )),
            Item::Path {
                points,
                color,
                width,
            } => {
                let pts: Vec<String> = points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                out.push_str(&format!(
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\" \
                     stroke-linejoin=\"round\"/>\n",
                    pts.join(" "),
                    rgb(*color)
                ));
            }
            Item::Text(label) => {
                let (x, y, size) = (label.x, label.y, label.size);
                let anchor = match label.anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let weight = if label.bold {
                    " font-weight=\"bold\""
                } else {
                    ""
                };
                let rotate = if label.vertical {
                    format!(" transform=\"rotate(-90 {x:.1} {y:.1})\"")
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" fill=\"{}\" \
                     text-anchor=\"{anchor}\"{weight}{rotate}>{}</text>\n",
                    rgb(label.color),
                    xml_escape(&label.text)
                ));
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Where common TrueType fonts live on Linux and macOS.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// The regular font to use: `explicit`, else the first common one present.
pub fn find_font(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => p.is_file().then(|| p.to_owned()),
        None => FONT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    }
}

/// The bold face beside a regular one, when the usual file name exists.
fn bold_beside(regular: &Path) -> Option<PathBuf> {
    let name = regular.file_name()?.to_str()?;
    let bold = if name.contains("-Regular") {
        name.replace("-Regular", "-Bold")
    } else {
        name.replace(".ttf", "-Bold.ttf")
            .replace("FreeSans-Bold", "FreeSansBold")
    };
    let p = regular.with_file_name(bold);
    p.is_file().then_some(p)
}

/// Registers the font with plotters, once per process; the result of the first call stays.
fn register_fonts(explicit: Option<&Path>) -> Result<PathBuf, String> {
    static REGISTERED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            use plotters::style::{register_font, FontStyle};
            let regular = find_font(explicit).ok_or_else(|| match explicit {
                Some(p) => format!("font file {} not found", p.display()),
                None => "no system font found (install fonts-dejavu-core or pass --plot-font)"
                    .to_owned(),
            })?;
            let load = |p: &Path| -> Result<&'static [u8], String> {
                std::fs::read(p)
                    .map(|b| &*Box::leak(b.into_boxed_slice()))
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            register_font("sans-serif", FontStyle::Normal, load(&regular)?)
                .map_err(|_| format!("{} is not a usable TrueType font", regular.display()))?;
            if let Some(b) = bold_beside(&regular) {
                if let Ok(bytes) = load(&b) {
                    // Without it bold text falls back to the regular face.
                    let _ = register_font("sans-serif", FontStyle::Bold, bytes);
                }
            }
            Ok(regular)
        })
        .clone()
}

/// Draws the chart into a PNG file. Returns a note when the text had to be left out.
pub fn write_png(c: &Chart, path: &Path, font: Option<&Path>) -> Result<Option<String>, PlotError> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    use plotters::style::FontStyle;

    let fail = |reason: String| PlotError::Write {
        path: path.display().to_string(),
        reason,
    };
    let font_state = register_fonts(font);
    let root = BitMapBackend::new(path, (c.width, c.height)).into_drawing_area();
    let px = |v: f64| v.round() as i32;
    for item in &c.items {
        let drawn = match item {
            Item::Rect {
                x,
                y,
                w,
                h,
                fill,
                opacity,
            } => root.draw(&Rectangle::new(
                [(px(*x), px(*y)), (px(x + w), px(y + h))],
                RGBColor(fill.0, fill.1, fill.2).mix(*opacity).filled(),
            )),
            Item::Path {
                points,
                color,
                width,
            } => root.draw(&PathElement::new(
                points
                    .iter()
                    .map(|&(x, y)| (px(x), px(y)))
                    .collect::<Vec<_>>(),
                ShapeStyle {
                    color: RGBColor(color.0, color.1, color.2).to_rgba(),
                    filled: false,
                    stroke_width: width.round().max(1.0) as u32,
                },
            )),
            Item::Text(label) => {
                if font_state.is_err() {
                    continue;
                }
                let hpos = match label.anchor {
                    Anchor::Start => HPos::Left,
                    Anchor::Middle => HPos::Center,
                    Anchor::End => HPos::Right,
                };
                let Rgb(r, g, b) = label.color;
                let mut desc = ("sans-serif", label.size).into_font();
                if label.bold {
                    desc = desc.style(FontStyle::Bold);
                }
                if label.vertical {
                    desc = desc.transform(FontTransform::Rotate270);
                }
                let style = desc
                    .color(&RGBColor(r, g, b))
                    .pos(Pos::new(hpos, VPos::Bottom));
                let at = (px(label.x), px(label.y));
                root.draw(&Text::new(label.text.clone(), at, style))
            }
        };
        drawn.map_err(|e| fail(e.to_string()))?;
    }
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(font_state
        .err()
        .map(|why| format!("{}: written without text: {why}", path.display())))
}

/// Writes the plot of `r` to `path`, SVG or PNG by its extension. Returns a note for the user
/// when the result is degraded (a PNG without text).
pub fn write(r: &Report, path: &Path, font: Option<&Path>) -> Result<Option<String>, PlotError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let c = chart(r);
    match ext.as_deref() {
        Some("svg") => std::fs::write(path, to_svg(&c))
            .map(|()| None)
            .map_err(|e| PlotError::Write {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        Some("png") => write_png(&c, path, font),
        _ => Err(PlotError::Format(path.display().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::Fault;
    use crate::simulate::publisher::{PublisherLog, RawOutage};
    use crate::simulate::report::Inputs;
    use crate::simulate::schedule::FaultRecord;
    use crate::simulate::subscriber::{Delivery, SubscriberLog};
    use crate::simulate::{Mode, Settings};

    /// 20 s at 100 messages/s, a kill at 5 s (restored at 9 s), no acknowledgement 5-8 s.
    fn report() -> Report {
        let acks: Vec<Option<u64>> = (0..2000u64)
            .map(|i| {
                let t = i * 10;
                (!(5000..8000).contains(&t)).then_some(t)
            })
            .collect();
        let publ = PublisherLog {
            first_push_ms: (0..2000).map(|i| i * 10).collect(),
            ack_ms: acks.clone(),
            pushes: 2000,
            outages: vec![RawOutage {
                start_ms: 4990,
                first_error_ms: 5001,
                first_error: "RPUSH: broken pipe".into(),
                end_ms: Some(8000),
            }],
            ..PublisherLog::default()
        };
        let subs: Vec<SubscriberLog> = (0..3)
            .map(|k| SubscriberLog {
                name: format!("subscriber-{}", k + 1),
                deliveries: acks
                    .iter()
                    .enumerate()
                    .filter(|(i, a)| a.is_some() && i % 3 == k)
                    .map(|(i, a)| Delivery {
                        seq: i as u64 + 1,
                        at_ms: a.unwrap_or(0) + 2,
                        recovered: false,
                    })
                    .collect(),
                ..SubscriberLog::default()
            })
            .collect();
        Report::build(Inputs {
            settings: Settings {
                mode: Mode::Fast,
                ..Settings::example()
            },
            started_at_ms: 0,
            duration_ms: 20_000,
            interrupted: false,
            publisher: &publ,
            subscribers: &subs,
            faults: vec![FaultRecord {
                round: 1,
                fault: Fault::Kill,
                node: "node-1".into(),
                address: "127.0.0.1:9001".into(),
                injected_at_ms: 5000,
                failover_at_ms: Some(7000),
                new_master: Some("node-2".into()),
                restored_at_ms: Some(9000),
            }],
            chaos_errors: vec![],
            left_in_list: Some(0),
            left_in_processing: Some(0),
        })
    }

    #[test]
    fn the_chart_shows_series_faults_and_outages() {
        let c = chart(&report());
        let texts: Vec<&str> = c
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Text(label) => Some(label.text.as_str()),
                _ => None,
            })
            .collect();
        assert!(texts.contains(&"kill node-1"), "{texts:?}");
        assert!(texts.contains(&"3.01 s"), "{texts:?}");
        assert!(
            texts.iter().any(|t| t.starts_with("published 2000")),
            "{texts:?}"
        );
        // Publisher, all subscribers, 3 subscribers: one point per second each.
        let series: Vec<usize> = c
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Path { points, .. } if points.len() > 3 => Some(points.len()),
                _ => None,
            })
            .collect();
        assert_eq!(series, vec![20; 5]);
        // Everything inside the canvas.
        for i in &c.items {
            if let Item::Path { points, .. } = i {
                for &(x, y) in points {
                    assert!((0.0..=WIDTH).contains(&x) && (0.0..=HEIGHT).contains(&y));
                }
            }
        }
        let svg = to_svg(&c);
        assert!(svg.contains(">kill node-1</text>"));
    }

    #[test]
    fn svg_and_png_files_are_written() {
        let dir = std::env::temp_dir().join(format!("redis-ha-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = report();
        assert_eq!(write(&r, &dir.join("a.svg"), None).unwrap(), None);
        let svg = std::fs::read_to_string(dir.join("a.svg")).unwrap();
        assert!(svg.starts_with("<svg"));
        let note = write(&r, &dir.join("a.PNG"), None).unwrap();
        let png = std::fs::read(dir.join("a.PNG")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // A note only when no font could be found.
        assert_eq!(note.is_some(), find_font(None).is_none());
        assert!(matches!(
            write(&r, &dir.join("a.txt"), None),
            Err(PlotError::Format(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(100.0, 10.0), 10.0);
        assert_eq!(nice_step(1100.0, 6.0), 200.0);
        assert_eq!(nice_step(37.0, 10.0), 5.0);
        assert_eq!(nice_step(0.7, 10.0), 0.1);
        assert_eq!(fmt_num(2000.0), "2k");
        assert_eq!(fmt_num(250.0), "250");
        assert_eq!(fmt_num(0.5), "0.5");
    }

    #[test]
    fn text_is_escaped() {
        let c = Chart {
            width: 10,
            height: 10,
            items: vec![text(1.0, 2.0, "a<b & \"c\"", 10.0, Anchor::Start)],
        };
        let svg = to_svg(&c);
        assert!(svg.contains(">a&lt;b &amp; &quot;c&quot;</text>"), "{svg}");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn bold_faces_are_found_by_name() {
        let dir = std::env::temp_dir().join(format!("redis-ha-font-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("DejaVuSans.ttf"), b"x").unwrap();
        std::fs::write(dir.join("DejaVuSans-Bold.ttf"), b"x").unwrap();
        assert_eq!(
            bold_beside(&dir.join("DejaVuSans.ttf")),
            Some(dir.join("DejaVuSans-Bold.ttf"))
        );
        assert_eq!(bold_beside(&dir.join("LiberationSans-Regular.ttf")), None);
        assert_eq!(find_font(Some(&dir.join("nope.ttf"))), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
