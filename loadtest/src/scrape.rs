//! Gateway-side figures read from the gateways' Prometheus `/metrics` pages during a run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The metrics the report shows, each summed over its labels.
pub const WATCHED: [&str; 6] = [
    "natter_gateway_connections",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "natter_gateway_messages_out_total",
    "natter_gateway_slow_consumer_disconnects_total",
    "natter_gateway_publish_failures_total",
];

/// One scrape of one gateway: metric → value, or the reason it failed.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The page scraped.
    pub url: String,
    /// Seconds from the start of the run.
    pub at_secs: f64,
    /// Watched metric → value (summed over labels); empty when the scrape failed.
    pub values: BTreeMap<String, f64>,
    /// Why the scrape failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sums every sample of `name` (any labels) in a Prometheus text page.
pub fn sum(page: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in page.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        // The name must end here: `foo` must not match `foo_total`.
        let rest = match rest.chars().next() {
            Some('{') => rest.split_once('}').map_or("", |(_, value)| value),
            Some(' ') => rest,
            _ => continue,
        };
        if let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// Scrapes every page once.
pub async fn scrape_all(http: &reqwest::Client, urls: &[String], at_secs: f64) -> Vec<Sample> {
    let scrapes = urls.iter().map(|url| async move {
        let page = async {
            let response = http.get(url).timeout(Duration::from_secs(5)).send().await?;
            response.error_for_status()?.text().await
        };
        match page.await {
            Ok(page) => Sample {
                url: url.clone(),
                at_secs,
                values: WATCHED
                    .iter()
                    .filter_map(|name| sum(&page, name).map(|v| ((*name).to_owned(), v)))
                    .collect(),
                error: None,
            },
            Err(err) => Sample {
                url: url.clone(),
                at_secs,
                values: BTreeMap::new(),
                error: Some(err.to_string()),
            },
        }
    });
    futures::future::join_all(scrapes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_labels_and_matches_whole_names() {
        let page = "# TYPE natter_gateway_connections gauge\n\
                    natter_gateway_connections 120\n\
                    natter_gateway_connections_opened_total 500\n\
                    natter_gateway_messages_out_total{room=\"a\"} 3\n\
                    natter_gateway_messages_out_total{room=\"b\"} 4.5\n";
        assert_eq!(sum(page, "natter_gateway_connections"), Some(120.0));
        assert_eq!(sum(page, "natter_gateway_messages_out_total"), Some(7.5));
        assert_eq!(sum(page, "process_resident_memory_bytes"), None);
    }
}
