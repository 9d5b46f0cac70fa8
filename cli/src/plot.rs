//! Plots of benchmark results (plotters): time against group size, one chart per event,
//! one line per module combination, in the style of Figure 4 of the Secure Spread paper.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use conclave_benches::keys::Row;
use plotters::{
    coord::{Shift, ranged1d::ValueFormatter},
    prelude::*,
    style::{FontStyle, register_font},
};

/// Fonts tried for the PNG charts (SVG leaves text to the viewer).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn register() -> Result<(), String> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let bytes = FONTS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| {
                format!(
                    "no font for PNG charts (install fonts-dejavu-core; looked in {})",
                    FONTS.join(", ")
                )
            })?;
        // plotters keeps registered fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the chart font cannot be loaded".to_string())
    })
    .clone()
}

/// How the axes are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear axes from zero.
    Linear,
    /// Logarithmic size and time axes (for sizes from a few to thousands).
    Log,
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    lines: &[(String, Vec<(f64, f64)>)],
    scale: Scale,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let points = || lines.iter().flat_map(|(_, v)| v.iter().copied());
    let max_n = points().map(|p| p.0).fold(2.0f64, f64::max);
    let max_t = points().map(|p| p.1).fold(0.0f64, f64::max).max(0.001) * 1.1;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64);
    match scale {
        Scale::Linear => {
            let chart = builder
                .build_cartesian_2d(0.0..max_n + 1.0, 0.0..max_t)
                .map_err(err)?;
            fill(chart, lines, "")
        }
        Scale::Log => {
            let min_n = points().map(|p| p.0).fold(max_n, f64::min).max(1.0);
            let min_t = points()
                .map(|p| p.1)
                .filter(|t| *t > 0.0)
                .fold(max_t, f64::min)
                / 1.5;
            let chart = builder
                .build_cartesian_2d(
                    (min_n * 0.8..max_n * 1.25).log_scale(),
                    (min_t.max(1e-3)..max_t * 1.5).log_scale(),
                )
                .map_err(err)?;
            fill(chart, lines, ", log scale")
        }
    }?;
    root.present().map_err(err)
}

/// The mesh, the lines and the legend of a chart on either scale.
fn fill<'a, DB, X, Y>(
    mut chart: ChartContext<'a, DB, Cartesian2d<X, Y>>,
    lines: &[(String, Vec<(f64, f64)>)],
    axis_note: &str,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    chart
        .configure_mesh()
        .x_desc(format!("group size (members){axis_note}"))
        .x_labels(8)
        .x_label_formatter(&|n| format!("{n:.0}"))
        .y_desc(format!("time to the last member's key (ms){axis_note}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    for (i, (label, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)
}

/// The lines of one chart: a label per module combination, its `(size, ms)` points.
pub type Lines = BTreeMap<String, Vec<(usize, f64)>>;

/// Writes `DIR/EVENT.svg` and `DIR/EVENT.png` for every event in `rows`; returns the files.
pub fn time_against_size(dir: &Path, rows: &[Row], scale: Scale) -> Result<Vec<PathBuf>, String> {
    let by_event = crate::bench::by_event(rows)
        .into_iter()
        .map(|(event, lines)| (event.name().to_string(), lines))
        .collect();
    charts(dir, by_event, scale)
}

/// Writes `DIR/EVENT.svg` and `DIR/EVENT.png` for every event of `by_event` (event name
/// to its lines); returns the files.
pub fn charts(
    dir: &Path,
    by_event: BTreeMap<String, Lines>,
    scale: Scale,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    register()?;
    let mut written = Vec::new();
    for (event, by_combo) in by_event {
        let lines: Vec<(String, Vec<(f64, f64)>)> = by_combo
            .into_iter()
            .map(|(label, mut points)| {
                points.sort_by_key(|p| p.0);
                let points = points.into_iter().map(|(n, t)| (n as f64, t)).collect();
                (label, points)
            })
            .collect();
        let title = format!("{event}: time against group size");
        let svg = dir.join(format!("{event}.svg"));
        draw(
            SVGBackend::new(&svg, (900, 600)).into_drawing_area(),
            &title,
            &lines,
            scale,
        )?;
        let png = dir.join(format!("{event}.png"));
        draw(
            BitMapBackend::new(&png, (900, 600)).into_drawing_area(),
            &title,
            &lines,
            scale,
        )?;
        written.push(svg);
        written.push(png);
    }
    Ok(written)
}
