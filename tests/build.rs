//! Exposes the path of the Temporal API descriptors (compiled by temporalio-protos) to the crate,
//! so CLI-exported histories can be read as proto JSON.

fn main() {
    let path = std::env::var("DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH")
        .expect("temporalio-protos exports its descriptor path");
    println!("cargo:rustc-env=TEMPORAL_API_DESCRIPTORS={path}");
}
