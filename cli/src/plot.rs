//! Plots of benchmark results (plotters): time against group size, one chart per event,
//! one line per module combination, in the style of Figure 4 of the Secure Spread paper.

use std::path::{Path, PathBuf};

use conclave_benches::keys::Row;
use plotters::{
    coord::Shift,
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

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    lines: &[(String, Vec<(usize, f64)>)],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let max_n = lines
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.0))
        .max()
        .unwrap_or(2);
    let max_t = lines
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(0usize..max_n + 1, 0.0..max_t)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("group size (members)")
        .y_desc("time to the last member's key (ms)")
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
        .map_err(err)?;
    root.present().map_err(err)
}

/// Writes `DIR/EVENT.svg` and `DIR/EVENT.png` for every event in `rows`; returns the files.
pub fn time_against_size(dir: &Path, rows: &[Row]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    register()?;
    let mut written = Vec::new();
    for (event, by_combo) in crate::bench::by_event(rows) {
        let lines: Vec<(String, Vec<(usize, f64)>)> = by_combo.into_iter().collect();
        let title = format!("{}: time against group size", event.name());
        let svg = dir.join(format!("{}.svg", event.name()));
        draw(
            SVGBackend::new(&svg, (900, 600)).into_drawing_area(),
            &title,
            &lines,
        )?;
        let png = dir.join(format!("{}.png", event.name()));
        draw(
            BitMapBackend::new(&png, (900, 600)).into_drawing_area(),
            &title,
            &lines,
        )?;
        written.push(svg);
        written.push(png);
    }
    Ok(written)
}
