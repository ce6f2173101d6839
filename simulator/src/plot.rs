//! SVG charts of a run (plotters): EKB header size against revoked clients for both schemes,
//! throughput by operation, and, when the experiment ran, pirate evolution's generations
//! against the coalition's size.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use treecast_keytree::{Cover, RevocationSet, Scheme, TreeHeight, ekb};

use crate::SimError;
use crate::evolution::EvolutionReport;
use crate::report::Report;

/// Writes `ekb_size.svg`, `throughput.svg` and (when the experiment ran) `evolution.svg` into
/// `dir` (created if missing) and returns their
/// paths. The header sizes are computed for both schemes on the run's revoked clients, in the
/// order they were revoked.
///
/// # Errors
/// [`SimError::Io`] when the directory or a file cannot be written.
pub fn write(
    dir: &Path,
    report: &Report,
    height: TreeHeight,
    revoked_in_order: &[u32],
) -> Result<Vec<PathBuf>, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::Io(format!("{}: {e}", dir.display())))?;
    let ekb = dir.join("ekb_size.svg");
    ekb_chart(&ekb, height, revoked_in_order)?;
    let throughput = dir.join("throughput.svg");
    throughput_chart(&throughput, report)?;
    let mut written = vec![ekb, throughput];
    if let Some(evolution) = &report.evolution {
        let path = dir.join("evolution.svg");
        evolution_chart(&path, evolution)?;
        written.push(path);
    }
    Ok(written)
}

/// Header sizes in bytes for the first `n` revoked leaves, at about 50 points.
fn sizes(scheme: Scheme, height: TreeHeight, revoked: &[u32]) -> Result<Vec<(u64, u64)>, SimError> {
    let points = 50usize;
    let step = revoked.len().div_ceil(points).max(1);
    let mut out = Vec::new();
    let mut n = 0;
    loop {
        let set = RevocationSet::from_leaves(height, revoked.iter().take(n).copied())?;
        let cover = Cover::compute(scheme, &set)?;
        out.push((n as u64, ekb::encoded_len(scheme, cover.len()) as u64));
        if n >= revoked.len() {
            break;
        }
        n = (n + step).min(revoked.len());
    }
    Ok(out)
}

fn ekb_chart(path: &Path, height: TreeHeight, revoked: &[u32]) -> Result<(), SimError> {
    let cs = sizes(Scheme::COMPLETE_SUBTREE, height, revoked)?;
    let sd = sizes(Scheme::SUBSET_DIFFERENCE, height, revoked)?;
    let max_x = revoked.len().max(1) as u64;
    let max_y = cs
        .iter()
        .chain(&sd)
        .map(|&(_, b)| b)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        / 1024.0;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| SimError::Io(format!("{}: {e}", path.display()));
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("EKB size against revoked clients (height {})", height.get()),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u64..max_x, 0f64..max_y * 1.05)
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc("revoked clients")
        .y_desc("EKB size (KiB)")
        .draw()
        .map_err(|e| draw(&e))?;
    for (data, name, color) in [
        (&cs, "Complete Subtree", RED),
        (&sd, "Subset Difference", BLUE),
    ] {
        chart
            .draw_series(LineSeries::new(
                data.iter().map(|&(x, b)| (x, b as f64 / 1024.0)),
                color.stroke_width(2),
            ))
            .map_err(|e| draw(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}

fn throughput_chart(path: &Path, report: &Report) -> Result<(), SimError> {
    let data: Vec<(String, f64)> = report
        .throughput
        .iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let max_y = data.iter().map(|d| d.1).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| SimError::Io(format!("{}: {e}", path.display()));
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let labels: Vec<String> = data.iter().map(|d| d.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Throughput by operation ({} threads, log scale)",
                report.config.threads
            ),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0..data.len().saturating_sub(1)).into_segmented(),
            (1f64..max_y * 2.0).log_scale(),
        )
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("operation")
        .y_desc("operations per second")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| draw(&e))?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(BLUE.mix(0.6).filled())
                .margin(25)
                .data(data.iter().enumerate().map(|(i, (_, v))| (i, *v))),
        )
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}

/// Generations until the coalition is powerless against its size: measured for both schemes
/// with and without the defence, and the published orders of growth.
fn evolution_chart(path: &Path, evolution: &EvolutionReport) -> Result<(), SimError> {
    let rows = &evolution.rows;
    let max_x = rows.iter().map(|r| r.traitors).max().unwrap_or(1);
    let max_y = rows
        .iter()
        .map(|r| (r.generations as f64).max(r.published_order))
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| SimError::Io(format!("{}: {e}", path.display()));
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Pirate evolution: boxes until the coalition is powerless (h = {})",
                evolution.height
            ),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(1u32..max_x.max(2), 0f64..max_y * 1.05)
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc("traitors in the coalition")
        .y_desc("generations")
        .draw()
        .map_err(|e| draw(&e))?;
    let series = |scheme: &str, defence: &str| -> Vec<(u32, f64)> {
        rows.iter()
            .filter(|r| r.scheme == scheme && r.defence == defence)
            .map(|r| (r.traitors, r.generations as f64))
            .collect()
    };
    let published = |scheme: &str| -> Vec<(u32, f64)> {
        rows.iter()
            .filter(|r| r.scheme == scheme && r.defence == "none")
            .map(|r| (r.traitors, r.published_order))
            .collect()
    };
    let lines = [
        (series("cs", "none"), "CS, NNL tracer", RED.to_rgba(), 2),
        (
            series("cs", "deepening"),
            "CS, deepening tracer",
            RED.mix(0.5).to_rgba(),
            2,
        ),
        (
            published("cs"),
            "CS published order: t log2(N/t)",
            RED.mix(0.3).to_rgba(),
            1,
        ),
        (series("sd", "none"), "SD, NNL tracer", BLUE.to_rgba(), 2),
        (
            series("sd", "deepening"),
            "SD, deepening tracer",
            BLUE.mix(0.5).to_rgba(),
            2,
        ),
        (
            published("sd"),
            "SD published order: t log2 N",
            BLUE.mix(0.3).to_rgba(),
            1,
        ),
    ];
    for (data, name, color, width) in lines {
        chart
            .draw_series(LineSeries::new(data, color.stroke_width(width)))
            .map_err(|e| draw(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}
