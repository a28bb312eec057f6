//! Reading a Prometheus text page, as the tests of each service's `/metrics` do.

/// Whether the page has a series of the metric `name`: `name` itself, with labels, or a histogram's
/// `_bucket`/`_sum`/`_count`.
pub fn has(page: &str, name: &str) -> bool {
    page.lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with([' ', '{', '_']))
    })
}

/// The value of `series` (a name with its labels, as the page writes them), if the page has it.
pub fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
