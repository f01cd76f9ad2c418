//! A pull's progress, summed over its layers from the engine's per-layer status lines.

use std::collections::BTreeMap;

/// How far a pull has got: bytes downloaded of the layers whose size is known, and layers done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PullProgress {
    /// Bytes downloaded so far.
    pub done: u64,
    /// Bytes to download, as far as known (a layer's size is known once its download starts).
    pub total: u64,
    /// Layers downloaded (or already present).
    pub layers_done: u32,
    /// Layers seen.
    pub layers: u32,
}

#[derive(Default)]
struct Layer {
    current: u64,
    total: u64,
    done: bool,
}

/// Folds the engine's status lines (`{"id": "<layer>", "status": "Downloading",
/// "progressDetail": {"current": …, "total": …}}`) into a [`PullProgress`].
#[derive(Default)]
pub(crate) struct Tally {
    layers: BTreeMap<String, Layer>,
}

impl Tally {
    /// Takes one status line; `true` if the progress moved.
    pub(crate) fn take(&mut self, id: Option<&str>, status: &str, current: Option<i64>, total: Option<i64>) -> bool {
        let Some(id) = id.filter(|i| !i.is_empty()) else { return false };
        // Lines about the reference itself (`Pulling from team/api`) carry the tag as their id.
        let layer_line = matches!(
            status,
            "Pulling fs layer"
                | "Waiting"
                | "Downloading"
                | "Verifying Checksum"
                | "Download complete"
                | "Extracting"
                | "Pull complete"
                | "Already exists"
        );
        if !layer_line {
            return false;
        }
        let layer = self.layers.entry(id.to_string()).or_default();
        let before = (layer.current, layer.total, layer.done);
        let to_u64 = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        match status {
            "Downloading" => {
                if let Some(t) = to_u64(total).filter(|t| *t > 0) {
                    layer.total = t;
                }
                if let Some(c) = to_u64(current) {
                    layer.current = c.min(layer.total.max(c));
                }
            }
            "Verifying Checksum" | "Download complete" | "Extracting" | "Pull complete" | "Already exists" => {
                layer.current = layer.total;
                layer.done = true;
            }
            _ => {}
        }
        before != (layer.current, layer.total, layer.done) || before == (0, 0, false)
    }

    /// The sum so far.
    pub(crate) fn progress(&self) -> PullProgress {
        let mut p = PullProgress::default();
        for l in self.layers.values() {
            p.done = p.done.saturating_add(l.current);
            p.total = p.total.saturating_add(l.total);
            p.layers = p.layers.saturating_add(1);
            if l.done {
                p.layers_done = p.layers_done.saturating_add(1);
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_layers() {
        let mut t = Tally::default();
        assert!(!t.take(Some("15"), "Pulling from library/postgres", None, None));
        assert!(t.take(Some("a"), "Pulling fs layer", None, None));
        assert!(t.take(Some("b"), "Already exists", None, None));
        assert!(t.take(Some("a"), "Downloading", Some(100), Some(1000)));
        assert_eq!(t.progress(), PullProgress { done: 100, total: 1000, layers_done: 1, layers: 2 });
        assert!(t.take(Some("a"), "Download complete", None, None));
        assert_eq!(t.progress(), PullProgress { done: 1000, total: 1000, layers_done: 2, layers: 2 });
        assert!(!t.take(Some("a"), "Extracting", Some(-5), Some(-1)));
    }
}
