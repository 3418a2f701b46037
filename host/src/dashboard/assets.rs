//! The dashboard's pages: the files of `host/ui/assets`, embedded in the
//! binary at build time (debug builds too), so the dashboard needs no
//! network and no files beside the binary.

use std::borrow::Cow;

/// The embedded folder.
#[derive(rust_embed::Embed)]
#[folder = "ui/assets"]
struct Files;

/// One embedded file with its content type.
pub struct Asset {
    pub bytes: Cow<'static, [u8]>,
    pub content_type: String,
    /// A hash of the content, for `ETag`.
    pub etag: String,
}

/// The file named `name` (a flat name: no directories), if embedded.
pub fn get(name: &str) -> Option<Asset> {
    if name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return None;
    }
    let file = Files::get(name)?;
    let etag = crate::digest::hex(&file.metadata.sha256_hash()[..8]);
    Some(Asset {
        content_type: file.metadata.mimetype().to_owned(),
        bytes: file.data,
        etag: format!("\"{etag}\""),
    })
}
