//! Observability files: JSON lines appended per request (composite traces,
//! exec io logs).

use std::path::Path;

use tokio::io::AsyncWriteExt;

/// Appends `value` as one line to the file at `path`; a failure is logged,
/// never returned, because a log must not fail the request it records.
pub async fn append_json_line(path: &Path, value: &serde_json::Value, what: &str) {
    let mut text = value.to_string();
    text.push('\n');
    let write = async {
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        f.write_all(text.as_bytes()).await?;
        // tokio's File writes in the background until flushed.
        f.flush().await
    };
    if let Err(e) = write.await {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the {what}");
    }
}
