//! What is in the bucket: listing, headers, downloads.

use pulse_activities::Storage;
use std::path::Path;

/// An object's key and the headers Pulse sets.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// `Content-Type`.
    pub content_type: String,
    /// `Cache-Control`.
    pub cache_control: String,
}

/// Every object under `prefix`, with its headers, sorted by key.
pub async fn objects(storage: &Storage, prefix: &str) -> Vec<ObjectInfo> {
    let mut keys = Vec::new();
    let mut pages = storage
        .client()
        .list_objects_v2()
        .bucket(storage.bucket())
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("listing the bucket");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys.sort();
    let mut objects = Vec::new();
    for key in keys {
        let head = storage
            .client()
            .head_object()
            .bucket(storage.bucket())
            .key(&key)
            .send()
            .await
            .expect("reading object headers");
        objects.push(ObjectInfo {
            size: head.content_length().unwrap_or(0) as u64,
            content_type: head.content_type().unwrap_or_default().to_owned(),
            cache_control: head.cache_control().unwrap_or_default().to_owned(),
            key,
        });
    }
    objects
}

/// The object at `key` as bytes.
pub async fn get(storage: &Storage, key: &str) -> Vec<u8> {
    let object = storage
        .client()
        .get_object()
        .bucket(storage.bucket())
        .key(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("reading {key}: {error:?}"));
    object
        .body
        .collect()
        .await
        .expect("reading the body")
        .into_bytes()
        .to_vec()
}

/// Downloads every object under `prefix` into `dir`, keeping the layout below the prefix.
pub async fn download(storage: &Storage, prefix: &str, dir: &Path) {
    for object in objects(storage, prefix).await {
        let relative = object
            .key
            .strip_prefix(prefix)
            .expect("listed under the prefix");
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("objects have folders"))
            .expect("creating folders");
        std::fs::write(&path, get(storage, &object.key).await).expect("writing a download");
    }
}
