//! `type: volume`: a network volume to create (`size`) or to register (`volume_id`, `claim_name`).

use super::common::decode_resource_name;
use super::decode::{Decoder, Fields};
use super::duration::decode_off_duration;
use super::resources::parse_size;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeConfig {
    pub name: Option<String>,
    pub backend: String,
    pub region: Option<String>,
    pub availability_zone: Option<String>,
    /// In GB; needed to create a volume.
    pub size: Option<f64>,
    /// An existing volume to register instead of creating one.
    pub volume_id: Option<String>,
    /// Seconds unused before the volume is deleted; `None` = keep it.
    pub auto_cleanup_duration: Option<u64>,
    pub tags: BTreeMap<String, String>,
    /// Kubernetes: an existing PersistentVolumeClaim to register.
    pub claim_name: Option<String>,
    /// Kubernetes: the StorageClass of a new claim.
    pub storage_class_name: Option<String>,
    /// Kubernetes: the access modes of a new claim.
    pub access_modes: Option<Vec<String>>,
}

pub(crate) const VOLUME_FIELDS: &[&str] = &[
    "type",
    "name",
    "backend",
    "region",
    "availability_zone",
    "size",
    "volume_id",
    "auto_cleanup_duration",
    "tags",
    "claim_name",
    "storage_class_name",
    "access_modes",
];

pub(crate) fn decode_volume(d: &mut Decoder<'_>, fields: &Fields<'_>) -> VolumeConfig {
    let backend = fields.with(d, "backend", Decoder::string);
    if backend.is_none() && !fields.has("backend") {
        fields.missing(d, "backend");
    }
    let size = fields.with(d, "size", |d, node, path| {
        let Some(text) = node.scalar() else {
            d.error(
                node,
                path,
                format!("expected a size, found {}", node.describe()),
            );
            return None;
        };
        match parse_size(text) {
            Ok(size) if size > 0.0 => Some(size),
            Ok(_) => {
                d.error(node, path, "the size must be positive");
                None
            }
            Err(message) => {
                d.error(node, path, message);
                None
            }
        }
    });
    let auto_cleanup_duration = fields.get("auto_cleanup_duration").and_then(|node| {
        decode_off_duration(
            d,
            node,
            &fields.path_of("auto_cleanup_duration"),
            None,
            true,
        )
    });
    VolumeConfig {
        name: fields.with(d, "name", decode_resource_name),
        backend: backend.unwrap_or_default(),
        region: fields.with(d, "region", Decoder::string),
        availability_zone: fields.with(d, "availability_zone", Decoder::string),
        size,
        volume_id: fields.with(d, "volume_id", Decoder::string),
        auto_cleanup_duration,
        tags: fields
            .with(d, "tags", Decoder::string_map)
            .unwrap_or_default(),
        claim_name: fields.with(d, "claim_name", Decoder::string),
        storage_class_name: fields.with(d, "storage_class_name", Decoder::string),
        access_modes: fields.with(d, "access_modes", Decoder::strings),
    }
}
