//! File writes that readers never see half done, shared by the compile cache
//! (its seals), the runtime-model persistence file and the request logs; and
//! the JSON-lines append of the exec provider's io log.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` through a temporary file in the same
/// directory and a rename, so readers see the old file or the new one, never
/// a part. `private` makes the file readable by its owner only; `durable`
/// flushes it to disk before the rename.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    private: bool,
    durable: bool,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

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
        tokio::io::AsyncWriteExt::write_all(&mut f, text.as_bytes()).await?;
        // tokio's File writes in the background until flushed.
        tokio::io::AsyncWriteExt::flush(&mut f).await
    };
    if let Err(e) = write.await {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_the_whole_file_and_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("conclave-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.json");
        write_atomic(&path, b"one", true, true).unwrap();
        write_atomic(&path, b"two", true, false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
