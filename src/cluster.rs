//! Training split among replicas without a coordinator: each family has a
//! trainer, picked by rendezvous hashing over the replicas' ordinals (as
//! VictoriaMetrics' vmanomaly shards), so every replica agrees on it from
//! the family name and the replica count alone, and changing the count
//! moves about 1/N of the families. The others serve the seasonal
//! baseline, then the trainer's model from the shared model store. If a
//! family's newest saved model grows older than twice its retrain
//! interval (the trainer is gone), the next-ranked replica takes it over;
//! the store's versions keep that safe when the first comes back.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// This replica's place among its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Replicas sharing the model store.
    pub replicas: u32,
    /// This replica's number, 0..replicas; by default the StatefulSet pod
    /// index (`--cluster.ordinal`, or the pod name's number).
    pub ordinal: Option<u32>,
    /// Never train: serve the models other replicas save.
    pub serve_only: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            ordinal: None,
            serve_only: false,
        }
    }
}

/// What a replica decides about training one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trainer {
    /// This replica trains it.
    Here,
    /// Replica `n` does.
    Replica(u32),
    /// No replica of this process's role trains (serve-only).
    Elsewhere,
}

impl ClusterConfig {
    /// The ordinal in force: the configured one, else the number a
    /// StatefulSet pod's name ends with (`promcast-2` → 2), else 0.
    pub fn this_replica(&self, pod_name: Option<&str>) -> u32 {
        self.ordinal
            .or_else(|| pod_name?.rsplit_once('-')?.1.parse().ok())
            .unwrap_or(0)
    }

    /// The replicas in the order they would train `family`: highest
    /// SHA-256 of the family and ordinal first. SHA-256 and not the
    /// standard library's hasher, whose output may change between Rust
    /// releases: replicas built apart must agree.
    pub fn ranking(&self, family: &str) -> Vec<u32> {
        let mut ranked: Vec<(u32, [u8; 32])> = (0..self.replicas.max(1))
            .map(|ordinal| {
                let mut hasher = Sha256::new();
                hasher.update(family.as_bytes());
                hasher.update([0]);
                hasher.update(ordinal.to_be_bytes());
                (ordinal, hasher.finalize().into())
            })
            .collect();
        ranked.sort_by_key(|&(_, digest)| std::cmp::Reverse(digest));
        ranked.into_iter().map(|(ordinal, _)| ordinal).collect()
    }

    /// Who trains `family` as seen from replica `me`, given how old its
    /// newest saved model is (or how long it has been asked for without
    /// one) against its retrain interval.
    pub fn trainer(&self, me: u32, family: &str, age_ms: i64, retrain_interval_ms: i64) -> Trainer {
        if self.serve_only {
            return Trainer::Elsewhere;
        }
        let ranking = self.ranking(family);
        let taken_over = ranking.len() > 1 && age_ms > 2 * retrain_interval_ms;
        let trainer = ranking[usize::from(taken_over)];
        if trainer == me {
            Trainer::Here
        } else {
            Trainer::Replica(trainer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(replicas: u32) -> ClusterConfig {
        ClusterConfig {
            replicas,
            ..ClusterConfig::default()
        }
    }

    /// The ranking is pinned: replicas of any build agree on it.
    #[test]
    fn rankings_are_pinned_and_complete() {
        let three = cluster(3);
        let ranking = three.ranking("node_load1");
        let mut sorted = ranking.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2]);
        assert_eq!(ranking, three.ranking("node_load1"));
        let pinned: Vec<u32> = ["node_load1", "http_requests_total", "up"]
            .iter()
            .map(|f| three.ranking(f)[0])
            .collect();
        assert_eq!(pinned, PINNED);
        assert_eq!(cluster(1).ranking("anything"), [0]);
    }

    /// The first-ranked replica of each family under `cluster(3)`, as an
    /// independent script computes it (SHA-256 of the name, a zero byte
    /// and the ordinal in 4 big-endian bytes, highest first): a change
    /// here changes which replica trains what.
    const PINNED: [u32; 3] = [1, 2, 1];

    /// Adding a fourth replica moves about a quarter of the families, all
    /// of them to the new replica; families spread about evenly.
    #[test]
    fn growing_moves_about_one_in_n() {
        let families: Vec<String> = (0..4000).map(|i| format!("metric_{i}")).collect();
        let (three, four) = (cluster(3), cluster(4));
        let mut moved = 0;
        let mut load = [0usize; 4];
        for f in &families {
            let (before, after) = (three.ranking(f)[0], four.ranking(f)[0]);
            load[after as usize] += 1;
            if before != after {
                moved += 1;
                assert_eq!(after, 3, "{f} moved between old replicas");
            }
        }
        assert!((800..1200).contains(&moved), "{moved} of 4000 moved");
        assert!(load.iter().all(|&n| (800..1200).contains(&n)), "{load:?}");
    }

    /// The trainer trains; the next-ranked replica takes over once the
    /// newest model is older than twice the retrain interval; serve-only
    /// replicas never train.
    #[test]
    fn the_next_replica_takes_over_a_stale_family() {
        let three = cluster(3);
        let ranking = three.ranking("node_load1");
        let (first, second) = (ranking[0], ranking[1]);
        let day = 86_400_000;
        assert_eq!(three.trainer(first, "node_load1", day, day), Trainer::Here);
        assert_eq!(
            three.trainer(second, "node_load1", day, day),
            Trainer::Replica(first)
        );
        assert_eq!(
            three.trainer(second, "node_load1", 3 * day, day),
            Trainer::Here
        );
        let serve_only = ClusterConfig {
            serve_only: true,
            ..three
        };
        assert_eq!(
            serve_only.trainer(first, "node_load1", 0, day),
            Trainer::Elsewhere
        );
    }

    #[test]
    fn the_ordinal_comes_from_the_flag_or_the_pod_name() {
        let three = cluster(3);
        assert_eq!(three.this_replica(Some("promcast-2")), 2);
        assert_eq!(three.this_replica(Some("promcast")), 0);
        let flagged = ClusterConfig {
            ordinal: Some(1),
            ..three
        };
        assert_eq!(flagged.this_replica(Some("promcast-2")), 1);
    }
}
