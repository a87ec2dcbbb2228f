//! What the store holds, as docker's `system df` counts it (the daemon's `DiskUsage`):
//! images with the sizes they share, containers with what they changed, volumes with
//! the containers that use them, and the build cache; and docker 20.10's summary of each
//! (its client's arithmetic, so the numbers agree with docker's for the same store).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use lb_layerstore::{Digest, Image, Reference, Store};
use lb_runtime::state::State;

use crate::volume::VolumeDefinition;
use crate::{Record, Result, Status};

/// The store's usage, item by item.
#[derive(Debug)]
pub struct DiskUsage {
    /// Bytes of the images' layers, each layer once, and of the blobs nothing reaches
    /// that no build cache record claims either (docker's `LayersSize`; a prune takes
    /// those).
    pub layers_size: u64,
    /// Newest first.
    pub images: Vec<ImageUsage>,
    /// Newest first, as `ps -a` lists them.
    pub containers: Vec<ContainerUsage>,
    /// By name.
    pub volumes: Vec<VolumeUsage>,
    pub build_cache: Vec<CacheUsage>,
}

/// An image a name or a container reaches.
#[derive(Debug)]
pub struct ImageUsage {
    /// Its config's digest (docker's image id).
    pub id: Digest,
    /// Its names, in docker's order (by full name); none for an image only a container
    /// still uses.
    pub names: Vec<Reference>,
    /// Seconds since the epoch, when its config says.
    pub created: Option<i64>,
    /// Its layers' bytes, as `images` shows it.
    pub size: u64,
    /// Bytes of its layers that other images have too.
    pub shared_size: u64,
    /// How many containers use it.
    pub containers: usize,
}

/// A container and what its file system changed.
#[derive(Debug)]
pub struct ContainerUsage {
    pub record: Record,
    pub state: State,
    /// Bytes it wrote (docker's `SizeRw`).
    pub size_rw: u64,
    /// Volumes it mounts (docker's local-driver mounts).
    pub local_volumes: usize,
}

/// A volume, how many containers use it (docker's `RefCount`) and its bytes.
#[derive(Debug)]
pub struct VolumeUsage {
    pub volume: VolumeDefinition,
    pub links: usize,
    pub size: u64,
}

/// What a build cache item is (BuildKit's record types lb has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// A step's result: its layer, config and manifest.
    Regular,
    /// A `RUN --mount=type=cache` directory.
    CacheMount,
}

impl CacheKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheKind::Regular => "regular",
            CacheKind::CacheMount => "exec.cachemount",
        }
    }
}

/// A build cache item.
#[derive(Debug)]
pub struct CacheUsage {
    /// 64 hex digits: a step's cache key, or a cache mount's directory.
    pub id: String,
    pub kind: CacheKind,
    pub size: u64,
    /// Seconds since the epoch.
    pub created: i64,
    /// Whether an image or container holds some of it too (a prune leaves that part).
    pub shared: bool,
}

/// docker's summary line of one kind: counts and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub total_count: usize,
    pub active: usize,
    pub size: u64,
    pub reclaimable: u64,
}

/// Reads the store's usage.
pub fn disk_usage(store: &Store) -> Result<DiskUsage> {
    let sizes: HashMap<Digest, u64> = store
        .content()
        .list()?
        .into_iter()
        .map(|b| (b.digest, b.size))
        .collect();
    let live = store.live_images()?;
    let reached = live.blobs();
    let records = store.containers::<crate::ContainerConfig>()?;

    let mut names: HashMap<Digest, Vec<Reference>> = HashMap::new();
    for (name, desc) in store.names()? {
        if let Ok(d) = Digest::from_str(desc.digest().as_ref()) {
            names.entry(d).or_default().push(name);
        }
    }
    // Layers by chain id (docker counts a layer shared when two images stand on the same
    // chain, not merely the same diff), with how many images have each.
    let chains = |image: &Image| -> Vec<(Digest, u64)> {
        let ids = image
            .diff_ids()
            .map(|d| lb_layerstore::chain_ids(&d))
            .unwrap_or_default();
        ids.into_iter()
            .zip(image.manifest.layers().iter().map(|l| l.size()))
            .collect()
    };
    let mut refs: HashMap<Digest, (usize, u64)> = HashMap::new();
    for image in &live.images {
        for (chain, size) in chains(image) {
            refs.entry(chain).or_insert((0, size)).0 += 1;
        }
    }
    let mut layers_size: u64 = refs.values().map(|(_, size)| size).sum();
    let mut images = Vec::new();
    for image in &live.images {
        let mut image_names = names.remove(&image.manifest_digest).unwrap_or_default();
        image_names.sort_by_key(|n| n.to_string());
        images.push(ImageUsage {
            id: image.config_digest,
            names: image_names,
            created: image
                .config
                .created()
                .as_deref()
                .and_then(lb_layerstore::parse_rfc3339),
            size: image.size(),
            shared_size: chains(image)
                .iter()
                .filter(|(chain, _)| refs.get(chain).is_some_and(|(n, _)| *n > 1))
                .map(|(_, size)| size)
                .sum(),
            containers: records
                .iter()
                .filter(|c| c.image == image.manifest_digest)
                .count(),
        });
    }
    images.sort_by_key(|i| std::cmp::Reverse((i.created, i.id)));

    let containers = crate::ops::list(store, true)?
        .into_iter()
        .map(|(record, state)| ContainerUsage {
            size_rw: store.container_size(&record.id),
            local_volumes: record.config.volumes.len(),
            record,
            state,
        })
        .collect();

    let mut volumes = Vec::new();
    for volume in crate::volume::list(store)? {
        volumes.push(VolumeUsage {
            links: records
                .iter()
                .filter(|c| c.config.volumes.iter().any(|v| v.name == volume.name))
                .count(),
            size: lb_layerstore::files_size(&volume.mountpoint),
            volume,
        });
    }

    // Each blob a cache record reaches belongs to the oldest record that made it (its
    // manifest, config and top layer) or, when no image has it, reached it first; a
    // record holding what an image holds too is shared.
    let mut claimed: HashSet<Digest> = HashSet::new();
    let mut build_cache = Vec::new();
    for record in store.cache_records() {
        let image = &record.image;
        let layers: Vec<Digest> = image
            .manifest
            .layers()
            .iter()
            .filter_map(|l| Digest::from_str(l.digest().as_ref()).ok())
            .collect();
        let top = layers.last().copied();
        let own: Vec<Digest> = [image.manifest_digest, image.config_digest]
            .into_iter()
            .chain(top)
            .chain(layers.into_iter().filter(|l| !reached.contains(l)))
            .filter(|d| claimed.insert(*d))
            .collect();
        if own.is_empty() {
            continue;
        }
        build_cache.push(CacheUsage {
            id: record.key.hex(),
            kind: CacheKind::Regular,
            size: own.iter().map(|d| sizes.get(d).copied().unwrap_or(0)).sum(),
            created: record.created,
            shared: own.iter().any(|d| reached.contains(d)),
        });
    }
    if let Ok(entries) = std::fs::read_dir(store.layout().cache_mounts()) {
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            build_cache.push(CacheUsage {
                id: e.file_name().to_string_lossy().into_owned(),
                kind: CacheKind::CacheMount,
                size: lb_layerstore::files_size(&e.path()),
                created: std::os::unix::fs::MetadataExt::mtime(&meta),
                shared: false,
            });
        }
    }
    // What nothing reaches and no record claims: an untagged image's blobs, until a prune.
    layers_size += sizes
        .iter()
        .filter(|(d, _)| !reached.contains(*d) && !claimed.contains(*d))
        .map(|(_, size)| size)
        .sum::<u64>();

    Ok(DiskUsage {
        layers_size,
        images,
        containers,
        volumes,
        build_cache,
    })
}

impl ContainerUsage {
    /// Running, paused or restarting: docker's active container.
    pub fn active(&self) -> bool {
        Status::of(&self.state).is_live()
    }
}

impl DiskUsage {
    /// docker 20.10's Images line: reclaimable is all but the unique bytes of images
    /// with containers.
    pub fn images_summary(&self) -> Summary {
        let used: u64 = self
            .images
            .iter()
            .filter(|i| i.containers > 0)
            .map(|i| i.size.saturating_sub(i.shared_size))
            .sum();
        Summary {
            total_count: self.images.len(),
            active: self.images.iter().filter(|i| i.containers > 0).count(),
            size: self.layers_size,
            reclaimable: self.layers_size.saturating_sub(used),
        }
    }

    /// Containers: the bytes of those not running are reclaimable.
    pub fn containers_summary(&self) -> Summary {
        let size = self.containers.iter().map(|c| c.size_rw).sum();
        Summary {
            total_count: self.containers.len(),
            active: self.containers.iter().filter(|c| c.active()).count(),
            size,
            reclaimable: self
                .containers
                .iter()
                .filter(|c| !c.active())
                .map(|c| c.size_rw)
                .sum(),
        }
    }

    /// Volumes: those no container uses are reclaimable.
    pub fn volumes_summary(&self) -> Summary {
        Summary {
            total_count: self.volumes.len(),
            active: self.volumes.iter().filter(|v| v.links > 0).count(),
            size: self.volumes.iter().map(|v| v.size).sum(),
            reclaimable: self
                .volumes
                .iter()
                .filter(|v| v.links == 0)
                .map(|v| v.size)
                .sum(),
        }
    }

    /// The build cache's bytes that no image shares (docker's `BuilderSize`).
    pub fn build_cache_size(&self) -> u64 {
        self.build_cache
            .iter()
            .filter(|c| !c.shared)
            .map(|c| c.size)
            .sum()
    }

    /// Build cache: nothing is in use between builds, so all of it is reclaimable.
    pub fn build_cache_summary(&self) -> Summary {
        let size = self.build_cache_size();
        Summary {
            total_count: self.build_cache.len(),
            active: 0,
            size,
            reclaimable: size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &[u8], size: u64, shared_size: u64, containers: usize) -> ImageUsage {
        ImageUsage {
            id: Digest::of(id),
            names: Vec::new(),
            created: None,
            size,
            shared_size,
            containers,
        }
    }

    #[test]
    fn summaries_as_docker_20_10_counts_them() {
        let du = DiskUsage {
            // Two images sharing 100 bytes, one of them used by a container.
            layers_size: 400,
            images: vec![image(b"a", 300, 100, 1), image(b"b", 200, 100, 0)],
            containers: Vec::new(),
            volumes: Vec::new(),
            build_cache: vec![
                CacheUsage {
                    id: "1".repeat(64),
                    kind: CacheKind::Regular,
                    size: 50,
                    created: 0,
                    shared: false,
                },
                CacheUsage {
                    id: "2".repeat(64),
                    kind: CacheKind::Regular,
                    size: 70,
                    created: 0,
                    shared: true,
                },
            ],
        };
        // Reclaimable: all but the unique bytes of the image in use.
        assert_eq!(
            du.images_summary(),
            Summary {
                total_count: 2,
                active: 1,
                size: 400,
                reclaimable: 200
            }
        );
        // The build cache's size leaves out what images share.
        assert_eq!(
            du.build_cache_summary(),
            Summary {
                total_count: 2,
                active: 0,
                size: 50,
                reclaimable: 50
            }
        );
        assert_eq!(du.containers_summary().total_count, 0);
    }
}
