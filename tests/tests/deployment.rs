//! The production stack, read as text: `docker-compose.temporal.yml` has every service the
//! README names, pins its images, checks its servers' health, registers the search attributes,
//! separates the heavy and light queues, and gives the Pulse binaries only variables they read.
//! (Docker itself is not available where the tests run; this keeps the file honest.)

use pulse_tests::stack::workspace_root;
use pulse_workflows::search;
use serde_yaml_ng::Value;
use std::collections::BTreeSet;

fn compose() -> Value {
    let text =
        std::fs::read_to_string(workspace_root().join("docker-compose.temporal.yml")).unwrap();
    let mut compose: Value =
        serde_yaml_ng::from_str(&text).expect("docker-compose.temporal.yml is YAML");
    compose.apply_merge().expect("merge keys resolve");
    for (_, service) in compose["services"].as_mapping_mut().unwrap().iter_mut() {
        service.apply_merge().unwrap();
        if let Some(environment) = service.get_mut("environment") {
            environment.apply_merge().unwrap();
        }
    }
    compose
}

fn readme() -> String {
    std::fs::read_to_string(workspace_root().join("README.md")).unwrap()
}

/// The services listed in the README's "Production stack" table.
fn services_in_readme() -> Vec<String> {
    let readme = readme();
    let section = readme
        .split("## Production stack")
        .nth(1)
        .expect("a Production stack section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// Every environment variable the Pulse crates name in their sources, plus the standard ones
/// the Temporal and AWS SDKs read (SPEC section 1).
fn variables_the_binaries_read() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = [
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    .map(str::to_owned)
    .into();
    for crate_dir in ["workflows", "activities", "worker", "starter"] {
        for file in rust_files(&workspace_root().join(crate_dir).join("src")) {
            let text = std::fs::read_to_string(file).unwrap();
            for (start, _) in text.match_indices("\"PULSE_") {
                let name: String = text[start + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if text[start + 1 + name.len()..].starts_with('"') {
                    names.insert(name);
                }
            }
        }
    }
    names
}

fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn every_service_the_readme_names_is_in_the_compose_file() {
    let compose = compose();
    let named = services_in_readme();
    assert!(named.len() >= 8, "the README lists the services: {named:?}");
    for service in &named {
        assert!(
            compose["services"].get(service.as_str()).is_some(),
            "{service} is missing from the compose file"
        );
    }
    let defined: Vec<&str> = compose["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(Value::as_str)
        .collect();
    for service in defined {
        assert!(
            named.iter().any(|n| n == service),
            "the README does not describe the service {service}"
        );
    }
}

#[test]
fn images_are_pinned_and_servers_report_their_health() {
    let compose = compose();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if service.get("build").is_some() {
            continue;
        }
        let image = service["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no image"));
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{name}: {image} has no tag"));
        assert!(
            tag != "latest" && !tag.is_empty(),
            "{name}: {image} is not pinned"
        );
    }
    for server in ["postgresql", "temporal", "temporal-ui", "minio", "api"] {
        assert!(
            compose["services"][server].get("healthcheck").is_some(),
            "{server} has no health check"
        );
    }
}

#[test]
fn the_search_attributes_are_registered_on_start() {
    let compose = compose();
    let command = compose["services"]["temporal-setup"]["command"]
        .as_str()
        .unwrap();
    for (name, kind) in search::REGISTRATION {
        assert!(
            command.contains(&format!("--name {name} --type {kind}")),
            "{name} is not registered: {command}"
        );
    }
    let api = &compose["services"]["api"];
    assert_eq!(
        api["depends_on"]["temporal-setup"]["condition"],
        "service_completed_successfully"
    );
}

#[test]
fn heavy_and_light_queues_run_apart_and_scale() {
    let compose = compose();
    let command = |service: &str| -> Vec<String> {
        compose["services"][service]["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|part| part.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        command("worker-video"),
        ["pulse-worker", "--queues", "pulse-video"]
    );
    assert_eq!(
        command("worker-light"),
        ["pulse-worker", "--queues", "pulse-light"]
    );
    assert_eq!(command("api"), ["pulse-starter", "serve"]);
    for worker in ["worker-video", "worker-light"] {
        assert!(
            compose["services"][worker].get("ports").is_none(),
            "{worker} must publish no port, so it can be scaled"
        );
        assert!(
            compose["services"][worker].get("container_name").is_none(),
            "{worker} must have no fixed name"
        );
    }
}

#[test]
fn pulse_services_get_only_variables_the_binaries_read() {
    let compose = compose();
    let known = variables_the_binaries_read();
    for service in ["worker-video", "worker-light", "api"] {
        let environment = compose["services"][service]["environment"]
            .as_mapping()
            .unwrap();
        let names: BTreeSet<&str> = environment.keys().filter_map(Value::as_str).collect();
        for name in &names {
            assert!(
                known.contains(*name),
                "{service} sets {name}, which no Pulse binary reads"
            );
        }
        for required in [
            "TEMPORAL_ADDRESS",
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "PULSE_BUCKET",
        ] {
            assert!(names.contains(required), "{service} lacks {required}");
        }
    }
    let api = compose["services"]["api"]["environment"]
        .as_mapping()
        .unwrap();
    assert!(api.contains_key("PULSE_API_TOKEN") && api.contains_key("PULSE_WEBHOOK_SECRET"));
}

#[test]
fn the_readme_documents_only_variables_that_exist() {
    let known = variables_the_binaries_read();
    let readme = readme();
    for documented in readme.split('`').filter(|word| word.starts_with("PULSE_")) {
        // `PULSE_MAX_*` documents a family of variables.
        let found = match documented.strip_suffix('*') {
            Some(prefix) => known.iter().any(|name| name.starts_with(prefix)),
            None => known.contains(documented),
        };
        assert!(
            found,
            "the README documents {documented}, which no Pulse binary reads"
        );
    }
}
