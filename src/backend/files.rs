//! The optional capability to put files into instances and read them back (how the ingress gets
//! its configuration and certificates before it starts).

use async_trait::async_trait;

use crate::error::Result;

/// Files inside instances.
#[async_trait]
pub trait InstanceFiles: Send + Sync {
    /// Writes a file into an instance (created or running), creating its directories.
    async fn write_file(&self, id: &str, path: &str, contents: &[u8], mode: u32) -> Result<()>;

    /// Reads a file from an instance (created or running); `Ok(None)` if there is no such file.
    async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>>;
}
