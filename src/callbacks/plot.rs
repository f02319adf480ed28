//! [`History::plot`]: learning curves as PNG or SVG (cargo feature `plot`, on by default).
//!
//! Drawn with `plotters`; text uses DejaVu Sans, bundled in the crate (`assets/fonts/`, Bitstream Vera
//! licence) and registered with plotters' `ab_glyph` backend, so no system font library is needed.
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::History;
use crate::{Error, Result};

/// DejaVu Sans 2.37 (see `assets/fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Matplotlib's first colours, so the charts look like the Keras tutorial's.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

const SIZE: (u32, u32) = (800, 500);

/// Registers the bundled font as plotters' `sans-serif`, once per process.
fn register_bundled_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err(Error::NotReady("the bundled plot font could not be parsed".into()))
    }
}

/// What to draw: one curve per metric, with its epochs (1-based) and finite values.
struct Curve<'h> {
    name: &'h str,
    points: Vec<(i32, f64)>,
}

impl History {
    /// Draws the per-epoch values of `metrics` (e.g. `&["accuracy", "val_accuracy"]`) as a line chart and
    /// writes it to `path`, a PNG or an SVG by its extension (`.png` or `.svg`). An empty `metrics` draws every
    /// recorded key.
    ///
    /// The chart has a title, axis labels, a legend naming each curve, and epochs on the x axis counted
    /// from 1 as Keras' progress bar counts them (`Epoch 1/10`). Non-finite values (a NaN loss) are left out.
    ///
    /// ```no_run
    /// # fn demo(history: &kerust::callbacks::History) -> kerust::Result<()> {
    /// history.plot("accuracy.png", &["accuracy", "val_accuracy"])?;
    /// history.plot("loss.svg", &["loss", "val_loss"])?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another extension or a metric that was not recorded,
    /// [`Error::NotReady`] when there is nothing to draw (no epoch, or no finite value), and [`Error::Io`]
    /// when the file cannot be written.
    pub fn plot(&self, path: impl AsRef<Path>, metrics: &[&str]) -> Result<()> {
        let path = path.as_ref();
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let svg = match extension.as_deref() {
            Some("png") => false,
            Some("svg") => true,
            _ => {
                return Err(Error::invalid_argument(
                    "path",
                    path.display(),
                    "History::plot writes PNG or SVG files: the name must end in .png or .svg",
                ))
            }
        };
        let names: Vec<&str> = if metrics.is_empty() { self.keys().collect() } else { metrics.to_vec() };
        let mut curves = Vec::with_capacity(names.len());
        for name in names {
            let values = self.get(name).ok_or_else(|| {
                let recorded: Vec<&str> = self.keys().collect();
                Error::invalid_argument(
                    "metrics",
                    name,
                    format!("it is not in the history; recorded: {}", recorded.join(", ")),
                )
            })?;
            let points = values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| (self.epoch.get(i).map_or(i, |&e| e) as i32 + 1, f64::from(v)))
                .collect();
            curves.push(Curve { name, points });
        }
        if curves.iter().all(|c| c.points.is_empty()) {
            return Err(Error::NotReady(
                "History::plot: no finite value to draw (no epoch was recorded?)".into(),
            ));
        }
        register_bundled_font()?;
        let as_io = |message: String| Error::io(path, std::io::Error::other(message));
        if svg {
            return draw(SVGBackend::new(path, SIZE).into_drawing_area(), &curves).map_err(as_io);
        }
        let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
        draw(BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area(), &curves).map_err(as_io)?;
        crate::png_file::write_png(path, &pixels, SIZE.0, SIZE.1, png::ColorType::Rgb)
    }
}

/// The chart's title: `model accuracy` for `accuracy` and `val_accuracy`, as in the Keras tutorial.
fn title(curves: &[Curve]) -> String {
    let mut bases: Vec<&str> = Vec::new();
    for curve in curves {
        let base = curve.name.strip_prefix("val_").unwrap_or(curve.name);
        if !bases.contains(&base) {
            bases.push(base);
        }
    }
    format!("model {}", bases.join(" and "))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    curves: &[Curve],
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let all = || curves.iter().flat_map(|c| c.points.iter());
    let (x_min, x_max) = all().fold((i32::MAX, i32::MIN), |(lo, hi), &(x, _)| (lo.min(x), hi.max(x)));
    let (y_min, y_max) = all().fold((f64::MAX, f64::MIN), |(lo, hi), &(_, y)| (lo.min(y), hi.max(y)));
    let pad = if y_max > y_min { (y_max - y_min) * 0.08 } else { y_max.abs().max(1.0) * 0.05 };
    let x_range = if x_max > x_min { x_min..x_max } else { x_min - 1..x_max + 1 };
    let label = title(curves);
    // Rising curves (accuracy) leave the lower right free; falling ones (loss) the upper right.
    let rising = curves[0].points.first().zip(curves[0].points.last()).is_some_and(|(a, b)| b.1 >= a.1);

    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&label, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, (y_min - pad)..(y_max + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(label.trim_start_matches("model "))
        .x_labels(12)
        .y_labels(8)
        .y_label_formatter(&|y| format!("{y:.3}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 18))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.1))
        .draw()
        .map_err(err)?;
    for (i, curve) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(curve.points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(curve.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(2)));
        chart.draw_series(curve.points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(if rising { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight })
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        let mut h = History::new();
        h.history.insert("accuracy".into(), vec![0.80, 0.87, 0.89]);
        h.history.insert("val_accuracy".into(), vec![0.85, 0.88, 0.895]);
        h.history.insert("loss".into(), vec![0.9, f32::NAN, 0.4]);
        h.epoch = vec![0, 1, 2];
        h
    }

    #[test]
    fn writes_png_and_svg() {
        let dir = std::env::temp_dir().join(format!("kerust-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("acc.png");
        let svg = dir.join("acc.SVG");
        history().plot(&png, &["accuracy", "val_accuracy"]).unwrap();
        history().plot(&svg, &[]).unwrap();
        let png_bytes = std::fs::read(&png).unwrap();
        assert_eq!(&png_bytes[1..4], b"PNG");
        let svg_text = std::fs::read_to_string(&svg).unwrap();
        assert!(svg_text.starts_with("<svg"), "{}", &svg_text[..60.min(svg_text.len())]);
        for text in ["model accuracy and loss", "epoch", "val_accuracy", "loss"] {
            assert!(svg_text.contains(text), "no {text:?} in the SVG");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_bad_extension_unknown_metric_and_empty_history() {
        let e = history().plot("acc.jpg", &["accuracy"]).unwrap_err();
        assert!(e.to_string().contains(".png or .svg"), "{e}");
        let e = history().plot("acc.png", &["precision"]).unwrap_err();
        assert!(e.to_string().contains("recorded: accuracy, loss, val_accuracy"), "{e}");
        let e = History::new().plot("acc.png", &[]).unwrap_err();
        assert!(matches!(e, Error::NotReady(_)), "{e}");
    }

    #[test]
    fn unwritable_path_is_an_io_error() {
        let e = history().plot("/nonexistent-kerust-dir/acc.png", &["accuracy"]).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }

    #[test]
    fn title_pairs_val_metrics() {
        let curves: Vec<Curve> =
            ["accuracy", "val_accuracy"].iter().map(|&name| Curve { name, points: vec![] }).collect();
        assert_eq!(title(&curves), "model accuracy");
    }
}
