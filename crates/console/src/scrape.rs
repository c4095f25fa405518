//! Reading the components' own `/metrics` (Prometheus text format 0.0.4): the figures operators
//! alert on are the ones the console shows, computed the same way (rates from two readings).

use std::time::Duration;

/// One sample: a metric name, its labels in the order written, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of one reading of one component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Samples of `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
    }

    /// The sum of the samples of `name` with `labels` (0 when there is none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }
}

impl Metrics {
    /// The readings of several instances of one component as one: samples of the same series
    /// (name and labels) add up, as counters and histogram buckets of a component do across
    /// its instances. A gauge of state the instances share (an outbox's backlog, which each
    /// instance samples from the one table) must be read per instance instead.
    pub fn combined<'a>(readings: impl IntoIterator<Item = &'a Metrics>) -> Metrics {
        let mut index: std::collections::HashMap<(String, Vec<(String, String)>), usize> =
            std::collections::HashMap::new();
        let mut samples: Vec<Sample> = Vec::new();
        for sample in readings.into_iter().flat_map(|m| &m.samples) {
            let key = (sample.name.clone(), sample.labels.clone());
            match index.get(&key) {
                Some(&i) => {
                    if let Some(existing) = samples.get_mut(i) {
                        existing.value += sample.value;
                    }
                }
                None => {
                    index.insert(key, samples.len());
                    samples.push(sample.clone());
                }
            }
        }
        Metrics { samples }
    }
}

/// One reading of one instance of a component.
#[derive(Debug, Clone)]
pub struct InstanceReading {
    /// The instance's base URL.
    pub url: String,
    /// `None` when it did not answer in time.
    pub metrics: Option<Metrics>,
}

/// Reads every instance of `component` at once.
pub async fn read_instances(console: &crate::Console, component: &str) -> Vec<InstanceReading> {
    let reads = console.instances(component).into_iter().map(|url| {
        let client = console.http().clone();
        async move {
            let metrics = read(&client, &format!("{url}/metrics")).await;
            InstanceReading { url, metrics }
        }
    });
    futures::future::join_all(reads).await
}

/// The metrics of `component` as one ([`Metrics::combined`] over the instances that answered);
/// `None` when none did.
pub async fn read_component(console: &crate::Console, component: &str) -> Option<Metrics> {
    let instances = read_instances(console, component).await;
    let answered: Vec<&Metrics> = instances
        .iter()
        .filter_map(|i| i.metrics.as_ref())
        .collect();
    (!answered.is_empty()).then(|| Metrics::combined(answered))
}

/// Parses the text format. Comments, blank lines and lines it cannot read are skipped: a reading
/// is for display, and one odd line must not hide the others.
pub fn parse(text: &str) -> Metrics {
    let samples = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_line)
        .collect();
    Metrics { samples }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            let labels = parse_labels(line.get(open + 1..close)?)?;
            (line.get(..open)?, labels, line.get(close + 1..)?)
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y \" z"`: values are quoted, with `\\`, `\"` and `\n` escaped.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        labels.push((name.trim().to_owned(), value));
        rest = after.get(end + 1..)?.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(labels)
}

/// Reads `url` (a component's `/metrics`); `None` when the component does not answer in time.
pub async fn read(client: &reqwest::Client, url: &str) -> Option<Metrics> {
    let response = client
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    Some(parse(&response.text().await.ok()?))
}

/// The `q`-quantile (0..=1) of a histogram's observations between two readings, from its
/// cumulative `_bucket` counters (linear within a bucket, as Prometheus' `histogram_quantile`).
/// `None` when nothing was observed in between.
pub fn quantile(
    before: &Metrics,
    after: &Metrics,
    histogram: &str,
    labels: &[(&str, &str)],
    q: f64,
) -> Option<f64> {
    let bucket = format!("{histogram}_bucket");
    let count_in = |metrics: &Metrics, le: f64| -> f64 {
        metrics
            .matching(&bucket, labels)
            .filter(|s| s.label("le").and_then(le_of) == Some(le))
            .map(|s| s.value)
            .sum()
    };
    let mut bounds: Vec<f64> = after
        .matching(&bucket, labels)
        .filter_map(|s| s.label("le").and_then(le_of))
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    let counts: Vec<(f64, f64)> = bounds
        .iter()
        .map(|&le| (le, (count_in(after, le) - count_in(before, le)).max(0.0)))
        .collect();
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in &counts {
        if count >= rank {
            if le.is_infinite() {
                // Past the last finite bound: say the bound, the most that is known.
                return Some(lower.0);
            }
            let within = count - lower.1;
            let fraction = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * fraction);
        }
        lower = (le, count);
    }
    None
}

fn le_of(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP saga_outcomes_total Sagas settled
# TYPE saga_outcomes_total counter
saga_outcomes_total{outcome="completed",reason=""} 12
saga_outcomes_total{outcome="failed",reason="out_of_stock"} 3
outbox_pending 7
odd{label="a \"quoted\" value, with a comma"} 1.5 1733533200000
saga_duration_seconds_bucket{outcome="completed",le="0.1"} 0
saga_duration_seconds_bucket{outcome="completed",le="0.25"} 4
saga_duration_seconds_bucket{outcome="completed",le="+Inf"} 4
not a sample
"#;

    #[test]
    fn instances_combine_series_by_series() {
        let first = parse(
            "saga_outcomes_total{outcome=\"completed\"} 12\nprojection_lag{store=\"redis\",partition=\"0\"} 5\nprojection_lag{store=\"redis\",partition=\"1\"} 0\n",
        );
        let second = parse(
            "saga_outcomes_total{outcome=\"completed\"} 30\nprojection_lag{store=\"redis\",partition=\"1\"} 2\n",
        );
        let combined = Metrics::combined([&first, &second]);
        assert_eq!(combined.sum("saga_outcomes_total", &[]), 42.0);
        let lag: Vec<(&str, f64)> = combined
            .matching("projection_lag", &[("store", "redis")])
            .map(|s| (s.label("partition").unwrap_or_default(), s.value))
            .collect();
        assert_eq!(lag, [("0", 5.0), ("1", 2.0)], "one sample per partition");
    }

    #[test]
    fn samples_are_read_with_their_labels() {
        let metrics = parse(TEXT);
        assert_eq!(metrics.sum("saga_outcomes_total", &[]), 15.0);
        assert_eq!(
            metrics.sum("saga_outcomes_total", &[("outcome", "failed")]),
            3.0
        );
        assert_eq!(metrics.sum("outbox_pending", &[]), 7.0);
        let odd = metrics.matching("odd", &[]).next().cloned();
        assert_eq!(
            odd.as_ref().and_then(|s| s.label("label")),
            Some(r#"a "quoted" value, with a comma"#)
        );
        assert_eq!(odd.map(|s| s.value), Some(1.5));
    }

    #[test]
    fn a_quantile_is_read_from_the_buckets_that_moved() {
        let before = parse(TEXT);
        let after = parse(
            &TEXT
                .replace("le=\"0.25\"} 4", "le=\"0.25\"} 14")
                .replace("le=\"+Inf\"} 4", "le=\"+Inf\"} 14"),
        );
        // Ten observations between 0.1 and 0.25 s: the median is halfway.
        let median = quantile(
            &before,
            &after,
            "saga_duration_seconds",
            &[("outcome", "completed")],
            0.5,
        );
        assert!(
            median.is_some_and(|m| (m - 0.175).abs() < 1e-9),
            "{median:?}"
        );
        assert_eq!(
            quantile(&before, &before, "saga_duration_seconds", &[], 0.5),
            None
        );
    }
}
