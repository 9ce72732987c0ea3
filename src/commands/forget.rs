//! `promcast forget FAMILY...`: deletes families' saved models from the
//! model store, so that they train afresh on their next use, or stay
//! gone from the registry (and from `{__name__=~"predicted_.+"}`) when
//! nobody asks for them again.

use crate::model::store::ModelStore;
use crate::series::is_metric_name;

/// Forgets each of `families` in `store`, printing the files (objects)
/// removed. Fails before removing anything when a name is not a family
/// name (a metric name: nothing outside the store can be named), and after
/// removing the rest when a family has no saved model.
pub async fn run(store: &ModelStore, families: &[String]) -> anyhow::Result<()> {
    if let Some(bad) = families.iter().find(|f| !is_metric_name(f)) {
        anyhow::bail!("{bad:?} is not a family name (a metric name)");
    }
    let mut missing = Vec::new();
    for family in families {
        let removed = store.remove(family).await?;
        if removed.is_empty() {
            missing.push(family.as_str());
        } else {
            println!("{family}: removed {}", removed.join(", "));
        }
    }
    if !missing.is_empty() {
        let saved: Vec<String> = store.heads().await?.into_iter().map(|h| h.family).collect();
        anyhow::bail!(
            "no saved model for {} in {store} (saved: {})",
            missing.join(", "),
            if saved.is_empty() {
                "none".to_owned()
            } else {
                saved.join(", ")
            }
        );
    }
    Ok(())
}
