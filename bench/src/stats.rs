//! Percentiles, summaries, and the median of several runs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `p`-th percentile (0..=100) of sorted values, interpolated linearly
/// between the two nearest ranks; `NaN` for no values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            let frac = rank - lo as f64;
            sorted[lo] + (sorted[hi] - sorted[lo]) * frac
        }
    }
}

/// The median of values in any order.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

/// Distribution of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Summary {
    pub n: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Summarizes a sample (non-finite values are dropped).
pub fn summarize(values: &[f64]) -> Summary {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Summary {
            n: 0.0,
            min: f64::NAN,
            p50: f64::NAN,
            p90: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
            mean: f64::NAN,
        };
    }
    Summary {
        n: v.len() as f64,
        min: v[0],
        p50: percentile(&v, 50.0),
        p90: percentile(&v, 90.0),
        p99: percentile(&v, 99.0),
        max: v[v.len() - 1],
        mean: v.iter().sum::<f64>() / v.len() as f64,
    }
}

/// The element-wise median of JSON documents of the same shape: every number
/// becomes the median of the numbers at its place (nulls, i.e. NaN, are
/// skipped); anything else is taken from the first document.
pub fn median_json(docs: &[Value]) -> Value {
    let Some(first) = docs.first() else {
        return Value::Null;
    };
    match first {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, _)| {
                    let column: Vec<Value> =
                        docs.iter().filter_map(|d| d.get(k)).cloned().collect();
                    (k.clone(), median_json(&column))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            (0..items.len())
                .map(|i| {
                    let column: Vec<Value> =
                        docs.iter().filter_map(|d| d.get(i)).cloned().collect();
                    median_json(&column)
                })
                .collect(),
        ),
        Value::Number(_) | Value::Null => {
            let numbers: Vec<f64> = docs.iter().filter_map(Value::as_f64).collect();
            if numbers.is_empty() {
                return first.clone();
            }
            serde_json::Number::from_f64(median(&numbers)).map_or(Value::Null, Value::Number)
        }
        other => other.clone(),
    }
}

/// Milliseconds of a duration.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn percentiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert!((percentile(&v, 50.0) - 2.5).abs() < 1e-12);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        let s = summarize(&[3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((s.n, s.min, s.p50, s.max), (3.0, 1.0, 2.0, 3.0));
    }

    #[test]
    fn median_of_documents() {
        let docs = [
            json!({"a": 1.0, "b": [10, "x"], "s": "first", "n": null}),
            json!({"a": 5.0, "b": [30, "y"], "s": "second", "n": 2.0}),
            json!({"a": 3.0, "b": [20, "z"], "s": "third", "n": 4.0}),
        ];
        let m = median_json(&docs);
        assert_eq!(m["a"], 3.0);
        assert_eq!(m["b"][0], 20.0);
        assert_eq!(m["b"][1], "x");
        assert_eq!(m["s"], "first");
        assert_eq!(m["n"], 3.0);
    }
}
