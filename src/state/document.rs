//! The state document: everything kept about an environment between operations, as JSON.
//!
//! It is written whole, alternately into two files (`state.0.json`, `state.1.json`), each a SHA-256
//! line and the JSON. A write the process did not finish (it was killed mid-request) leaves a file
//! whose checksum fails, and the reader takes the other one: the last complete document always
//! survives. Every writer holds the environment's deploy lock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format written here; a newer one is refused rather than misread.
pub(crate) const FORMAT: u32 = 1;

/// One revision of a service, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RevisionRecord {
    pub number: u64,
    pub at_ms: u64,
    pub image: String,
    pub image_id: String,
    pub spec: String,
    pub spec_hash: String,
    /// `succeeded`, `rolled back`, `paused` or `failed`.
    pub outcome: String,
    pub reason: String,
    pub changes: Vec<String>,
    pub origin: String,
    pub actor: Option<String>,
    /// The image pinned to its registry digest (`postgres@sha256:…`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pin: Option<String>,
}

/// One audit entry, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditRecord {
    pub at_ms: u64,
    pub took_ms: u64,
    pub operation: String,
    pub actor: Option<String>,
    pub host: String,
    pub revisions: BTreeMap<String, u64>,
    pub error: Option<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// A rollout waiting for its promotion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PromotionRecord {
    pub spec_hash: String,
    pub image_id: String,
    pub weight: u8,
    pub since_ms: u64,
    pub actor: Option<String>,
}

/// A job's last successful run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub spec_hash: String,
    pub image_id: String,
    pub image: String,
    pub at_ms: u64,
}

/// A store that was found lost, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LostRecord {
    pub noticed_ms: u64,
    pub what: String,
}

/// The whole document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Document {
    pub format: u32,
    /// Random, per store: tells one store from a later one.
    pub store: String,
    /// Incremented by every write.
    pub seq: u64,
    pub created_ms: u64,
    #[serde(default)]
    pub lost: Vec<LostRecord>,
    #[serde(default)]
    pub revisions: BTreeMap<String, Vec<RevisionRecord>>,
    #[serde(default)]
    pub audit: Vec<AuditRecord>,
    #[serde(default)]
    pub promotions: BTreeMap<String, PromotionRecord>,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobRecord>,
    /// Image IDs kept on the target ([`ImageStore::keep_image`](crate::backend::ImageStore::keep_image)).
    #[serde(default)]
    pub kept_images: Vec<String>,
}

/// The file a document with this sequence number is written to.
pub(crate) fn slot(seq: u64) -> String {
    format!("state.{}.json", seq % 2)
}

pub(crate) fn now_ms() -> u64 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

impl Document {
    /// A new, empty store's document.
    pub(crate) fn new() -> Document {
        Document {
            format: FORMAT,
            store: format!("{}{}", crate::process::nonce(), crate::process::nonce()),
            seq: 0,
            created_ms: now_ms(),
            ..Default::default()
        }
    }

    /// The file contents: checksum line, then JSON.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Plain data with string keys always serializes.
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{}\n{json}", crate::model::hex(&Sha256::digest(json.as_bytes()))).into_bytes()
    }

    /// A file's document, if it is complete and readable.
    pub(crate) fn decode(contents: &[u8]) -> Result<Document, String> {
        let text = std::str::from_utf8(contents).map_err(|_| "not UTF-8".to_string())?;
        let (sum, json) = text.split_once('\n').ok_or("no checksum line")?;
        if crate::model::hex(&Sha256::digest(json.as_bytes())) != sum {
            return Err("its checksum does not match (an unfinished write)".into());
        }
        let doc: Document = serde_json::from_str(json).map_err(|e| format!("unreadable: {e}"))?;
        if doc.format > FORMAT {
            return Err(format!(
                "written in format {}, newer than this library's {FORMAT}; upgrade harbormaster",
                doc.format
            ));
        }
        Ok(doc)
    }

    /// The newest complete document among the store's files; `Err` says why none is.
    pub(crate) fn newest(files: &[crate::backend::StateFile]) -> Result<Document, String> {
        let mut best: Option<Document> = None;
        let mut why = Vec::new();
        for f in files.iter().filter(|f| f.name.starts_with("state.") && f.name.ends_with(".json")) {
            match Document::decode(&f.contents) {
                Ok(d) if best.as_ref().is_none_or(|b| d.seq > b.seq) => best = Some(d),
                Ok(_) => {}
                Err(e) => why.push(format!("{}: {e}", f.name)),
            }
        }
        best.ok_or_else(|| if why.is_empty() { "it holds no state document".into() } else { why.join("; ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::StateFile;

    fn file(seq: u64, doc: &Document) -> StateFile {
        StateFile { name: slot(seq), contents: doc.encode() }
    }

    #[test]
    fn the_newest_complete_document_wins() {
        let mut d = Document::new();
        d.seq = 7;
        let older = file(7, &d);
        d.seq = 8;
        d.jobs.insert(
            "migrate".into(),
            JobRecord { spec_hash: "a".into(), image_id: "i".into(), image: "x".into(), at_ms: 1 },
        );
        let newer = file(8, &d);
        assert_eq!(Document::newest(&[older.clone(), newer.clone()]).unwrap(), d);
        // Slot 0 holds seq 8; a write of seq 9 into slot 1 was cut short.
        let mut torn = newer.clone();
        torn.name = slot(9);
        torn.contents.truncate(torn.contents.len() - 5);
        let got = Document::newest(&[newer, torn]).unwrap();
        assert_eq!(got.seq, 8);
    }

    #[test]
    fn nothing_readable_says_why() {
        let err = Document::newest(&[StateFile { name: slot(0), contents: b"garbage".to_vec() }]).unwrap_err();
        assert!(err.contains("state.0.json"), "{err}");
        assert!(Document::newest(&[]).unwrap_err().contains("no state document"));
        let mut future = Document::new();
        future.format = FORMAT + 1;
        let err = Document::decode(&future.encode()).unwrap_err();
        assert!(err.contains("newer"), "{err}");
    }
}
