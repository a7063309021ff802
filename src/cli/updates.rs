//! `airlock inventory` and `airlock diff`: the routine-update loop's view of
//! what the far side holds and what a delta would carry.
//!
//! Not for building either (`airlock::ops::inventory`, `ops::diff`).

use std::path::Path;

use airlock::bundle::{self, OpenOptions};
use airlock::ops;
use airlock::{Error, Result};

use super::args::{DiffArgs, InventoryArgs, TrustArgs};
use super::commands::created_now;
use super::open;
use super::render;

/// `inventory docker://REGISTRY[/PREFIX]` or `inventory BUNDLE…`.
pub fn inventory(args: InventoryArgs) -> Result<()> {
    let InventoryArgs {
        places,
        output,
        force,
        public_keys,
        allow_unsigned,
        registry,
        jobs,
        quiet,
    } = args;
    ops::inventory::check_output(&output, force)?;
    // skopeo and crane users write a registry bare; a bundle is a file.
    if let Some(bare) = places.iter().find(|p| {
        !p.starts_with("docker://")
            && !Path::new(p.as_str()).exists()
            && p.contains(['.', ':'])
            && !p.contains(".airlock")
    }) {
        return Err(Error::Usage(format!(
            "{bare} is neither a file nor a docker:// place: to list a registry, write docker://{bare}"
        )));
    }
    let created = bundle::rfc3339(created_now());
    let registries: Vec<&String> = places
        .iter()
        .filter(|p| p.starts_with("docker://"))
        .collect();
    let inventory = match (registries.as_slice(), places.len()) {
        ([one], 1) => {
            if !public_keys.is_empty() || allow_unsigned {
                return Err(Error::Usage(
                    "--pub and --allow-unsigned are for bundles; a registry is listed as it is"
                        .into(),
                ));
            }
            ops::inventory::of_registry(ops::inventory::RegistryRequest {
                place: ops::inventory::RegistryPlace::parse(one)?,
                registry: registry.options(jobs)?,
                created,
            })?
        }
        ([], _) => {
            let trust = bundle_trust(public_keys, allow_unsigned, "inventory of bundles")?;
            inventory_of_bundles(&places, &trust, created, quiet)?
        }
        _ => {
            return Err(Error::Usage(
                "inventory takes one docker://REGISTRY[/PREFIX], or bundles; not both, nor two registries: run it once for each".into(),
            ))
        }
    };
    if output == Path::new("-") {
        render::raw(&inventory.to_bytes());
    } else {
        ops::inventory::write(&inventory, &output)?;
    }
    if !quiet {
        render::inventoried(&inventory, &output);
    }
    Ok(())
}

/// `--pub` or `--allow-unsigned`, required once a bundle is to be read.
fn bundle_trust(
    public_keys: Vec<std::path::PathBuf>,
    allow_unsigned: bool,
    what: &str,
) -> Result<TrustArgs> {
    if public_keys.is_empty() && !allow_unsigned {
        return Err(Error::Usage(format!(
            "{what} needs --pub KEY (the signer's public key), or --allow-unsigned"
        )));
    }
    Ok(TrustArgs {
        public_keys,
        allow_unsigned,
    })
}

/// Opens and trusts each bundle, then lists what they carried. The
/// signature is checked over the manifest; the volumes are not hashed
/// (the signed manifest is all an inventory reads), unless that quick
/// open fails, when a full check names the damage.
fn inventory_of_bundles(
    paths: &[String],
    trust: &TrustArgs,
    created: String,
    quiet: bool,
) -> Result<airlock::model::inventory::Inventory> {
    let quick = OpenOptions {
        check: false,
        repair: true,
        degraded: false,
    };
    let opened = paths
        .iter()
        .map(|p| {
            let path = Path::new(p);
            match open::trusted_with(path, trust, quick, quiet) {
                Err(Error::BadBundle { .. }) => {
                    open::trusted_with(path, trust, OpenOptions::FULL, quiet)
                }
                other => other,
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let listed: Vec<ops::inventory::TrustedBundle> = paths
        .iter()
        .zip(&opened)
        .map(|(file, b)| ops::inventory::TrustedBundle {
            file: file.clone(),
            id: b.id().clone(),
            manifest: b.manifest(),
        })
        .collect();
    ops::inventory::of_bundles(&listed, created)
}

/// `diff A B`: each side an inventory file or a bundle.
pub fn diff(args: DiffArgs) -> Result<()> {
    use ops::diff::{Input, Side};
    let inputs = [Input::classify(&args.a)?, Input::classify(&args.b)?];
    let needs_trust = inputs.iter().any(|i| matches!(i, Input::Bundle(_)));
    let trust = match needs_trust {
        true => Some(bundle_trust(
            args.public_keys.clone(),
            args.allow_unsigned,
            "diff of a bundle",
        )?),
        false => None,
    };
    let mut sides = Vec::new();
    for (input, path) in inputs.into_iter().zip([&args.a, &args.b]) {
        let inventory = match input {
            Input::Inventory(inv) => *inv,
            Input::Bundle(p) => {
                let trust = trust.as_ref().expect("asked for above");
                let created = bundle::rfc3339(created_now());
                inventory_of_bundles(&[p.display().to_string()], trust, created, args.json)?
            }
        };
        sides.push(Side {
            name: path.display().to_string(),
            inventory,
        });
    }
    let diff = ops::diff::diff(&sides[0], &sides[1]);
    if args.json {
        render::json(&diff);
    } else {
        render::diffed(&diff);
    }
    Ok(())
}
