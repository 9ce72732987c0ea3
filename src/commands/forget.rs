//! `promcast forget FAMILY...`: deletes families' saved models from the
//! model directory, so that they train afresh on their next use, or stay
//! gone from the registry (and from `{__name__=~"predicted_.+"}`) when
//! nobody asks for them again.

use std::path::Path;

use crate::model::store;
use crate::series::is_metric_name;

/// Forgets each of `families` in `dir`, printing the files removed. Fails
/// before removing anything when a name is not a family name (a metric
/// name: nothing outside `dir` can be named), and after removing the rest
/// when a family has no saved model.
pub fn run(dir: &Path, families: &[String]) -> anyhow::Result<()> {
    if let Some(bad) = families.iter().find(|f| !is_metric_name(f)) {
        anyhow::bail!("{bad:?} is not a family name (a metric name)");
    }
    let mut missing = Vec::new();
    for family in families {
        let removed = store::remove(dir, family)?;
        if removed.is_empty() {
            missing.push(family.as_str());
        } else {
            println!("{family}: removed {}", removed.join(", "));
        }
    }
    if !missing.is_empty() {
        let saved = store::list(dir);
        anyhow::bail!(
            "no saved model for {} in {} (saved: {})",
            missing.join(", "),
            dir.display(),
            if saved.is_empty() {
                "none".to_owned()
            } else {
                saved.join(", ")
            }
        );
    }
    Ok(())
}
