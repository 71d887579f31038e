//! The status page, rendered on the server from `templates/` (minijinja, HTML-escaped) with
//! the chart drawn as inline SVG: no script, no front-end build, readable in any browser.

use std::sync::LazyLock;

use minijinja::{Environment, context};
use serde::Serialize;

use crate::{Chart, StatusReport};

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    for (name, source) in [
        ("status.html", include_str!("../templates/status.html")),
        ("login.html", include_str!("../templates/login.html")),
    ] {
        if let Err(error) = environment.add_template(name, source) {
            panic!("embedded template {name} does not compile: {error:#}");
        }
    }
    environment
});

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_string(), |rate| format!("{:.1} %", rate * 100.0))
}

#[derive(Serialize)]
struct AgentRow {
    name: String,
    state: crate::kpis::State,
    last_run: String,
    runs_24h: i64,
    success_24h: String,
    success_7d: String,
    failed_24h: i64,
    rejected_24h: i64,
    dead_letters: String,
    last_error: String,
}

#[derive(Serialize)]
struct EmailRow {
    campaign: String,
    sent: i64,
    delivered: i64,
    opened: i64,
    clicked: i64,
    bounced: i64,
    complained: i64,
    delivery: String,
    open: String,
    click: String,
}

/// Geometry of the chart, in SVG user units.
#[derive(Debug, Serialize)]
pub struct ChartView {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub spend: String,
    pub revenue: String,
    pub roas: String,
    pub grid: Vec<GridLine>,
    pub dates: Vec<DateLabel>,
}

#[derive(Debug, Serialize)]
pub struct GridLine {
    pub y: f64,
    pub money: String,
    pub roas: String,
}

#[derive(Debug, Serialize)]
pub struct DateLabel {
    pub x: f64,
    pub text: String,
}

/// Spend and revenue share the left axis (money), ROAS has its own on the right; both start
/// at zero so a flat line means "nothing", not "the minimum".
pub fn chart_view(chart: &Chart) -> ChartView {
    let (width, height, left, right, top, bottom) = (900.0, 300.0, 70.0, 840.0, 24.0, 270.0);
    let money_max = chart
        .days
        .iter()
        .flat_map(|day| [day.spend, day.revenue])
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let roas_max = chart
        .days
        .iter()
        .filter_map(|day| day.roas)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let step = (right - left) / (chart.days.len().max(2) - 1) as f64;
    let x = |index: usize| left + step * index as f64;
    let y = |value: f64, max: f64| bottom - (bottom - top) * (value / max);
    let points = |values: Vec<(usize, f64)>, max: f64| {
        values
            .into_iter()
            .map(|(index, value)| format!("{:.1},{:.1}", x(index), y(value, max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let days = chart.days.iter().enumerate();
    ChartView {
        width,
        height,
        left,
        right,
        spend: points(
            days.clone().map(|(i, day)| (i, day.spend)).collect(),
            money_max,
        ),
        revenue: points(
            days.clone().map(|(i, day)| (i, day.revenue)).collect(),
            money_max,
        ),
        roas: points(
            days.clone()
                .filter_map(|(i, day)| day.roas.map(|roas| (i, roas)))
                .collect(),
            roas_max,
        ),
        grid: (0..=4)
            .map(|step| {
                let share = f64::from(step) / 4.0;
                GridLine {
                    y: y(share, 1.0),
                    money: format!("{:.0}", money_max * share),
                    roas: format!("{:.1}×", roas_max * share),
                }
            })
            .collect(),
        // Weekly labels, and the last day's unless a weekly one sits right beside it.
        dates: days
            .filter(|(i, _)| {
                let last = chart.days.len() - 1;
                *i == last || (i % 7 == 0 && last - i >= 4)
            })
            .map(|(i, day)| DateLabel {
                x: x(i),
                text: day.date.format("%d %b").to_string(),
            })
            .collect(),
    }
}

/// The page for `report`.
pub fn render(report: &StatusReport) -> Result<String, minijinja::Error> {
    let agents: Vec<AgentRow> = report
        .agents
        .iter()
        .map(|agent| AgentRow {
            name: agent.name.clone(),
            state: agent.state,
            last_run: agent.last_run_at.map_or_else(
                || "never (7 days)".into(),
                |at| {
                    format!(
                        "{} ({})",
                        at.format("%Y-%m-%d %H:%M:%S UTC"),
                        agent.last_outcome.as_deref().unwrap_or("")
                    )
                },
            ),
            runs_24h: agent.runs_24h,
            success_24h: percent(agent.success_rate_24h),
            success_7d: percent(agent.success_rate_7d),
            failed_24h: agent.failed_24h,
            rejected_24h: agent.rejected_24h,
            dead_letters: agent
                .dead_letters
                .map_or_else(|| "–".into(), |n| n.to_string()),
            last_error: match (&agent.last_error, agent.last_error_at) {
                (Some(error), Some(at)) => format!("{}: {error}", at.format("%Y-%m-%d %H:%M")),
                _ => String::new(),
            },
        })
        .collect();
    let emails: Vec<EmailRow> = report
        .email_campaigns_30d
        .iter()
        .flatten()
        .map(|rates| EmailRow {
            campaign: rates.campaign.clone(),
            sent: rates.sent,
            delivered: rates.delivered,
            opened: rates.opened,
            clicked: rates.clicked,
            bounced: rates.bounced,
            complained: rates.complained,
            delivery: percent(rates.delivery_rate),
            open: percent(rates.open_rate),
            click: percent(rates.click_rate),
        })
        .collect();
    TEMPLATES.get_template("status.html")?.render(context! {
        report => report,
        agents => agents,
        emails => emails,
        chart => report.chart.as_ref().map(chart_view),
        generated_at => report.generated_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    })
}

/// The sign-in page, with what went wrong if anything.
pub fn login(problem: Option<&str>) -> String {
    TEMPLATES
        .get_template("login.html")
        .and_then(|template| template.render(context! { problem => problem }))
        .unwrap_or_else(|error| format!("status page unavailable: {error}"))
}

/// A short page for a request that cannot be answered.
pub fn problem(reason: &str) -> String {
    login(Some(reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChartDay;
    use chrono::NaiveDate;

    #[test]
    fn the_chart_scales_to_the_largest_value_from_zero() {
        let day = |d: u32, spend: f64, revenue: f64, roas: Option<f64>| ChartDay {
            date: NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
            spend,
            revenue,
            roas,
        };
        let chart = Chart {
            workspace: uuid::Uuid::nil(),
            workspace_name: "w".into(),
            currency: "USD".into(),
            days: vec![day(1, 0.0, 0.0, None), day(2, 50.0, 200.0, Some(4.0))],
        };
        let view = chart_view(&chart);
        assert_eq!(view.spend, "70.0,270.0 840.0,208.5");
        assert_eq!(view.revenue, "70.0,270.0 840.0,24.0");
        assert_eq!(view.roas, "840.0,24.0", "days without ROAS are left out");
        assert_eq!(view.grid.last().unwrap().money, "200");
        assert_eq!(view.grid.last().unwrap().roas, "4.0×");
    }
}
