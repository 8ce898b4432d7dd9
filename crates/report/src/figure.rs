//! The figures, drawn with plotters once per backend: SVG (inlined in the page and written
//! as a file) and PNG (written when asked).
//!
//! Text needs a TrueType font for its layout (plotters' `ab_glyph` backend, no fontconfig):
//! [`load_font`] reads one from `--font` or the usual system places.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use asdic_fs::Dir;
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::Stage;
use crate::error::{Error, Result};
use crate::section::{PrefixMap, Section, Series};
use crate::text;

/// The font family the figures use (registered by [`load_font`]).
const FAMILY: &str = "sans-serif";

/// Where Debian, Fedora, Arch and Alpine put a sans-serif TrueType font.
const FONT_PLACES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
];

static FONT: OnceLock<PathBuf> = OnceLock::new();

/// Registers the figures' font: `path`, else the first of [`FONT_PLACES`] that exists, else
/// the first `*.ttf` under `/usr/share/fonts`. Once per process; later calls keep the first.
///
/// # Errors
/// [`Error::Font`] saying what to install when there is none, or that `path` is no font.
pub fn load_font(path: Option<&Path>) -> Result<&'static Path> {
    if let Some(p) = FONT.get() {
        return Ok(p);
    }
    let found = match path {
        Some(p) => p.to_path_buf(),
        None => FONT_PLACES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| find_ttf(Path::new("/usr/share/fonts"), 4))
            .ok_or_else(|| {
                Error::Font(
                    "no TrueType font for the figures' text: install one (Debian: apt-get install \
                     fonts-dejavu-core) or pass --font FILE.ttf"
                        .into(),
                )
            })?,
    };
    let bytes = std::fs::read(&found).map_err(|e| Error::file(&found, e))?;
    // plotters keeps registered fonts for the life of the process: the bytes are leaked
    // once (a few hundred KiB), guarded by FONT.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| {
        Error::Font(format!(
            "{}: not a TrueType/OpenType font (--font)",
            found.display()
        ))
    })?;
    Ok(FONT.get_or_init(|| found))
}

fn find_ttf(dir: &Path, depth: u32) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let ttf = |p: &PathBuf| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf"));
    if let Some(p) = entries
        .iter()
        .find(|p| ttf(p) && p.to_string_lossy().contains("Sans"))
        .or_else(|| entries.iter().find(|p| ttf(p)))
    {
        return Some(p.clone());
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|p| p.is_dir())
        .find_map(|p| find_ttf(p, depth - 1))
}

/// What a figure shows, which decides where the page puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RTT histogram or CDF.
    Rtt,
    /// A scan's per-prefix hit map.
    HitMap,
    /// A target's latency over time.
    Latency,
    /// ICMP errors by type and code.
    Errors,
}

/// One drawn figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What it shows.
    pub kind: Kind,
    /// File stem, unique in the report (`s0-scan-rtt-histogram`).
    pub id: String,
    /// Heading.
    pub title: String,
    /// What it shows, one or two sentences.
    pub caption: String,
    /// The SVG document.
    pub svg: String,
    /// The files written (`.svg`, and `.png` when asked).
    pub files: Vec<PathBuf>,
}

/// Something that can draw itself on any backend.
trait Plot {
    fn size(&self) -> (u32, u32);
    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

fn msg<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draws `p` to SVG (kept and written to `dir/id.svg`) and, with `png`, to `dir/id.png`
/// (rendered and encoded in memory), each staged in `stage` (published when the whole report
/// is written).
fn render(
    p: &impl Plot,
    dir: &Dir,
    id: &str,
    png: bool,
    stage: &mut Stage,
) -> Result<(String, Vec<PathBuf>)> {
    let draw_err = |what: String| Error::Draw {
        figure: id.to_string(),
        what,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, p.size()).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(msg(e)))?;
        p.plot(&root).map_err(draw_err)?;
        root.present().map_err(|e| draw_err(msg(e)))?;
    }
    let svg_name = format!("{id}.svg");
    let mut files = vec![stage.write(dir, svg_name.as_ref(), svg.as_bytes())?];
    if png {
        let (w, h) = p.size();
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| draw_err(msg(e)))?;
            p.plot(&root).map_err(draw_err)?;
            root.present().map_err(|e| draw_err(msg(e)))?;
        }
        let mut encoded = vec![];
        image::codecs::png::PngEncoder::new(&mut encoded)
            .write_image(&rgb, w, h, image::ColorType::Rgb8)
            .map_err(|e| draw_err(msg(e)))?;
        let png_name = format!("{id}.png");
        files.push(stage.write(dir, png_name.as_ref(), &encoded)?);
    }
    Ok((svg, files))
}

/// Draws `p` as figure `id` (see [`render`]).
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per figure kind, all alike"
)]
fn figure(
    p: &impl Plot,
    kind: Kind,
    id: String,
    title: String,
    caption: String,
    dir: &Dir,
    png: bool,
    stage: &mut Stage,
) -> Result<Figure> {
    let (svg, files) = render(p, dir, &id, png, stage)?;
    Ok(Figure {
        kind,
        id,
        title,
        caption,
        svg,
        files,
    })
}

/// Draws every figure of section number `i` into `dir`.
///
/// # Errors
/// [`Error::Draw`] or [`Error::File`] naming the figure.
pub(crate) fn draw_section(
    s: &Section,
    i: usize,
    dir: &Dir,
    png: bool,
    stage: &mut Stage,
) -> Result<Vec<Figure>> {
    let mut out = vec![];
    let mode = s.mode.name();
    if s.rtt.count() > 0 {
        out.push(figure(
            &RttHist { s },
            Kind::Rtt,
            format!("s{i}-{mode}-rtt-histogram"),
            "RTT distribution: histogram".into(),
            format!(
                "Histogram of {} RTTs ({} samples, one per {}), 60 bins on a log scale.",
                mode,
                text::count(s.rtt.count()),
                s.rtt_basis
            ),
            dir,
            png,
            stage,
        )?);
        out.push(figure(
            &RttCdf { s },
            Kind::Rtt,
            format!("s{i}-{mode}-rtt-cdf"),
            "RTT distribution: CDF".into(),
            "Share of samples at or below each RTT (log scale), with the 50th, 90th and 99th \
             percentiles marked."
                .into(),
            dir,
            png,
            stage,
        )?);
    }
    // A map per family: a mixed scan shows both.
    for map in s.prefixes.iter().filter(|m| !m.cells.is_empty()) {
        let (family, suffix) = if map.v6 {
            ("IPv6", "-v6")
        } else {
            ("IPv4", "")
        };
        out.push(figure(
            &HitMap { map },
            Kind::HitMap,
            format!("s{i}-{mode}-hit-map{suffix}"),
            format!("Hit rate per {family} /{} prefix", map.bits),
            if map.exact {
                "Each cell is one prefix, in address order; its colour is the share of probed \
                 targets that answered."
                    .into()
            } else if map.cells.iter().any(|c| c.size.is_none()) {
                "Each cell is one prefix, in address order; its colour is its number of answering \
                 addresses relative to the busiest prefix (the file has hits only)."
                    .into()
            } else {
                "Each cell is one prefix, in address order; its colour is the share of its \
                 addresses that answered (the file has hits only: run with --all-events for \
                 rates over the targets actually probed)."
                    .into()
            },
            dir,
            png,
            stage,
        )?);
    }
    for (k, series) in s.series.iter().enumerate() {
        let who = match &series.name {
            Some(n) => format!("{} ({n})", series.target),
            None => series.target.to_string(),
        };
        out.push(figure(
            &Smoke { series },
            Kind::Latency,
            format!("s{i}-{mode}-latency-{k:03}"),
            format!("Latency over time: {who}"),
            format!(
                "{} rounds in {} bins of {:.1} s, over UTC clock time: median RTT line coloured by \
                 the bin's loss, the middle half of its RTTs shaded dark and the full range \
                 light; bins with every probe lost are red bands. Loss over the run: {:.2} %.",
                series.rounds,
                series.buckets.len(),
                series.width,
                series.loss_pct
            ),
            dir,
            png,
            stage,
        )?);
    }
    if !s.errors.is_empty() {
        out.push(figure(
            &ErrorBars { s },
            Kind::Errors,
            format!("s{i}-{mode}-icmp-errors"),
            "ICMP errors by type and code".into(),
            "Errors received, by IANA type/code name, most first.".into(),
            dir,
            png,
            stage,
        )?);
    }
    Ok(out)
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

const BAR: RGBColor = RGBColor(0x3b, 0x6e, 0xa8);

struct RttHist<'a> {
    s: &'a Section,
}

impl Plot for RttHist<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 340)
    }

    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let bins = self.s.rtt.coarse(60);
        let (lo, hi) = (bins[0].0, bins[bins.len() - 1].1);
        // Counts on an integer axis: whole-number ticks, each once (0, 1, 2, not 0, 0, 1, 1).
        let top = (bins.iter().map(|b| b.2).max().unwrap_or(1) as f64 * 1.1).ceil() as u64;
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (lo..hi)
                    .log_scale()
                    .with_key_points(text::rtt_ticks(lo, hi)),
                0u64..top.max(1),
            )
            .map_err(msg)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(format!("RTT ({})", self.s.rtt_basis))
            .y_desc("samples")
            .x_label_formatter(&|v| text::rtt_tick(*v))
            .y_label_formatter(&|v| text::count(*v))
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .draw()
            .map_err(msg)?;
        chart
            .draw_series(
                bins.iter()
                    .filter(|b| b.2 > 0)
                    .map(|&(a, b, c)| Rectangle::new([(a, 0), (b, c)], BAR.filled())),
            )
            .map_err(msg)?;
        Ok(())
    }
}

struct RttCdf<'a> {
    s: &'a Section,
}

impl Plot for RttCdf<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 340)
    }

    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let h = &self.s.rtt;
        let n = h.count().max(1) as f64;
        let (lo, hi) = (h.min().unwrap_or(1.0).max(0.1), h.max().unwrap_or(1.0));
        let (lo, hi) = (lo, hi.max(lo * 1.01));
        let mut pts = vec![(lo, 0.0)];
        let mut seen = 0u64;
        for (_, b, c) in h.bins() {
            seen += c;
            pts.push((b.clamp(lo, hi), seen as f64 / n));
        }
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (lo..hi)
                    .log_scale()
                    .with_key_points(text::rtt_ticks(lo, hi)),
                0f64..1.0,
            )
            .map_err(msg)?;
        chart
            .configure_mesh()
            .x_desc(format!("RTT ({})", self.s.rtt_basis))
            .y_desc("share of samples ≤ RTT")
            .x_label_formatter(&|v| text::rtt_tick(*v))
            .y_label_formatter(&|v| format!("{:.0} %", v * 100.0))
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .draw()
            .map_err(msg)?;
        chart
            .draw_series(LineSeries::new(pts, BAR.stroke_width(2)))
            .map_err(msg)?;
        let marks = [
            ("p50", self.s.summary.p50),
            ("p90", self.s.summary.p90),
            ("p99", self.s.summary.p99),
        ];
        for (label, v) in marks {
            let Some(v) = v else { continue };
            let v = v.clamp(lo, hi);
            // Labels near the right edge go to the left of their line.
            let right = (v / lo).ln() > 0.8 * (hi / lo).ln();
            let at = if right { v / (hi / lo).powf(0.11) } else { v };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(v, 0.0), (v, 1.0)],
                    RGBColor(0xc0, 0x39, 0x2b).stroke_width(1),
                )))
                .map_err(msg)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{label} {}", text::rtt(v)),
                    (at, 0.08),
                    font(12.0).color(&RGBColor(0xc0, 0x39, 0x2b)),
                )))
                .map_err(msg)?;
        }
        Ok(())
    }
}

/// SmokePing's loss colours: none, up to 5, 10, 20, 50 %, more.
pub const LOSS_COLOURS: [(f64, RGBColor); 6] = [
    (0.0, RGBColor(0x1a, 0x9b, 0x2a)),
    (5.0, RGBColor(0x00, 0xa0, 0xe0)),
    (10.0, RGBColor(0x20, 0x50, 0xe0)),
    (20.0, RGBColor(0x70, 0x20, 0xe0)),
    (50.0, RGBColor(0xd0, 0x20, 0xc0)),
    (100.0, RGBColor(0xe0, 0x10, 0x10)),
];

/// The colour for a loss percentage.
pub fn loss_colour(pct: f64) -> RGBColor {
    LOSS_COLOURS
        .iter()
        .find(|(limit, _)| pct <= *limit)
        .map_or(LOSS_COLOURS[5].1, |c| c.1)
}

struct Smoke<'a> {
    series: &'a Series,
}

/// `secs` after `start_ns` as a UTC clock time, "HH:MM:SS".
fn clock(start_ns: u64, secs: f64) -> String {
    let t = start_ns.saturating_add((secs.max(0.0) * 1e9) as u64);
    text::utc(t)
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

impl Plot for Smoke<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 260)
    }

    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let b = &self.series.buckets;
        let w = self.series.width;
        let t0 = b.first().map_or(0.0, |x| x.t);
        let t1 = b.last().map_or(1.0, |x| x.t + w).max(t0 + w);
        // Scale to the medians, as SmokePing does, so one outlier does not flatten the graph;
        // ranges above the top are cut.
        let top_median = b
            .iter()
            .filter_map(|x| x.rtt.map(|r| r[2]))
            .fold(0.0, f64::max);
        let top_max = b
            .iter()
            .filter_map(|x| x.rtt.map(|r| r[4]))
            .fold(0.0, f64::max);
        let top = top_max.min(top_median * 3.0).max(top_median * 1.2).max(1.0);
        let (area, legend) = root.split_vertically(230);
        let mut chart = ChartBuilder::on(&area)
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(t0..t1, 0f64..top)
            .map_err(msg)?;
        chart
            .configure_mesh()
            .x_desc("time (UTC)")
            .y_desc("RTT")
            .x_labels(6)
            .x_label_formatter(&|v| clock(self.series.start_ns, *v))
            .y_label_formatter(&|v| text::rtt_tick(*v))
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .draw()
            .map_err(msg)?;
        let light = RGBColor(0xcc, 0xcc, 0xcc);
        let dark = RGBColor(0x88, 0x88, 0x88);
        for x in b {
            let (a, z) = (x.t, x.t + w);
            match x.rtt {
                Some([lo, q1, med, q3, hi]) => {
                    let c = |v: f64| v.min(top);
                    chart
                        .draw_series([
                            Rectangle::new([(a, c(lo)), (z, c(hi))], light.filled()),
                            Rectangle::new([(a, c(q1)), (z, c(q3))], dark.filled()),
                        ])
                        .map_err(msg)?;
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(a, c(med)), (z, c(med))],
                            loss_colour(x.loss_pct()).stroke_width(3),
                        )))
                        .map_err(msg)?;
                }
                None => {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(a, 0.0), (z, top)],
                            RGBColor(0xe0, 0x10, 0x10).mix(0.35).filled(),
                        )))
                        .map_err(msg)?;
                }
            }
        }
        if b.iter().all(|x| x.rtt.is_none()) {
            chart
                .draw_series(std::iter::once(Text::new(
                    "no replies: every probe was lost",
                    (t0 + (t1 - t0) * 0.38, top * 0.6),
                    font(15.0),
                )))
                .map_err(msg)?;
        }
        // Legend: the loss colours.
        let mut x = 90;
        legend
            .draw(&Text::new("median coloured by loss:", (x, 8), font(12.0)))
            .map_err(msg)?;
        x += 160;
        let labels = ["0", "≤5 %", "≤10 %", "≤20 %", "≤50 %", ">50 %"];
        for ((_, c), l) in LOSS_COLOURS.iter().zip(labels) {
            legend
                .draw(&Rectangle::new([(x, 10), (x + 18, 18)], c.filled()))
                .map_err(msg)?;
            legend
                .draw(&Text::new(l, (x + 22, 8), font(12.0)))
                .map_err(msg)?;
            x += 80;
        }
        Ok(())
    }
}

/// Colour of a hit rate from 0 (pale) to 1 (dark blue).
fn rate_colour(r: f64) -> RGBColor {
    let stops = [
        (0.0, (0xf4, 0xf1, 0xde)),
        (0.25, (0xc6, 0xdb, 0xef)),
        (0.5, (0x6b, 0xae, 0xd6)),
        (0.75, (0x21, 0x71, 0xb5)),
        (1.0, (0x08, 0x30, 0x6b)),
    ];
    let r = r.clamp(0.0, 1.0);
    for w in stops.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if r <= b {
            let f = (r - a) / (b - a);
            let mix =
                |x: u8, y: u8| (f64::from(x) + f * (f64::from(y) - f64::from(x))).round() as u8;
            return RGBColor(mix(ca.0, cb.0), mix(ca.1, cb.1), mix(ca.2, cb.2));
        }
    }
    RGBColor(0x08, 0x30, 0x6b)
}

struct HitMap<'a> {
    map: &'a PrefixMap,
}

impl HitMap<'_> {
    fn cols(&self) -> usize {
        if self.map.cells.len() <= 1024 { 32 } else { 64 }
    }

    fn cell(&self) -> u32 {
        if self.map.cells.len() <= 1024 { 22 } else { 12 }
    }

    fn rows(&self) -> usize {
        self.map.cells.len().div_ceil(self.cols())
    }
}

const MAP_LEFT: u32 = 170;

impl Plot for HitMap<'_> {
    fn size(&self) -> (u32, u32) {
        let w = MAP_LEFT + self.cols() as u32 * self.cell() + 20;
        (w.max(900), 20 + self.rows() as u32 * self.cell() + 60)
    }

    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let cell = self.cell() as i32;
        let cols = self.cols();
        let busiest = self
            .map
            .cells
            .iter()
            .map(|c| c.hits)
            .max()
            .unwrap_or(1)
            .max(1);
        for (k, c) in self.map.cells.iter().enumerate() {
            let (row, col) = ((k / cols) as i32, (k % cols) as i32);
            let x = MAP_LEFT as i32 + col * cell;
            let y = 20 + row * cell;
            let r = c.rate().unwrap_or(c.hits as f64 / busiest as f64);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell - 1, y + cell - 1)],
                rate_colour(r).filled(),
            ))
            .map_err(msg)?;
            if col == 0 {
                root.draw(&Text::new(
                    c.prefix.clone(),
                    (8, y + cell / 2 - 7),
                    font(12.0),
                ))
                .map_err(msg)?;
            }
        }
        // Scale.
        let y = 20 + self.rows() as i32 * cell + 16;
        root.draw(&Text::new("hit rate", (8, y + 2), font(12.0)))
            .map_err(msg)?;
        for k in 0..=20 {
            let r = f64::from(k) / 20.0;
            let x = MAP_LEFT as i32 + k * 16;
            root.draw(&Rectangle::new(
                [(x, y), (x + 15, y + 14)],
                rate_colour(r).filled(),
            ))
            .map_err(msg)?;
        }
        root.draw(&Text::new("0 %", (MAP_LEFT as i32, y + 18), font(11.0)))
            .map_err(msg)?;
        root.draw(&Text::new(
            "100 %",
            (MAP_LEFT as i32 + 20 * 16 - 10, y + 18),
            font(11.0),
        ))
        .map_err(msg)?;
        Ok(())
    }
}

struct ErrorBars<'a> {
    s: &'a Section,
}

const ERROR_BARS: usize = 12;

impl Plot for ErrorBars<'_> {
    fn size(&self) -> (u32, u32) {
        (
            900,
            20 + self.s.errors.len().min(ERROR_BARS) as u32 * 30 + 10,
        )
    }

    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let rows = &self.s.errors[..self.s.errors.len().min(ERROR_BARS)];
        let most = rows.iter().map(|r| r.count).max().unwrap_or(1).max(1) as f64;
        let (left, width) = (430, 360.0);
        for (k, r) in rows.iter().enumerate() {
            let y = 14 + k as i32 * 30;
            let fam = if r.v6 { "ICMPv6" } else { "ICMPv4" };
            let label = format!("{fam} {}/{} {}", r.icmp_type, r.icmp_code, r.name);
            let label: String = if label.chars().count() > 62 {
                label.chars().take(61).chain(['…']).collect()
            } else {
                label
            };
            root.draw(&Text::new(label, (8, y + 4), font(12.0)))
                .map_err(msg)?;
            let w = ((r.count as f64 / most) * width).max(2.0) as i32;
            root.draw(&Rectangle::new(
                [(left, y), (left + w, y + 20)],
                BAR.filled(),
            ))
            .map_err(msg)?;
            root.draw(&Text::new(
                text::count(r.count),
                (left + w + 6, y + 4),
                font(12.0),
            ))
            .map_err(msg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;

    #[test]
    fn loss_colours_follow_the_thresholds() {
        assert_eq!(loss_colour(0.0), LOSS_COLOURS[0].1);
        assert_eq!(loss_colour(3.0), LOSS_COLOURS[1].1);
        assert_eq!(loss_colour(10.0), LOSS_COLOURS[2].1);
        assert_eq!(loss_colour(60.0), LOSS_COLOURS[5].1);
        assert_eq!(loss_colour(100.0), LOSS_COLOURS[5].1);
    }

    #[test]
    fn rate_colours_run_from_pale_to_dark() {
        assert_eq!(rate_colour(0.0), RGBColor(0xf4, 0xf1, 0xde));
        assert_eq!(rate_colour(1.0), RGBColor(0x08, 0x30, 0x6b));
        assert_eq!(rate_colour(2.0), rate_colour(1.0));
        let mid = rate_colour(0.5);
        assert_eq!(mid, RGBColor(0x6b, 0xae, 0xd6));
    }

    /// The text of every `<text>` element of `p` drawn as SVG.
    fn svg_texts(p: &impl Plot) -> Vec<String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, p.size()).into_drawing_area();
            p.plot(&root).unwrap();
            root.present().unwrap();
        }
        svg.split("<text")
            .skip(1)
            .filter_map(|t| t.split_once('>').and_then(|(_, r)| r.split_once("</text>")))
            .map(|(text, _)| text.replace("&#181;", "µ").trim().to_string())
            .collect()
    }

    fn section_of(rtts_us: &[f64]) -> Section {
        let mut rtt = crate::hist::LogHist::new();
        for &r in rtts_us {
            rtt.add(r);
        }
        Section {
            mode: Mode::Trace,
            files: vec![],
            rows: 0,
            summary: Default::default(),
            rtt,
            rtt_basis: "answer of any hop",
            targets: vec![],
            targets_total: 0,
            errors: vec![],
            prefixes: vec![],
            series: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn axes_are_readable_microseconds_labelled_counts_in_whole_numbers() {
        if load_font(None).is_err() {
            return; // no font to measure text with: nothing is drawn
        }
        // A trace's few answers, 12 µs to 700 µs: the old axis read "400.0 µs500.0 µs…" with
        // nothing below 100 µs, and counts 0, 0, 1, 1, 2, 2, 3.
        let s = section_of(&[12.0, 15.0, 40.0, 41.0, 42.0, 90.0, 300.0, 700.0]);
        let texts = svg_texts(&RttHist { s: &s });
        let x: Vec<&String> = texts
            .iter()
            .filter(|t| t.ends_with("µs") || t.ends_with(" ms"))
            .collect();
        assert!(
            x.iter().any(|t| *t == "20 µs") && x.iter().any(|t| *t == "500 µs"),
            "{texts:?}"
        );
        assert!(x.len() <= 8, "{x:?}");
        let mut uniq = x.clone();
        uniq.dedup();
        assert_eq!(uniq.len(), x.len(), "a label twice: {x:?}");
        // The count axis: whole numbers, each once.
        let counts: Vec<&String> = texts
            .iter()
            .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == ','))
            .collect();
        assert!(counts.len() >= 2, "{texts:?}");
        let mut seen = counts.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), counts.len(), "a count label twice: {counts:?}");
        let cdf = svg_texts(&RttCdf { s: &s });
        assert!(cdf.iter().any(|t| t == "20 µs"), "{cdf:?}");
    }

    #[test]
    fn ticks_are_few_whole_and_never_repeat() {
        assert_eq!(
            text::rtt_ticks(12.0, 700.0),
            [20.0, 50.0, 100.0, 200.0, 500.0]
        );
        let wide = text::rtt_ticks(1.0, 1e7);
        assert_eq!(wide, [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7]);
        assert_eq!(text::rtt_tick(50.0), "50 µs");
        assert_eq!(text::rtt_tick(2500.0), "2.5 ms");
        assert_eq!(text::rtt_tick(1e6), "1 s");
    }

    #[test]
    fn fonts_are_found_or_the_error_says_what_to_install() {
        match load_font(None) {
            Ok(p) => assert!(p.is_file()),
            Err(e) => assert!(e.to_string().contains("fonts-dejavu-core"), "{e}"),
        }
    }
}
